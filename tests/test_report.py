"""The report page: computed from the store, self-contained, and data stays text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_report_fixture import PORTS, collected, make_store

from analysis.report import data as rd
from analysis.report.page import collect, render_html, script_json
from analysis.report.workspace import open_analysis

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Collected content and rendered page of a store whose culprit is named HOSTILE."""
    db = make_store(tmp_path_factory.mktemp("r") / "s.duckdb", heavy_caller=HOSTILE)
    con = open_analysis(db)
    content = collect(con)
    yield con, content, render_html(content)
    con.close()


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20))
def test_script_json_round_trips_and_cannot_close_a_script(value) -> None:
    text = script_json(value)
    assert json.loads(text) == value
    assert "<" not in text and ">" not in text and "&" not in text


def test_names_from_the_data_are_escaped_everywhere(hostile) -> None:
    _, _, html = hostile
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    # the only scripts are the page's own four: error hook, specs, Vega bundle, loader
    assert len(re.findall(r"<script\b", html)) == 4


def test_the_page_fetches_nothing(hostile) -> None:
    _, _, html = hostile
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "default-src 'none'" in html  # and the CSP forbids fetching anyway


def test_summary_comes_from_the_data(hostile) -> None:
    _, content, _ = hostile
    summary = dict(content.summary)
    assert set(summary) == {"Impact", "Duration", "Trigger", "Root cause", "Suspects",
                            "Mitigation", "Fix"}
    assert HOSTILE in summary["Trigger"]  # the culprit found in this store, not a constant
    assert summary["Suspects"].startswith(f"1. {HOSTILE} (")  # the mechanism's culprit leads
    assert "random loopback source addresses" in summary["Mitigation"]
    assert "concurrency limit 50" in summary["Fix"]
    assert content.verdict == "root_cause_found"


def test_follow_ups_are_derived_from_the_findings(hostile) -> None:
    _, content, _ = hostile
    text = "\n".join(content.actions)
    assert HOSTILE in text
    assert f"{PORTS[1] - PORTS[0] + 1:,} ports" in text
    assert any(a.startswith("Keep the concurrency limit") for a in content.actions)


def test_every_chart_has_a_spec_and_the_whatifs_are_answered(hostile) -> None:
    _, content, html = hostile
    ids = [b.id for b in content.charts]
    assert {"timeline", "lags", "whatif", "coverage"} <= set(ids)
    assert [b.id for b in content.lead] == ["weight", "impact"]  # the first screen's
    for b in [*content.lead, *content.charts]:
        assert f'id="chart-{b.id}"' in html
    # the chain is drawn as a diagram in the page itself, a box per role in causal order
    assert 'id="chain-diagram"' in html
    assert [s.role for s in content.steps][0] == "trigger"
    assert all(s.grade in ("strong", "moderate", "weak") for s in content.steps[1:])
    scenarios = [r[0] for r in content.whatif.rows]
    assert scenarios[:2] == ["observed", "replay, as it was"]
    assert set(rd.WHATIF_SCENARIOS) <= set(scenarios)


def test_timeline_table_is_in_utc_and_in_order(hostile) -> None:
    _, content, _ = hostile
    times = [r[0] for r in content.timeline.rows]
    assert times == sorted(times) and all(t.endswith(" UTC") for t in times)
    kind = content.timeline.columns.index("kind")
    assert any(r[kind] == "onset" for r in content.timeline.rows)


def test_report_without_a_culprit_still_renders(tmp_path: Path) -> None:
    # no burst in the first 10 min
    content = collected(make_store(tmp_path / "quiet.duckdb", seconds=600))
    assert content.verdict == "no_supported_cause"
    assert content.whatif.rows == []
    assert "Collect per-caller request logs" in "\n".join(content.actions)
    assert "<html" in render_html(content)


def test_cli_names_a_missing_store_in_one_line(tmp_path: Path, capsys) -> None:
    from analysis.cli import main

    assert main(["report", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none.duckdb: no such store" in err
