"""Short captures (a minute or two, per-second series): the chain's time knobs shrink
with the data, so user impact is timed in seconds (never before the trigger), the
onsets come in causal order, and coincidence p-values mean something again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from chain_fixture import T0, build
from hypothesis import given
from hypothesis import strategies as st

from analysis.chain import ROOT_CAUSE, ChainSettings, find_chain, scale_to_span
from analysis.lab.replay import build_store, find_capture
from analysis.roles import ROLES
from analysis.store import connect

FIVE = ["trigger", "fan_out", "port_exhaustion", "cache_errors", "user_impact"]


def _onsets_in_causal_order(r) -> None:
    """Every onset at or after the trigger's, and the roles in causal order by onset
    (onsets in the same second keep the causal order)."""
    trig = r.onsets["trigger"]
    assert all(t >= trig for t in r.onsets.values()), r.onsets
    found = r.roles_in_order(tie_s=1)
    assert found == sorted(found, key=ROLES.index), r.onsets
    assert [x for x in found if x in FIVE] == FIVE, r.onsets


@pytest.fixture(scope="module")
def lab_chain(tmp_path_factory):
    """The committed real lab capture (120 s, per second), replayed into a store."""
    db = build_store(find_capture(None), tmp_path_factory.mktemp("lab") / "lab.duckdb")
    con = connect(db)
    yield find_chain(con)
    con.close()


def test_lab_capture_onsets_come_in_causal_order(lab_chain):
    assert lab_chain.verdict == ROOT_CAUSE and lab_chain.culprit.caller == "feed-indexer"
    _onsets_in_causal_order(lab_chain)


def test_lab_capture_user_impact_follows_the_errors(lab_chain):
    o = lab_chain.onsets
    assert o["cache_errors"] <= o["user_impact"] <= o["cache_errors"] + timedelta(seconds=10)


def test_lab_capture_coincidence_is_measured_on_a_short_lag_window(lab_chain):
    # a 120 s lag window on 120 s of data made every shift coincide (p 0.76-0.99)
    assert all(h.p_value < 0.5 for h in lab_chain.hops), [h.p_value for h in lab_chain.hops]
    assert any("short capture" in n and "lag window 12 s" in n for n in lab_chain.notes)
    for h in lab_chain.hops:
        assert h.lag_ci_s[0] <= h.lag_s <= h.lag_ci_s[1], h


@pytest.mark.parametrize(("a", "b"), [(340, 460), (330, 520)])
def test_a_two_minute_cut_of_an_incident_keeps_its_order(a, b):
    """The hand-built incident cut to a few minutes around its first burst: minute bins
    from the cut's start used to put user impact before the trigger."""
    con = build(seed=1)
    lo, hi = T0 + timedelta(seconds=a), T0 + timedelta(seconds=b)
    for table in ("requests", "log_events", "metrics"):
        con.execute(f"DELETE FROM {table} WHERE time < ? OR time >= ?", [lo, hi])
    r = find_chain(con)
    assert r.verdict == ROOT_CAUSE and r.culprit.caller == "feed-indexer"
    _onsets_in_causal_order(r)


@given(span=st.floats(10, 100_000), grid=st.sampled_from([1.0, 5.0, 15.0, 60.0]))
def test_scaling_only_shrinks_and_fits_the_span(span, grid):
    base = ChainSettings()
    s = scale_to_span(base, span, grid)
    assert s.max_lag_s <= base.max_lag_s and s.slow_lag_s <= base.slow_lag_s
    assert s.slack_s <= base.slack_s and s.n_shuffle <= base.n_shuffle
    assert s.impact_bin_s <= base.impact_bin_s and s.smooth_s <= base.smooth_s
    assert s.max_lag_s <= max(3 * grid, span / 10) and s.slow_lag_s >= s.max_lag_s
    assert s.slack_s <= max(grid, s.max_lag_s)
    assert s.impact_bin_s >= min(grid, base.impact_bin_s)
    assert s.impact_bin_s % int(grid) == 0 or s.impact_bin_s == base.impact_bin_s


@given(grid=st.sampled_from([1.0, 5.0, 15.0]), hours=st.floats(2, 48))
def test_long_incidents_keep_the_settings(grid, hours):
    assert scale_to_span(ChainSettings(), hours * 3600, grid) == ChainSettings()
