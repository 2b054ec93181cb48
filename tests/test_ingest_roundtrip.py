"""Property: what a writer of each text format puts in a field, the loader reads back."""

from __future__ import annotations

import csv
import io
import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analysis.ingest as ingest_module
from analysis.ingest import ingest_paths
from analysis.store import connect

# printable text without newlines (a CSV row or log line is one line here)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
               min_size=1, max_size=30).filter(lambda s: s.strip() == s)
SETTINGS = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


_CASES = itertools.count()


def _load(tmp_path, name, body, *, line_by_line):
    d = tmp_path / f"case-{next(_CASES)}"
    d.mkdir()
    (d / name).write_text(body, encoding="utf-8")
    con = connect(None)
    if line_by_line:
        original = ingest_module.line_stats
        ingest_module.line_stats = lambda *_: None
    try:
        report = ingest_paths(con, [d])
    finally:
        if line_by_line:
            ingest_module.line_stats = original
    return con, report


@SETTINGS
@given(rows=st.lists(st.tuples(text, text, st.integers(0, 20000)), min_size=1, max_size=5),
       line_by_line=st.booleans())
def test_csv_fields_round_trip(tmp_path, rows, line_by_line):
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "caller", "method", "uris"])
    for i, (caller, method, uris) in enumerate(rows):
        w.writerow([f"2026-04-06T14:00:{i:02d}Z", caller, method, uris])
    con, report = _load(tmp_path, "requests.csv", out.getvalue(), line_by_line=line_by_line)
    assert report.rejected == 0, [f.line() for f in report.files]
    got = con.execute("SELECT caller, method, uris FROM requests ORDER BY line").fetchall()
    assert got == rows


def _msgs(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT msg FROM log_events ORDER BY line").fetchall()]


def _logfmt_value(s: str) -> str:
    """How Go logfmt writers quote a value: bare if simple, else a quoted string."""
    if s and all(c not in s for c in ' ="\\') and s.isprintable():
        return s
    return json.dumps(s, ensure_ascii=False)


@SETTINGS
@given(msgs=st.lists(text, min_size=1, max_size=5), line_by_line=st.booleans())
def test_logfmt_and_json_messages_round_trip(tmp_path, msgs, line_by_line):
    logfmt = "".join(f"time=2026-04-06T14:00:{i:02d}Z level=info msg={_logfmt_value(m)}\n"
                     for i, m in enumerate(msgs))
    con, report = _load(tmp_path, "errors.logfmt", logfmt, line_by_line=line_by_line)
    assert report.rejected == 0, [f.line() for f in report.files]
    assert _msgs(con) == msgs
    jsonl = "".join(json.dumps({"time": f"2026-04-06T14:00:{i:02d}Z", "level": "INFO", "msg": m},
                               ensure_ascii=False) + "\n" for i, m in enumerate(msgs))
    con, report = _load(tmp_path, "errors.jsonl", jsonl, line_by_line=line_by_line)
    assert report.rejected == 0
    assert _msgs(con) == msgs
