"""What the notebooks and the report show, computed from a store.

Each function reads the store (and, where it needs them, the chain and
what-if results of ``analysis.chain`` / ``analysis.whatif``) and returns plain
polars frames or dataclasses; ``analysis.charts`` draws them and
``analysis.report.page`` lays them out. Nothing here is hard-coded to the april-2026
incident: signals are picked by their roles (``analysis.roles``), facts come
from the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import polars as pl

from analysis.chain.result import ChainResult, Hop, iso
from analysis.charts import Panel
from analysis.report.cache import cached
from analysis.roles import role_of_signal
from analysis.rollups import raw_origin, signal_ids, signal_series
from analysis.rollups import raw_rows_line as raw_rows_line  # for the notebooks (rd.raw_rows_line)
from analysis.signal_id import SignalId

WHATIF_SCENARIOS: dict[str, dict] = {
    "fix: concurrency limit 50": {"concurrency_limit": 50},
    "workaround: random loopback source": {"source_addresses": "random"},
    "batch cap 1,000 URIs": {"max_batch": 1000},
}
"""The what-ifs the report answers: the post-mortem's fix, its workaround, a batch cap."""

# --- loading and coverage ------------------------------------------------------------


def coverage(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """What data exists: ``source, host, start, end, rows`` per source and host.

    On a store of rollups only (``raw_origin``) the raw tables are empty: the rows are
    then those the rollups counted inside their window (``_rollup_coverage``)."""
    if raw_origin(con) is not None:
        return _rollup_coverage(con)
    return con.sql(
        """
        SELECT 'requests' AS source, host, min(time) AS start, max(time) AS "end",
               count(*) AS rows FROM requests GROUP BY host
        UNION ALL
        SELECT 'logs', host, min(time), max(time), count(*) FROM log_events GROUP BY host
        UNION ALL
        SELECT 'metric ' || metric, NULL, min(time), max(time), count(*)
          FROM metrics GROUP BY metric
        UNION ALL
        SELECT 'events', NULL, min(time), max(coalesce(end_time, time)), count(*)
          FROM events HAVING count(*) > 0
        ORDER BY source, host
        """
    ).pl()


def _rollup_coverage(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """``coverage`` from the roll tables: requests per data centre (``roll_callers`` has no
    host; its rates times the grid step are the requests), log lines per host (weighted
    by 1/sample_rate, as the rollups count them), metric samples per metric
    (``roll_series``) spanning their buckets, and the events. Times are the first and
    last bucket with data, inside the rollups' window."""
    return con.sql(
        """
        WITH g AS (SELECT grid_s FROM roll_info LIMIT 1)
        SELECT 'requests' AS source, coalesce(dc, '(no dc)') AS host, min(t) AS start,
               max(t) AS "end", round(sum(requests) * any_value(g.grid_s))::BIGINT AS rows
          FROM roll_callers, g GROUP BY 2
        UNION ALL
        SELECT 'logs', host, min(t), max(t),
               round(sum(errors) * any_value(g.grid_s))::BIGINT FROM roll_errors, g GROUP BY 2
        UNION ALL
        SELECT 'metric ' || m.metric, NULL, min(m.t), max(m.t), any_value(s.samples)
          FROM roll_metrics m
          JOIN (SELECT metric, sum(samples)::BIGINT AS samples FROM roll_series GROUP BY 1) s
            USING (metric)
         GROUP BY m.metric
        UNION ALL
        SELECT 'events', NULL, min(start), max("end"), count(*) FROM roll_events
          HAVING count(*) > 0
        ORDER BY source, host
        """
    ).pl()


def files(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The files loaded and how every line was accounted (read = loaded + rejected)."""
    return con.sql(
        """SELECT path, format, detected_by, lines_read, loaded, rejected
           FROM ingest_files ORDER BY path"""
    ).pl()


def rejects_by_reason(con: duckdb.DuckDBPyConnection, limit: int = 20) -> pl.DataFrame:
    """Rejected lines counted per file and reason, most frequent first."""
    return con.sql(
        f"""SELECT path, reason, count(*) AS lines, min(line) AS first_line
            FROM rejects GROUP BY path, reason ORDER BY lines DESC, path, reason
            LIMIT {int(limit)}"""
    ).pl()


# --- signals ---------------------------------------------------------------------------


def signal_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every signal of the rollups, sorted."""
    return [r[0] for r in con.execute("SELECT DISTINCT signal FROM signals ORDER BY 1").fetchall()]


def long_signals(con: duckdb.DuckDBPyConnection, names: list[str]) -> pl.DataFrame:
    """``t, series, value`` for the given signals (the signal name is the series)."""
    if not names:
        return pl.DataFrame(schema={"t": pl.Datetime("us"), "series": pl.String,
                                    "value": pl.Float64})
    return con.sql(
        "SELECT t, signal AS series, value FROM signals WHERE list_contains(?, signal)"
        " ORDER BY signal, t",
        params=[names],
    ).pl()


def _by_role(ids: dict[str, SignalId], role: str) -> list[str]:
    """The aggregate signals (no per-label series) whose role is ``role``, by name."""
    out = []
    for s, sid in sorted(ids.items()):
        m = role_of_signal(sid)
        if m is not None and m.role == role and not sid.labels:
            out.append(s)
    return out


def role_signals(con: duckdb.DuckDBPyConnection, role: str) -> list[str]:
    """The aggregate signals (no per-label series) that play ``role`` in the chain."""
    return _by_role(signal_ids(con), role)


def _labelled(series: pl.DataFrame, ids: dict[str, SignalId]) -> pl.DataFrame:
    """Series named for legends: the caller, errno class or metric (with its labels),
    control characters escaped (``SignalId.label``), never a name cut at a ``:``."""
    return series.with_columns(
        pl.col("series").replace_strict({k: ids[k].label() for k in ids}, default=None)
        .fill_null(pl.col("series"))
    )


def events(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Human events as intervals: ``start, end, kind, title, source, detail`` (UTC)."""
    return con.sql(  # the rollups' copy: the same rows on a full store, the only ones otherwise
        """SELECT start, "end", kind, title, source, detail
           FROM roll_events ORDER BY start, kind, title"""
    ).pl()


def onsets_frame(onsets: dict[str, datetime]) -> pl.DataFrame:
    """The chain's onsets as ``t, role`` rows, earliest first."""
    return pl.DataFrame(
        {"t": list(onsets.values()), "role": list(onsets.keys())},
        schema={"t": pl.Datetime("us"), "role": pl.String},
    ).sort("t")


@dataclass
class TimelineData:
    """Everything the timeline chart needs, picked from the signals by role."""

    panels: list[Panel]
    callers: tuple[Panel, Panel] | None
    events: pl.DataFrame
    onsets: pl.DataFrame
    picked: dict[str, list[str]] = field(default_factory=dict)


def timeline_data(
    con: duckdb.DuckDBPyConnection,
    *,
    onsets: dict[str, datetime] | None = None,
    port_range: tuple[int, int] | None = None,
) -> TimelineData:
    """Panels of the timeline: traffic, errors by class, TIME_WAIT, runtime, callers.

    Signals are chosen by role, so another incident's names work too; a panel
    with no signal is left out.
    """
    ids = signal_ids(con)
    names = sorted(ids)

    def measured(family: str, measure: str) -> list[str]:
        return [s for s in names if (ids[s].family, ids[s].measure) == (family, measure)]

    picked = {
        "user_impact": _by_role(ids, "user_impact"),
        "errors": measured("errors", "errno"),
        "time_wait": [s for s in _by_role(ids, "port_exhaustion") if ids[s].family == "metric"],
        "runtime": _by_role(ids, "runtime_stress"),
        "requests": measured("caller", "requests"),
        "uris": measured("caller", "uris"),
    }

    def frame(signals: list[str]) -> pl.DataFrame:
        return _labelled(long_signals(con, signals), ids)

    panels: list[Panel] = []
    if picked["user_impact"]:
        panels.append(Panel("user-facing traffic", frame(picked["user_impact"]), "req/s"))
    if picked["errors"]:
        panels.append(Panel("errors by class (log lines/s)", frame(picked["errors"]),
                            "lines/s", log=True))
    if picked["time_wait"]:
        ceiling = None if port_range is None else port_range[1] - port_range[0] + 1
        panels.append(Panel(
            "TIME_WAIT sockets against the ephemeral port range",
            frame(picked["time_wait"]), "sockets",
            ceiling=ceiling,
            ceiling_label=f"ports {port_range[0]}-{port_range[1]}" if port_range else "",
        ))
    for s in picked["runtime"][:3]:
        panels.append(Panel(f"runtime: {ids[s].label()}", frame([s]), "", height=70))
    callers = None
    if picked["requests"] and picked["uris"]:
        callers = (
            Panel("per-caller requests/s", frame(picked["requests"]), "req/s"),
            Panel("per-caller URIs/s (the weight)", frame(picked["uris"]), "URIs/s", log=True),
        )
    return TimelineData(panels, callers, events(con), onsets_frame(onsets or {}), picked)


def series(con: duckdb.DuckDBPyConnection, signal: str) -> pl.DataFrame:
    """One signal as ``t, value`` (empty when unknown)."""
    return signal_series(con, signal)


def chart_signal(con: duckdb.DuckDBPyConnection, *signals: str, log: bool = False):
    """A ready chart of one or more signals (by name, see ``signal_names``)."""
    from analysis.charts import series_chart

    unknown = sorted(set(signals) - set(signal_names(con)))
    if unknown:
        raise KeyError(f"unknown signal(s) {unknown}; see signal_names(con)")
    return series_chart(long_signals(con, list(signals)), title=", ".join(signals), log=log)


def compare_signals(con: duckdb.DuckDBPyConnection, a: str, b: str):
    """Two signals one above the other on a shared UTC axis, each with its own scale."""
    from analysis.charts import compare_chart

    return compare_chart(series(con, a), series(con, b), a_name=a, b_name=b)


def caller_weights(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per caller: requests, peak requests/s, URIs, median and largest batch, share of URIs.

    On a store of rollups only (``raw_origin``) they come from ``roll_callers``
    (``_rollup_caller_weights``)."""
    if raw_origin(con) is not None:
        return _rollup_caller_weights(con)
    return con.sql(
        """
        WITH per_s AS (
            SELECT caller, date_trunc('second', time) AS s, count(*) AS n FROM requests
            GROUP BY ALL
        ), r AS (
            SELECT coalesce(caller, 'unknown') AS caller, count(*) AS requests,
                   sum(uris) AS uris, max(uris) AS max_batch,
                   quantile_cont(uris, 0.5) AS median_batch
            FROM requests GROUP BY 1
        )
        SELECT r.caller, r.requests, p.peak_rps, r.uris, r.median_batch, r.max_batch,
               round(100 * r.uris / sum(r.uris) OVER (), 1) AS pct_of_uris
        FROM r LEFT JOIN (SELECT coalesce(caller, 'unknown') AS caller, max(n) AS peak_rps
                          FROM per_s GROUP BY 1) p USING (caller)
        ORDER BY r.uris DESC, r.caller
        """
    ).pl()


def _rollup_caller_weights(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """``caller_weights`` from ``roll_callers``, inside the rollups' window: its rates times
    the grid step are the counts, the peak is the busiest bucket's mean rate (per second
    only on a 1 s grid), and the median batch, a quantile of every request, is not
    there (null)."""
    return con.sql(
        """
        WITH g AS (SELECT grid_s FROM roll_info LIMIT 1),
        per_t AS (
            SELECT caller, t, sum(requests) AS rps, sum(uris) AS uris, max(max_uris) AS mx
            FROM roll_callers GROUP BY ALL
        ), r AS (
            SELECT caller, round(sum(rps) * any_value(g.grid_s))::BIGINT AS requests,
                   round(max(rps))::BIGINT AS peak_rps,
                   round(sum(uris) * any_value(g.grid_s))::HUGEINT AS uris,
                   NULL::DOUBLE AS median_batch, max(mx) AS max_batch
            FROM per_t, g GROUP BY caller
        )
        SELECT caller, requests, peak_rps, uris, median_batch, max_batch,
               round(100 * uris / sum(uris) OVER (), 1) AS pct_of_uris
        FROM r ORDER BY uris DESC, caller
        """
    ).pl()


def error_counts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Error log lines per errno class, weighted by 1/sample_rate, largest first."""
    return con.sql(
        """SELECT coalesce(errno_class, '(none)') AS errno_class,
                  round(sum(CASE WHEN sample_rate > 0 THEN 1 / sample_rate ELSE 1 END))::BIGINT
                    AS lines,
                  count(*) AS stored_lines
           FROM log_events
           WHERE errno_class IS NOT NULL OR lower(level) IN ('error', 'fatal')
           GROUP BY 1 ORDER BY lines DESC, errno_class"""
    ).pl()


# --- chain, rivals, what-if -----------------------------------------------------------


def _hop_evidence(h: Hop) -> dict:
    """What a hop's row and edge both show (their schemas order the columns)."""
    return {"lag_s": h.lag_s, "coincidence": h.coincidence, "p_value": h.p_value,
            "mechanism": h.mechanism or ""}


def hops_frame(chain: ChainResult) -> pl.DataFrame:
    """The chain's hops as rows: the evidence table, one row per hop."""
    rows = [
        {
            "hop": f"{h.cause_role} -> {h.effect_role}",
            "cause": h.cause,
            "effect": h.effect,
            "lag_ci_s": f"[{h.lag_ci_s[0]:.0f}, {h.lag_ci_s[1]:.0f}]",
            "effect_size": h.effect_size,
            **_hop_evidence(h),
        }
        for h in chain.hops
    ]
    return pl.DataFrame(rows, schema={
        "hop": pl.String, "cause": pl.String, "effect": pl.String, "lag_s": pl.Float64,
        "lag_ci_s": pl.String, "coincidence": pl.Float64, "p_value": pl.Float64,
        "effect_size": pl.Float64, "mechanism": pl.String,
    })


def lags_frame(chain: ChainResult) -> pl.DataFrame:
    """Lead/lag of every hop, for the forest plot: ``pair, kind, lag_s, ci_low, ci_high``."""
    return pl.DataFrame(
        [
            {
                "pair": f"{h.cause_role} -> {h.effect_role}",
                "kind": "chain hop",
                "lag_s": float(h.lag_s),
                "ci_low": float(h.lag_ci_s[0]),
                "ci_high": float(h.lag_ci_s[1]),
                "coincidence": float(h.coincidence),
                "p_value": float(h.p_value),
            }
            for h in chain.hops
        ],
        schema={"pair": pl.String, "kind": pl.String, "lag_s": pl.Float64,
                "ci_low": pl.Float64, "ci_high": pl.Float64, "coincidence": pl.Float64,
                "p_value": pl.Float64},
    )


def rivals_frame(chain: ChainResult) -> pl.DataFrame:
    """Rival explanations the chain tested, each with the reason it was rejected."""
    return pl.DataFrame(
        [{"candidate": r.candidate, "reason": r.reason} for r in chain.rejected],
        schema={"candidate": pl.String, "reason": pl.String},
    )


def suspects_frame(chain: ChainResult) -> pl.DataFrame:
    """The ranked suspects (any incident): rank, entity, signal, score, onset, evidence."""
    return pl.DataFrame(
        [{"rank": i, "entity": s.entity, "signal": s.signal, "score": round(s.score, 2),
          "onset": s.onset, "evidence": s.evidence}
         for i, s in enumerate(chain.suspects, 1)],
        schema={"rank": pl.Int64, "entity": pl.String, "signal": pl.String,
                "score": pl.Float64, "onset": pl.Datetime("us"), "evidence": pl.String},
    )


def mechanisms_frame(chain: ChainResult) -> pl.DataFrame:
    """Every mechanism that fits: its culprit, its roles in onset order, its evidence."""
    return pl.DataFrame(
        [{"mechanism": f.mechanism, "culprit": f.culprit,
          "roles": " -> ".join(r for r, _ in sorted(f.onsets.items(), key=lambda kv: kv[1])),
          "evidence": f.evidence} for f in chain.mechanisms],
        schema={"mechanism": pl.String, "culprit": pl.String, "roles": pl.String,
                "evidence": pl.String},
    )


def callers_frame(chain: ChainResult) -> pl.DataFrame:
    """The chain's per-caller scores (weight, coincidence with the fan-out)."""
    rows = [
        {
            "caller": c.caller, "method": c.method, "peak_rps": c.peak_rps,
            "max_batch": c.max_batch, "forced_dials": c.forced_dials, "share": c.share,
            "p_value": c.p_value, "score": c.score,
        }
        for c in chain.callers
    ]
    return pl.DataFrame(rows, schema={
        "caller": pl.String, "method": pl.String, "peak_rps": pl.Float64,
        "max_batch": pl.Float64, "forced_dials": pl.Float64, "share": pl.Float64,
        "p_value": pl.Float64, "score": pl.Float64,
    })


def chain_graph(chain: ChainResult) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(nodes, edges)`` of the chain diagram, in causal order."""
    roles = chain.roles_in_order() if chain.onsets else []
    sig = {h.cause_role: h.cause for h in chain.hops}
    sig.update({h.effect_role: h.effect for h in chain.hops})
    nodes = pl.DataFrame(
        {
            "step": list(range(len(roles))),
            "role": roles,
            "signal": [sig.get(r, "") for r in roles],
            "onset": [iso(chain.onsets[r]) if r in chain.onsets else "" for r in roles],
        },
        schema={"step": pl.Int64, "role": pl.String, "signal": pl.String, "onset": pl.String},
    )
    pos = {r: i for i, r in enumerate(roles)}
    edges = pl.DataFrame(
        [
            {
                "step": pos.get(h.cause_role, 0),
                "label": f"{h.lag_s:+.0f} s, p={h.p_value:.2g}",
                **_hop_evidence(h),
            }
            for h in chain.hops
            if h.cause_role in pos
        ],
        schema={"step": pl.Int64, "label": pl.String, "lag_s": pl.Float64,
                "coincidence": pl.Float64, "p_value": pl.Float64, "mechanism": pl.String},
    )
    return nodes, edges


@dataclass
class WhatIfs:
    """The report's what-ifs: a summary row per scenario and a long frame to chart.

    ``tw_agreement``: relative difference of replayed vs observed TIME_WAIT
    (how far the model can be trusted; None without an observed TIME_WAIT).
    """

    summary: pl.DataFrame
    long: pl.DataFrame
    tw_agreement: float | None


def _time_params(times: dict) -> dict:
    """The grid and window flags that were given, as cache parameters ({} by default)."""
    return {k: str(v) for k, v in times.items() if v is not None}


def root_cause_chain(con: duckdb.DuckDBPyConnection, **times) -> ChainResult:
    """``analysis.chain.find_chain`` with default settings, cached per store and code version;
    ``times``: ``grid_s``, ``start``, ``end`` as ``find_chain`` takes them."""
    from analysis.chain.find import find_chain

    return cached(con, "chain", _time_params(times), lambda: find_chain(con, **times))


def whatifs(
    con: duckdb.DuckDBPyConnection, scenarios: dict[str, dict] | None = None, **times
) -> WhatIfs:
    """Replay the request log under each scenario (default ``WHATIF_SCENARIOS``), cached;
    ``times``: ``grid_s``, ``start``, ``end`` as ``analysis.whatif.whatifs`` takes them.

    ``summary``: one row for the observed incident, one for the replay as it
    was, one per scenario (dials, peak TIME_WAIT, errors, seconds with errors).
    ``long``: ``t, scenario, series, value`` for TIME_WAIT and errors, per 10 s.
    """
    scenarios = scenarios if scenarios is not None else WHATIF_SCENARIOS
    params = {**scenarios, **_time_params(times)}
    return cached(con, "whatifs", params, lambda: _whatifs(con, scenarios, times))


def _whatifs(
    con: duckdb.DuckDBPyConnection, scenarios: dict[str, dict], times: dict
) -> WhatIfs:
    from analysis.whatif import whatifs as replay_scenarios

    n_requests = con.execute("SELECT count(*) FROM requests").fetchall()[0][0]
    if n_requests == 0:
        scenarios = {}  # nothing to replay: an empty answer, not an error
    # one load and one as-it-was replay for every scenario (a replay takes well under a second)
    results = replay_scenarios(con, scenarios, **times) if scenarios else {}
    rows = []
    longs = []
    first = next(iter(results.values()), None)
    if first is not None:
        rows.append({"scenario": "observed", **_summary_row(first.observed)})
        rows.append({"scenario": "replay, as it was", **_summary_row(first.replay)})
        longs.append(_long(first.frame, "observed", "observed"))
        longs.append(_long(first.frame, "replay", "replay, as it was"))
    for name, res in results.items():
        rows.append({"scenario": name, **_summary_row(res.predicted)})
        longs.append(_long(res.frame, "predicted", name))
    summary = pl.DataFrame(rows) if rows else pl.DataFrame({"scenario": []})
    long = pl.concat(longs) if longs else pl.DataFrame(
        schema={"t": pl.Datetime("us"), "scenario": pl.String, "series": pl.String,
                "value": pl.Float64})
    return WhatIfs(summary, long, None if first is None else first.tw_agreement)


def _summary_row(s) -> dict:
    return {
        "dials": round(float(s.dials)),
        "peak_time_wait": round(float(s.peak_time_wait)),
        "failed_lookups": round(float(s.errors)),
        "seconds_with_errors": int(s.seconds_with_errors),
        "exhausted": bool(s.exhausted),
    }


def _long(frame: pl.DataFrame, prefix: str, scenario: str, every_s: int = 10) -> pl.DataFrame:
    cols = {f"{prefix}_time_wait": "TIME_WAIT sockets", f"{prefix}_errors": "failed lookups /s"}
    have = [c for c in cols if c in frame.columns]
    coarse = (
        frame.sort("t")
        .group_by_dynamic("t", every=f"{every_s}s")
        .agg([pl.col(c).cast(pl.Float64).max() if "time_wait" in c
              else pl.col(c).cast(pl.Float64).mean() for c in have])
    )
    return coarse.unpivot(index="t", on=have, variable_name="series").with_columns(
        pl.col("series").replace_strict(cols, return_dtype=pl.String),
        pl.lit(scenario).alias("scenario"),
    ).select("t", "scenario", "series", "value")


@dataclass
class Mechanism:
    """The port-exhaustion arithmetic: can the culprit's batches fill the port range?

    ``sustainable_dials_per_s`` = ports / TIME_WAIT: above it, sockets in
    TIME_WAIT pile up faster than they expire. ``dials_per_batch`` = largest
    batch minus the idle pool (one lookup per URI, extras are dialled).
    ``seconds_to_exhaust`` at the observed peak dial rate (None below the limit).
    """

    ports: int
    time_wait_s: int
    sustainable_dials_per_s: float
    idle_pool: int | None
    max_batch: float | None
    dials_per_batch: float | None
    peak_dial_rate: float | None
    seconds_to_exhaust: float | None
    tw_plateau: float | None

    def lines(self) -> list[str]:
        """The arithmetic as aligned text lines (what is unknown is left out)."""
        pool = self.idle_pool if self.idle_pool is not None else "unknown"
        out = [
            f"ports in the ephemeral range      {self.ports:>10,}",
            f"TIME_WAIT                         {self.time_wait_s:>10} s",
            f"sustainable dial rate             {self.sustainable_dials_per_s:>10,.0f} /s"
            "  (ports / TIME_WAIT)",
            f"idle pool                         {pool:>10}",
        ]
        optional = [
            (self.max_batch, "culprit's largest batch           {:>10,.0f} URIs"),
            (self.dials_per_batch, "dials forced per batch            {:>10,.0f}"
                                   "  (batch - idle pool)"),
            (self.peak_dial_rate, "observed peak dial rate           {:>10,.0f} /s"),
            (self.seconds_to_exhaust, "time to fill the range at peak    {:>10,.0f} s"),
            (self.tw_plateau, "observed TIME_WAIT peak           {:>10,.0f}"),
        ]
        return out + [fmt.format(v) for v, fmt in optional if v is not None]


def mechanism(con: duckdb.DuckDBPyConnection, chain: ChainResult) -> Mechanism:
    """The arithmetic of the chain's mechanism, from the environment and the data."""
    env = chain.environment
    ports = env.port_range[1] - env.port_range[0] + 1
    sustainable = ports / env.time_wait_s
    scores = {c.caller: c for c in chain.callers}
    cul = scores.get(chain.culprit.caller) if chain.culprit else None
    max_batch = cul.max_batch if cul else None
    dials = None
    if max_batch is not None and env.idle_pool is not None:
        dials = max(0.0, max_batch - env.idle_pool)
    ids = signal_ids(con)
    dial_sig = [s for s in _by_role(ids, "fan_out") if "connections_total" in (ids[s].metric or "")]
    peak = _peak(con, dial_sig[0]) if dial_sig else None
    tw_sig = [s for s in _by_role(ids, "port_exhaustion") if ids[s].family == "metric"]
    plateau = _peak(con, tw_sig[0]) if tw_sig else None
    to_exhaust = None
    if peak is not None and peak > sustainable:
        to_exhaust = ports / (peak - sustainable)
    return Mechanism(ports, env.time_wait_s, sustainable, env.idle_pool, max_batch, dials,
                     peak, to_exhaust, plateau)


def _peak(con: duckdb.DuckDBPyConnection, signal: str) -> float | None:
    rows = con.execute("SELECT max(value) FROM signals WHERE signal = ?", [signal]).fetchall()
    return None if not rows or rows[0][0] is None else float(rows[0][0])


# --- the summary ------------------------------------------------------------------------


@dataclass
class Impact:
    """User-facing impact measured on the user-impact signal."""

    signal: str | None
    baseline: float | None
    trough: float | None
    drop_pct: float | None
    start: datetime | None
    end: datetime | None
    minutes_degraded: float | None
    label: str | None = None  # the signal's metric and labels, for sentences


DEGRADED_BELOW = 0.9
"""A minute is degraded when user-facing traffic is under this share of its baseline."""


def impact(con: duckdb.DuckDBPyConnection, chain: ChainResult) -> Impact:
    """How far user-facing traffic fell, and for how long the incident lasted.

    Baseline: the median of the user-facing signal before the chain's first
    onset (or over the whole series); trough: its lowest one-minute mean;
    ``minutes_degraded``: minutes whose mean is under ``DEGRADED_BELOW`` x
    baseline. The incident spans the earliest to the latest upward anomaly
    window of the error rate (``errors:total``) as the detector finds them;
    without error windows, those of the user-facing drop (downward). (Traffic
    keeps moving after an incident, with the daily curve: its windows alone
    would stretch the span.)
    """
    from analysis.detection import detect

    ids = signal_ids(con)
    names = _by_role(ids, "user_impact")
    wins = []
    total = SignalId.for_errors("total").key
    if total in ids:
        errs = series(con, total).drop_nulls("value")
        wins += [w for w in detect(errs, signal=total) if w.direction == "up"]
    if not names:
        return Impact(None, None, None, None, *_span(wins), None)
    sig = names[0]
    label = ids[sig].label()
    s = series(con, sig).drop_nulls("value")
    if s.height == 0:
        return Impact(sig, None, None, None, *_span(wins), None, label)
    if not wins:
        wins = [w for w in detect(s, signal=sig) if w.direction == "down"]
    first = min(chain.onsets.values()) if chain.onsets else None
    before = s.filter(pl.col("t") < first) if first is not None else s
    base = float((before if before.height else s)["value"].median())
    minute = s.group_by_dynamic("t", every="1m").agg(pl.col("value").mean())
    trough = float(minute["value"].min())
    degraded = float(minute.filter(pl.col("value") < DEGRADED_BELOW * base).height)
    drop = None if base == 0 else 100.0 * (base - trough) / base
    return Impact(sig, base, trough, drop, *_span(wins), degraded, label)


def _span(wins) -> tuple[datetime | None, datetime | None]:
    return (min((w.start for w in wins), default=None), max((w.end for w in wins), default=None))


def fmt_time(t: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC`` (or an em dash)."""
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(d: timedelta | float | None) -> str:
    """A duration (timedelta or minutes) as ``Xh YYm``."""
    if d is None:
        return "—"
    minutes = d.total_seconds() / 60 if isinstance(d, timedelta) else float(d)
    h, m = divmod(int(round(minutes)), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def timeline_rows(con: duckdb.DuckDBPyConnection, chain: ChainResult) -> pl.DataFrame:
    """Human events and detected onsets merged into one table, in UTC, by time."""
    ev = events(con).select(
        pl.col("start").alias("time"), pl.col("kind"), pl.col("title"),
        pl.lit("human timeline").alias("from"),
    )
    on = onsets_frame(chain.onsets).select(
        pl.col("t").alias("time"), pl.lit("onset").alias("kind"),
        (pl.lit("detected onset: ") + pl.col("role")).alias("title"),
        pl.lit("detector").alias("from"),
    )
    both = pl.concat([ev, on]).sort("time", "kind")
    return both.with_columns(pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S UTC"))
