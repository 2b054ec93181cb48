"""What-if: replay the observed request log through the connection mechanism.

The loaded ``requests`` are turned into per-second, per-host demand (one lookup
per URI; requests of at least ``batch_min`` URIs fan out at once) and run
through ``analysis.mechanism.simulate_pool``: once with the settings the
incident had (from the ``incident`` table, else kernel defaults; the source
address policy from the errno class of the address errors seen) and once per
scenario with the changed settings (``whatifs`` shares the load and the
as-it-was replay between scenarios). Predicted dials, TIME_WAIT sockets and failed lookups sit
beside the observed ones (dial rate, ``node_sockstat_TCP_tw``, address errors),
so the replay can be checked against what happened before its prediction is
believed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from analysis.chain.environment import environment
from analysis.errors import UserError
from analysis.mechanism import PoolSeries, PoolSettings, demand_from_requests, simulate_pool
from analysis.roles import PORT_EXHAUSTION_ERRNOS, role_of_signal
from analysis.rollups import RollupInfo, ensure_rollups, raw_absent, signal_ids
from analysis.window import Window, resolve_window


@dataclass(frozen=True)
class WhatIfSummary:
    """Totals and peaks of one series set (observed, replayed as-is, or changed)."""

    dials: float
    peak_dials_per_s: float
    peak_time_wait: float
    errors: float
    seconds_with_errors: int
    exhausted: bool


@dataclass
class WhatIfResult:
    """Observed vs replayed (unchanged settings) vs predicted (changed settings).

    ``frame`` has one row per second: ``t``, ``observed_dials``,
    ``observed_time_wait``, ``observed_errors``, ``replay_*`` and
    ``predicted_*`` for dials, time_wait and errors, and ``batches`` (how many
    fan-out requests started). The as-it-was replay applies the settings
    changes the timeline records (``changes``); the prediction runs the changed
    settings over the whole window. Replayed errors count failed lookups of
    logged requests only: observed errors also include lookups the request log
    does not show (other endpoints), so compare their timing, not their level.
    ``tw_agreement`` is the relative difference of mean replayed vs observed
    TIME_WAIT over the seconds when batches ran (or their TIME_WAIT lasted),
    ``None`` without an observed TIME_WAIT.
    """

    baseline: PoolSettings
    changed: PoolSettings
    frame: pl.DataFrame
    observed: WhatIfSummary
    replay: WhatIfSummary
    predicted: WhatIfSummary
    tw_agreement: float | None
    changes: list[tuple[int, PoolSettings, str]] = field(default_factory=list)
    window: Window | None = None  # the requests replayed are those inside it
    rollup: RollupInfo | None = None  # the grid of the observed series (None: no rollups)

    def to_dict(self, every_s: int = 10) -> dict:
        """JSON-ready: settings, summaries and the series on a coarser ``every_s`` grid."""
        coarse = (
            self.frame.group_by_dynamic("t", every=f"{every_s}s")
            .agg(
                pl.col("^.*_dials$").sum(),
                pl.col("^.*_errors$").sum(),
                pl.col("^.*_time_wait$").max(),
                pl.col("batches").sum(),
            )
            .with_columns(pl.col("t").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        )
        return {
            "baseline": _settings_dict(self.baseline),
            "changed": _settings_dict(self.changed),
            "observed": asdict(self.observed),
            "replay": asdict(self.replay),
            "predicted": asdict(self.predicted),
            "tw_agreement": self.tw_agreement,
            "grid": None if self.rollup is None else self.rollup.to_dict(),
            "outside_window": None if self.window is None or self.window.start is None
            else self.window.outside_line(),
            "observed_changes": [
                {"second": sec, "title": title, "settings": _settings_dict(st)}
                for sec, st, title in self.changes
            ],
            "series": coarse.to_dicts(),
        }


def _settings_dict(s: PoolSettings) -> dict:
    d = asdict(s)
    d["port_range"] = list(s.port_range)
    return d


def observed_source_addresses(con: duckdb.DuckDBPyConnection) -> str:
    """``fixed`` if bind errors (EADDRINUSE) dominate the address errors, else ``default``."""
    rows = dict(
        con.execute(
            "SELECT errno_class, count(*) FROM log_events WHERE errno_class IN "
            "('EADDRINUSE', 'EADDRNOTAVAIL') GROUP BY 1"
        ).fetchall()
    )
    return "fixed" if rows.get("EADDRINUSE", 0) >= rows.get("EADDRNOTAVAIL", 0) else "default"


def baseline_settings(con: duckdb.DuckDBPyConnection) -> PoolSettings:
    """The settings the incident ran with, as far as the store tells."""
    env = environment(con)
    return PoolSettings(
        idle_pool=env.idle_pool if env.idle_pool is not None else PoolSettings.idle_pool,
        port_range=env.port_range,
        time_wait_s=env.time_wait_s,
        source_addresses=observed_source_addresses(con),  # type: ignore[arg-type]
    )


_LIMIT_RE = re.compile(r"concurrency limit (?:of )?(\d+)", re.I)
_RANGE_RE = re.compile(r"port range (\d+)\s*-\s*(\d+)", re.I)
_POOL_RE = re.compile(r"idle pool (?:of )?(\d+)", re.I)


def settings_from_text(text: str, current: PoolSettings, baseline: PoolSettings) -> PoolSettings:
    """The settings after a mitigation or fix described in words (its event title).

    Recognised: random (loopback) source addresses, or their removal; a
    concurrency limit of N; a port range LO-HI; an idle pool of N. Anything else
    leaves the settings as they were.
    """
    t = text.lower()
    new = current
    if "random" in t and "source" in t:
        removed = re.search(r"random source[^;,.]*(removed|reverted|dropped)", t)
        new = replace(new, source_addresses=baseline.source_addresses if removed else "random")
    if m := _LIMIT_RE.search(text):
        new = replace(new, concurrency_limit=int(m[1]))
    if m := _RANGE_RE.search(text):
        new = replace(new, port_range=(int(m[1]), int(m[2])))
    if m := _POOL_RE.search(text):
        new = replace(new, idle_pool=int(m[1]))
    return new


def observed_changes(
    con: duckdb.DuckDBPyConnection, t0: datetime, baseline: PoolSettings
) -> list[tuple[int, PoolSettings, str]]:
    """Settings changes the humans' timeline records (mitigations and fixes), as
    ``(second from t0, settings, title)``, for the as-it-was replay."""
    rows = con.execute(
        "SELECT time, title FROM events WHERE lower(kind) IN ('mitigation', 'fix') ORDER BY time"
    ).fetchall()
    out: list[tuple[int, PoolSettings, str]] = []
    cur = baseline
    for when, title in rows:
        new = settings_from_text(str(title or ""), cur, baseline)
        if new != cur:
            out.append((int((when - t0).total_seconds()), new, str(title)))
            cur = new
    return out


def _observed(
    con: duckdb.DuckDBPyConnection, t0, n: int, rollup: RollupInfo | None
) -> dict[str, np.ndarray]:
    """Observed dials/s, TIME_WAIT (summed over hosts) and address errors/s per second; on
    a grid coarser than a second a bucket's value holds for each of its seconds."""
    out = {k: np.full(n, np.nan) for k in ("dials", "time_wait")}
    errs = con.execute(
        f"""SELECT CAST(floor(epoch(time) - epoch(?::TIMESTAMP)) AS BIGINT) AS s,
                   sum(1.0 / coalesce(sample_rate, 1.0))
            FROM log_events WHERE errno_class IN
              ({", ".join(repr(e) for e in sorted(PORT_EXHAUSTION_ERRNOS))})
            GROUP BY 1""",
        [t0],
    ).fetchall()
    e = np.zeros(n)
    for s, v in errs:
        if 0 <= s < n:
            e[s] += v
    out["errors"] = e
    if rollup is None:  # a read-only store without rollups: observed series stay NaN
        return out
    ids = signal_ids(con)
    roles = {s: role_of_signal(sid) for s, sid in ids.items()}

    def metric_of(s: str) -> str:
        return ids[s].metric or ""

    dial = sorted(s for s, m in roles.items() if m and m.role == "fan_out" and not ids[s].labels
                  and ("connections_total" in metric_of(s) or "dial" in metric_of(s)))
    tw_all = sorted(s for s, m in roles.items() if m and m.role == "port_exhaustion"
                    and ids[s].family == "metric")
    tw = [s for s in tw_all if ids[s].labels] or tw_all[:1]
    for key, sigs in (("dials", dial[:1]), ("time_wait", tw)):
        if not sigs:
            continue
        rows = con.execute(
            f"""SELECT CAST(floor(epoch(t) - epoch(?::TIMESTAMP)) AS BIGINT) AS s, sum(value)
                FROM signals WHERE signal IN ({", ".join("?" * len(sigs))})
                AND value IS NOT NULL GROUP BY 1""",
            [t0, *sigs],
        ).fetchall()
        for s, v in rows:
            if v is not None and -rollup.grid_s < s < n:
                out[key][max(s, 0):s + rollup.grid_s] = v
    return out


def _summary(dials: np.ndarray, tw: np.ndarray, errors: np.ndarray) -> WhatIfSummary:
    return WhatIfSummary(
        dials=float(np.nansum(dials)),
        peak_dials_per_s=float(np.nanmax(dials, initial=0.0)),
        peak_time_wait=float(np.nanmax(tw, initial=0.0)) if np.isfinite(tw).any() else 0.0,
        errors=float(np.nansum(errors)),
        seconds_with_errors=int(np.sum(np.nan_to_num(errors) > 0)),
        exhausted=bool(np.nansum(errors) > 0),
    )


_LEVERS = ("concurrency_limit", "max_batch", "source_addresses", "port_range", "idle_pool")


def whatif(
    con: duckdb.DuckDBPyConnection,
    *,
    concurrency_limit: int | None = None,
    max_batch: int | None = None,
    source_addresses: str | None = None,
    port_range: tuple[int, int] | None = None,
    idle_pool: int | None = None,
    batch_min: int = 1000,
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> WhatIfResult:
    """Replay the request log under changed settings (``None`` keeps the observed one);
    ``grid_s``, ``start``, ``end`` as for ``analysis.rollups.ensure_rollups``."""
    kw = dict(concurrency_limit=concurrency_limit, max_batch=max_batch,
              source_addresses=source_addresses, port_range=port_range, idle_pool=idle_pool)
    return whatifs(con, {"": kw}, batch_min=batch_min, grid_s=grid_s, start=start, end=end)[""]


def whatifs(
    con: duckdb.DuckDBPyConnection,
    scenarios: dict[str, dict],
    *,
    batch_min: int = 1000,
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, WhatIfResult]:
    """``whatif`` for several scenarios (name -> keyword arguments of ``whatif``).

    The request log, the observed series and the as-it-was replay are the same
    for every scenario, so they are loaded and run once; each scenario adds one
    replay under its settings. Results equal separate ``whatif`` calls. Only the
    requests inside the incident window are replayed (per second, whatever the grid);
    the observed series come from the rollups on ``grid_s``.
    """
    raw_absent(con, "the what-if replay of the request log")
    try:
        rollup: RollupInfo | None = ensure_rollups(con, grid_s, start, end)
        window = rollup.window
    except duckdb.Error:  # a read-only store without rollups: observed series stay NaN
        rollup, window = None, None
    window = window or resolve_window(con, start, end)
    n_req = con.execute(
        "SELECT count(*) FROM requests WHERE time >= $lo AND time <= $hi",
        {"lo": window.start, "hi": window.end},
    ).fetchall()[0][0] if window.start is not None else 0
    if n_req == 0:
        raise UserError("the store has no requests to replay"
                        + (" inside the window" if window.start is not None else "")
                        + ": ingest a request log first (or widen --start/--end)")
    base = baseline_settings(con)
    targets: dict[str, PoolSettings] = {}
    for name, kw in scenarios.items():
        unknown = set(kw) - set(_LEVERS)
        if unknown:
            raise UserError(f"what-if settings: unknown {', '.join(sorted(unknown))}")
        try:
            targets[name] = replace(base, **{k: v for k, v in kw.items() if v is not None})
        except ValueError as exc:
            raise UserError(f"what-if settings: {exc}") from exc
    inside = {"lo": window.start, "hi": window.end}
    t0, t1 = con.execute(
        "SELECT date_trunc('second', min(time)), max(time) FROM requests"
        " WHERE time >= $lo AND time <= $hi", inside
    ).fetchall()[0]
    req = con.sql(
        """SELECT CAST(floor(epoch(time) - epoch($t0::TIMESTAMP)) AS BIGINT) AS s,
                  coalesce(host, '?') AS host, coalesce(uris, 1) AS uris
           FROM requests WHERE time >= $lo AND time <= $hi""",
        params={"t0": t0, **inside},
    ).pl()
    n = int((t1 - t0).total_seconds()) + 1
    hosts = sorted(req["host"].unique().to_list())
    h_idx = req["host"].replace_strict(hosts, list(range(len(hosts))), return_dtype=pl.Int64)
    demand = demand_from_requests(
        req["s"].to_numpy(), h_idx.to_numpy(), req["uris"].to_numpy(), n, len(hosts),
        batch_min=batch_min,
    )
    changes = observed_changes(con, t0, base)
    replay = simulate_pool(demand, base, [(s, st) for s, st, _ in changes])
    obs = _observed(con, t0, n, rollup)
    batches = np.bincount(demand.batches.second, minlength=n)[:n]
    t = pl.datetime_range(t0, t0 + timedelta(seconds=n - 1), "1s", eager=True)
    common = pl.DataFrame(
        {
            "t": t[:n],
            "observed_dials": obs["dials"],
            "observed_time_wait": obs["time_wait"],
            "observed_errors": obs["errors"],
            "replay_dials": _connected(replay),
            "replay_time_wait": replay.time_wait.sum(axis=1).astype(float),
            "replay_errors": replay.failed_lookups.sum(axis=1).astype(float),
        }
    )
    observed = _summary(obs["dials"], obs["time_wait"], obs["errors"])
    replayed = _summary(common["replay_dials"].to_numpy(), common["replay_time_wait"].to_numpy(),
                        common["replay_errors"].to_numpy())
    agreement = _tw_agreement(obs["time_wait"], common["replay_time_wait"].to_numpy(), batches,
                              base.time_wait_s)
    out: dict[str, WhatIfResult] = {}
    for name, changed in targets.items():
        pred = simulate_pool(demand, changed)
        frame = common.with_columns(
            predicted_dials=_connected(pred),
            predicted_time_wait=pred.time_wait.sum(axis=1).astype(float),
            predicted_errors=pred.failed_lookups.sum(axis=1).astype(float),
            batches=batches.astype(np.int64),
        )
        predicted = _summary(frame["predicted_dials"].to_numpy(),
                             frame["predicted_time_wait"].to_numpy(),
                             frame["predicted_errors"].to_numpy())
        out[name] = WhatIfResult(base, changed, frame, observed, replayed, predicted, agreement,
                                 list(changes), window, rollup)
    return out


def _connected(series: PoolSeries) -> np.ndarray:
    """Dials that got a connection, over all hosts: what memcached's connection counter sees."""
    return (series.dials - series.failed_dials).sum(axis=1).astype(float)


def _tw_agreement(
    observed: np.ndarray, replay: np.ndarray, batches: np.ndarray, time_wait_s: int
) -> float | None:
    """Relative difference of mean TIME_WAIT (replay vs observed) while batches run.

    "While batches run" is every second from a batch until ``time_wait_s`` after
    it, i.e. while its sockets can still be in TIME_WAIT.
    """
    active = np.convolve(batches > 0, np.ones(time_wait_s), mode="full")[: batches.size] > 0
    ok = active & np.isfinite(observed)
    if ok.sum() == 0 or np.mean(observed[ok]) <= 0:
        return None
    return float(abs(np.mean(replay[ok]) - np.mean(observed[ok])) / np.mean(observed[ok]))
