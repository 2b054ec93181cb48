"""The cache of expensive results: hit for the same store and code, miss otherwise."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb

from analysis.report.cache import cached, store_path
from analysis.report.workspace import open_analysis
from analysis.store import connect


def _counter():
    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    return calls, compute


def test_same_store_same_params_computes_once(tmp_path) -> None:
    db = tmp_path / "s.duckdb"
    connect(db).close()
    calls, compute = _counter()
    con = open_analysis(db)
    assert store_path(con) == db
    assert cached(con, "x", {"a": 1}, compute) == {"n": 1}
    assert cached(con, "x", {"a": 1}, compute) == {"n": 1}
    assert cached(con, "x", {"a": 2}, compute) == {"n": 2}
    assert len(calls) == 2
    assert len(list((tmp_path / "s.duckdb.cache").glob("x-*.pickle"))) == 1  # old one pruned


def test_a_changed_store_computes_afresh(tmp_path) -> None:
    db = tmp_path / "s.duckdb"
    connect(db).close()
    calls, compute = _counter()
    cached(open_analysis(db), "x", {}, compute)
    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    cached(open_analysis(db), "x", {}, compute)
    assert len(calls) == 2


def test_memory_stores_are_never_cached() -> None:
    calls, compute = _counter()
    con = duckdb.connect(":memory:")
    cached(con, "x", {}, compute)
    cached(con, "x", {}, compute)
    assert len(calls) == 2


def test_a_result_being_computed_is_waited_for_not_computed_again(tmp_path) -> None:
    """The report's page and its notebooks ask for the chain at once: one computes it."""
    db = tmp_path / "s.duckdb"
    connect(db).close()
    started, release = threading.Event(), threading.Event()
    calls, compute = _counter()

    def slow():
        started.set()
        release.wait(timeout=60)
        return compute()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(cached, open_analysis(db), "x", {}, slow)
        assert started.wait(timeout=60)
        second = pool.submit(cached, open_analysis(db), "x", {}, compute)
        release.set()
        assert first.result() == second.result() == {"n": 1}
    assert len(calls) == 1


def test_a_reader_of_a_replaced_store_files_results_under_its_own_store(tmp_path) -> None:
    """``ingest --replace`` renames a new store into place while a notebook still reads the
    old one: what the old reader computes must not be served to readers of the new one."""
    db, new = tmp_path / "s.duckdb", tmp_path / "new.duckdb"
    connect(db).close()
    old_reader = open_analysis(db)
    connect(new).close()
    os.replace(new, db)  # as ingest --replace does
    assert cached(old_reader, "x", {}, lambda: "from the old store") == "from the old store"
    assert cached(open_analysis(db), "x", {}, lambda: "from the new store") == "from the new store"


def test_one_fingerprint_covers_every_source_of_the_package(tmp_path) -> None:
    """A change to a sub-package's module, a query or the page template is a change of
    the analysis: the cache key and the stored rollups' mark both move; data do not."""
    import shutil

    from analysis import fingerprint, paths, rollups

    pkg = tmp_path / "analysis"
    shutil.copytree(paths.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    base = fingerprint.source_fingerprint(pkg)
    seen = {base}
    for rel in ("report/template.html.j2", "report/cache.py", "ingest/__init__.py"):
        (pkg / rel).write_text((pkg / rel).read_text() + "\n# changed\n")
        seen.add(fingerprint.source_fingerprint(pkg))
    (pkg / "ingest" / "extra.sql").write_text("SELECT 1")
    seen.add(fingerprint.source_fingerprint(pkg))
    assert len(seen) == 5
    before = fingerprint.source_fingerprint(pkg)
    (pkg / "notes.csv").write_text("a,b\n")  # not code
    assert fingerprint.source_fingerprint(pkg) == before
    assert rollups.rollups_fingerprint().endswith(fingerprint.source_fingerprint()[:16])
