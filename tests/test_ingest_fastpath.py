"""The fast paths (DuckDB's own JSON and CSV readers) with a few bad lines among many.

A file with a few bad lines stays on DuckDB's reader: its good lines load from
there, and only the bad ones (and the blank ones DuckDB skips) are read again
by the line path, which rejects them with their line numbers and reasons. The
result is the same as reading the whole file line by line.
"""

from __future__ import annotations

import gzip
import itertools
import random
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analysis.ingest as ingest_module
import analysis.ingest.lines as lines_module
import analysis.ingest.load as load_module
from analysis.ingest import ingest_paths
from analysis.ingest.lines import line_stats, pick_lines
from analysis.store import connect

GOOD_JSON = ('{"time":"2026-04-06T14:%02d:%02d.5Z","method":"GetPostRecord","caller":"c%d",'
             '"uris":%d,"status":"ok","duration_ms":%d.5,"host":"dp-1","dc":"us-east"}')
GOOD_ERR = ('{"time":"2026-04-06T14:%02d:%02dZ","level":"ERROR","msg":"failed to get post cache'
            ' item","error":"dial tcp 127.0.0.1:11211: connect: cannot assign requested address",'
            '"host":"dp-%d","sample_rate":0.5}')
GOOD_CSV = "2026-04-06T14:%02d:%02d.5Z,GetPostRecord,c%d,%d,ok,%d.5,dp-1,us-east"
CSV_HEADER = "time,method,caller,uris,status,duration_ms,host,dc"

#: bad JSON lines (bytes) and the start of the reason each must be rejected with
BAD_JSON = {
    b"\xff\xfe\x00\x9c\x81garbage \xc3\x28 \x99": "not valid UTF-8",
    b'{"time":"2026-04-06T14:02:03Z","method":"Get': "invalid JSON",
    b'{"time":"2026-13-45T99:99:99Z","level":"ERROR","msg":"clock glitch"}': "unparseable time",
    b'{"time":"2026-04-06T14:02:03Z","uris":"many"}': "wrong type: uris",
    b'{"time":"2026-04-06T14:02:03Z","uris":{"n":3}}': "wrong type: uris",
    b"[1, 2, 3]": "not a JSON object",
    b"": "blank line",
    b"  \t": "blank line",
}
BAD_CSV = {
    b"\xff\xfe\x00junk,\xc3\x28": "not valid UTF-8",
    b"not-a-time,GetPostRecord,c1,3,ok,1.5,dp-1,us-east": "unparseable time",
    b"2026-04-06T14:02:03Z,GetPostRecord": "ragged CSV row",
    b'2026-04-06T14:02:03Z,Get"PostRecord,c1,3,ok,1.5,dp-1,us-east': "malformed CSV row",
    b"2026-04-06T14:02:03Z,GetPostRecord,c1,many,ok,1.5,dp-1,us-east": "wrong type: uris",
}
SETTINGS = settings(max_examples=6, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
_CASES = itertools.count()


def _good(fmt: str, i: int) -> bytes:
    template = {"json": GOOD_JSON, "csv": GOOD_CSV}[fmt]
    return (template % (i // 60 % 60, i % 60, i % 7, i % 50, i % 90)).encode()


def _mixed(n_good: int, bad: list[bytes], seed: int, fmt: str) -> tuple[bytes, dict[int, bytes]]:
    """``n_good`` good lines with the ``bad`` ones at random places (never line 1);
    returns the body and {line number: bad line}."""
    rnd = random.Random(seed)
    rows = [_good(fmt, i) for i in range(n_good)]
    for b in bad:
        rows.insert(rnd.randint(1, len(rows)), b)
    head = [CSV_HEADER.encode()] if fmt == "csv" else []
    body = b"\n".join(head + rows) + b"\n"
    where = {i + 1 + len(head): r for i, r in enumerate(rows) if r in bad}
    return body, where


def _write(tmp_path: Path, name: str, body: bytes, compression: str) -> Path:
    d = tmp_path / f"case-{next(_CASES)}"
    d.mkdir()
    if compression == "gz":
        body, name = gzip.compress(body), name + ".gz"
    elif compression == "zst":
        body, name = zstandard.ZstdCompressor().compress(body), name + ".zst"
    p = d / name
    p.write_bytes(body)
    return p


def _load(path: Path, *, line_by_line: bool = False):
    con = connect(None)
    with pytest.MonkeyPatch.context() as mp:
        if line_by_line:  # no line statistics: the fast paths are not tried
            mp.setattr(ingest_module, "line_stats", lambda *_: None)
        report = ingest_paths(con, [path])
    return con, report.files[0]


def _rows(con, table: str) -> list:
    return sorted(con.execute(f"SELECT * EXCLUDE (file_id) FROM {table}").fetchall(),
                  key=repr)


def _check(path: Path, where: dict[int, bytes], reasons: dict[bytes, str], n_lines: int,
           table: str) -> None:
    con, f = _load(path)
    assert "line by line" not in f.note, f.note  # stayed on DuckDB's reader
    assert (f.lines_read, f.loaded, f.rejected) == (n_lines, n_lines - len(where), len(where))
    got = dict(con.execute("SELECT line, reason FROM rejects").fetchall())
    assert sorted(got) == sorted(where)
    for line, raw in where.items():
        assert got[line].startswith(reasons[raw]), (line, raw, got[line])
    loaded = [r[0] for r in con.execute(f"SELECT line FROM {table} ORDER BY line").fetchall()]
    assert loaded == [n for n in range(1, n_lines + 1) if n not in where]
    slow, _ = _load(path, line_by_line=True)
    for t in (table, "rejects"):
        assert _rows(con, t) == _rows(slow, t), t


@SETTINGS
@given(bad=st.lists(st.sampled_from(sorted(BAD_JSON)), min_size=1, max_size=6),
       seed=st.integers(0, 10**6), compression=st.sampled_from(["", "gz", "zst"]))
def test_json_lines_with_a_few_bad_lines_stay_on_the_fast_path(tmp_path, bad, seed, compression):
    body, where = _mixed(300, bad, seed, "json")
    path = _write(tmp_path, "requests.jsonl", body, compression)
    _check(path, where, BAD_JSON, 300 + len(bad), "requests")


@SETTINGS
@given(bad=st.lists(st.sampled_from(sorted(BAD_CSV)), min_size=1, max_size=5),
       seed=st.integers(0, 10**6), compression=st.sampled_from(["", "gz"]))
def test_csv_with_a_few_bad_rows_stays_on_the_fast_path(tmp_path, bad, seed, compression):
    body, where = _mixed(300, bad, seed, "csv")
    path = _write(tmp_path, "requests.csv", body, compression)
    con, f = _load(path)
    assert "line by line" not in f.note, f.note
    assert (f.lines_read, f.rejected) == (300 + len(bad), len(where))
    got = dict(con.execute("SELECT line, reason FROM rejects").fetchall())
    assert sorted(got) == sorted(where)
    for line, raw in where.items():
        assert got[line].startswith(BAD_CSV[raw]), (line, raw, got[line])
    slow, _ = _load(path, line_by_line=True)
    for t in ("requests", "rejects"):
        assert _rows(con, t) == _rows(slow, t), t


def test_error_log_with_bad_lines_parses_the_rest_on_the_fast_path(tmp_path):
    rows = [(GOOD_ERR % (i // 60 % 60, i % 60, i % 3)).encode() for i in range(500)]
    rows[100:100] = [b"\xff\xfe junk"]
    rows[300:300] = [b'{"time":"yesterday","msg":"x"}', b'{"msg":"no time","level":"INFO"}']
    path = _write(tmp_path, "errors.jsonl", b"\n".join(rows) + b"\n", "gz")
    con, f = _load(path)
    assert "line by line" not in f.note
    assert (f.lines_read, f.loaded, f.rejected) == (503, 500, 3)
    assert con.execute("SELECT line FROM rejects ORDER BY line").fetchall() == [
        (101,), (301,), (302,)]
    assert con.execute("SELECT DISTINCT errno_class, op FROM log_events").fetchall() == [
        ("EADDRNOTAVAIL", "connect")]
    slow, _ = _load(path, line_by_line=True)
    for t in ("log_events", "rejects"):
        assert _rows(con, t) == _rows(slow, t), t


def test_only_the_bad_lines_are_read_again(tmp_path, monkeypatch):
    body, where = _mixed(2000, [b"not json", b"", b'{"time":"never"}'], 3, "json")
    path = _write(tmp_path, "requests.jsonl", body, "")
    asked: list[list[int]] = []

    def spy(p, wanted):
        asked.append(list(wanted))
        return pick_lines(p, wanted)

    monkeypatch.setattr(load_module, "pick_lines", spy)
    _, f = _load(path)
    assert asked == [sorted(where)]
    assert f.rejected == 3 and f.loaded == 2000


def test_a_numeric_field_absent_from_some_lines_still_loads_them(tmp_path):
    """DuckDB nulls a wrongly typed number under ignore_errors; such rows are checked
    by the line path, which loads a row whose field is simply absent."""
    rows = [_good("json", i) for i in range(50)] + [b'{"time":"2026-04-06T14:00:00Z"}']
    path = _write(tmp_path, "requests.jsonl", b"\n".join(rows) + b"\n", "")
    con, f = _load(path)
    assert (f.loaded, f.rejected) == (51, 0) and "line by line" not in f.note
    assert con.execute("SELECT uris FROM requests WHERE line = 51").fetchall() == [(None,)]


# --- the line statistics and line picking under any chunking ----------------------

_PIECES = [b"", b" ", b"\t", b"\r", b'{"a":1}', b' {"a":1}', b"x", b" \x0b ", b"\xff\xfe"]


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.sampled_from(_PIECES), max_size=12), end=st.sampled_from([b"", b"\n"]),
       chunk=st.sampled_from([1, 2, 3, 7, 1 << 20]), data=st.data())
def test_line_stats_and_pick_lines_agree_with_splitting(tmp_path_factory, parts, end, chunk,
                                                        data):
    body = b"\n".join(parts) + end
    lines = body.split(b"\n") if body else []
    if body.endswith(b"\n"):
        lines = lines[:-1]
    path = tmp_path_factory.mktemp("l") / "f"
    path.write_bytes(body)
    original = lines_module.decompressed_chunks
    lines_module.decompressed_chunks = lambda p, chunk=chunk: original(p, chunk)
    try:
        stats = line_stats(path)
        wanted = sorted(data.draw(st.sets(st.integers(1, max(len(lines), 1)))))
        wanted = [w for w in wanted if w <= len(lines)]
        picked = pick_lines(path, wanted)
    finally:
        lines_module.decompressed_chunks = original
    assert stats.lines == len(lines)
    assert stats.blank == tuple(i for i, ln in enumerate(lines, 1)
                                if not ln.strip(b" \t\r\x0b\x0c"))
    assert picked.column("line").to_pylist() == wanted
    assert picked.column("raw").to_pylist() == [lines[w - 1] for w in wanted]


@pytest.mark.parametrize("n_blank", [0, 70])
def test_many_blank_lines_go_line_by_line_with_the_same_result(tmp_path, n_blank):
    rows = [_good("json", i) for i in range(100)] + [b""] * n_blank + [b"{}"]
    path = _write(tmp_path, "requests.jsonl", b"\n".join(rows) + b"\n", "")
    con, f = _load(path)
    assert ("line by line" in f.note) == (n_blank > load_module.MAX_SKIPPED)
    assert (f.loaded, f.rejected) == (100, n_blank + 1)


def test_too_many_bad_rows_go_line_by_line_in_bounded_groups(tmp_path, monkeypatch):
    body, where = _mixed(100, [b"not json"] * 5, 1, "json")
    path = _write(tmp_path, "requests.jsonl", body, "")
    monkeypatch.setattr(load_module, "MAX_AGAIN", 3)
    con, f = _load(path)
    assert "line by line" in f.note and (f.loaded, f.rejected) == (100, 5)
    assert sorted(r[0] for r in con.execute("SELECT line FROM rejects").fetchall()) == sorted(
        where)
