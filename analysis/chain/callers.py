"""Caller scoring: which caller's batches can force the fan-out past the idle pool.

A caller is ranked by its *weight* (the dials its batches force past the pool,
and whether they alone can fill a host's port range within one TIME_WAIT) and
by how those forced dials follow the fan-out, never by request rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import polars as pl

from analysis.chain.environment import UNKNOWN_POOL_CAP, Environment
from analysis.chain.result import CallerScore
from analysis.chain.series import Capture, RoleSeries, coincide, corr, smooth, up_windows
from analysis.chain.settings import ChainSettings
from analysis.rollups import HEAVY_URIS, has_table, raw_absent
from analysis.signal_id import SignalId


def caller_method(con: duckdb.DuckDBPyConnection, caller: str) -> str | None:
    """The caller's main method: the one its URIs went to most (from ``roll_callers``,
    whatever the raw volume)."""
    rows = con.execute(
        "SELECT method FROM roll_callers WHERE caller = ? GROUP BY method "
        "ORDER BY sum(uris) DESC NULLS LAST, method NULLS LAST LIMIT 1",
        [caller],
    ).fetchall()
    return rows[0][0] if rows else None


def demand(series: dict[str, RoleSeries]) -> RoleSeries | None:
    """What the culprit's batches must explain: fan-out plus failed dials (address errors).

    Successful dials flatten once the ports are gone while the batches go on;
    the failed ones show as address errors, so the two, each scaled to its
    peak, together follow the connections the batches wanted.
    """
    parts = [series[r] for r in ("fan_out", "port_exhaustion") if r in series]
    if not parts:
        return None
    total = sum(np.nan_to_num(p.values) / max(float(np.nanmax(p.values)), 1e-12) for p in parts)
    windows = sorted((w for p in parts for w in p.windows), key=lambda w: w.start)
    return RoleSeries(parts[0].role, "+".join(p.signal for p in parts), total, windows)


@dataclass(frozen=True)
class Forced:
    """Dials a caller's batches force past the idle pool, per bucket and per host.

    ``series`` is summed over hosts; ``fill`` is the largest number forced on
    one host within one TIME_WAIT period, as a share of that host's free ports
    (>= 1: the batches alone can fill the range).
    """

    series: np.ndarray
    fill: float
    first: int | None


def forced_dials(
    con: duckdb.DuckDBPyConnection,
    t0: datetime,
    n: int,
    grid_s: float,
    env: Environment,
) -> dict[str, Forced]:
    """Per caller: the lookups its requests want beyond the idle pool (see ``Forced``).

    One lookup per URI at once, so a request of ``u`` URIs dials ``max(u - pool, 0)``
    connections. With an unknown pool, ``UNKNOWN_POOL_CAP`` stands in (four
    times the largest normal batch: small batches never count). Read from the heavy
    requests of the rollups (``roll_heavy``: exact whenever the pool is at least
    ``HEAVY_URIS``, and as small as the heavy traffic, whatever the raw volume), from the
    raw ``requests`` otherwise.
    """
    cap = env.idle_pool if env.idle_pool is not None else UNKNOWN_POOL_CAP
    source = "roll_heavy" if cap >= HEAVY_URIS and has_table(con, "roll_heavy") else "requests"
    if source == "requests":
        raw_absent(con, f"the port arithmetic with an idle pool under {HEAVY_URIS}")
    rows = con.sql(
        f"""SELECT caller, coalesce(host, '') AS host,
                  CAST(floor((epoch(time) - epoch(?::TIMESTAMP)) / ?) AS BIGINT) AS b,
                  sum(uris - ?) AS v
           FROM {source} WHERE caller IS NOT NULL AND uris > ? GROUP BY ALL""",
        params=[t0, grid_s, cap, cap],
    ).pl().filter(pl.col("b").is_between(0, n - 1))
    if rows.height == 0:
        return {}
    pairs = rows.select("caller", "host").unique().sort("caller", "host")
    rows = rows.join(pairs.with_row_index("k"), on=["caller", "host"])
    per = np.zeros((pairs.height, n))
    values = rows["v"].cast(pl.Float64).to_numpy()
    np.add.at(per, (rows["k"].to_numpy(), rows["b"].to_numpy()), values)
    room = max(env.ports - cap, 1)
    fills = _fills(con, source, t0, n * grid_s, cap, env.time_wait_s)
    out: dict[str, Forced] = {}
    owners = pairs["caller"].to_numpy()
    for caller in pairs["caller"].unique(maintain_order=True).to_list():
        total = per[owners == caller].sum(axis=0)
        nz = np.flatnonzero(total)
        out[caller] = Forced(total, fills.get(caller, 0.0) / room, int(nz[0]) if nz.size else None)
    return out


def _fills(
    con: duckdb.DuckDBPyConnection, source: str, t0: datetime, span_s: float, cap: int,
    time_wait_s: int,
) -> dict[str, float]:
    """Per caller, the most dials its requests force past the pool on one host within one
    TIME_WAIT period (``time_wait_s`` whole seconds), from the request times at 1 s
    whatever the grid: on a grid coarser than TIME_WAIT a bucket's sum would count
    several periods' dials as one."""
    rows = con.execute(
        f"""WITH s AS (
              SELECT caller, coalesce(host, '') AS host,
                     CAST(floor(epoch(time) - epoch($t0::TIMESTAMP)) AS BIGINT) AS sec,
                     sum(uris - $cap) AS v
              FROM {source}
              WHERE caller IS NOT NULL AND uris > $cap
                AND time >= $t0::TIMESTAMP
                AND time < $t0::TIMESTAMP + to_microseconds(CAST($span * 1e6 AS BIGINT))
              GROUP BY ALL)
            SELECT caller, max(w) FROM (
              SELECT caller, sum(v) OVER (PARTITION BY caller, host ORDER BY sec
                                          RANGE BETWEEN $back PRECEDING AND CURRENT ROW) AS w
              FROM s) GROUP BY caller""",
        {"t0": t0, "cap": cap, "span": float(span_s), "back": max(1, int(time_wait_s)) - 1},
    ).fetchall()
    return {str(c): float(w) for c, w in rows}


def score_callers(
    con: duckdb.DuckDBPyConnection,
    callers: list[str],
    cap: Capture,
    series: dict[str, RoleSeries],
    env: Environment,
    settings: ChainSettings,
) -> tuple[list[CallerScore], dict[str, Forced]]:
    """Every caller with a URI series scored (``score_caller``), best first, and the dials
    each caller's batches force past the pool (``forced_dials``)."""
    fan = demand(series)
    forced = forced_dials(con, cap.t[0], cap.frame.height, cap.grid_s, env)
    k = max(1, int(settings.smooth_s / cap.grid_s))
    scores = [
        score_caller(con, c, cap, fan, forced.get(c), settings, k)
        for c in callers if SignalId.for_caller(c, "uris").key in cap.frame.columns
    ]
    scores.sort(key=lambda s: (-s.score, -s.fill, s.caller))
    return scores, forced


def score_caller(
    con: duckdb.DuckDBPyConnection,
    caller: str,
    cap: Capture,
    fan: RoleSeries | None,
    forced: Forced | None,
    settings: ChainSettings,
    smooth_k: int,
) -> CallerScore:
    """A caller's weight and how it lines up with the fan-out.

    The score is the correlation of the (smoothed over ``smooth_k`` buckets) dials the
    caller's batches force past the pool with the (smoothed) fan-out, zero unless its
    batches alone can fill a host's port range within one TIME_WAIT period: a caller
    of small batches scores 0 whatever its request rate.
    """
    col, t = cap.col, cap.t
    uris = col(SignalId.for_caller(caller, "uris").key)
    max_b = float(np.nanmax(col(SignalId.for_caller(caller, "max_uris").key), initial=0.0))
    rps = float(np.nanmax(col(SignalId.for_caller(caller, "requests").key), initial=0.0))
    total = float(forced.series.sum()) if forced is not None else 0.0
    fill = forced.fill if forced is not None else 0.0
    wins = up_windows(t, uris, SignalId.for_caller(caller, "uris").key, settings, counts=True)
    share, p, r = 0.0, 1.0, 0.0
    if fan is not None:
        if wins:
            c = coincide(wins, fan.windows, cap.span, settings)
            share, p = c.share, c.p_value
        if forced is not None:
            r = corr(smooth(forced.series, smooth_k), smooth(fan.values, smooth_k))
    score = max(r, 0.0) if fill >= 1.0 else 0.0
    first = t[forced.first] if forced is not None and forced.first is not None else None
    return CallerScore(caller, caller_method(con, caller), rps, max_b, total, fill, share, p,
                       r, score, first)


def evidence(s: CallerScore, pool: int | None) -> str:
    pool_txt = f"idle pool {pool}" if pool is not None else "idle pool unknown"
    return (
        f"peak {s.peak_rps:.1f} req/s but batches up to {s.max_batch:,.0f} URIs ({pool_txt}):"
        f" within one TIME_WAIT its batches alone force {s.fill:.1f}x a host's free ports;"
        f" its forced dials follow the fan-out (r={s.corr:.2f})"
    )


def caller_reason(s: CallerScore, best: CallerScore | None, pool: int | None) -> str:
    """Why a caller is not the culprit (weight, not request rate, decides)."""
    if s.forced_dials <= 0:
        cap = f"the idle pool ({pool})" if pool is not None else (
            f"{UNKNOWN_POOL_CAP} URIs (pool unknown)")
        return (
            f"effect too small for the mechanism: largest batch {s.max_batch:,.0f} URIs is"
            f" within {cap}, so its requests (peak {s.peak_rps:.1f} req/s) never dial past"
            " the pool"
        )
    if s.fill < 1.0:
        return (
            f"effect too small for the mechanism: within one TIME_WAIT its batches force only"
            f" {s.fill:.0%} of a host's free ports"
        )
    if best is not None and best.first_forced and s.first_forced and (
        s.first_forced > best.first_forced
    ):
        return f"wrong order: its batches start after {best.caller}'s"
    if s.corr < 0.1:
        return f"no coincidence: its forced dials do not follow the fan-out (r={s.corr:.2f})"
    return f"weaker evidence than {best.caller if best else 'the culprit'} (r={s.corr:.2f})"

