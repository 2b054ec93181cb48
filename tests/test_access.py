"""One writer, many readers: processes side by side on one store.

Each test starts real processes, as users do: a reader holding the store open
(a JupyterLab kernel, a notebook under ``report``) while ``chain`` runs or
``ingest`` writes, two ingests at once, a store file that is no DuckDB
database, a full disk (a tiny tmpfs in a private mount namespace). Every
refusal must be one line on stderr naming the store, exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from analysis.access import identity, open_reader, writer_lock
from analysis.errors import UserError
from analysis.ingest import ingest_paths
from analysis.paths import repo_root
from analysis.report.workspace import ensure_store, open_analysis
from analysis.rollups import build_rollups, rollups_current
from analysis.store import connect

SAMPLES = repo_root() / "data" / "samples"
CLI = "import sys; from analysis.cli import main; sys.exit(main(sys.argv[1:]))"
HOLD = """
import sys, duckdb
from analysis.report.workspace import open_analysis
con = duckdb.connect(sys.argv[1]) if sys.argv[2] == "write" else open_analysis(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # hold the store until the test says
print(con.execute("SELECT count(*) FROM ingest_files").fetchall()[0][0], flush=True)
"""


def pm(*args: object, **kw) -> subprocess.CompletedProcess:
    """``postmortem ARGS`` in a child process; its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True,
                          text=True, check=False, **kw)


@contextlib.contextmanager
def holding(db: Path, how: str = "read") -> Iterator[subprocess.Popen]:
    """Another process with ``db`` open (``read``: ``open_analysis``, as a notebook;
    ``write``: a read-write DuckDB connection, as an ingest under way) until the block
    ends; then it answers how many files its open store holds (``answer``)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db), how], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def answer(proc: subprocess.Popen) -> int:
    """Let a ``holding`` process go; the file count of the store it had open."""
    out, _ = proc.communicate("go\n", timeout=120)
    return int(out.strip())


def one_line(res: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def incident(tmp_path_factory) -> tuple[Path, Path]:
    """A small simulated april-2026 incident: its data directory and a store of it."""
    tmp = tmp_path_factory.mktemp("incident")
    data, db = tmp / "data", tmp / "base.duckdb"
    assert pm("simulate", "--scenario", "april-2026", "--scale", "0.05", "--seed", "3",
              "--out", data).returncode == 0
    res = pm("ingest", data, "--db", db)
    assert res.returncode == 0, res.stderr
    return data, db


@pytest.fixture
def store(incident, tmp_path) -> Path:
    """A private copy of the incident's store."""
    db = tmp_path / "s.duckdb"
    shutil.copyfile(incident[1], db)
    return db


def test_readers_run_side_by_side_with_a_reader_holding_the_store(store, tmp_path) -> None:
    """JupyterLab holds the store: chain, whatif, report and the notebooks' open path work."""
    with holding(store) as kernel:
        res = pm("chain", "--db", store, "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["culprit"]["caller"] == "feed-indexer"
        res = pm("whatif", "--db", store, "--concurrency-limit", "50")
        assert res.returncode == 0, res.stderr
        res = pm("report", "--db", store, "--out", tmp_path / "out", "--no-notebooks")
        assert res.returncode == 0, res.stderr
        assert "feed-indexer" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
        before = identity(store)
        con = open_analysis(ensure_store(store))
        assert con.execute("SELECT count(*) FROM signals").fetchall()[0][0] > 0
        con.close()
        assert identity(store) == before  # no reader changed the file
        assert answer(kernel) > 0


def test_ingest_stores_current_rollups_so_readers_build_none(store) -> None:
    con = open_reader(store)
    assert rollups_current(con)
    where = con.execute("SELECT database_name FROM duckdb_tables() WHERE table_name = 'signals'")
    assert where.fetchall() == [("store",)]
    con.close()


def test_a_store_without_request_rows_opens_for_notebooks_while_others_read(tmp_path) -> None:
    """On main, ``ensure_store`` wrote rollups into such a store: "Conflicting lock"."""
    db = tmp_path / "m.duckdb"
    assert pm("ingest", SAMPLES / "metrics", "--db", db).returncode == 0
    with holding(db) as other_notebook:
        before = identity(db)
        con = open_analysis(ensure_store(db))
        assert con.execute("SELECT count(*) FROM requests").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM signals").fetchall()[0][0] > 0
        con.close()
        assert identity(db) == before
        assert answer(other_notebook) > 0


def test_rollups_of_other_code_in_a_store_are_rebuilt_in_memory(tmp_path) -> None:
    """A store whose rollups no ingest of this code marked (an older version's) is not
    trusted: readers build their own in memory and leave the file alone."""
    db = tmp_path / "old.duckdb"
    con = connect(db)
    ingest_paths(con, [SAMPLES / "requests.jsonl", SAMPLES / "metrics"])
    build_rollups(con)  # no mark: as an older version left it
    con.close()
    before = identity(db)
    con = open_reader(db)
    assert not rollups_current(con)
    con.close()
    con = open_analysis(db)
    where = con.execute("SELECT database_name FROM duckdb_tables() WHERE table_name = 'signals'"
                        " ORDER BY 1").fetchall()
    assert where == [("memory",), ("store",)]  # the memory one shadows the store's
    assert rollups_current(con)
    con.close()
    assert identity(db) == before


def test_ingest_in_place_while_a_reader_holds_the_store_says_who(store, incident) -> None:
    with holding(store) as kernel:
        line = one_line(pm("ingest", SAMPLES / "events.csv", "--db", store))
        assert line == f"postmortem: store busy: PID {kernel.pid} is reading {store}"
        answer(kernel)


def test_ingest_wait_waits_for_the_readers(store) -> None:
    with holding(store) as kernel:
        proc = subprocess.Popen([sys.executable, "-c", CLI, "ingest", str(SAMPLES / "events.csv"),
                                 "--db", str(store), "--wait"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = proc.stderr.readline()
        assert f"PID {kernel.pid} is reading" in waiting and "waiting" in waiting
        files = answer(kernel)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "events.csv" in out
    con = open_reader(store)
    assert con.execute("SELECT count(*) FROM ingest_files").fetchall()[0][0] == files + 1
    con.close()


def test_ingest_replace_while_a_reader_holds_the_store(store, incident) -> None:
    """The new store is renamed into place: the reader keeps its snapshot, the next
    open sees the new one; nothing waits."""
    data, _ = incident
    with holding(store) as kernel:
        res = pm("ingest", data / "events", "--db", store, "--replace")
        assert res.returncode == 0, res.stderr
        res = pm("chain", "--db", store, "--json")  # a reader of the new store
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["culprit"]["caller"] == "feed-indexer"
        old = answer(kernel)
    con = open_reader(store)
    new = con.execute("SELECT count(*) FROM ingest_files").fetchall()[0][0]
    con.close()
    assert old == new  # the events files were replaced, every other file kept
    assert not list(store.parent.glob(f".{store.name}.*.tmp"))


def test_readers_while_an_ingest_writes_say_store_busy(store) -> None:
    with holding(store, "write") as writer:
        for cmd in ("chain", "whatif"):
            line = one_line(pm(cmd, "--db", store))
            assert line == f"postmortem: store busy: PID {writer.pid} is writing {store}"
        answer(writer)


def test_a_second_writer_gets_the_busy_line_and_wait_gets_its_turn(store) -> None:
    with writer_lock(store):  # what an ingest holds while it writes
        line = one_line(pm("ingest", SAMPLES / "events.csv", "--db", store))
        assert line == f"postmortem: store busy: PID {os.getpid()} is writing {store}"
        proc = subprocess.Popen([sys.executable, "-c", CLI, "ingest", str(SAMPLES / "events.csv"),
                                 "--db", str(store), "--wait"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "is writing" in proc.stderr.readline()  # it waits, and says for whom
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "loaded" in out


def test_two_ingests_at_once_with_wait_both_load(tmp_path, incident) -> None:
    data, _ = incident
    db = tmp_path / "two.duckdb"
    procs = [subprocess.Popen([sys.executable, "-c", CLI, "ingest", str(d), "--db", str(db),
                               "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for d in (data / "requests", data / "metrics")]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    con = open_reader(db)
    n_files = con.execute("SELECT count(*) FROM ingest_files").fetchall()[0][0]
    assert n_files == sum(1 for d in ("requests", "metrics") for p in (data / d).rglob("*")
                          if p.is_file())
    assert rollups_current(con)
    con.close()


def _not_duckdb(kind: str, path: Path) -> Path:
    if kind == "text":
        path.write_text("time,value\n2026-04-06T14:00:00Z,1\n")
    else:
        duckdb.connect().execute(f"COPY (SELECT 1 AS x) TO '{path}' (FORMAT parquet)")
    return path


@pytest.mark.parametrize("kind", ["text", "parquet"])
@pytest.mark.parametrize("cmd", ["ingest", "chain", "whatif", "report"])
def test_a_file_that_is_no_duckdb_database_is_one_line(tmp_path, kind, cmd) -> None:
    db = _not_duckdb(kind, tmp_path / f"store.{kind}")
    before = db.read_bytes()
    args = {"ingest": [SAMPLES / "events.csv", "--db", db], "report": ["--db", db, "--out",
                                                                        tmp_path / "out"]}
    line = one_line(pm(cmd, *args.get(cmd, ["--db", db])))
    assert line.startswith(f"postmortem: {db}: not a DuckDB database"), line
    assert db.read_bytes() == before  # and it is left as it was
    with pytest.raises(UserError, match="not a DuckDB database"):
        open_analysis(ensure_store(db))


def _in_full_tmpfs(tmp_path: Path, script: str) -> list[dict]:
    """Run ``script`` (Python, given the mount point as argv[1]) with a 3 MB tmpfs mounted
    in a private mount namespace, which vanishes with it; the JSON list it prints."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot mount a tiny file system")
    full = tmp_path / "full"
    full.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(script)
    res = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c",
         'mount -t tmpfs -o size=3m tmpfs "$1" && exec "$2" "$3" "$1"', "sh", str(full),
         sys.executable, str(driver)], capture_output=True, text=True, check=False)
    if "mount" in res.stderr and res.returncode != 0 and not res.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()[:200]}")
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


DISK_FULL = """
import json, subprocess, sys
full, data, samples = sys.argv[1], {data!r}, {samples!r}
cli = {cli!r}
def pm(*a):
    r = subprocess.run([sys.executable, "-c", cli, *a], capture_output=True, text=True)
    return dict(rc=r.returncode, out=r.stdout, err=r.stderr)
db = full + "/s.duckdb"
steps = [pm("ingest", samples + "/events.csv", "--db", db)]
steps.append(pm("ingest", data, "--db", db, "--replace"))
steps.append(pm("ingest", data, "--db", db))
steps.append(pm("chain", "--db", db, "--json"))
steps.append(pm("report", "--db", {base!r}, "--out", full + "/out", "--no-notebooks"))
print(json.dumps(steps))
"""


def test_a_full_disk_is_one_line_and_the_store_survives(tmp_path, incident) -> None:
    data, base = incident
    small, replace, in_place, chain, report = _in_full_tmpfs(tmp_path, DISK_FULL.format(
        data=str(data), samples=str(SAMPLES), cli=CLI, base=str(base)))
    assert small["rc"] == 0, small["err"]
    for step in (replace, in_place):
        lines = step["err"].strip().splitlines()
        assert step["rc"] == 2 and len(lines) == 1, step["err"][-3000:]
        assert "disk full" in lines[0] and "/full/s.duckdb" in lines[0], lines[0]
    assert chain["rc"] == 0, chain["err"]  # the store still opens: the small ingest is intact
    lines = report["err"].strip().splitlines()
    assert report["rc"] == 2 and len(lines) == 1, report["err"][-3000:]
    assert "disk full" in lines[0] and "/full/out" in lines[0], lines[0]
