"""``postmortem pull loki`` against recorded ``query_range`` responses.

Loki itself is not available here, so a fake Loki serves a generated incident's
log lines in the documented response format
(``{"status":"success","data":{"resultType":"streams","result":[{"stream":{...},
"values":[["<ns>","<line>"],...]}]}}``), with Loki's paging rules: ``start``
inclusive, ``end`` exclusive, the ``limit`` oldest entries first
(``direction=forward``), identical (stream, time, line) entries kept once.
"""

from __future__ import annotations

import bisect
import datetime as dt
import gzip
import json
import re
from pathlib import Path

import httpx
import pytest
import zstandard
from http_fixture import LocalServer
from hypothesis import given
from hypothesis import strategies as st

from analysis.cli import main
from analysis.errors import UserError
from analysis.ingest import ingest_paths
from analysis.ingest.fields import TIME_ALIASES
from analysis.pull import LokiPull, Retry, Window, pull_loki
from analysis.pull.common import parse_time_ms
from analysis.pull.loki import entry_record
from analysis.simulate import simulate
from analysis.store import connect

NS = 1_000_000_000
Entry = tuple[int, str, str]  # (ns, stream labels as canonical JSON, line)


class FakeLoki:
    """``/loki/api/v1/query_range`` over entries held in memory."""

    def __init__(self, entries: list[tuple[int, dict[str, str], str]],
                 fail: list[tuple[int, str]] | None = None) -> None:
        unique = {(ns, json.dumps(lab, sort_keys=True), line) for ns, lab, line in entries}
        self.entries: list[Entry] = sorted(unique)
        self.times = [e[0] for e in self.entries]
        self.fail = fail or []
        self.pages = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/loki/api/v1/query_range"
        if self.fail:
            status, text = self.fail.pop(0)
            return httpx.Response(status, text=text)
        p = request.url.params
        assert p["direction"] == "forward"
        start, end, limit = int(p["start"]), int(p["end"]), int(p["limit"])
        lo, hi = bisect.bisect_left(self.times, start), bisect.bisect_left(self.times, end)
        page = self.entries[lo:hi][:limit]
        self.pages += 1
        streams: dict[str, list] = {}
        for ns, lab, line in page:
            streams.setdefault(lab, []).append([str(ns), line])
        result = [{"stream": json.loads(lab), "values": values}
                  for lab, values in streams.items()]
        return httpx.Response(200, json={"status": "success", "data": {
            "resultType": "streams", "result": result, "stats": {}}})


def _req(start: str, end: str, **kw) -> LokiPull:
    kw.setdefault("retry", Retry(attempts=2, sleep=lambda s: None))
    return LokiPull("http://loki.test:3100", '{app="dataplane"}',
                    Window(parse_time_ms(start, "s"), parse_time_ms(end, "e")), **kw)


def _read_lines(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    elif path.suffix == ".zst":
        raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
    return raw.split(b"\n")


_TIME = re.compile(r'"time":"([^"]+)"|^time=(\S+)|^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)')


def _second_ns(line: str) -> int:
    """The line's own time cut to the second, as a shipper with second resolution would
    stamp it: many entries share a timestamp, so pages end inside a tie."""
    m = _TIME.search(line)
    text = next(g for g in m.groups() if g).replace("/", "-")
    t = dt.datetime.fromisoformat(text)
    t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * NS


def test_pulled_logs_load_as_the_original_lines_do(tmp_path):
    sim = tmp_path / "incident"
    simulate("april-2026", sim, seed=1, scale=0.05)
    logs = sorted((sim / "logs").iterdir())
    con = connect(None)
    ingest_paths(con, [sim / "logs"])  # with the incident.toml above it
    rejected = set(con.execute("SELECT path, line FROM rejects").fetchall())
    entries = []  # what a shipper would have sent Loki: the lines ingest reads
    for path in logs:
        host = path.name.split(".")[0].removeprefix("dataplane-")
        labels = {"app": "dataplane", "host": host, "équipe": "données 🚀"}
        entries += [(_second_ns(line.decode()), labels, line.decode())
                    for i, line in enumerate(_read_lines(path), 1)
                    if line and (str(path), i) not in rejected]
    fake = FakeLoki(entries)
    start, end = "2026-04-06T12:50:00Z", "2026-04-06T13:10:00Z"
    m = pull_loki(_req(start, end, limit=200), tmp_path / "pulled", httpx.MockTransport(fake))

    lo, hi = parse_time_ms(start, "s") * 10**6, parse_time_ms(end, "e") * 10**6
    in_window = [e for e in fake.entries if lo <= e[0] < hi]
    assert len(in_window) > 2000 and fake.pages == len(m.chunks) > 10
    assert not m.failed and sum(c.samples for c in m.chunks) == len(in_window)
    lines = (tmp_path / "pulled" / "errors-loki.jsonl").read_text().splitlines()
    assert len(lines) == len(in_window)
    records = [json.loads(x) for x in lines]
    assert all(r["app"] == "dataplane" and r["équipe"] == "données 🚀" for r in records)
    own = [r for r in records if "label_host" in r]  # the line's own field outranks the label
    assert own and all(r["host"] == r["label_host"] for r in own)

    pulled = connect(None)
    report = ingest_paths(pulled, [tmp_path / "pulled"])
    assert [(f.format, f.lines_read, f.rejected) for f in report.files] == [
        ("errors/jsonl", len(in_window), 0)]
    cols = ("time, level, msg, host, error, op, local_addr, remote_addr, errno_class, cache,"
            " sample_rate")
    # Go log text (dp-6, no host in its lines) has no fields to split: its lines arrive
    # whole in msg, with the stream's host label
    got = pulled.execute(f"SELECT {cols} FROM log_events WHERE host <> 'dp-6' ORDER BY ALL"
                         ).fetchall()
    # Loki's time is the line's cut to the second: the window is on that
    want = con.execute(
        f"SELECT {cols} FROM log_events WHERE host IS NOT NULL AND date_trunc('second', time)"
        f" >= '{start[:-1]}'::TIMESTAMP AND date_trunc('second', time) < '{end[:-1]}'::TIMESTAMP"
        " ORDER BY ALL").fetchall()
    assert len(got) > 1000 and got == want
    text_lines = pulled.execute("SELECT count(*) FROM log_events WHERE host = 'dp-6'"
                                " AND msg LIKE '2026/04/06 %'").fetchall()[0][0]
    assert text_lines == sum(e[1].count('"dp-6"') for e in in_window)


def test_a_tie_across_a_page_boundary_is_neither_lost_nor_doubled(tmp_path):
    t = parse_time_ms("2026-04-06T13:00:00Z", "t") * 10**6
    a, b = {"host": "dp-1"}, {"host": "dp-2"}
    entries = [(t - 2, a, "first"), (t - 1, a, "before")]
    entries += [(t, a, f'{{"msg":"tie {i}","level":"error"}}') for i in range(2)]
    entries += [(t, b, '{"msg":"tie 0","level":"error"}'), (t + 1, b, "after"),
                (t + 1, a, "after")]
    fake = FakeLoki(entries)
    # page 1 ends inside the tie at t (3 entries, fewer than the limit of 4)
    m = pull_loki(_req("2026-04-06T12:00:00Z", "2026-04-06T14:00:00Z", limit=4),
                  tmp_path / "o", httpx.MockTransport(fake))
    got = [json.loads(x) for x in (tmp_path / "o" / "errors-loki.jsonl").read_text().splitlines()]
    assert sorted((r["time"], r["host"], r["msg"]) for r in got) == sorted(
        (r["time"], r["host"], r["msg"]) for r in
        (entry_record(json.loads(lab), ns, line) for ns, lab, line in fake.entries))
    assert len(got) == 7 and not m.failed and len(m.chunks) == fake.pages == 3


def test_a_page_of_one_nanosecond_is_an_error_not_a_gap(tmp_path):
    t = parse_time_ms("2026-04-06T13:00:00Z", "t") * 10**6
    fake = FakeLoki([(t, {"host": "h"}, f"line {i}") for i in range(5)])
    m = pull_loki(_req("2026-04-06T12:00:00Z", "2026-04-06T14:00:00Z", limit=3),
                  tmp_path / "o", httpx.MockTransport(fake))
    assert [c.status for c in m.chunks] == ["ok", "failed"]
    assert "3 or more entries share the time 2026-04-06T13:00:00.000000000Z" in m.chunks[1].error
    with pytest.raises(UserError, match="larger --limit"):
        m.check(tmp_path / "o")


@pytest.mark.parametrize("line,fields", [
    ('{"msg":"x","level":"warn"}', {"msg": "x", "level": "warn"}),
    ('time=2026-04-06T13:00:00Z level=error msg="a \\"b\\" c" error=EOF',
     {"time": "2026-04-06T13:00:00Z", "level": "error", "msg": 'a "b" c', "error": "EOF"}),
    ("plain text: with no pairs", {"msg": "plain text: with no pairs"}),
    ("[1, 2]", {"msg": "[1, 2]"}),
])
def test_each_line_becomes_one_object_with_labels_and_a_time(line, fields):
    rec = entry_record({"app": "ü", "msg": "label"}, 5 * NS + 7, line)
    expected = {**fields, "app": "ü", "label_msg": "label"}
    expected.setdefault("time", "1970-01-01T00:00:05.000000007Z")
    assert rec == expected


def test_cli_a_page_failing_after_retries_exits_non_zero_naming_the_range(tmp_path, capsys):
    t = parse_time_ms("2026-04-06T13:00:00Z", "t") * 10**6
    fake = FakeLoki([(t + i * NS, {"host": "h"}, f"line {i}") for i in range(10)],
                    fail=[(503, "too busy")] * 2)
    with LocalServer(fake) as srv:
        code = main(["pull", "loki", "--url", srv.url, "--query", '{host="h"}',
                     "--start", "2026-04-06T12:00:00Z", "--end", "2026-04-06T14:00:00Z",
                     "--retries", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "'{host=\"h\"}' 2026-04-06T12:00:00.000000000Z..2026-04-06T14:00:00.000000000Z" in err
    assert "HTTP 503" in err and "after 2 tries" in err
    doc = json.loads((tmp_path / "o" / "pull-manifest.json").read_text())
    assert doc["failed"] == 1 and doc["chunks"][0]["attempts"] == 2


def test_cli_pulls_pages_through_a_server(tmp_path, capsys):
    t = parse_time_ms("2026-04-06T13:00:00Z", "t") * 10**6
    fake = FakeLoki([(t + i * NS, {"host": "h"}, f'{{"msg":"m{i}"}}') for i in range(10)])
    with LocalServer(fake) as srv:
        code = main(["pull", "loki", "--url", srv.url, "--query", '{host="h"}', "--limit", "4",
                     "--start", "2026-04-06T12:00:00Z", "--end", "2026-04-06T14:00:00Z",
                     "--out", str(tmp_path / "o")])
    assert code == 0 and fake.pages == 4  # 4 + 3 new + 3 new (+1 repeated each) + the last
    assert "10 entries" in capsys.readouterr().out


_key = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
               min_size=1, max_size=12).filter(lambda k: not set(k) & {"=", '"', "\\"})
_value = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
                 max_size=20)


def _logfmt_value(v: str) -> str:
    plain = v and not set(v) & {" ", "=", '"', "\\"} and v.strip() == v
    return v if plain else json.dumps(v, ensure_ascii=False)


@given(fields=st.dictionaries(_key, _value, min_size=1, max_size=5),
       labels=st.dictionaries(_key, _value, max_size=3))
def test_logfmt_pairs_and_labels_survive_as_fields(fields, labels):
    line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
    rec = entry_record(labels, 42, line)
    for k, v in fields.items():
        assert rec[k] == v
    own_time = set(fields) & set(TIME_ALIASES)
    for k, v in labels.items():
        clash = k in fields or k in TIME_ALIASES
        assert rec[f"label_{k}" if clash else k] == v
    assert own_time or rec["time"] == "1970-01-01T00:00:00.000000042Z"
