"""The committed samples (data/samples: every format, a manifest) load with no rejects."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.ingest import ingest_paths
from analysis.store import connect

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
EVERY_FORMAT = {
    "requests/jsonl", "requests/csv", "requests/parquet",
    "errors/jsonl", "errors/logfmt", "errors/gotext",
    "metrics/prometheus", "metrics/csv-long", "metrics/csv-wide",
    "events/csv", "events/yaml",
}


@pytest.fixture(scope="module")
def loaded():
    con = connect(None)
    report = ingest_paths(con, [SAMPLES])
    yield report, con
    con.close()


def test_every_format_loads_without_a_reject(loaded):
    report, con = loaded
    assert {f.format for f in report.files} == EVERY_FORMAT
    assert report.rejected == 0, [f.line() for f in report.files if f.rejected]
    assert con.execute("SELECT count(*) FROM rejects").fetchall()[0][0] == 0
    assert report.loaded == report.lines_read > 30


def test_compressed_samples_read_like_plain_ones(loaded):
    report, _ = loaded
    names = {Path(f.path).name: f for f in report.files}
    assert names["requests-gz.jsonl.gz"].loaded == names["requests.jsonl"].loaded == 3
    assert names["prometheus-zst.json.zst"].loaded == names["prometheus.json"].loaded == 5


def test_manifest_tells_kinds_renames_and_facts(loaded):
    report, con = loaded
    by_manifest = {Path(f.path).name for f in report.files if f.detected_by == "manifest"}
    assert by_manifest == {"dp-7.txt", "calls.tsv.csv"}
    assert con.execute("SELECT caller, uris FROM requests WHERE uris = 19999").fetchall() == [
        ("feed-indexer", 19999)]
    facts = dict(con.execute("SELECT key, value FROM incident").fetchall())
    assert facts["name"] == "april-2026-samples"
    assert facts["window_start"] == "2026-04-06 12:00:00"
    assert (facts["ephemeral_port_range"], facts["time_wait_s"], facts["idle_pool"]) == (
        "32768-60999", "60", "1000")


def test_aliases_land_in_canonical_columns(loaded):
    _, con = loaded
    rows = dict(con.execute(
        "SELECT caller, (time, uris, duration_ms) FROM requests"
        " WHERE host IN ('dp-4', 'dp-5', 'dp-6')").fetchall())
    assert rows["feed-indexer"][1:] == (18000, 1200.0)  # batch_size, duration "1.2s"
    assert str(rows["feed-indexer"][0]) == "2026-04-06 14:02:03"  # 16:02:03+02:00
    assert rows["search"][1:] == (7, 4.5)  # n_uris as text, latency_ms
    assert rows["feed-gen"][1:] == (30, 350.0)  # items, slog nanoseconds


def test_error_lines_are_parsed(loaded):
    _, con = loaded
    rows = con.execute(
        "SELECT errno_class, op, local_addr, remote_addr, cache FROM log_events"
        " WHERE errno_class IS NOT NULL ORDER BY errno_class").fetchall()
    classes = {r[0] for r in rows}
    assert {"EADDRINUSE", "EADDRNOTAVAIL", "ETIMEDOUT", "ECONNRESET", "EOF", "EMFILE"} <= classes
    assert ("EADDRINUSE", "bind", "127.32.0.1:0", "127.0.0.1:11211", "interaction counts") in rows
    levels = dict(con.execute(
        "SELECT level, count(*) FROM log_events WHERE errno_class IS NULL GROUP BY 1").fetchall())
    assert levels == {"warn": 1, "info": 1}


def test_metrics_keep_names_labels_and_nan(loaded):
    _, con = loaded
    rows = con.execute("SELECT metric, labels, value FROM metrics").fetchall()
    names = {r[0] for r in rows}
    assert {"node_sockstat_TCP_tw", "go_threads", "memcached_current_connections",
            "appview_requests_per_second", "go_goroutines"} <= names
    assert ("go_goroutines", '{"instance":"dp-3:9100"}', 2000.0) in rows
    assert any(math.isnan(r[2]) for r in rows if r[0] == "node_sockstat_TCP_tw")
    assert ("kube_pod_container_status_restarts_total", "{}", 3.0) in rows


def test_cli_prints_per_file_and_total_then_is_a_no_op(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    assert main(["ingest", str(SAMPLES), "--db", str(db)]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    # 16 format samples + the 4 files of the lab capture in lab-naive/ (tests/test_lab.py)
    assert len(lines) == 23 and lines[-3].startswith("total: 20 files")
    assert lines[-2].startswith("rollups: stored")  # readers find them ready
    # the lab capture's rows lie outside the samples' manifest window: counted, visibly
    assert lines[-1].startswith("outside the window: 12,040 rows outside the window")
    assert "read 3, loaded 3, rejected 0" in out.out
    assert out.err == ""  # not a terminal: no progress
    assert main(["ingest", str(SAMPLES / "requests.jsonl"), "--db", str(db)]) == 0
    assert "already loaded" in capsys.readouterr().out
    assert main(["ingest", str(SAMPLES / "requests.jsonl"), "--db", str(db), "--replace"]) == 0
    assert "loaded 3" in capsys.readouterr().out
    con = connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM requests WHERE host = 'dp-3' AND uris = 17342"
                       ).fetchall()[0][0] == 2  # requests.jsonl once, its gz sibling once


def _tables(con):
    return {t: sorted(map(repr, con.execute(
        f"SELECT * EXCLUDE (file_id) FROM {t}").fetchall()))
        for t in ("requests", "log_events", "metrics", "events", "rejects")}


def test_fast_path_and_line_path_load_the_same_rows(monkeypatch, tmp_path):
    """DuckDB's own readers (JSON lines, CSV) are an optimisation; a file with a few
    rejects stays on them, only its bad lines read again line by line (which keeps
    their text). Either way the rows, line numbers and rejects are the same."""
    bad = tmp_path / "requests-mixed.jsonl"
    bad.write_text('{"time":"2026-04-06T14:02:03Z","uris":"many"}\n'
                   '{"time":"2026-04-06T14:02:04Z","caller":"a","uris":4}\n')
    fast = connect(None)
    report = ingest_paths(fast, [SAMPLES, bad])
    fell_back = {Path(f.path).name for f in report.files if "line by line" in f.note}
    assert fell_back == set()  # a wrong-typed value does not send the file line by line
    import analysis.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "line_stats", lambda *_: None)
    slow = connect(None)
    ingest_paths(slow, [SAMPLES, bad])
    assert _tables(fast) == _tables(slow)


def test_progress_stays_off_stderr_when_it_is_not_a_terminal(capsys):
    """A log or a pipe keeps no redraws: asked or not, the ingest draws nothing there
    (the line itself is specified in test_progress)."""
    for progress in (True, False):
        ingest_paths(connect(None), [SAMPLES / "requests.jsonl"], progress=progress)
        assert capsys.readouterr().err == ""


def test_rate_tool_measures_one_file_alone():
    from analysis.ingest.rate import measure

    r = measure(SAMPLES / "requests.parquet")
    assert (r.format, r.rows, r.rejected) == ("requests/parquet", 2, 0)
    assert r.wall_s > 0 and "rows/s" in r.line()
