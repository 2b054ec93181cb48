"""Parsers have bounds: a line nested too deep, too long or too wide is a reject with
its line number and the limit in words, never an exception; one bad file never stops
the others; the limits are the same on DuckDB's fast path and on the line path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analysis.ingest as ingest_module
import analysis.ingest.lines as lines_module
from analysis.ingest import ingest_paths
from analysis.ingest.bounds import (
    MAX_DEPTH,
    MAX_FIELDS,
    TOO_DEEP,
    TOO_WIDE,
    json_bounds_sql,
    json_limit,
    json_object,
    too_deep,
)
from analysis.ingest.lines import line_stats
from analysis.store import connect

GOOD = {"time": "2026-04-06T14:02:03Z", "method": "Get", "caller": "feed", "uris": 3,
        "status": "ok", "duration_ms": 1.5, "host": "dp-1"}


def nested(depth: int) -> str:
    """A request line whose deepest bracket is ``depth`` levels down (the object is 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return json.dumps(GOOD)[:-1] + ', "x": ' + inner + "}"


def _load(paths: list[Path], *, line_by_line: bool = False):
    con = connect(None)
    with pytest.MonkeyPatch.context() as mp:
        if line_by_line:  # no line statistics: the fast paths are not tried
            mp.setattr(ingest_module, "line_stats", lambda *_: None)
        report = ingest_paths(con, paths)
    return con, report


@pytest.mark.parametrize("line_by_line", [False, True])
@pytest.mark.parametrize("compression", ["", "gz"])
def test_a_line_nested_10000_deep_is_a_reject_and_the_files_beside_it_load(
        tmp_path, line_by_line, compression):
    lines = [json.dumps(GOOD)] * 5
    lines[2:2] = [nested(10_000)]  # line 3, within the first lines that are sniffed
    body = ("\n".join(lines) + "\n").encode()
    bad = tmp_path / f"requests-a.jsonl{'.gz' if compression else ''}"
    bad.write_bytes(gzip.compress(body) if compression else body)
    (tmp_path / "requests-b.jsonl").write_text(json.dumps(GOOD) + "\n")
    con, report = _load([tmp_path], line_by_line=line_by_line)
    a, b = report.files
    assert (a.lines_read, a.loaded, a.rejected) == (6, 5, 1)
    assert (b.lines_read, b.loaded, b.rejected) == (1, 1, 0)
    assert con.execute("SELECT line, reason FROM rejects").fetchall() == [(3, TOO_DEEP)]
    assert con.execute("SELECT count(*) FROM requests").fetchall() == [(6,)]


@pytest.mark.parametrize("line_by_line", [False, True])
def test_the_depth_limit_is_exact_and_brackets_in_strings_do_not_count(tmp_path, line_by_line):
    in_string = json.dumps({**GOOD, "note": "[{" * 500})
    many_commas = json.dumps({**GOOD, "list": list(range(200))})
    lines = [nested(MAX_DEPTH), nested(MAX_DEPTH + 1), in_string, many_commas]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    con, report = _load([tmp_path], line_by_line=line_by_line)
    assert (report.files[0].loaded, report.files[0].rejected) == (3, 1)
    assert con.execute("SELECT line, reason FROM rejects").fetchall() == [(2, TOO_DEEP)]
    assert [r[0] for r in con.execute("SELECT line FROM requests ORDER BY line").fetchall()] == [
        1, 3, 4]


@pytest.mark.parametrize("line_by_line", [False, True])
def test_an_object_with_too_many_fields_is_a_reject(tmp_path, line_by_line):
    wide = {**GOOD, **{f"k{i}": i for i in range(MAX_FIELDS)}}
    (tmp_path / "requests.jsonl").write_text(json.dumps(GOOD) + "\n" + json.dumps(wide) + "\n")
    con, report = _load([tmp_path], line_by_line=line_by_line)
    assert (report.files[0].loaded, report.files[0].rejected) == (1, 1)
    assert con.execute("SELECT line, reason FROM rejects").fetchall() == [(2, TOO_WIDE)]


def test_a_csv_header_with_too_many_columns_rejects_its_lines_and_the_rest_loads(tmp_path):
    cols = ",".join(f"s{i}" for i in range(MAX_FIELDS))
    row = ",".join("1" for _ in range(MAX_FIELDS))
    (tmp_path / "metrics-wide.csv").write_text(f"time,{cols}\n2026-04-06T14:00:00Z,{row}\n")
    (tmp_path / "requests.jsonl").write_text(json.dumps(GOOD) + "\n")
    con, report = _load([tmp_path])
    wide, req = report.files
    assert (wide.lines_read, wide.loaded, wide.rejected) == (2, 0, 2)
    reasons = {r[0] for r in con.execute("SELECT reason FROM rejects").fetchall()}
    assert reasons == {f"the CSV header has {MAX_FIELDS + 1:,} columns, more than {MAX_FIELDS:,}"}
    assert req.loaded == 1 and report.nothing_loaded() is None
    assert any("metrics-wide.csv: loaded none of its 2 lines" in w for w in report.warnings())


def test_yaml_nested_too_deep_rejects_its_lines_and_the_rest_loads(tmp_path):
    (tmp_path / "events-a.yaml").write_text(
        f"- time: {GOOD['time']}\n  kind: page\n  detail: {'[' * 10_000}{']' * 10_000}\n")
    (tmp_path / "events-b.yaml").write_text(f"- time: {GOOD['time']}\n  kind: page\n")
    con, report = _load([tmp_path])
    a, b = report.files
    assert (a.lines_read, a.loaded, a.rejected, b.loaded) == (3, 0, 3, 1)
    assert con.execute("SELECT DISTINCT reason FROM rejects").fetchall() == [
        ("YAML nested too deep to read",)]


def test_an_unexpected_failure_in_one_file_is_its_own_line_and_the_rest_loads(tmp_path):
    (tmp_path / "requests-a.jsonl").write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "requests-b.jsonl").write_text(json.dumps(GOOD) + "\n")
    real = ingest_module.load_file

    def fail_on_a(con, job, *args):
        if job.path.name == "requests-a.jsonl":
            raise RecursionError("maximum recursion depth exceeded")
        return real(con, job, *args)

    con = connect(None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ingest_module, "load_file", fail_on_a)
        report = ingest_paths(con, [tmp_path])
    a, b = report.files
    assert a.failed == "RecursionError: maximum recursion depth exceeded"
    assert a.line() == (f"{a.path}: failed, nothing loaded from it:"
                        " RecursionError: maximum recursion depth exceeded")
    assert b.loaded == 1
    assert con.execute("SELECT count(*), min(file_id) FROM requests").fetchall()[0][0] == 1
    assert con.execute("SELECT path FROM ingest_files").fetchall() == [(b.path,)]
    assert a.line() in report.warnings()


# --- properties ----------------------------------------------------------------------

BRACKETY = st.text(st.sampled_from('[]{}",\\:a1 '), max_size=300)


@given(st.one_of(st.text(max_size=200), BRACKETY))
@settings(max_examples=200, deadline=None)
def test_sniffing_any_line_never_raises(text):
    got = json_object(text)
    assert got is None or isinstance(got, dict)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


JSON = st.recursive(st.none() | st.integers() | st.text(st.sampled_from('[]{}"\\ab'), max_size=5),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=3), kids, max_size=3),
                    max_leaves=200)


@given(JSON, st.integers(0, 2 * MAX_DEPTH))
@settings(max_examples=150, deadline=None)
def test_too_deep_is_exactly_nesting_beyond_the_limit(value, wrap):
    for _ in range(wrap):
        value = [value]
    assert too_deep(json.dumps(value)) == (_depth(value) > MAX_DEPTH)


@pytest.fixture(scope="module")
def con():
    return connect(None)


@given(st.lists(st.one_of(BRACKETY, st.text(max_size=100),
                          st.integers(60, 70).map(lambda d: "[" * d + "]" * d)), max_size=20))
@settings(max_examples=60, deadline=None)
def test_the_sql_and_python_limits_agree_on_any_line(con, lines):
    rows = con.execute(f"SELECT {json_bounds_sql('t')} FROM unnest(?) AS u(t)",
                       [lines]).fetchall()
    assert [r[0] for r in rows] == [json_limit(t) for t in lines]


LINE_BYTES = st.lists(st.sampled_from([b"{", b"[", b"]", b"a", b",", b"\xff", b"\r"]),
                      max_size=60).map(b"".join)


@given(st.lists(LINE_BYTES, max_size=30),
       st.booleans(), st.integers(1, 9))
@settings(max_examples=100, deadline=None)
def test_the_screen_finds_exactly_the_lines_over_it(tmp_path_factory, lines, newline_at_end,
                                                    chunk):
    path = tmp_path_factory.mktemp("s") / "x"
    data = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:  # lines cut across chunks of a few bytes
        mp.setattr(lines_module, "decompressed_chunks",
                   lambda p: ((data[i:i + chunk], None) for i in range(0, len(data), chunk)))
        stats = line_stats(path, 3, 50)
    want = [i for i, b in enumerate(lines, 1) if b.count(b"{") + b.count(b"[") > 3 or len(b) > 50]
    assert list(stats.suspect) == want


ANY_LINE = st.one_of(
    st.just(json.dumps(GOOD)),
    st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2).map(nested),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60),
    BRACKETY,
).map(lambda s: s.replace("\n", " ").replace("\r", " "))


@given(st.lists(ANY_LINE, min_size=1, max_size=12))
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_lines_are_accounted_exactly_the_same_on_both_paths(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("a") / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen = []
    for line_by_line in (False, True):
        con, report = _load([path], line_by_line=line_by_line)
        f = report.files[0]
        assert not f.failed, f.line()
        assert f.lines_read == len(lines) == f.loaded + f.rejected
        seen.append((con.execute("SELECT line, reason FROM rejects ORDER BY line").fetchall(),
                     con.execute("SELECT line FROM requests ORDER BY line").fetchall()))
    assert seen[0] == seen[1]
    deep = [i for i, s in enumerate(lines, 1) if too_deep(s)]
    assert [n for n, why in seen[0][0] if why == TOO_DEEP] == deep
