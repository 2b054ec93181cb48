"""Bad input: every line read is loaded or rejected with a reason, per file, always.

The corpus is written by the test (a 10 MB line and random bytes have no place
in git): one file per kind of damage named in the issue, each with good lines
around the bad ones so that "the rest of the file still loads" is checked too.
"""

from __future__ import annotations

import gzip
import json
import os
import random

import pytest
import zstandard

from analysis.cli import main
from analysis.errors import UserError
from analysis.ingest import ingest_paths
from analysis.store import connect

GOOD_REQ = ('{"time":"2026-04-06T14:02:%02dZ","method":"GetPostRecord","caller":"appview",'
            '"uris":%d,"status":"ok","duration_ms":3.5,"host":"dp-1","dc":"us-east"}')
GOOD_ERR = ('{"time":"2026-04-06T14:02:%02dZ","level":"ERROR",'
            '"msg":"failed to get user cache item",'
            '"error":"dial tcp 127.0.0.1:11211: connect: cannot assign requested address"}')


def req(i: int) -> str:
    return GOOD_REQ % (i % 60, i % 50 + 1)


def err(i: int) -> str:
    return GOOD_ERR % (i % 60)


def write_corpus(d):
    """The bad-input corpus; returns {file name: (lines read, rejected)} where known exactly."""
    rnd = random.Random(7)
    expect = {}
    # truncated gzip: 2,000 good lines, the compressed stream cut at 60 %
    body = gzip.compress("\n".join(err(i) for i in range(2000)).encode() + b"\n")
    (d / "errors-truncated.jsonl.gz").write_bytes(body[: int(len(body) * 0.6)])
    # truncated zstd, likewise (enough lines for several zstd blocks: a cut block is lost)
    zbody = zstandard.ZstdCompressor().compress(
        "\n".join(req(i) for i in range(20_000)).encode() + b"\n")
    (d / "requests-truncated.jsonl.zst").write_bytes(zbody[: int(len(zbody) * 0.5)])
    # non-UTF-8 bytes on line 2
    (d / "requests-latin1.jsonl").write_bytes(
        (req(1) + "\n").encode() + b'{"time":"2026-04-06T14:02:03Z","caller":"caf\xe9"}\n'
        + (req(3) + "\n").encode())
    expect["requests-latin1.jsonl"] = (3, 1)
    # a 10 MB line between two good ones
    huge = '{"time":"2026-04-06T14:02:03Z","caller":"' + "x" * 10_000_000 + '"}'
    (d / "requests-huge.jsonl").write_text(f"{req(1)}\n{huge}\n{req(3)}\n")
    expect["requests-huge.jsonl"] = (3, 1)
    # unparseable time, missing required field, wrong types, not JSON, blank, CRLF
    bad = [
        req(1),
        '{"time":"yesterday-ish","uris":3}',
        '{"method":"GetPostRecord","uris":3}',
        '{"time":"2026-04-06T14:02:03Z","uris":"many"}',
        '{"time":"2026-04-06T14:02:03Z","uris":2.5}',
        '{"time":"2026-04-06T14:02:03Z","duration_ms":"fast"}',
        '{"time":"2026-04-06T14:02:03Z","uris":{"n":3}}',
        "this is not json",
        "[1, 2, 3]",
        "",
        '{"time":"2026-04-06T14:02:03Z","uris":',
        req(11) + "\r",
    ]
    (d / "requests-bad.jsonl").write_text("\n".join(bad) + "\n")
    expect["requests-bad.jsonl"] = (12, 10)
    # empty files: one told by its name, one by nothing at all
    (d / "requests-empty.jsonl").write_bytes(b"")
    (d / "empty.dat").write_bytes(b"")
    expect["requests-empty.jsonl"] = (0, 0)
    expect["empty.dat"] = (0, 0)
    # binary junk under a log's name: every line rejected
    junk = bytes(rnd.getrandbits(8) for _ in range(20_000))
    (d / "errors-junk.jsonl").write_bytes(junk)
    n_junk = junk.count(b"\n") + (not junk.endswith(b"\n"))
    expect["errors-junk.jsonl"] = (n_junk, n_junk)
    # a CSV with a ragged row and a stray quote
    (d / "requests-ragged.csv").write_text(
        "time,method,caller,uris\n"
        "2026-04-06T14:02:03Z,GetPostRecord,appview,3\n"
        "2026-04-06T14:02:04Z,GetPostRecord\n"
        "2026-04-06T14:02:05Z,GetPostRecord,appview,3,extra\n"
        '2026-04-06T14:02:06Z,Get"PostRecord,appview,3\n'
        '2026-04-06T14:02:07Z,GetPostRecord,"app, view",4\n')
    expect["requests-ragged.csv"] = (5, 3)
    # logfmt and Go text with lines of another shape
    (d / "errors.logfmt").write_text(
        'time=2026-04-06T14:02:03Z level=error msg="failed to get post cache item" error=EOF\n'
        "just words here\n"
        "time=notatime level=info msg=x\n")
    expect["errors.logfmt"] = (3, 2)
    (d / "errors.log").write_text(
        "2026/04/06 14:02:03 memcache: failed to get post cache item: EOF\n"
        "panic: runtime error\n"
        "2026/04/06 14:02:04 server started\n")
    expect["errors.log"] = (3, 1)
    # Prometheus: NaN values kept; an error response rejected whole
    prom = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "go_threads", "instance": "dp-1"},
         "values": [[1775484000, "150"], [1775484015, "NaN"], [1775484030, "+Inf"],
                    [1775484045, "lots"]]}]}}
    (d / "metrics-nan.json").write_text(json.dumps(prom))
    expect["metrics-nan.json"] = (4, 1)
    (d / "metrics-error.json").write_text(json.dumps(
        {"status": "error", "errorType": "bad_data", "error": "invalid expression"}, indent=1))
    expect["metrics-error.json"] = (5, 5)  # indented: five lines, all rejected
    (d / "metrics-broken.json").write_text('{"status":"success","data":{"resultType":"mat')
    expect["metrics-broken.json"] = (1, 1)
    # events: bad end time, unknown kind
    (d / "events.csv").write_text(
        "time,end_time,kind,title\n"
        "2026-04-06T12:00:00Z,,page,ok\n"
        "2026-04-06T12:00:00Z,later,page,bad end\n"
        "2026-04-06T12:00:00Z,,party,unknown kind\n")
    expect["events.csv"] = (3, 2)
    return expect


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    expect = write_corpus(d)
    con = connect(None)
    report = ingest_paths(con, [d])
    yield d, expect, report, con
    con.close()


def by_name(report):
    return {f.path.rsplit("/", 1)[-1]: f for f in report.files}


def test_every_file_accounts_for_every_line(corpus):
    _, _, report, con = corpus
    for f in report.files:
        assert f.lines_read == f.loaded + f.rejected, f.line()
    rows = con.execute(
        "SELECT path, lines_read, loaded, rejected,"
        " (SELECT count(*) FROM rejects r WHERE r.file_id = i.file_id),"
        " (SELECT count(*) FROM requests t WHERE t.file_id = i.file_id)"
        " + (SELECT count(*) FROM log_events t WHERE t.file_id = i.file_id)"
        " + (SELECT count(*) FROM metrics t WHERE t.file_id = i.file_id)"
        " + (SELECT count(*) FROM events t WHERE t.file_id = i.file_id)"
        " FROM ingest_files i").fetchall()
    # empty.dat and requests-empty.jsonl have the same (empty) content: one is skipped
    assert len(rows) == len([f for f in report.files if not f.skipped_duplicate]) == 14
    for path, read, loaded, rejected, n_rejects, n_rows in rows:
        assert read == loaded + rejected, path
        assert rejected == n_rejects, path
        assert loaded == n_rows, path


def test_exact_counts_per_damage(corpus):
    _, expect, report, _ = corpus
    files = by_name(report)
    for name, (read, rejected) in expect.items():
        assert (files[name].lines_read, files[name].rejected) == (read, rejected), name


def test_truncated_compression_keeps_the_good_part_and_says_so(corpus):
    _, _, report, con = corpus
    files = by_name(report)
    for name in ("errors-truncated.jsonl.gz", "requests-truncated.jsonl.zst"):
        f = files[name]
        assert f.loaded > 500, f.line()
        reasons = [r[0] for r in con.execute(
            "SELECT reason FROM rejects WHERE file_id = ?", [f.file_id]).fetchall()]
        assert any("compressed stream truncated" in r for r in reasons), reasons


def _reason(con, report, name, line):
    f = by_name(report)[name]
    rows = con.execute("SELECT reason, raw FROM rejects WHERE file_id = ? AND line = ?",
                       [f.file_id, line]).fetchall()
    assert rows, f"{name}:{line} was not rejected"
    return rows[0]


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        ("requests-latin1.jsonl", 2, "not valid UTF-8"),
        ("requests-huge.jsonl", 2, "line longer than"),
        ("requests-bad.jsonl", 2, "unparseable time 'yesterday-ish'"),
        ("requests-bad.jsonl", 3, "missing required field time"),
        ("requests-bad.jsonl", 4, "wrong type: uris"),
        ("requests-bad.jsonl", 5, "wrong type: uris"),
        ("requests-bad.jsonl", 6, "wrong type: duration_ms"),
        ("requests-bad.jsonl", 7, "wrong type: uris"),
        ("requests-bad.jsonl", 8, "not a JSON object"),
        ("requests-bad.jsonl", 10, "blank line"),
        ("requests-bad.jsonl", 11, "invalid JSON (cut short or malformed)"),
        ("requests-ragged.csv", 3, "ragged CSV row: expected 4 fields, got 2"),
        ("requests-ragged.csv", 4, "ragged CSV row: expected 4 fields, got 5"),
        ("requests-ragged.csv", 5, "malformed CSV row"),
        ("errors.logfmt", 2, "not logfmt"),
        ("errors.log", 2, "not a Go log line"),
        ("metrics-nan.json", 4, "value is not a number"),
        ("metrics-error.json", 1, "Prometheus status error: bad_data: invalid expression"),
        ("metrics-broken.json", 1, "not a Prometheus JSON response"),
        ("events.csv", 3, "unparseable end_time 'later'"),
        ("events.csv", 4, "unknown event kind 'party'"),
    ],
)
def test_each_reject_says_why(corpus, name, line, reason):
    _, _, report, con = corpus
    got, raw = _reason(con, report, name, line)
    assert reason in got
    assert raw is None or len(raw) <= 500


def test_rest_of_the_file_loads_with_its_line_numbers(corpus):
    _, _, report, con = corpus
    f = by_name(report)["requests-bad.jsonl"]
    lines = [r[0] for r in con.execute(
        "SELECT line FROM requests WHERE file_id = ? ORDER BY line", [f.file_id]).fetchall()]
    assert lines == [1, 12]  # line 12 ended in CR, which is not part of the data
    f = by_name(report)["requests-ragged.csv"]
    rows = con.execute("SELECT line, caller, uris FROM requests WHERE file_id = ? ORDER BY line",
                       [f.file_id]).fetchall()
    assert rows == [(2, "appview", 3), (6, "app, view", 4)]


def test_nan_is_kept_as_nan(corpus):
    _, _, report, con = corpus
    f = by_name(report)["metrics-nan.json"]
    vals = con.execute("SELECT value FROM metrics WHERE file_id = ? ORDER BY line",
                       [f.file_id]).fetchall()
    assert vals[0][0] == 150 and vals[1][0] != vals[1][0] and vals[2][0] == float("inf")


def test_loading_again_is_a_no_op_and_replace_reloads(corpus):
    d, _, report, con = corpus
    before = con.execute("SELECT count(*) FROM requests").fetchall()[0][0]
    again = ingest_paths(con, [d / "requests-bad.jsonl"])
    assert again.files[0].skipped_duplicate and again.loaded == 0
    assert "already loaded" in again.summary()
    replaced = ingest_paths(con, [d / "requests-bad.jsonl"], replace=True)
    assert replaced.files[0].loaded == 2 and replaced.files[0].replaced
    assert con.execute("SELECT count(*) FROM requests").fetchall()[0][0] == before
    n_ids = con.execute("SELECT count(DISTINCT file_id) FROM rejects WHERE path LIKE"
                        " '%requests-bad.jsonl'").fetchall()[0][0]
    assert n_ids == 1


def test_same_content_under_another_name_counts_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "requests.jsonl").write_text(req(1) + "\n")
    (tmp_path / "requests-copy.jsonl").write_text(req(1) + "\n")
    con = connect(None)
    report = ingest_paths(con, [tmp_path])
    assert report.loaded == 1 and sum(f.skipped_duplicate for f in report.files) == 1


def test_changed_file_at_the_same_path_replaces_the_old_rows(tmp_path):
    p = tmp_path / "requests.jsonl"
    p.write_text(req(1) + "\n")
    con = connect(None)
    ingest_paths(con, [p])
    p.write_text(req(1) + "\n" + req(2) + "\n")
    report = ingest_paths(con, [p])
    assert report.files[0].replaced
    assert con.execute("SELECT count(*), count(DISTINCT file_id) FROM requests").fetchall() == [
        (2, 1)]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nowhere", "nowhere: no such file or directory; expected"),
        (lambda d: (d / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00") and d / "blob.bin",
         "blob.bin: skipped: unknown format (binary content); expected"),
        (lambda d: os.mkfifo(d / "pipe") or d / "pipe", "pipe: not a regular file; expected"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys, make, message):
    path = make(tmp_path)
    code = main(["ingest", str(path), "--db", str(tmp_path / "s.duckdb")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_file_is_skipped_with_its_reason_and_the_rest_loads(tmp_path):
    (tmp_path / "requests.jsonl").write_text(req(1) + "\n")
    (tmp_path / "mystery.bin").write_bytes(b"\x00\x01\x02")
    con = connect(None)
    report = ingest_paths(con, [tmp_path])
    mystery, requests = report.files
    assert mystery.line() == f"{mystery.path}: skipped: unknown format (binary content)"
    assert requests.loaded == 1 and report.nothing_loaded() is None
    assert con.execute("SELECT path FROM ingest_files").fetchall() == [(requests.path,)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_a_user_error(tmp_path):
    p = tmp_path / "requests.jsonl"
    p.write_text(req(1) + "\n")
    p.chmod(0)
    with pytest.raises(UserError, match="requests.jsonl: cannot read"):
        ingest_paths(connect(None), [tmp_path])


def _cli(tmp_path, *paths, capsys):
    code = main(["ingest", *map(str, paths), "--db", str(tmp_path / "cli.duckdb")])
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_files_in_a_folder_are_listed_as_skipped(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "requests.jsonl").write_text(req(1) + "\n")
    (data / "target.json").write_text('{"target": {"rps": [1, 2, 3]}, "owner": "sre"}\n')
    (data / "README.txt").write_text("what these files are\n")
    (data / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, out, err = _cli(tmp_path, data, capsys=capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert f"{data / 'target.json'}: skipped: unknown format (JSON without" in out
    assert f"{data / 'plot.png'}: skipped: unknown format (binary content)" in lines
    assert f"{data / 'README.txt'}: skipped: documentation (README or Markdown), not data" in lines
    assert lines[-2] == "total: 4 files (0 already loaded, 3 skipped): read 1, loaded 1, rejected 0"
    code, out, err = _cli(tmp_path, data, capsys=capsys)  # nothing new: not a failure
    assert code == 0 and err == "" and "already loaded" in out


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no data files under "),
        ({"target.json": '{"a": 1}\n', "notes.txt": "hello\n"},
         "nothing loaded from 2 files: "),
        ({"requests.jsonl": "".join(f"garbage {i}\n" for i in range(95))},
         "nothing loaded from 1 file: "),
    ],
    ids=["empty folder", "only unknown files", "only garbage"],
)
def test_a_run_that_loads_nothing_exits_non_zero_with_one_line(tmp_path, capsys, files, message):
    data = tmp_path / "data"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    code, _, err = _cli(tmp_path, data, capsys=capsys)
    assert code == 2
    last = err.splitlines()[-1]
    assert last.startswith(f"postmortem: {message}") and "expected a request log" in last
    assert "Traceback" not in err


def test_a_file_of_pure_garbage_is_a_warning_even_when_others_load(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "requests-good.jsonl").write_text(req(1) + "\n")
    (data / "requests-junk.jsonl").write_text("".join(f"garbage {i}\n" for i in range(95)))
    code, out, err = _cli(tmp_path, data, capsys=capsys)
    assert code == 0
    assert "read 95, loaded 0, rejected 95" in out
    assert err == (f"postmortem: warning: {data / 'requests-junk.jsonl'}: loaded none of its"
                   " 95 lines (every one rejected; see the rejects table for why)\n")
