"""The report's story: the findings a reader needs first, each defined where it is shown.

``analysis.report.page`` puts these at the top of the page (and on the
slides): the verdict with the strength of every hop (``grade_hop``), the
culprit's weight against its request rate on linear axes (``caller_weights``,
``weight_chart``: 86x more URIs must look 86x longer), a compact timeline with
the impact shaded (``impact_timeline``), and, in the details, the TIME_WAIT
figures with where and when each was measured (``time_wait_figures``), the
what-if levels normalised to the replay of the same model (``whatif_levels``)
and the human timeline with long runs of one kind collapsed
(``collapse_events``). Everything is derived from the store and the chain;
nothing about the april-2026 incident is written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import altair as alt
import duckdb
import polars as pl

from analysis import charts
from analysis.chain.result import ChainResult
from analysis.report import data as rd
from analysis.roles import role_of_signal
from analysis.rollups import signal_ids

Grade = Literal["strong", "moderate", "weak"]
GRADES: tuple[Grade, ...] = ("strong", "moderate", "weak")

STRONG_P = 0.01
"""A hop whose coincidence p-value is under this starts as strong ..."""
MODERATE_P = 0.05
"""... under this as moderate, otherwise weak."""
TIGHT_CI_STEPS = 10
"""A lag interval wider than this many grid steps (and 10 s) leaves the lag unsettled."""
COLLAPSE_OVER = 5
"""A kind of human event with more rows than this becomes one row: count, first, last."""


# --- hops, graded -----------------------------------------------------------------------


@dataclass(frozen=True)
class HopGrade:
    """How strongly the data support one hop, and why (``reasons`` empty when strong)."""

    hop: str
    grade: Grade
    p_value: float
    lag_s: float
    ci_s: tuple[float, float]
    reasons: tuple[str, ...]


def grade_hop(p_value: float, ci_s: tuple[float, float], *, lag_s: float = 0.0,
              grid_s: int = 1, hop: str = "") -> HopGrade:
    """Grade a hop from its coincidence p-value and its lag's bootstrap interval.

    The p-value sets the start (strong under ``STRONG_P``, moderate under
    ``MODERATE_P``, weak otherwise); each doubt about the lag then lowers it one
    grade: an interval holding both a lead and a lag (the order is not settled:
    ``lo < 0 < hi``), and an interval wider than ``TIGHT_CI_STEPS`` grid steps
    (at least 10 s). A NaN p-value is weak.
    """
    lo, hi = float(ci_s[0]), float(ci_s[1])
    p = float(p_value)
    reasons: list[str] = []
    if p < STRONG_P:
        level = 0
    elif p < MODERATE_P:
        level = 1
        reasons.append(f"p = {p:.2g} (>= {STRONG_P})")
    else:
        level = 2
        reasons.append(f"p = {p:.2g}: coincidence not significant" if p == p else "no p-value")
    if lo < 0 < hi:
        level += 1
        reasons.append(f"lag interval [{lo:.0f}, {hi:.0f}] s holds both orders")
    if hi - lo > max(10.0, TIGHT_CI_STEPS * grid_s):
        level += 1
        reasons.append(f"lag interval {hi - lo:.0f} s wide")
    return HopGrade(hop, GRADES[min(level, 2)], p, float(lag_s), (lo, hi), tuple(reasons))


def grade_hops(chain: ChainResult) -> list[HopGrade]:
    """Every hop of the chain, graded (``grade_hop``) on the chain's grid."""
    info = chain.rollup
    grid_s = info.grid_s if info is not None else 1
    return [grade_hop(h.p_value, h.lag_ci_s, lag_s=h.lag_s, grid_s=grid_s,
                      hop=f"{h.cause_role} → {h.effect_role}") for h in chain.hops]


def verdict_line(chain: ChainResult, grades: list[HopGrade]) -> str:
    """The verdict in words: the culprit, and how many hops are strong, moderate and
    weak, naming the weak ones (a chain is only as sure as its weakest hop)."""
    if chain.culprit is None:
        return f"No supported cause ({chain.verdict.replace('_', ' ')})."
    counts = {g: sum(1 for h in grades if h.grade == g) for g in GRADES}
    tally = ", ".join(f"{n} {g}" for g, n in counts.items() if n)
    line = (f"Root cause: {chain.culprit.caller}'s batches on"
            f" {chain.culprit.method or 'its method'}. Evidence per hop: {tally}")
    weak = [h.hop for h in grades if h.grade == "weak"]
    if weak:
        line += (f"; weak: {', '.join(weak)} (marked in the chain; see the evidence"
                 " table): those links are plausible, not shown")
    return line + "."


# --- the culprit's weight against its request rate -------------------------------------


def caller_weights(con: duckdb.DuckDBPyConnection, culprit: str | None) -> pl.DataFrame:
    """Per caller over the store: ``requests``, ``uris`` (the weight), ``peak_rps``,
    ``max_batch``, ``x_next`` (URIs over the next-heaviest caller's; on the heaviest
    row only) and ``culprit`` (bool), heaviest first."""
    w = rd.caller_weights(con).with_columns(pl.col("uris").cast(pl.Float64),
                                            pl.col("requests").cast(pl.Float64))
    uris = w["uris"].to_list()
    ratio = uris[0] / uris[1] if len(uris) > 1 and uris[1] else None
    return w.select(
        "caller", "requests", "uris", pl.col("peak_rps").cast(pl.Float64),
        pl.col("max_batch").cast(pl.Float64),
        pl.Series("x_next", [ratio] + [None] * (w.height - 1), dtype=pl.Float64),
        (pl.col("caller") == (culprit or "")).alias("culprit"),
    )


def _si(v: float) -> str:
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:,.0f}"


def weight_claim(weights: pl.DataFrame) -> str:
    """The weight chart's point in one sentence: the heaviest caller's share of the
    requests against its share of the URIs, and how many times the next it carried."""
    if weights.height == 0:
        return "No request log: no caller's weight to compare."
    top = weights.row(0, named=True)
    req_share = top["requests"] / weights["requests"].sum() if weights["requests"].sum() else 0
    uri_share = top["uris"] / weights["uris"].sum() if weights["uris"].sum() else 0
    line = (f"{top['caller']} sent {req_share:.0%} of the requests ({_si(top['requests'])},"
            f" at most {top['peak_rps']:,.0f}/s) but {uri_share:.1%} of the URIs"
            f" ({_si(top['uris'])}, batches up to {top['max_batch']:,.0f})")
    if top["x_next"] is not None and weights.height > 1:
        nxt = weights.row(1, named=True)
        line += f": {top['x_next']:.0f}x {nxt['caller']}'s {_si(nxt['uris'])}"
    return line + "."


def weight_chart(weights: pl.DataFrame, *, width: int = 150) -> alt.HConcatChart:
    """Requests beside URIs per caller, as bars on linear axes from zero: a caller
    carrying 86x another's URIs has a bar 86x as long, whatever its request rate."""
    df = weights.with_columns(
        pl.col("requests").map_elements(_si, return_dtype=pl.String).alias("requests_txt"),
        pl.col("uris").map_elements(_si, return_dtype=pl.String).alias("uris_txt"),
        pl.when(pl.col("culprit")).then(pl.lit("culprit")).otherwise(pl.lit("other"))
        .alias("who"),
    ).with_columns(
        pl.when(pl.col("x_next").is_not_null())
        .then(pl.col("uris_txt") + pl.lit(" = ") + pl.col("x_next").round(0).cast(pl.Int64)
              .cast(pl.String) + pl.lit("x next"))
        .otherwise(pl.col("uris_txt")).alias("uris_txt")
    )
    order = df["caller"].to_list()
    color = alt.Color("who:N", legend=None,
                      scale=alt.Scale(domain=["culprit", "other"], range=["#c0392b", "#8da0b3"]))
    tips = [alt.Tooltip("caller:N"), alt.Tooltip("requests:Q", format=","),
            alt.Tooltip("peak_rps:Q", title="peak requests/s", format=","),
            alt.Tooltip("uris:Q", title="URIs", format=","),
            alt.Tooltip("max_batch:Q", title="largest batch (URIs)", format=",")]
    y = alt.Y("caller:N", sort=order, title=None, axis=alt.Axis(labelLimit=110))

    def panel(field: str, text: str, title: str, with_y: bool) -> alt.LayerChart:
        base = alt.Chart(df).encode(y=y if with_y else y.axis(None), tooltip=tips)
        bars = base.mark_bar().encode(
            x=alt.X(f"{field}:Q", title=title, scale=alt.Scale(zero=True),
                    axis=alt.Axis(format="~s", tickCount=3)), color=color)
        # a long bar carries its label inside, a short one just after its end
        placed = base.transform_joinaggregate(top=f"max({field})").transform_calculate(
            inside=f"datum['{field}'] > 0.5 * datum.top")
        outside = placed.transform_filter("!datum.inside").mark_text(
            align="left", dx=3, fontSize=10).encode(x=f"{field}:Q", text=f"{text}:N")
        inside = placed.transform_filter("datum.inside").mark_text(
            align="right", dx=-3, fontSize=10, color="white", fontWeight="bold").encode(
            x=f"{field}:Q", text=f"{text}:N")
        return alt.layer(bars, outside, inside, width=width, height=20 * max(1, df.height))

    return alt.hconcat(
        panel("requests", "requests_txt", "requests (linear)", True),
        panel("uris", "uris_txt", "URIs looked up: the weight (linear)", False),
        spacing=40,
    )


# --- the timeline with the impact shaded ------------------------------------------------


@dataclass(frozen=True)
class ImpactSpan:
    """The incident's span as shaded on the timelines, and what it is."""

    start: datetime
    end: datetime
    label: str


def impact_span(imp: rd.Impact) -> ImpactSpan | None:
    """The impact as a band: the span of the error rate's anomaly windows (``rd.impact``)."""
    if imp.start is None or imp.end is None:
        return None
    return ImpactSpan(imp.start, imp.end,
                      f"impact {rd.fmt_time(imp.start)} to {rd.fmt_time(imp.end)}")


def impact_layer(span: ImpactSpan | None, x) -> list[alt.Chart]:
    """The impact span as a shaded band (behind the series) with a tooltip."""
    if span is None:
        return []
    df = charts.for_chart(pl.DataFrame({"t": [span.start], "end": [span.end],
                                        "what": [span.label]}), ("t", "end"))
    return [alt.Chart(df).mark_rect(color="#f4b6a8", opacity=0.35).encode(
        x=x, x2="end:T", tooltip=[alt.Tooltip("what:N", title="shaded")])]


def impact_timeline(td: rd.TimelineData, span: ImpactSpan | None, *, width: int = 430,
                    max_rows: int = 600) -> alt.VConcatChart | None:
    """Three aligned panels on one UTC axis (user-facing traffic, errors, TIME_WAIT
    against the port range), the impact shaded, deploys, mitigation and fix as rules;
    a line per series, its legend above its panel."""
    picked = [p for p in td.panels if not p.title.startswith("runtime")][:3]
    if not picked:
        return None
    ev = td.events.filter(pl.col("kind").is_in(["mitigation", "fix", "deploy"]))
    ev = charts.clip_events(ev, [p.data for p in picked])
    rows = []
    for i, p in enumerate(picked):
        x = charts.time_x(axis=i == len(picked) - 1)
        data = charts.for_chart(charts.downsample(p.data.select("t", "series", "value"),
                                                  max_rows=max_rows))
        n = data["series"].n_unique()
        legend = alt.Legend(orient="top", direction="horizontal", title=None, labelLimit=140,
                            symbolSize=30, columns=min(n, 4)) if n > 1 else None
        line = alt.Chart(data).mark_line(strokeWidth=1.2).encode(
            x=x, y=alt.Y("value:Q", title=p.unit or None,
                         scale=alt.Scale(type="symlog") if p.log else alt.Scale(),
                         axis=alt.Axis(tickCount=3, format="~s")),
            color=alt.Color("series:N", legend=legend),
            tooltip=[charts.time_tooltip(), alt.Tooltip("series:N"),
                     alt.Tooltip("value:Q", format=",.4~g")])
        title = p.title + (", symlog axis" if p.log else "")
        layers = [*impact_layer(span, x), *charts.event_layers(ev, x, legend=False), line,
                  *charts.ceiling_layer(p)]
        rows.append(alt.layer(*layers, width=width, height=58,
                              title=alt.TitleParams(title, anchor="start", fontSize=11),
                              resolve=alt.Resolve(scale=alt.ScaleResolveMap(color="independent"))))
    return alt.vconcat(*rows, spacing=4, resolve=alt.Resolve(
        scale=alt.ScaleResolveMap(color="independent")))


# --- figures defined where they are shown -----------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One number of the report with what it is: measured where and when."""

    name: str
    value: str
    definition: str


def _first_event(events: pl.DataFrame, kind: str) -> datetime | None:
    rows = events.filter(pl.col("kind") == kind).sort("start")
    return rows["start"][0] if rows.height else None


def time_wait_figures(con: duckdb.DuckDBPyConnection, chain: ChainResult, events: pl.DataFrame,
                      wi: rd.WhatIfs | None = None) -> list[Figure]:
    """Every TIME_WAIT figure the report shows, each with where and when it was measured.

    The headline peak is the busiest host's before the first mitigation (after it
    the mitigation itself changes how many sockets can wait); the peak after it,
    and the what-ifs' TIME_WAIT (summed over hosts), are given as what they are.
    """
    env = chain.environment
    lo, hi = env.port_range
    ports = hi - lo + 1
    source = ("from the manifest" if "ephemeral_port_range" in env.from_manifest
              else "kernel default")
    out = [Figure("ephemeral ports per host", f"{ports:,}",
                  f"the range {lo}-{hi} ({source});"
                  " one source address can hold at most this many sockets to one memcached"),
           Figure("TIME_WAIT duration", f"{env.time_wait_s} s",
                  "how long a closed connection's port stays unusable (TCP TIME_WAIT)")]
    ids = signal_ids(con)
    tw = sorted(s for s, sid in ids.items() if sid.family == "metric"
                and (m := role_of_signal(sid)) is not None and m.role == "port_exhaustion")
    per_host = [s for s in tw if ids[s].labels]
    if not tw:
        return out
    cut = _first_event(events, "mitigation") or _first_event(events, "fix")
    sigs = per_host or tw[:1]
    params: dict = {"sigs": sigs}
    if cut is not None:
        params["cut"] = cut
    peak = con.execute(
        "SELECT signal, t, value FROM signals WHERE list_contains($sigs, signal)"
        f" AND value IS NOT NULL AND {'t < $cut' if cut else 'TRUE'}"
        " ORDER BY value DESC, t LIMIT 1", params).fetchall()
    peak = peak[0] if peak else None  # fetchall: a reader's connection keeps no open result
    metric = ids[sigs[0]].metric or "TIME_WAIT"
    when = f"before the mitigation ({rd.fmt_time(cut)})" if cut else "over the window"
    if peak is not None:
        sid = ids[peak[0]]
        host = ", ".join(f"{k}={v}" for k, v in sid.labels) if sid.labels else "busiest host"
        share = peak[2] / ports
        out.append(Figure(
            "TIME_WAIT peak (headline)", f"{peak[2]:,.0f}",
            f"{metric} on {host}, {rd.fmt_time(peak[1])}, the highest of any host {when}:"
            f" {share:.0%} of the host's {ports:,} ports"))
    if cut is not None:
        after = con.execute("SELECT max(value) FROM signals WHERE list_contains($sigs, signal)"
                            " AND t >= $cut", params).fetchall()[0][0]
        if after is not None:
            out.append(Figure(
                "TIME_WAIT peak after the mitigation", f"{after:,.0f}",
                f"{metric}, highest host, after {rd.fmt_time(cut)}: the mitigation changed"
                " the source addresses, so more sockets can wait; not the incident's level"))
    if wi is not None and "peak_time_wait" in wi.summary.columns:
        obs = wi.summary.filter(pl.col("scenario") == "observed")
        if obs.height:
            out.append(Figure(
                "TIME_WAIT in the what-ifs", f"{obs['peak_time_wait'][0]:,}",
                "observed peak summed over the hosts, at any time of the window (the"
                " replay's unit); compare what-if rows with each other, not with the"
                " per-host figures above"))
    return out


# --- what-if levels, normalised ---------------------------------------------------------

WHATIF_CAVEAT = (
    "Levels are not comparable between the observed row and the replays: observed failed"
    " lookups count error log lines (weighted by their sampling) on every host, retries and"
    " other callers included, while a replay counts the failed lookups of its model on the"
    " request log. So each scenario is compared with the replay as it was (same model, same"
    " requests): the column 'vs replay as it was'."
)


def whatif_levels(wi: rd.WhatIfs) -> pl.DataFrame:
    """The what-if summary with each replay's failed lookups and dials relative to the
    replay as it was (``None`` for the observed row, whose levels are another measure)."""
    s = wi.summary
    base = s.filter(pl.col("scenario") == "replay, as it was")
    if base.height == 0 or "failed_lookups" not in s.columns:
        return s
    b_fail = float(base["failed_lookups"][0])
    b_dial = float(base["dials"][0])
    replay = pl.col("scenario") != "observed"

    def rel(col: str, b: float) -> pl.Expr:
        return pl.when(replay & pl.lit(b > 0)).then(
            pl.col(col).cast(pl.Float64) / pl.lit(b if b > 0 else 1.0)).otherwise(None)

    return s.with_columns(
        rel("failed_lookups", b_fail).alias("failed vs replay as it was"),
        rel("dials", b_dial).alias("dials vs replay as it was"),
        pl.when(replay).then(pl.lit("replay model")).otherwise(pl.lit("logs and metrics"))
        .alias("measured by"),
    )


# --- the human timeline, collapsed by kind ------------------------------------------------


def collapse_events(events: pl.DataFrame, onsets: dict[str, datetime] | None = None,
                    over: int = COLLAPSE_OVER) -> pl.DataFrame:
    """Human events and detected onsets as table rows: ``time, last, count, kind, title,
    from``; a kind with more than ``over`` events is one row (its first time, last time,
    count and distinct titles), so 45 crash-loop alerts do not bury the story."""
    ev = events.select("start", "kind", "title")
    sizes = ev.group_by("kind").len()
    many = sizes.filter(pl.col("len") > over)["kind"].to_list()
    single = ev.filter(~pl.col("kind").is_in(many)).select(
        pl.col("start").alias("time"), pl.lit(None, pl.Datetime("us")).alias("last"),
        pl.lit(1, pl.UInt32).alias("count"), "kind", "title",
        pl.lit("human timeline").alias("from"))
    grouped = ev.filter(pl.col("kind").is_in(many)).group_by("kind").agg(
        pl.col("start").min().alias("time"), pl.col("start").max().alias("last"),
        pl.len().cast(pl.UInt32).alias("count"),
        pl.col("title").unique(maintain_order=True).alias("titles"),
    ).select(
        "time", "last", "count", "kind",
        pl.format("{} {} events: {}{}", pl.col("count"), pl.col("kind"),
                  pl.col("titles").list.head(3).list.join(", "),
                  pl.when(pl.col("titles").list.len() > 3)
                  .then(pl.format(" (+{} more titles)", pl.col("titles").list.len() - 3))
                  .otherwise(pl.lit(""))).alias("title"),
        pl.lit("human timeline (collapsed)").alias("from"),
    )
    on = rd.onsets_frame(onsets or {}).select(
        pl.col("t").alias("time"), pl.lit(None, pl.Datetime("us")).alias("last"),
        pl.lit(1, pl.UInt32).alias("count"), pl.lit("onset").alias("kind"),
        (pl.lit("detected onset: ") + pl.col("role")).alias("title"),
        pl.lit("detector").alias("from"))
    frames = [f.with_columns(pl.col("time").cast(pl.Datetime("us")),
                             pl.col("last").cast(pl.Datetime("us")))
              for f in (single, grouped, on)]
    return pl.concat(frames).sort("time", "kind")


def window_coverage(coverage: pl.DataFrame, start: datetime | None,
                    end: datetime | None) -> pl.DataFrame:
    """``rd.coverage`` cut to the incident window: a source's bar spans only the part
    inside it, and one wholly outside (a deploy a week before) is left out; ``rows``
    still counts the whole store."""
    if start is None or end is None or coverage.height == 0:
        return coverage
    return coverage.filter((pl.col("end") >= start) & (pl.col("start") <= end)).with_columns(
        pl.col("start").clip(start, end), pl.col("end").clip(start, end))
