"""The report's story, as a reader needs it: graded hops, collapsed events, the weight on
linear axes, every TIME_WAIT figure defined, what-if levels normalised, and the formats."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.errors import UserError
from analysis.report import story
from analysis.report.formats import parse_formats

# --- hop grading ----------------------------------------------------------------------


@pytest.mark.parametrize(("p", "ci", "grade"), [
    (0.0099, (-2, -1), "strong"),     # trigger -> fan_out: significant, one side, tight
    (0.0099, (0, 0), "strong"),       # simultaneous on the grid
    (0.043, (18, 23), "moderate"),    # cache_errors -> runtime_stress: p over 0.01
    (0.0066, (-1, 64), "weak"),       # fan_out -> port_exhaustion: both orders, 65 s wide
    (0.74, (30, 30), "weak"),         # runtime_stress -> user_impact: no coincidence
    (0.0066, (2, 64), "moderate"),    # ordered but 62 s wide
    (float("nan"), (1, 2), "weak"),   # no p-value
])
def test_a_hop_is_graded_from_its_p_value_and_its_lag_interval(p, ci, grade) -> None:
    g = story.grade_hop(p, ci, lag_s=ci[0], grid_s=1, hop="a → b")
    assert g.grade == grade
    assert (g.reasons == ()) == (grade == "strong")  # every doubt is said


def test_the_reasons_name_the_doubts() -> None:
    g = story.grade_hop(0.0066, (-1, 64), grid_s=1)
    assert any("both orders" in r for r in g.reasons)
    assert any("65 s wide" in r for r in g.reasons)


def test_a_coarser_grid_tolerates_a_wider_interval() -> None:
    assert story.grade_hop(0.001, (0, 60), grid_s=1).grade == "moderate"
    assert story.grade_hop(0.001, (0, 60), grid_s=10).grade == "strong"


_p = st.floats(0, 1)
_ci = st.tuples(st.floats(-100, 100), st.floats(0, 100)).map(lambda t: (t[0], t[0] + t[1]))


@given(_p, _p, _ci)
def test_a_larger_p_value_never_makes_a_hop_stronger(p1, p2, ci) -> None:
    lo, hi = sorted((p1, p2))
    rank = {g: i for i, g in enumerate(story.GRADES)}
    assert rank[story.grade_hop(lo, ci).grade] <= rank[story.grade_hop(hi, ci).grade]


@given(_p, _ci, st.floats(0, 100))
def test_widening_the_interval_never_makes_a_hop_stronger(p, ci, more) -> None:
    rank = {g: i for i, g in enumerate(story.GRADES)}
    wider = (ci[0] - more, ci[1] + more)
    assert rank[story.grade_hop(p, ci).grade] <= rank[story.grade_hop(p, wider).grade]


# --- the human timeline, collapsed --------------------------------------------------------

T0 = datetime(2026, 4, 6, 13, 0, 0)


def _events(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"start": [T0 + timedelta(minutes=m) for m, _, _ in rows],
         "end": [T0 + timedelta(minutes=m) for m, _, _ in rows],
         "kind": [k for _, k, _ in rows], "title": [t for _, _, t in rows],
         "source": ["t"] * len(rows), "detail": [None] * len(rows)},
        schema_overrides={"start": pl.Datetime("us"), "end": pl.Datetime("us"),
                          "detail": pl.String})


def test_45_crash_loop_alerts_become_one_row_with_count_first_and_last() -> None:
    alerts = [(60 + 10 * i, "alert", f"KubePodCrashLooping dataplane-dp-{1 + i % 3}")
              for i in range(45)]
    others = [(0, "deploy", "v0.1"), (5, "page", "error rate high"), (480, "fix", "limit 50")]
    rows = story.collapse_events(_events(alerts + others), {"trigger": T0})
    assert rows.height == 1 + 3 + 1  # the alerts, the three others, the onset
    alert = rows.filter(pl.col("kind") == "alert").row(0, named=True)
    assert alert["count"] == 45
    assert alert["time"] == T0 + timedelta(minutes=60)
    assert alert["last"] == T0 + timedelta(minutes=60 + 440)
    assert alert["title"].startswith("45 alert events: KubePodCrashLooping dataplane-dp-1,")
    assert rows["time"].is_sorted()
    assert rows.filter(pl.col("kind") == "onset")["title"].to_list() == ["detected onset: trigger"]


def test_a_kind_with_few_events_keeps_every_row() -> None:
    few = [(i, "alert", f"a{i}") for i in range(story.COLLAPSE_OVER)]
    rows = story.collapse_events(_events(few))
    assert rows.height == story.COLLAPSE_OVER and set(rows["count"]) == {1}


def test_more_than_three_titles_are_counted_not_listed() -> None:
    many = [(i, "status", f"post {i}") for i in range(8)]
    title = story.collapse_events(_events(many))["title"][0]
    assert title == "8 status events: post 0, post 1, post 2 (+5 more titles)"


# --- the weight on linear axes ------------------------------------------------------------


def _weights(uris: list[float], requests: list[float]) -> pl.DataFrame:
    n = len(uris)
    x_next = [uris[0] / uris[1]] + [None] * (n - 1)
    return pl.DataFrame({"caller": [f"c{i}" for i in range(n)], "requests": requests,
                         "uris": uris, "peak_rps": [1.0] * n, "max_batch": [1.0] * n,
                         "x_next": x_next, "culprit": [i == 0 for i in range(n)]})


def test_the_weight_chart_draws_both_measures_on_linear_axes_from_zero() -> None:
    spec = story.weight_chart(_weights([624e6, 7.2e6, 2.4e6], [104e3, 621e3, 97e3])).to_dict()
    bars = [layer["layer"][0] for layer in spec["hconcat"]]
    for b in bars:
        x = b["encoding"]["x"]
        assert x["scale"].get("type", "linear") == "linear" and x["scale"]["zero"] is True
    assert [b["encoding"]["x"]["field"] for b in bars] == ["requests", "uris"]
    data = next(iter(spec["datasets"].values()))
    top = data[0]
    assert top["uris_txt"] == "624 M = 87x next"  # 624 / 7.2 = 86.7
    assert top["uris"] / data[1]["uris"] == pytest.approx(86.67, abs=0.01)


def test_the_claim_sets_the_request_share_against_the_uri_share() -> None:
    claim = story.weight_claim(_weights([624e6, 7.2e6], [104e3, 621e3]))
    assert claim.startswith("c0 sent 14% of the requests (104 k")
    assert "98.9% of the URIs (624 M" in claim and "87x c1's 7.2 M" in claim


# --- what-if levels -------------------------------------------------------------------------


def test_whatif_levels_compare_each_replay_with_the_replay_as_it_was() -> None:
    from analysis.report.data import WhatIfs

    summary = pl.DataFrame({
        "scenario": ["observed", "replay, as it was", "fix", "workaround"],
        "dials": [199_178_262, 198_325_415, 656, 592_559_962],
        "peak_time_wait": [393_216, 393_216, 0, 393_216],
        "failed_lookups": [4_548_760_000, 395_188_999, 0, 197_594_500],
        "seconds_with_errors": [1, 1, 0, 1], "exhausted": [True, True, False, True]})
    out = story.whatif_levels(WhatIfs(summary, pl.DataFrame(), None))
    rel = dict(zip(out["scenario"], out["failed vs replay as it was"], strict=True))
    assert rel["observed"] is None  # another measure: not compared
    assert rel["replay, as it was"] == 1.0 and rel["fix"] == 0.0
    assert rel["workaround"] == pytest.approx(0.5, rel=1e-6)
    assert "not comparable" in story.WHATIF_CAVEAT


# --- coverage and formats -------------------------------------------------------------------


def test_coverage_is_cut_to_the_incident_window() -> None:
    cov = pl.DataFrame({"source": ["events", "logs", "old"], "host": [None, "dp-1", None],
                        "start": [T0 - timedelta(days=6), T0, T0 - timedelta(days=9)],
                        "end": [T0 + timedelta(days=2), T0 + timedelta(hours=3),
                                T0 - timedelta(days=8)], "rows": [58, 10, 1]})
    out = story.window_coverage(cov, T0, T0 + timedelta(hours=12))
    assert out["source"].to_list() == ["events", "logs"]  # wholly outside: left out
    assert out["start"].min() == T0 and out["end"].max() == T0 + timedelta(hours=12)


def test_formats_are_repeatable_or_comma_separated_and_checked() -> None:
    assert parse_formats(None) == ("html",)
    assert parse_formats(["slides,html", "pdf"]) == ("html", "pdf", "slides")
    with pytest.raises(UserError, match="--format docx: expected one or more of html, pdf"):
        parse_formats(["html,docx"])


# --- on the bundled april-2026 incident -------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    from analysis.report import data as rd
    from analysis.report.workspace import ensure_store, open_analysis

    con = open_analysis(ensure_store())
    yield con, rd.root_cause_chain(con), rd.events(con)
    con.close()


def test_the_culprit_carried_86x_the_next_callers_uris(bundled) -> None:
    con, chain, _ = bundled
    w = story.caller_weights(con, chain.culprit.caller)
    top, nxt = w.row(0, named=True), w.row(1, named=True)
    assert (top["caller"], nxt["caller"]) == ("feed-indexer", "appview")
    assert top["culprit"] and top["uris"] > 600e6 and nxt["uris"] > 7e6
    assert round(top["x_next"]) == round(top["uris"] / nxt["uris"]) == 86
    assert top["requests"] < nxt["requests"]  # fewer requests, 86x the weight


def test_the_headline_time_wait_peak_is_taken_before_the_mitigation(bundled) -> None:
    con, chain, events = bundled
    figs = {f.name: f for f in story.time_wait_figures(con, chain, events)}
    ports = chain.environment.port_range[1] - chain.environment.port_range[0] + 1
    head = figs["TIME_WAIT peak (headline)"]
    assert int(head.value.replace(",", "")) <= ports  # the ceiling before the mitigation
    assert "before the mitigation" in head.definition and "instance=" in head.definition
    after = figs["TIME_WAIT peak after the mitigation"]
    assert int(after.value.replace(",", "")) > ports  # the mitigation lifted the ceiling
    assert figs["ephemeral ports per host"].value == f"{ports:,}"


def test_the_verdict_names_the_weak_hops(bundled) -> None:
    _, chain, _ = bundled
    grades = story.grade_hops(chain)
    weak = [g.hop for g in grades if g.grade == "weak"]
    assert weak  # p = 0.74 on runtime_stress -> user_impact
    line = story.verdict_line(chain, grades)
    assert all(h in line for h in weak) and "weak" in line
