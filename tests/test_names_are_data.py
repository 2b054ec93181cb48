"""Names are data, never syntax: a caller called anything is found, named and shown.

Spec: whatever Unicode a caller's name holds (``host:port``, SPIFFE ids, ``,``, ``=``,
braces, quotes, newline, tab, ESC, a right-to-left override, emoji, 10 kB), the chain
names it as the culprit exactly as the data spell it, lists it among the callers, and
prints it with control characters visibly escaped; its charts render; the report page
holds it HTML-escaped. On main before this change, a ``host:port`` culprit vanished
(``no_supported_cause``) and an ESC aborted the chart renderer.
"""

from __future__ import annotations

import html
import json

import pytest
from chain_fixture import build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.chain import ROOT_CAUSE, find_chain, format_chain
from analysis.charts import spec_to_svg
from analysis.signal_id import printable

HOSTILE = [
    "feed:indexer\n\x1b[31m",
    "10.0.0.7:8080",
    "spiffe://prod.example/ns/feeds/sa/indexer",
    'svc:v2,{a="b"}=c',
    "tab\tand\rreturn",
    "\u202eredni-deef",
    "🔥 indexer",
    "nul\x00bell\x07",
    "x" * 10_000,
]
OTHERS = {"appview", "timeline-cache"}


def _culprit_found(name: str) -> None:
    con = build(path=None, name=name)
    result = find_chain(con)
    assert result.verdict == ROOT_CAUSE, result.notes
    assert result.culprit is not None and result.culprit.caller == name
    assert name in {c.caller for c in result.callers}
    assert {r.caller for r in result.rejected if r.caller} == OTHERS
    text = format_chain(result)
    assert printable(name) in text
    assert all(ch.isprintable() for line in text.splitlines() for ch in line)
    assert json.loads(json.dumps(result.to_dict()))["culprit"]["caller"] == name


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n[:24]))
def test_a_culprit_called_anything_is_named_exactly(name):
    _culprit_found(name)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=60).filter(lambda n: n not in OTHERS))
def test_any_unicode_culprit_is_named_exactly(name):
    _culprit_found(name)


@pytest.mark.parametrize(("name", "shown"), [("feed:indexer\x1b[31m", "feed:indexer\\x1b[31m"),
                                             ("nul\x00bell\x07", "nul\\x00bell\\x07")])
def test_charts_of_such_names_render(name, shown):
    import altair as alt
    import polars as pl

    frame = pl.DataFrame({"t": [0, 1], "value": [1.0, 2.0], "series": [name, name]})
    chart = alt.Chart(frame).mark_line().encode(x="t", y="value", color="series",
                                                tooltip=["series"]).properties(title=name)
    svg = spec_to_svg(chart.to_dict())
    assert shown in html.unescape(svg)
    assert spec_to_svg(json.dumps(chart.to_dict())).startswith("<svg")


def test_the_report_holds_such_a_culprit_escaped_and_its_charts_render(tmp_path):
    from test_report_fixture import collected, make_store

    from analysis.report.page import render_html

    name = "feed:indexer\n\x1b[31m<b>"
    content = collected(make_store(tmp_path / "s.duckdb", heavy_caller=name))
    assert content.verdict == "root_cause_found"
    assert name in dict(content.summary)["Trigger"]
    page = render_html(content)
    assert html.escape(name, quote=False) in page and "<b>" not in page
    for block in content.charts:
        assert spec_to_svg(block.spec).startswith("<svg"), block.id


def test_the_cli_prints_such_a_culprit_escaped_and_its_json_exact(tmp_path, capsys):
    from analysis.cli import main

    name = "feed:indexer\n\x1b[2J\u202e"
    db = tmp_path / "s.duckdb"
    build(path=str(db), name=name).close()
    assert main(["chain", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "Culprit: feed:indexer\\n\\x1b[2J\\u202e calling" in text
    assert all(ch.isprintable() for line in text.splitlines() for ch in line)
    assert main(["chain", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["culprit"]["caller"] == name


def test_a_user_error_naming_a_strange_path_stays_one_line(tmp_path, capsys):
    from analysis.cli import main

    assert main(["chain", "--db", str(tmp_path / "no\nsuch\x1b.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no\\nsuch\\x1b.duckdb" in err
