"""Charts: bounded size, spikes kept, UTC everywhere, a tooltip on every mark, no NaN."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import charts

T0 = datetime(2026, 4, 6, 12, 0, 0)


def _series(values: list[float], name: str = "s") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "t": [T0 + timedelta(seconds=i) for i in range(len(values))],
            "series": [name] * len(values),
            "value": values,
        }
    )


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=1500),
    st.integers(10, 400),
)
def test_downsample_bounds_rows_and_keeps_extremes(values: list[float], max_rows: int) -> None:
    out = charts.downsample(_series(values), max_rows=max_rows)
    assert out.height <= max(max_rows, 1)
    assert out["hi"].max() == max(values)
    assert out["lo"].min() == min(values)
    assert (out["lo"] <= out["value"] + 1e-6).all() and (out["value"] <= out["hi"] + 1e-6).all()
    assert out["n"].sum() == len(values) or out["bucket_s"][0] == 0


@given(st.floats(1, 1e7), st.integers(1, 20))
def test_bucket_is_wide_enough_for_the_row_budget(span_s: float, n_series: int) -> None:
    width = charts.bucket_seconds(span_s, n_series, 5000)
    assert span_s / width <= max(1, 5000 // n_series)


def test_times_are_iso_strings_in_utc() -> None:
    naive = pl.DataFrame({"t": [datetime(2026, 4, 6, 14, 2, 3)]})
    aware = naive.with_columns(pl.col("t").dt.replace_time_zone("Europe/Paris"))
    assert charts.for_chart(naive)["t"][0] == "2026-04-06T14:02:03.000Z"
    assert charts.for_chart(aware)["t"][0] == "2026-04-06T12:02:03.000Z"


def test_nan_and_infinity_never_reach_a_spec() -> None:
    df = _series([1.0, float("nan"), float("inf"), 2.0])
    spec = charts.series_chart(df).to_dict()
    json.dumps(spec, allow_nan=False)  # raises on NaN


def _units(spec: dict):
    """Every single-view spec (one with a mark) inside a composed spec."""
    if "mark" in spec:
        yield spec
    for key in ("layer", "vconcat", "hconcat", "concat"):
        for sub in spec.get(key, []):
            yield from _units(sub)


def _timeline_spec() -> dict:
    a = _series([float(i % 50) for i in range(20000)], "traffic")
    e = pl.concat([_series([float(i % 7) for i in range(20000)], n) for n in ("A", "<b>B</b>")])
    events = pl.DataFrame(
        {
            "start": [T0 + timedelta(hours=1), T0 + timedelta(hours=2)],
            "end": [None, T0 + timedelta(hours=3)],
            "kind": ["page", "mitigation"],
            "title": ["<i>page</i>", "workaround"],
        },
        schema_overrides={"end": pl.Datetime("us")},
    )
    onsets = pl.DataFrame({"t": [T0 + timedelta(minutes=30)], "role": ["port_exhaustion"]})
    panels = [
        charts.Panel("traffic", a, "req/s"),
        charts.Panel("TIME_WAIT", e, "sockets", ceiling=28232, ceiling_label="ports"),
    ]
    chart = charts.timeline(panels, events=events, onsets=onsets,
                            side_by_side=(charts.Panel("r", e), charts.Panel("u", e)))
    return chart.to_dict()


def test_timeline_every_mark_has_a_tooltip_and_every_time_axis_is_utc() -> None:
    spec = _timeline_spec()
    units = list(_units(spec))
    assert len(units) >= 10
    for unit in units:
        enc = unit.get("encoding", {})
        assert "tooltip" in enc, unit["mark"]
        x = enc.get("x", {})
        if x.get("type") == "temporal":
            assert x["scale"]["type"] == "utc"
            assert x.get("title") in (charts.TIME_TITLE, None)
        for tip in enc["tooltip"]:
            if tip.get("type") == "temporal":
                assert tip["timeUnit"].startswith("utc") and "UTC" in tip["title"]


def test_timeline_stays_under_the_row_limit_with_a_brush_on_the_overview() -> None:
    spec = _timeline_spec()
    assert max(len(rows) for rows in spec["datasets"].values()) <= charts.MAX_ROWS
    (brush,) = spec["params"]
    assert brush["name"] == "zoom" and brush["select"]["encodings"] == ["x"]
    (view,) = brush["views"]
    assert f'"name": "{view}"' in json.dumps(spec["vconcat"][-1])  # the overview holds it
    for panel in spec["vconcat"][:-1]:  # every detail panel follows the brush
        xs = [u["encoding"]["x"] for u in _units(panel) if "x" in u.get("encoding", {})]
        assert xs and all(x["scale"].get("domain") == {"param": "zoom"} for x in xs)


def test_text_from_data_stays_data_in_the_svg() -> None:
    svg = charts.to_svg(charts.series_chart(_series([1.0, 2.0, 3.0], "<script>x</script>")))
    assert "<script>" not in svg
    assert "&lt;script&gt;x&lt;/script&gt;" in svg


def test_chain_diagram_and_lag_chart_have_tooltips() -> None:
    nodes = pl.DataFrame({"step": [0, 1], "role": ["trigger", "fan_out"],
                          "signal": ["caller:x:uris", "metric:dials"], "onset": ["a", "b"]})
    edges = pl.DataFrame({"step": [0], "label": ["+1 s"], "lag_s": [1.0]})
    lags = pl.DataFrame({"pair": ["a -> b"], "kind": ["chain hop"], "lag_s": [1.0],
                         "ci_low": [0.0], "ci_high": [float("nan")]})
    for chart in (charts.chain_diagram(nodes, edges), charts.lag_chart(lags)):
        spec = chart.to_dict()
        json.dumps(spec, allow_nan=False)
        assert all("tooltip" in u.get("encoding", {}) for u in _units(spec))


def test_events_outside_the_data_do_not_stretch_the_time_axis() -> None:
    events = pl.DataFrame(
        {
            "start": [T0 - timedelta(days=6), T0 + timedelta(seconds=5), T0 - timedelta(hours=1)],
            "end": [None, None, T0 + timedelta(seconds=3)],
            "kind": ["deploy", "page", "mitigation"],
            "title": ["a week before", "inside", "overlaps the start"],
        },
        schema_overrides={"end": pl.Datetime("us")},
    )
    clipped = charts.clip_events(events, [_series([1.0] * 10)])
    assert clipped["title"].to_list() == ["inside", "overlaps the start"]
    assert clipped["start"].min().replace(tzinfo=None) == T0


def test_a_chart_left_as_a_spec_is_drawn_later_exactly_as_in_the_kernel(monkeypatch) -> None:
    """The report's kernels emit specs (``SPECS_ENV``); the runner draws them afterwards."""
    spec = charts.series_chart(_series([1.0, 5.0, 2.0], "<b>s</b>")).to_dict()
    monkeypatch.delenv(charts.SPECS_ENV, raising=False)
    drawn_in_kernel = charts._svg_renderer(spec)
    monkeypatch.setenv(charts.SPECS_ENV, "1")
    deferred = charts._svg_renderer(spec)
    assert set(deferred) == {charts.SPEC_MIME}
    assert charts.draw_specs(deferred) and deferred == drawn_in_kernel
    assert not charts.draw_specs({"text/plain": "no chart"})


def test_a_notebook_chart_is_an_offline_widget_with_the_svg_beside_it(monkeypatch) -> None:
    """In a kernel each chart is one output holding Altair's JupyterChart widget (what
    JupyterLab draws, tooltips and zoom included) and the SVG (what nbval, nbconvert and
    plain viewers show); the widget's JavaScript is vl-convert's bundle, fetched from no
    network, and the output names no memory address."""
    import re

    from ipywidgets.widgets.widget import _instances

    from analysis.report.notebooks import _VOLATILE

    monkeypatch.delenv(charts.SPECS_ENV, raising=False)
    spec = charts.series_chart(_series([1.0, 5.0, 2.0], "s")).to_dict()
    bundle = charts._notebook_renderer(spec)
    assert set(bundle) == {charts.WIDGET_MIME, "image/svg+xml", "text/plain"}
    assert bundle["image/svg+xml"] == charts._svg_renderer(spec)["image/svg+xml"]
    widget = _instances[bundle[charts.WIDGET_MIME]["model_id"]]
    assert widget.spec == spec
    assert widget.embed_options["actions"]["editor"] is False
    assert len(widget._esm) > 100_000  # vega, vega-lite and vega-embed, inlined
    assert not re.search(r"""(import|from)\s*["']https?://""", widget._esm)
    assert not _VOLATILE.search(bundle["text/plain"])
    monkeypatch.setenv(charts.SPECS_ENV, "1")
    assert set(charts._notebook_renderer(spec)) == {charts.SPEC_MIME}


def test_single_charts_pan_and_zoom_their_time_axis() -> None:
    """A scale-bound interval on x (drag pans, wheel zooms), named so that the same chart
    always gets the same spec; the views of a concatenation get distinct names."""
    a, b = _series([1.0, 2.0, 3.0], "a"), _series([3.0, 2.0, 1.0], "b")

    def zooms(spec: dict) -> list[str]:  # Altair lifts a layer's params to the top
        views = [spec, *(v for k in ("layer", "vconcat", "hconcat") for v in spec.get(k, []))]
        return [p["name"] for v in views for p in v.get("params", [])
                if p.get("bind") == "scales" and p["select"]["encodings"] == ["x"]]

    assert zooms(charts.series_chart(a).to_dict()) == ["zoom_x"]
    assert zooms(charts.compare_chart(a, b, a_name="a", b_name="b").to_dict()) == [
        "zoom_top", "zoom_bottom"]
    whatif = pl.concat([f.with_columns(pl.lit(s).alias("scenario"))
                        for f in (a, b) for s in ("seen", "fix")])
    assert zooms(charts.whatif_chart(whatif).to_dict()) == ["zoom_0", "zoom_1"]
    assert charts.series_chart(a).to_dict() == charts.series_chart(a).to_dict()


def test_the_same_chart_draws_the_same_svg_and_two_charts_share_no_clip_id() -> None:
    """Zoomable marks are clipped; Vega counts clip ids up across draws. The drawing
    names them by its content instead: stable per chart, distinct between charts (inline
    SVGs on one page share one id namespace)."""
    import re

    one, two = charts.series_chart(_series([1.0, 5.0])), charts.series_chart(_series([7.0, 1.0]))
    first = charts.to_svg(one)
    assert charts.to_svg(two) and charts.to_svg(one) == first

    def ids(svg: str) -> set[str]:
        return set(re.findall(r'<clipPath id="([^"]+)"', svg))

    assert ids(first) and not ids(first) & ids(charts.to_svg(two))
    for ref in re.findall(r'url\(#([^)]+)\)', first):
        assert ref in ids(first)


def test_without_anywidget_a_notebook_chart_is_the_svg_alone(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "anywidget" else real(name, *a))
    monkeypatch.delenv(charts.SPECS_ENV, raising=False)
    spec = charts.series_chart(_series([1.0, 2.0])).to_dict()
    assert set(charts._notebook_renderer(spec)) == {"image/svg+xml"}
