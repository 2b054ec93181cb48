"""A store that does not copy what it can read in place (``analysis.parts``).

On disk, JSON lines and CSV read by DuckDB's own readers become Parquet parts beside
the store (``<db>.parts/``), a Parquet export is read where it lies, and the canonical
tables are views over them and the rows DuckDB stores (the line path's). The store
must hold exactly what an in-memory store (every row inside DuckDB) holds: the same
rows with the same line numbers, the same rejects, the same accounting -- opened from
any directory, moved with its parts, read while nothing writes, and left as it was by
a ``--replace`` that fails.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analysis.write as write_module
from analysis.access import identity, open_reader
from analysis.errors import UserError
from analysis.ingest import ingest_paths
from analysis.parts import PARTS_TABLE, parts_root
from analysis.store import connect
from analysis.write import write_store

GOOD_JSON = ('{{"time":"2026-04-06T14:{m:02d}:{s:02d}.5Z","method":"GetPostRecord",'
             '"caller":"c{c}","uris":{u},"status":"ok","duration_ms":{d}.5,"host":"dp-1",'
             '"dc":"us-east"}}')
GOOD_CSV = "2026-04-06T14:{m:02d}:{s:02d}.5Z,GetPostRecord,c{c},{u},ok,{d}.5,dp-1,us-east"
CSV_HEADER = "time,method,caller,uris,status,duration_ms,host,dc"
BAD = {
    "json": [b"\xff\xfe garbage \xc3\x28", b'{"time":"2026-04-06T14:02:03Z","method":"Get',
             b'{"time":"2026-13-45T99:99:99Z","caller":"x"}', b'{"time":"2026-04-06T14:02:03Z",'
             b'"uris":"many"}', b"[1, 2, 3]", b"", b"  \t", b'{"caller":"no time"}'],
    "csv": [b"\xff\xfe\x00junk,\xc3\x28", b"not-a-time,GetPostRecord,c1,3,ok,1.5,dp-1,us-east",
            b"2026-04-06T14:02:03Z,GetPostRecord",
            b"2026-04-06T14:02:03Z,GetPostRecord,c1,-4,ok,1.5,dp-1,us-east"],
}
SETTINGS = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
TABLES = ("requests", "log_events", "metrics", "events")
_CASES = itertools.count()


def _good(fmt: str, i: int) -> bytes:
    template = GOOD_JSON if fmt == "json" else GOOD_CSV
    return template.format(m=i // 60 % 60, s=i % 60, c=i % 7, u=i % 50, d=i % 90).encode()


def _write(path: Path, fmt: str, n: int, bad_at: dict[int, bytes]) -> Path:
    lines = [CSV_HEADER.encode()] if fmt == "csv" else []
    lines += [bad_at.get(i, _good(fmt, i)) for i in range(n)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _parquet(path: Path, n: int, bad: list[int]) -> Path:
    """A Parquet request log; rows ``bad`` have a time that does not parse or negative URIs."""
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT CASE WHEN list_contains({bad}, i) AND i % 2 = 0 THEN 'never'"
        f" ELSE strftime(TIMESTAMP '2026-04-06 14:00:00' + to_seconds(i), '%Y-%m-%dT%H:%M:%SZ')"
        f" END AS time, 'GetFeed' AS method, 'c' || (i % 5) AS caller,"
        f" CASE WHEN list_contains({bad}, i) AND i % 2 = 1 THEN -3 ELSE i % 40 END AS uris,"
        f" 'ok' AS status, 1.5 AS duration_ms, 'dp-1' AS host, 'us-east' AS dc"
        f" FROM range({n}) t(i)) TO '{path}' (FORMAT parquet)")
    con.close()
    return path


def _contents(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Everything a store holds that ingest decides, in a comparable order."""
    out = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
           for t in TABLES}
    out["rejects"] = con.execute(
        "SELECT file_id, line, reason FROM rejects ORDER BY file_id, line").fetchall()
    out["files"] = con.execute(
        "SELECT path, format, lines_read, loaded, rejected FROM ingest_files ORDER BY file_id"
    ).fetchall()
    return out


def _in_memory(paths: list[Path]) -> dict[str, list]:
    con = connect(None)
    ingest_paths(con, paths)
    try:
        return _contents(con)
    finally:
        con.close()


@pytest.fixture
def exports(tmp_path) -> list[Path]:
    """A JSON-lines, a CSV and a Parquet request log, each with a few bad rows."""
    d = tmp_path / "exports"
    d.mkdir()
    return [_write(d / "requests.jsonl", "json", 400, {5: BAD["json"][1], 77: BAD["json"][3],
                                                       200: b"", 399: BAD["json"][2]}),
            _write(d / "requests.csv", "csv", 300, {0: BAD["csv"][1], 150: BAD["csv"][3]}),
            _parquet(d / "requests.parquet", 250, [3, 10, 11, 249])]


def test_the_store_on_disk_holds_what_an_in_memory_store_holds(tmp_path, exports) -> None:
    db = tmp_path / "s.duckdb"
    write_store(db, exports)
    con = open_reader(db)
    assert _contents(con) == _in_memory(exports)
    files = con.execute("SELECT path, lines_read, loaded, rejected FROM ingest_files").fetchall()
    assert all(read == loaded + rejected for _, read, loaded, rejected in files)
    assert [f[1] for f in files] == [400, 300, 250]
    con.close()


def test_rows_read_by_duckdbs_readers_are_not_copied_into_the_store(tmp_path, exports) -> None:
    """The JSON lines' and CSV's good rows live in Parquet beside the store, the Parquet
    export's where it lies; DuckDB stores only the few lines the line path loaded."""
    db = tmp_path / "s.duckdb"
    write_store(db, exports)
    con = open_reader(db)
    parts = con.execute(f"SELECT file_id, path, rel FROM {PARTS_TABLE} ORDER BY file_id"
                        ).fetchall()
    assert [p[0] for p in parts] == [1, 2, 3]
    root = parts_root(db)
    for _, path, rel in parts[:2]:
        assert (root / rel).is_file() and Path(path) == root / rel
    assert parts[2][1] == str(exports[2].resolve()) and parts[2][2] is None
    stored = con.execute("SELECT count(*) FROM store.stored.requests").fetchall()[0][0]
    loaded = con.execute("SELECT sum(loaded) FROM ingest_files").fetchall()[0][0]
    in_parts = con.execute("SELECT count(*) FROM requests").fetchall()[0][0] - stored
    assert loaded == stored + in_parts and stored < 5 and in_parts > 900
    con.close()


def test_rejected_parquet_rows_are_filtered_by_number(tmp_path) -> None:
    """Every row of the export is loaded or rejected, never both, never neither."""
    export = _parquet(tmp_path / "requests.parquet", 100, [0, 7, 42, 99])
    db = tmp_path / "s.duckdb"
    write_store(db, [export])
    con = open_reader(db)
    kept = {r[0] for r in con.execute("SELECT line FROM requests").fetchall()}
    rejected = {r[0] for r in con.execute("SELECT line FROM rejects").fetchall()}
    assert rejected == {1, 8, 43, 100} and not kept & rejected and kept | rejected == set(
        range(1, 101))
    assert con.execute("SELECT min(uris) FROM requests").fetchall()[0][0] >= 0
    con.close()


@SETTINGS
@given(fmt=st.sampled_from(["json", "csv"]), n=st.integers(1, 120),
       bad=st.lists(st.tuples(st.integers(0, 119), st.integers(0, 7)), max_size=6))
def test_parts_account_for_every_line_as_the_in_memory_store_does(tmp_path, fmt, n,
                                                                  bad) -> None:
    d = tmp_path / f"case-{next(_CASES)}"
    d.mkdir()
    choices = BAD[fmt]
    path = _write(d / f"requests.{'jsonl' if fmt == 'json' else 'csv'}", fmt, n,
                  {i: choices[k % len(choices)] for i, k in bad if i < n})
    db = d / "s.duckdb"
    con = connect(db)
    ingest_paths(con, [path])
    con.close()
    reader = open_reader(db)
    try:
        assert _contents(reader) == _in_memory([path])
    finally:
        reader.close()


def test_a_store_opened_from_another_directory_or_moved_with_its_parts_reads_the_same(
        tmp_path, exports, monkeypatch) -> None:
    here = tmp_path / "a"
    here.mkdir()
    monkeypatch.chdir(here)
    write_store(Path("s.duckdb"), [Path(os.path.relpath(p, here)) for p in exports])
    con = open_reader(here / "s.duckdb")
    want = _contents(con)
    con.close()
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    con = open_reader(Path("..") / "a" / "s.duckdb")
    assert _contents(con) == want
    con.close()
    moved = tmp_path / "c"
    moved.mkdir()
    (here / "s.duckdb").rename(moved / "s.duckdb")
    (here / "s.duckdb.parts").rename(moved / "s.duckdb.parts")
    con = open_reader(moved / "s.duckdb")
    assert _contents(con) == want
    con.close()
    # the store file copied alone reads its original's parts, where they were written
    (moved / "s.duckdb.parts").rename(here / "s.duckdb.parts")
    con = open_reader(moved / "s.duckdb")
    assert _contents(con) == want
    con.close()


def test_a_store_whose_parts_are_gone_says_so_in_one_line(tmp_path, exports) -> None:
    db = tmp_path / "s.duckdb"
    write_store(db, exports[:1])
    shutil.rmtree(parts_root(db))
    with pytest.raises(UserError, match=r"s\.duckdb: the store reads .*which is gone"):
        open_reader(db)


def test_readers_change_nothing(tmp_path, exports) -> None:
    db = tmp_path / "s.duckdb"
    write_store(db, exports)
    root = parts_root(db)
    before = identity(db), sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    readers = [open_reader(db) for _ in range(3)]
    counts = {r.execute("SELECT count(*) FROM requests").fetchall()[0][0] for r in readers}
    for r in readers:
        r.close()
    assert len(counts) == 1
    assert (identity(db), sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))) == before


def test_a_failed_replace_leaves_the_old_store_and_its_parts(tmp_path, exports,
                                                             monkeypatch) -> None:
    db = tmp_path / "s.duckdb"
    write_store(db, exports[:2])
    root = parts_root(db)
    files_before = sorted(root.rglob("*"))
    con = open_reader(db)
    want = _contents(con)
    con.close()

    def boom(*args, **kwargs):
        raise UserError("rollups failed on purpose")

    monkeypatch.setattr(write_module, "store_rollups", boom)
    with pytest.raises(UserError, match="on purpose"):
        write_store(db, exports, replace=True)  # it wrote parts before failing
    assert sorted(root.rglob("*")) == files_before
    con = open_reader(db)
    assert _contents(con) == want
    con.close()


def test_replace_keeps_the_parts_of_the_store_it_replaced_and_no_older(tmp_path,
                                                                      exports) -> None:
    """A reader of the store just replaced still reads it; older parts are deleted."""
    db = tmp_path / "s.duckdb"
    write_store(db, exports[:1])
    first = open_reader(db)
    write_store(db, exports[:1], replace=True)
    n = first.execute("SELECT count(*) FROM requests").fetchall()[0][0]
    assert n == first.execute("SELECT sum(loaded) FROM ingest_files").fetchall()[0][0] == 396
    first.close()
    write_store(db, exports[:1], replace=True)
    runs = sorted(p.name for p in parts_root(db).iterdir())
    assert len(runs) == 2
    con = open_reader(db)
    assert con.execute("SELECT count(*) FROM requests").fetchall()[0][0] == n
    con.close()


def test_a_data_directory_holding_a_store_does_not_ingest_its_parts(tmp_path, exports) -> None:
    db = exports[0].parent / "s.duckdb"
    write_store(db, exports)
    again = write_store(db, [exports[0].parent], replace=True)
    assert sorted(Path(f.path).name for f in again.ingest.files) == [
        "requests.csv", "requests.jsonl", "requests.parquet"]


def test_a_store_that_already_holds_rows_in_duckdb_keeps_loading_into_duckdb(tmp_path,
                                                                               exports) -> None:
    """A store made before parts existed (rows in its own tables) is not converted."""
    db = tmp_path / "old.duckdb"
    con = connect(db)
    con.execute("INSERT INTO requests (time, caller, uris, file_id, line)"
                " VALUES (TIMESTAMP '2026-04-06 14:00:00', 'old', 1, 99, 1)")
    ingest_paths(con, exports[:1])
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables"
                             " WHERE table_schema = 'main'").fetchall())
    con.close()
    assert kinds["requests"] == "BASE TABLE" and PARTS_TABLE not in kinds
    assert not parts_root(db).exists()
    reader = open_reader(db)
    assert _contents(reader)["requests"][1:] == _in_memory(exports[:1])["requests"]
    reader.close()


def test_a_parquet_export_changed_since_ingest_is_refused_not_misread(tmp_path) -> None:
    """Its rejects are by row number: read again, another file's rows would be misnumbered."""
    export = _parquet(tmp_path / "requests.parquet", 50, [4])
    db = tmp_path / "s.duckdb"
    write_store(db, [export])
    open_reader(db).close()
    _parquet(export, 60, [])
    with pytest.raises(UserError, match=r"requests\.parquet in place, and it changed since"):
        open_reader(db)
    write_store(db, [export], replace=True)
    con = open_reader(db)
    assert con.execute("SELECT count(*) FROM requests").fetchall()[0][0] == 60
    con.close()
