"""Too little data is said: a series too short for its baseline gets no windows and a
reason, and a headline never calls a change that rounds to 0 % a drop."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from analysis.chain import NO_CAUSE, ChainResult, Environment
from analysis.detection import MIN_SAMPLES, MIN_SAMPLES_COUNTS, detect, detect_all, detect_series
from analysis.report.data import Impact
from analysis.report.page import summary_items
from analysis.rollups import build_rollups
from analysis.store import connect

T0 = datetime(2026, 4, 6, 12)


def _frame(values) -> pl.DataFrame:
    return pl.DataFrame({"t": [T0 + timedelta(seconds=i) for i in range(len(values))],
                         "value": [float(v) for v in values]})


def test_a_five_sample_series_is_too_short_and_has_no_windows():
    five = _frame([100, 100, 100, 100, 5000])
    for counts in (False, True):
        d = detect_series(five, signal="x", counts=counts)
        assert d.too_short and d.windows == [] and d.samples == 5
        assert d.needed == (MIN_SAMPLES_COUNTS if counts else MIN_SAMPLES)
        assert "5 samples" in d.reason and "baseline" in d.reason
        assert detect(five, counts=counts) == []


def test_a_long_enough_series_is_judged():
    x = np.r_[np.full(200, 100.0) + np.sin(np.arange(200)), np.full(20, 400.0)]
    d = detect_series(_frame(x), signal="x")
    assert not d.too_short and d.reason is None and len(d.windows) == 1


def test_five_metric_samples_held_over_minutes_get_no_anomalies_and_a_note():
    """Five samples a minute apart fill 241 one-second buckets (a gauge holds its value):
    still five samples, too few for a baseline."""
    con = connect(None)
    con.executemany(
        "INSERT INTO metrics VALUES (?, 'appview_requests_per_second', NULL, ?, 1, ?)",
        [[T0 + timedelta(minutes=i), v, i] for i, v in enumerate([100, 90, 120, 100, 80])],
    )
    info = build_rollups(con)
    assert info.n_buckets == 241
    assert detect_all(con).height == 0
    assert con.execute("SELECT signal, samples, needed FROM too_short").fetchall() == [
        ("metric:appview_requests_per_second", 5, MIN_SAMPLES)]
    assert con.execute("SELECT count(*) FROM anomalies").fetchone()[0] == 0


def _headline(baseline: float, trough: float) -> str:
    drop = None if baseline == 0 else 100.0 * (baseline - trough) / baseline
    imp = Impact("metric:appview_requests_per_second", baseline, trough, drop, None, None, 0.0)
    chain = ChainResult(NO_CAUSE, None, [], [], {}, Environment(), notes=["none"])
    events = pl.DataFrame(schema={"kind": pl.String, "title": pl.String,
                                  "start": pl.Datetime("us")})
    return dict(summary_items(chain, imp, events, None))["Impact"]


def test_no_headline_says_a_drop_of_zero_percent():
    text = _headline(100.0, 100.0)
    assert "0 %" not in text and "drop" not in text and "fell" not in text
    assert "did not fall measurably" in text
    assert "a drop of 40 %" in _headline(100.0, 60.0)


@given(baseline=st.floats(1e-3, 1e9), share=st.floats(0.0, 2.0))
def test_a_headline_drop_is_never_zero(baseline, share):
    text = _headline(baseline, baseline * share)
    assert "drop of 0 %" not in text and "drop of -" not in text
    if "drop of" in text:
        assert int(text.split("drop of ")[1].split(" %")[0]) >= 1
