"""Charts of an incident: polars frames in, Altair (Vega-Lite) charts out.

Charts know nothing of how the data was loaded: every function takes polars
frames with a ``t`` column (UTC, naive or zone-aware datetimes) and plain
value columns. Long series are aggregated to at most ``MAX_ROWS`` rows per
chart, keeping min / mean / max per time bucket so that spikes survive the
downsampling. Every mark carries a tooltip, every time scale is UTC and says
so, and text from the data (callers, hosts, titles) only ever reaches a chart
as data, never as markup.

Rendering: ``to_svg`` draws a chart with vl-convert (no browser, no network);
``enable_offline_renderer`` makes notebooks show each chart twice in one output:
interactive in JupyterLab (Altair's ``JupyterChart`` widget, its JavaScript
bundled by vl-convert, so no network), and as inline SVG, which nbconvert,
nbval and plain viewers show.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
from dataclasses import dataclass, field

import altair as alt
import polars as pl

from analysis.signal_id import printable

MAX_ROWS = 5000
TIME_TITLE = "time (UTC)"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
AXIS_FORMAT = "%a %d %H:%M"
# A time unit in UTC makes Vega-Lite format the tooltip with utcFormat;
# ``formatType="utc"`` is silently ignored (checked with vl-convert 1.9).
UTC_SECONDS = "utcyearmonthdatehoursminutesseconds"
NICE_BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
EVENT_COLORS = {
    "deploy": "#6a3d9a",
    "page": "#e31a1c",
    "alert": "#ff7f00",
    "mitigation": "#33a02c",
    "fix": "#1f78b4",
    "status": "#b15928",
    "note": "#777777",
    "impact": "#e6550d",
}
_RENDERER = "postmortem-offline"
# Passed to the constructors: ``.resolve_scale()`` deep-copies every sub-chart
# (seconds for the timeline), a constructor argument costs nothing.
_INDEPENDENT_COLOR = alt.Resolve(scale=alt.ScaleResolveMap(color="independent"))


# --- data preparation -----------------------------------------------------------


def iso_utc(col: str = "t") -> pl.Expr:
    """Expression turning datetime column ``col`` into an ISO-8601 string ending in ``Z``.

    Vega parses a zone-less ISO string in the viewer's local zone; an explicit
    ``Z`` pins every time to UTC whatever the browser's zone is.
    """
    c = pl.col(col)
    return c.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")


def _to_utc(df: pl.DataFrame, cols: tuple[str, ...] = ("t",)) -> pl.DataFrame:
    """Make datetime columns zone-aware UTC (naive ones are taken as UTC already)."""
    exprs = []
    for c in cols:
        if c not in df.columns:
            continue
        dtype = df.schema[c]
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                exprs.append(pl.col(c).dt.replace_time_zone("UTC"))
            else:
                exprs.append(pl.col(c).dt.convert_time_zone("UTC"))
    return df.with_columns(exprs) if exprs else df


def finite(df: pl.DataFrame) -> pl.DataFrame:
    """NaN and infinities become nulls: JSON (and so a chart spec) has no NaN."""
    floats = [c for c, t in df.schema.items() if t in (pl.Float32, pl.Float64)]
    return df.with_columns(
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in floats
    )


def for_chart(df: pl.DataFrame, time_cols: tuple[str, ...] = ("t",)) -> pl.DataFrame:
    """The frame as a chart should receive it: time columns as UTC ISO strings, no NaN."""
    df = finite(_to_utc(df, time_cols))
    return df.with_columns(
        [iso_utc(c).alias(c) for c in time_cols if c in df.columns and df.schema[c] != pl.String]
    )


def bucket_seconds(span_s: float, n_series: int = 1, max_rows: int = MAX_ROWS) -> int:
    """Smallest 'nice' bucket width (s) keeping ``n_series`` series under ``max_rows`` rows."""
    per_series = max(1, max_rows // max(1, n_series))
    need = span_s / per_series
    for b in NICE_BUCKETS_S:
        if b >= need:
            return b
    return int(math.ceil(need / 86400.0)) * 86400


def downsample(
    df: pl.DataFrame,
    *,
    value: str = "value",
    by: str | None = "series",
    max_rows: int = MAX_ROWS,
) -> pl.DataFrame:
    """Aggregate a long frame ``t, [by], value`` to at most ``max_rows`` rows.

    Returns ``t, [by], value, lo, hi, n, bucket_s``: the mean, min and max of
    each bucket, so that a one-second spike still shows as the band's top.
    Frames already small enough are returned with ``lo = hi = value``.
    """
    df = _to_utc(df).drop_nulls("t").sort("t")
    keys = [by] if by and by in df.columns else []
    n_series = df.select(pl.struct(keys).n_unique()).item() if keys and df.height else 1
    if df.height == 0:
        return df.with_columns(
            pl.col(value).cast(pl.Float64).alias("lo"),
            pl.col(value).cast(pl.Float64).alias("hi"),
            pl.lit(1, pl.UInt32).alias("n"),
            pl.lit(0, pl.Int64).alias("bucket_s"),
        )
    span = (df["t"].max() - df["t"].min()).total_seconds() + 1
    if df.height <= max_rows:
        return df.with_columns(
            pl.col(value).cast(pl.Float64),
            pl.col(value).cast(pl.Float64).alias("lo"),
            pl.col(value).cast(pl.Float64).alias("hi"),
            pl.lit(1, pl.UInt32).alias("n"),
            pl.lit(0, pl.Int64).alias("bucket_s"),
        )
    width = bucket_seconds(span, n_series, max_rows)
    out = (
        df.group_by_dynamic("t", every=f"{width}s", group_by=keys or None)
        .agg(
            pl.col(value).cast(pl.Float64).mean().alias(value),
            pl.col(value).cast(pl.Float64).min().alias("lo"),
            pl.col(value).cast(pl.Float64).max().alias("hi"),
            pl.len().alias("n"),
        )
        .with_columns(pl.lit(width, pl.Int64).alias("bucket_s"))
        .sort([*keys, "t"])
    )
    return out


# --- shared encodings -------------------------------------------------------------


def time_x(*, title: str = TIME_TITLE, domain: alt.Parameter | None = None, axis: bool = True):
    """The shared x encoding: UTC time scale, labelled as such."""
    scale = alt.Scale(type="utc", domain=domain) if domain is not None else alt.Scale(type="utc")
    return alt.X(
        "t:T",
        title=title if axis else None,
        scale=scale,
        axis=alt.Axis(format=AXIS_FORMAT, labelAngle=0)
        if axis
        else alt.Axis(labels=False, ticks=False, title=None),
    )


def time_tooltip(field_name: str = "t", title: str = TIME_TITLE) -> alt.Tooltip:
    """Tooltip showing a time in UTC, whatever the viewer's zone."""
    return alt.Tooltip(f"{field_name}:T", title=title, format=TIME_FORMAT, timeUnit=UTC_SECONDS)


def _value_tooltips(unit: str | None, series_title: str = "series") -> list[alt.Tooltip]:
    return [
        time_tooltip(),
        alt.Tooltip("series:N", title=series_title),
        alt.Tooltip("value:Q", title=f"mean ({unit})" if unit else "mean", format=",.4~g"),
        alt.Tooltip("lo:Q", title="min", format=",.4~g"),
        alt.Tooltip("hi:Q", title="max", format=",.4~g"),
        alt.Tooltip("bucket_s:Q", title="bucket (s, 0 = raw)"),
    ]


# --- building blocks ---------------------------------------------------------------

# Charts take polars frames as their data. Altair keeps a frame by reference while
# it composes layers and concatenations (it deep-copies every sub-chart at each
# level, which with rows as Python lists cost seconds for the timeline), turns
# the frames into top-level named ``datasets`` only in ``to_dict``, and adds
# them after validating the spec, so the schema is checked on the structure,
# not on thousands of data rows.


@dataclass
class Panel:
    """One panel of the timeline: a long frame ``t, series, value`` and how to draw it.

    ``ceiling`` draws a dashed horizontal limit (e.g. the ephemeral port range);
    ``log`` uses a symlog y scale for series spanning orders of magnitude.
    """

    title: str
    data: pl.DataFrame
    unit: str = ""
    ceiling: float | None = None
    ceiling_label: str = ""
    log: bool = False
    height: int = 110
    extra: dict = field(default_factory=dict)


def _series_marks(
    data: pl.DataFrame,
    *,
    unit: str,
    x,
    log: bool = False,
    series_title: str = "series",
    max_rows: int = MAX_ROWS,
) -> list[alt.Chart]:
    """Mean line plus min-max band per series, already downsampled: ``[band, line]``."""
    if "series" not in data.columns:
        data = data.with_columns(pl.lit("value").alias("series"))
    rows = for_chart(downsample(data.select("t", "series", "value"), max_rows=max_rows // 2))
    yscale = alt.Scale(type="symlog") if log else alt.Scale()
    base = alt.Chart(rows)
    legend = alt.Legend(orient="right", labelLimit=220)
    color = alt.Color("series:N", title=series_title, legend=legend)
    band = base.mark_area(opacity=0.25).encode(
        x=x,
        y=alt.Y("lo:Q", title=unit or None, scale=yscale),
        y2="hi:Q",
        color=color,
        tooltip=_value_tooltips(unit, series_title),
    )
    line = base.mark_line(strokeWidth=1.2).encode(
        x=x,
        y=alt.Y("value:Q", title=unit or None, scale=yscale),
        color=color,
        tooltip=_value_tooltips(unit, series_title),
    )
    return [band, line]


def _series_layer(data: pl.DataFrame, *, zoom: str | None = None, **kw) -> alt.LayerChart:
    """``_series_marks`` as one layer chart; with a ``zoom`` name, its time axis pans
    (drag) and zooms (wheel) in an interactive viewer (``x_zoom``)."""
    band, line = _series_marks(data, **kw)
    return alt.layer(band.add_params(x_zoom(zoom)) if zoom else band, line)


def x_zoom(name: str) -> alt.Parameter:
    """Drag to pan and wheel to zoom the x axis: an interval bound to the scales.

    Named, not numbered: Altair's automatic names count up per process, so the
    same chart would get another spec each time; names must differ between the
    views of one concatenated chart.
    """
    return alt.selection_interval(bind="scales", encodings=["x"], name=name)


def event_layers(
    events: pl.DataFrame | None, x, *, legend: bool = True
) -> list[alt.Chart]:
    """Human events as layers: a rule per point event, a band per interval.

    ``events`` has ``start``, ``end`` (may equal start or be null), ``kind``, ``title``.
    """
    if events is None or events.height == 0:
        return []
    ev = _to_utc(events, ("start", "end")).with_columns(
        pl.coalesce("end", "start").alias("end")
    )
    ev = ev.with_columns(
        ((pl.col("end") - pl.col("start")).dt.total_seconds() > 0).alias("interval")
    )
    ev = for_chart(ev, ("start", "end")).with_columns(pl.col("start").alias("t"))
    domain = sorted(set(ev["kind"].drop_nulls().to_list()))
    color = alt.Color(
        "kind:N",
        title="event",
        scale=alt.Scale(
            domain=domain, range=[EVENT_COLORS.get(k, "#777777") for k in domain]
        ),
    )
    tips = [
        alt.Tooltip("kind:N"),
        alt.Tooltip("title:N"),
        time_tooltip("start", "start (UTC)"),
        time_tooltip("end", "end (UTC)"),
    ]
    base = alt.Chart(ev)
    rules = base.transform_filter("!datum.interval").mark_rule(strokeWidth=1.5, opacity=0.8)
    rules = rules.encode(x=x, color=color.legend(None), tooltip=tips)
    bands = base.transform_filter("datum.interval").mark_rect(opacity=0.12)
    bands = bands.encode(x=x, x2="end:T", color=color if legend else color.legend(None),
                         tooltip=tips)
    return [bands, rules]


def clip_events(events: pl.DataFrame | None, frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    """Events that overlap the series' time span, with intervals cut to it.

    A deploy a week before the data would otherwise stretch the shared time
    axis until the incident is a sliver.
    """
    spans = [_to_utc(f.select("t")).drop_nulls() for f in frames if f.height]
    if events is None or events.height == 0 or not spans:
        return events
    ts = pl.concat(spans)["t"]
    lo, hi = ts.min(), ts.max()
    ev = _to_utc(events, ("start", "end")).with_columns(pl.coalesce("end", "start").alias("end"))
    return ev.filter((pl.col("end") >= lo) & (pl.col("start") <= hi)).with_columns(
        pl.col("start").clip(lo, hi), pl.col("end").clip(lo, hi)
    )


def onset_layer(onsets: pl.DataFrame | None, x) -> list[alt.Chart]:
    """Detected onsets (``t``, ``role``/``label``) as dashed black rules with tooltips."""
    if onsets is None or onsets.height == 0:
        return []
    label = "role" if "role" in onsets.columns else "label"
    df = for_chart(onsets.select("t", pl.col(label).alias("onset")))
    return [
        alt.Chart(df)
        .mark_rule(strokeDash=[4, 3], color="black", strokeWidth=1)
        .encode(x=x, tooltip=[alt.Tooltip("onset:N", title="detected onset"), time_tooltip()])
    ]


def ceiling_layer(panel: Panel) -> list[alt.Chart]:
    """The panel's limit (``ceiling``, e.g. the port range) as a dashed red rule, named."""
    if panel.ceiling is None:
        return []
    df = pl.DataFrame({"ceiling": [float(panel.ceiling)], "label": [panel.ceiling_label]})
    return [
        alt.Chart(df)
        .mark_rule(strokeDash=[6, 3], color="#d62728")
        .encode(
            y="ceiling:Q",
            tooltip=[alt.Tooltip("label:N", title="limit"), alt.Tooltip("ceiling:Q", format=",")],
        )
    ]


def _panel_chart(
    panel: Panel,
    *,
    x,
    events: pl.DataFrame | None,
    onsets: pl.DataFrame | None,
    width: int,
    max_rows: int = MAX_ROWS,
    legend: bool = True,
) -> alt.LayerChart:
    layers = [
        *event_layers(events, x, legend=legend),
        *_series_marks(panel.data, unit=panel.unit, x=x, log=panel.log, max_rows=max_rows),
        *ceiling_layer(panel),
        *onset_layer(onsets, x),
    ]
    # properties as constructor arguments: ``.properties()`` copies the whole layer again
    return alt.layer(
        *layers,
        resolve=_INDEPENDENT_COLOR,
        title=alt.TitleParams(panel.title, anchor="start", fontSize=12),
        width=width,
        height=panel.height,
    )


def timeline(
    panels: list[Panel],
    *,
    events: pl.DataFrame | None = None,
    onsets: pl.DataFrame | None = None,
    side_by_side: tuple[Panel, Panel] | None = None,
    overview: Panel | None = None,
    width: int = 760,
    max_rows: int = MAX_ROWS,
) -> alt.VConcatChart:
    """One aligned multi-panel chart with a shared UTC time axis.

    Every panel shows human events as rules (points) and bands (intervals) and
    detected onsets as dashed rules. ``side_by_side`` draws two panels next to
    each other (per-caller requests/s beside per-caller URIs/s). ``overview``
    (default: the first panel) is drawn small at the bottom with a brush:
    drag on it to zoom every detail panel. ``max_rows`` bounds each panel's
    points (fewer draw faster as static SVG; more show detail when zooming).
    """
    events = clip_events(events, [p.data for p in [*panels, *(side_by_side or ())]])
    brush = alt.selection_interval(encodings=["x"], name="zoom")
    x_detail = time_x(domain=brush, axis=True)
    rows: list = [
        _panel_chart(p, x=x_detail, events=events, onsets=onsets, width=width,
                     max_rows=max_rows, legend=i == 0)
        for i, p in enumerate(panels)
    ]
    if side_by_side is not None:
        half = (width - 60) // 2
        rows.append(
            alt.hconcat(
                *[
                    _panel_chart(p, x=x_detail, events=events, onsets=onsets, width=half,
                                 max_rows=max_rows, legend=False)
                    for p in side_by_side
                ],
                resolve=_INDEPENDENT_COLOR,
            )
        )
    ov = overview or panels[0]
    x_over = time_x()
    band, line = _series_marks(ov.data, unit=ov.unit, x=x_over, log=ov.log, max_rows=max_rows)
    over = alt.layer(
        band.add_params(brush),
        line,
        title=alt.TitleParams(
            f"overview: {ov.title} (drag to zoom the panels above)", anchor="start", fontSize=11
        ),
        width=width,
        height=50,
    )
    rows.append(over)
    return alt.vconcat(*rows, spacing=12, resolve=_INDEPENDENT_COLOR)


# --- single-purpose charts --------------------------------------------------------


def series_chart(
    df: pl.DataFrame, *, title: str = "", unit: str = "", log: bool = False, width: int = 700
) -> alt.LayerChart:
    """Any series: ``t, value`` (one series) or ``t, series, value`` (several)."""
    chart = _series_layer(df, unit=unit, x=time_x(), log=log, zoom="zoom_x")
    return chart.properties(title=title, width=width, height=180)


def compare_chart(
    a: pl.DataFrame, b: pl.DataFrame, *, a_name: str, b_name: str, width: int = 700
) -> alt.VConcatChart:
    """Two series (``t, value`` each) one above the other on a shared UTC axis.

    Each keeps its own y scale, so series of different units can be compared
    by shape and timing.
    """
    x = time_x()
    top = _series_layer(a.with_columns(pl.lit(a_name).alias("series")), unit="", x=x,
                        zoom="zoom_top")
    bottom = _series_layer(b.with_columns(pl.lit(b_name).alias("series")), unit="", x=x,
                           zoom="zoom_bottom")
    return alt.vconcat(
        top.properties(title=a_name, width=width, height=120),
        bottom.properties(title=b_name, width=width, height=120),
        resolve=alt.Resolve(scale=alt.ScaleResolveMap(color="independent", x="shared")),
    )


def coverage_chart(coverage: pl.DataFrame, *, width: int = 700) -> alt.Chart:
    """What data exists when: one bar per (``source``, ``host``) from ``start`` to ``end``.

    ``rows`` (count) is shown in the tooltip.
    """
    df = for_chart(coverage, ("start", "end")).with_columns(
        (pl.col("source") + " / " + pl.col("host").fill_null("(all)")).alias("what")
    )
    return (
        alt.Chart(df)
        .mark_bar(height=10)
        .encode(
            x=alt.X(
                "start:T",
                title=TIME_TITLE,
                scale=alt.Scale(type="utc"),
                axis=alt.Axis(format=AXIS_FORMAT),
            ),
            x2="end:T",
            y=alt.Y("what:N", title=None, sort=None),
            color=alt.Color("source:N"),
            tooltip=[
                alt.Tooltip("source:N"),
                alt.Tooltip("host:N"),
                alt.Tooltip("rows:Q", format=","),
                time_tooltip("start", "first (UTC)"),
                time_tooltip("end", "last (UTC)"),
            ],
        )
        .add_params(x_zoom("zoom_x"))
        .properties(width=width, title="data coverage by source and host")
    )


def bar_chart(
    df: pl.DataFrame, *, category: str, value: str, title: str = "", color: str | None = None
) -> alt.Chart:
    """Horizontal bars of ``value`` per ``category`` (e.g. rejects per reason), with tooltips."""
    tips = [alt.Tooltip(f"{c}:{'Q' if df.schema[c].is_numeric() else 'N'}") for c in df.columns]
    enc = {
        "x": alt.X(f"{value}:Q", title=value),
        "y": alt.Y(f"{category}:N", sort="-x", title=None),
        "tooltip": tips,
    }
    if color:
        enc["color"] = alt.Color(f"{color}:N")
    return alt.Chart(finite(df)).mark_bar().encode(**enc).properties(title=title, width=520)


def lag_chart(lags: pl.DataFrame, *, title: str = "who leads whom") -> alt.LayerChart:
    """Forest plot of lead/lag: one row per ``pair``, point at ``lag_s``, bar ``ci_low..ci_high``.

    ``kind`` (e.g. chain hop / rival) colours the rows; other columns go to the tooltip.
    """
    tips = [
        alt.Tooltip(f"{c}:{'Q' if lags.schema[c].is_numeric() else 'N'}", format=",.3~g")
        if lags.schema[c].is_numeric()
        else alt.Tooltip(f"{c}:N")
        for c in lags.columns
    ]
    base = alt.Chart(finite(lags)).encode(
        y=alt.Y("pair:N", sort=None, title=None),
        color=alt.Color("kind:N", title=None),
        tooltip=tips,
    )
    zero = alt.Chart(pl.DataFrame({"zero": [0.0]})).mark_rule(color="#999").encode(
        x="zero:Q", tooltip=[alt.Tooltip("zero:Q", title="no lag")]
    )
    bars = base.mark_rule(strokeWidth=3, opacity=0.6).encode(
        x=alt.X("ci_low:Q", title="lag in seconds (positive: cause leads effect)"), x2="ci_high:Q"
    )
    pts = base.mark_point(filled=True, size=70).encode(x="lag_s:Q")
    return alt.layer(zero, bars, pts.add_params(x_zoom("zoom_lag"))).properties(
        title=title, width=560)


def chain_diagram(nodes: pl.DataFrame, edges: pl.DataFrame, *, width: int = 760) -> alt.LayerChart:
    """The root-cause chain as a left-to-right diagram.

    ``nodes``: ``step`` (0..n-1), ``role``, ``signal``, ``onset`` (text).
    ``edges``: ``step`` (the cause's step), ``label`` (lag and evidence), plus
    any evidence columns for the tooltip.
    """
    n = max(1, nodes.height)
    node_tips = [alt.Tooltip(f"{c}:N") for c in nodes.columns if c != "step"]
    nx = alt.X("step:Q", axis=None, scale=alt.Scale(domain=[-0.6, n - 0.4]))
    base = alt.Chart(finite(nodes))
    boxes = base.mark_point(shape="square", size=5200, filled=True, color="#deebf7").encode(
        x=nx, y=alt.value(60), tooltip=node_tips
    )
    role = base.mark_text(fontWeight="bold", fontSize=12, dy=-8).encode(
        x=nx, y=alt.value(60), text="role:N", tooltip=node_tips
    )
    sig = base.mark_text(fontSize=9, dy=10, limit=width / n - 10).encode(
        x=nx, y=alt.value(60), text="signal:N", tooltip=node_tips
    )
    layers = [boxes, role, sig]
    if edges.height:
        e = edges.with_columns(
            (pl.col("step") + 0.35).alias("x0"),
            (pl.col("step") + 0.65).alias("x1"),
            (pl.col("step") + 0.5).alias("xm"),
        )
        edge_tips = [
            alt.Tooltip(f"{c}:{'Q' if e.schema[c].is_numeric() else 'N'}")
            for c in edges.columns
            if c != "step"
        ]
        ex = alt.X("x0:Q", scale=alt.Scale(domain=[-0.6, n - 0.4]), axis=None)
        eb = alt.Chart(finite(e))
        arrows = eb.mark_rule(strokeWidth=2, color="#555").encode(
            x=ex, x2="x1:Q", y=alt.value(60), tooltip=edge_tips
        )
        heads = eb.mark_point(shape="triangle-right", filled=True, size=90, color="#555").encode(
            x=alt.X("x1:Q", scale=alt.Scale(domain=[-0.6, n - 0.4]), axis=None),
            y=alt.value(60),
            tooltip=edge_tips,
        )
        labels = eb.mark_text(fontSize=9, dy=-40, color="#333").encode(
            x=alt.X("xm:Q", scale=alt.Scale(domain=[-0.6, n - 0.4]), axis=None),
            y=alt.value(60),
            text="label:N",
            tooltip=edge_tips,
        )
        layers += [arrows, heads, labels]
    return alt.layer(*layers).properties(width=width, height=120, title="root-cause chain")


def whatif_chart(df: pl.DataFrame, *, unit: str = "", title: str = "", width: int = 700):
    """Observed against predicted: long frame ``t, scenario, series, value``.

    One row of panels per ``series``, colour by ``scenario`` (observed, fix,
    workaround, batch cap ...), shared UTC axis.
    """
    rows = []
    for i, name in enumerate(df["series"].unique(maintain_order=True).to_list()):
        sub = df.filter(pl.col("series") == name).select(
            "t", pl.col("scenario").alias("series"), "value"
        )
        rows.append(
            _series_layer(sub, unit=unit, x=time_x(), series_title="scenario",
                          zoom=f"zoom_{i}").properties(
                title=str(name), width=width, height=120
            )
        )
    return alt.vconcat(*rows, title=title)


# --- rendering ------------------------------------------------------------------------


def spec_to_svg(spec: dict | str) -> str:
    """A Vega-Lite spec drawn as SVG by vl-convert: no browser, and no network allowed.

    Times need no zone here: every scale and label in these charts is UTC.
    """
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    svg = vlc.vegalite_to_svg(
        xml_safe(spec), vl_version=vl_version_for_vl_convert(), allowed_base_urls=[]
    )
    return stable_clip_ids(svg)


_CLIP_REF = re.compile(r'(id="|url\(#)clip(\d+)\b')


def stable_clip_ids(svg: str) -> str:
    """``svg`` with Vega's clip-path ids named by its content, not by a counter.

    Vega numbers clip paths (``clip1``, ``clip2`` ...) with a counter that runs on
    across charts in one engine, so the same chart drew differently the second time
    (zoomable charts clip their marks). Ids named by a hash of the drawing are the
    same on every draw and still differ between charts: inline SVGs on one page
    share one id namespace, so plain renumbering from 1 would cross their clips.
    """
    if 'id="clip' not in svg:
        return svg
    tag = hashlib.sha256(_CLIP_REF.sub(r"\1clip", svg).encode()).hexdigest()[:12]
    order: dict[str, int] = {}
    return _CLIP_REF.sub(
        lambda m: f"{m.group(1)}clip-{tag}-{order.setdefault(m.group(2), len(order))}", svg)


# Characters XML 1.0 forbids (C0 controls but tab, newline and return; U+FFFE, U+FFFF;
# lone surrogates): vl-convert's SVG writer aborts the whole process on one of them, so
# a caller or event title with an ESC in it would kill a notebook kernel or the report.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# ... and their JSON escapes, to tell cheaply whether a spec in JSON text needs a look
_XML_INVALID_JSON = re.compile(r"\\u00[01][0-9a-fA-F]|\\u[dD][89a-fA-F]|\\u[fF]{3}[eEfF]|\\[bf]")


def xml_safe(spec: dict | str) -> dict | str:
    """``spec`` with every character SVG cannot hold shown as a visible escape
    (``signal_id.printable``), in data values, titles and labels alike; the spec as it
    is when it has none (the common case costs one regex scan)."""
    if isinstance(spec, str):
        if not (_XML_INVALID.search(spec) or _XML_INVALID_JSON.search(spec)):
            return spec
        return json.dumps(_xml_safe_value(json.loads(spec)), separators=(",", ":"))
    return _xml_safe_value(spec)


def _xml_safe_value(value):
    if isinstance(value, str):
        return _XML_INVALID.sub(lambda m: printable(m.group()), value)
    if isinstance(value, dict):
        return {_xml_safe_value(k): _xml_safe_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_xml_safe_value(v) for v in value]
    return value


def to_svg(chart: alt.TopLevelMixin) -> str:
    """The chart drawn as SVG (see ``spec_to_svg``)."""
    return spec_to_svg(chart.to_dict())


SPECS_ENV = "POSTMORTEM_CHARTS_AS_SPECS"
"""When set to ``1``, the notebook renderer emits each chart's spec (``SPEC_MIME``)
instead of drawing it: the report's notebook runner draws them all in its own
process afterwards (``draw_specs``), so that each kernel does not start its own
vl-convert engine (about a second of CPU each). The spec travels as one JSON
string: as a nested dict, with its data rows, every message and notebook write
would encode and validate it value by value."""
SPEC_MIME = "text/x-postmortem-vegalite-json"


def _svg_renderer(spec: dict, **_: object) -> dict:
    """The static half of a notebook chart: SVG drawn here, or the spec for later
    (``SPECS_ENV``)."""
    if os.environ.get(SPECS_ENV) == "1":
        return {SPEC_MIME: json.dumps(spec, separators=(",", ":"))}
    return {"image/svg+xml": spec_to_svg(spec)}


def draw_specs(bundle: dict) -> bool:
    """Draw a display bundle's deferred chart spec as SVG, in place; whether it had one.

    The bundle then holds what the renderer would have drawn in the kernel.
    """
    spec = bundle.pop(SPEC_MIME, None)
    if spec is None:
        return False
    bundle["image/svg+xml"] = spec_to_svg(spec)
    return True


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# vega-embed's menu would offer "Open in Vega Editor" (a web site); export stays.
_EMBED_OPTIONS = {"actions": {"export": True, "source": False, "compiled": False,
                              "editor": False}}
_WIDGET_TEXT = "<chart: interactive in JupyterLab (widget); SVG in other viewers>"


def interactive_view(spec: dict) -> dict:
    """The interactive half of a notebook chart: Altair's ``JupyterChart`` widget
    (anywidget) showing ``spec``, as a display bundle (empty without anywidget).

    The widget's JavaScript (vega-embed with Vega and Vega-Lite) is vl-convert's
    offline bundle (``JupyterChart.enable_offline``): JupyterLab draws the chart,
    its tooltips, zoom and brush with no network. The bundle is built once per
    kernel (about a second) and sent with each widget. The spec is set directly,
    already validated by ``to_dict``: the widget does not validate it again.
    """
    if importlib.util.find_spec("anywidget") is None:
        return {}
    from altair import JupyterChart

    JupyterChart.enable_offline(True)
    widget = JupyterChart(chart=None, embed_options=_EMBED_OPTIONS)
    widget.spec = spec
    data, _ = widget._repr_mimebundle_()
    # its own text names a memory address: a volatile output, and no use to a reader
    return {WIDGET_MIME: data[WIDGET_MIME], "text/plain": _WIDGET_TEXT}


def _notebook_renderer(spec: dict, **_: object) -> dict:
    """Both halves in one output: JupyterLab shows the widget (its renderer outranks
    SVG); nbconvert, nbval and viewers without the kernel show the SVG. Under the
    report's runner (``SPECS_ENV``) only the spec: its pages are static."""
    static = _svg_renderer(spec)
    if SPEC_MIME in static:
        return static
    return {**interactive_view(spec), **static}


def enable_offline_renderer() -> None:
    """Show charts in notebooks interactive in JupyterLab and as SVG elsewhere, offline.

    The interactive view is Altair's ``jupyter`` renderer route (``JupyterChart``
    with ``offline=True``: vl-convert's bundled JavaScript, no CDN); beside it in
    the same output, the SVG drawn in the kernel by vl-convert, which nbconvert's
    HTML, nbval and plain viewers show. Saving from ``make lab`` strips these
    outputs (``analysis.report.notebooks.strip_on_save``).
    """
    if _RENDERER not in alt.renderers.names():
        alt.renderers.register(_RENDERER, _notebook_renderer)
    alt.renderers.enable(_RENDERER)
