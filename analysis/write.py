"""The store's one writer: ingest, then the derived tables the readers use.

``write_store`` is what ``postmortem ingest`` does. It holds the writer lock
(``analysis.access.writer_lock``) throughout, loads the files
(``analysis.ingest.ingest_paths``) and then stores the rollups
(``analysis.rollups``), marked as this code's, so that readers -- the CLI, the
notebooks, the report, all read-only -- find them ready instead of each
building them.

Two ways to write, because DuckDB lets no writer in while a reader holds the
file (``analysis.access``):

* ``replace``: the new store is written into a temporary file beside the old
  one (a copy of it when it holds files not given now, so that they stay;
  otherwise an empty one) and renamed over it at the end. Readers never
  block it: they keep the file they opened, and the next open sees the new
  one. A failure (bad input, a full disk) removes the temporary file and
  leaves the old store as it was.

The rows of JSON lines and CSV go to Parquet parts in ``<db>.parts/<run>/``
(``analysis.parts``), written by the run into a folder of its own: a failed run
deletes its folder; a run that succeeds deletes the parts no store names any
more, but keeps those of the store it replaced, which its readers may still read.
* otherwise in place, which needs the readers gone: "store busy: PID N is
  reading <db>", or with ``wait`` a wait until they close it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from analysis.access import check_store_file, open_writer, store_errors, writer_lock
from analysis.errors import UserError
from analysis.ingest import IngestReport, collect_files, ingest_paths
from analysis.parts import Parts, collect_garbage, parts_root, referenced, remove_run
from analysis.rollups import ROLLUP_TABLES, build_rollups, mark_rollups, rollups_current
from analysis.store import connect


@dataclass
class WriteResult:
    """What ``write_store`` did: each file's accounting and what became of the rollups."""

    ingest: IngestReport
    rollups: str
    """One line: the rollups stored (grid, span, signals), kept, or why not stored."""

    def summary(self) -> str:
        """The ingest's per-file lines and total, then the rollups line."""
        return f"{self.ingest.summary()}\n{self.rollups}"


def write_store(db: str | Path, paths: list[Path], *, replace: bool = False,
                wait: bool = False, progress: bool = False, start: datetime | None = None,
                end: datetime | None = None) -> WriteResult:
    """Load ``paths`` into the store at ``db`` and store its rollups (see the module doc).

    ``replace`` reloads files already loaded, in a copy renamed into place at
    the end; ``wait`` waits for another writer (or, in place, for readers)
    instead of failing with "store busy". ``start``/``end`` (``--start/--end``)
    record the incident window, outranking the manifest's, before the rollups.
    """
    db = Path(db)
    window = {"start": start, "end": end}
    parts = Parts(parts_root(db))
    with store_errors(db, "writing"), writer_lock(db, wait=wait):
        if replace:
            try:
                result, keep = _write_beside(db, paths, parts, progress=progress,
                                             window=window)
            except BaseException:
                remove_run(parts)  # the new store is gone: so are its parts
                raise
        else:
            # a failure in place keeps the files loaded before it, and their parts; what
            # the failed file wrote is deleted by the next write's collect_garbage
            result, keep = _write_in_place(db, paths, parts, wait=wait, progress=progress,
                                           window=window)
        collect_garbage(parts.root, keep)
        return result


def _write_in_place(db: Path, paths: list[Path], parts: Parts, *, wait: bool, progress: bool,
                    window: dict[str, datetime | None]) -> tuple[WriteResult, set[str]]:
    """``_load`` into the store itself; returns the result and the parts to keep: the
    store's, before and after."""
    con = open_writer(db, wait=wait)
    try:
        before = referenced(con)
        result = _load(con, paths, parts, replace=False, progress=progress, window=window)
        return result, before | referenced(con)
    finally:
        con.close()


def _load(con: duckdb.DuckDBPyConnection, paths: list[Path], parts: Parts, *, replace: bool,
          progress: bool, window: dict[str, datetime | None]) -> WriteResult:
    report = ingest_paths(con, paths, replace=replace, progress=progress, parts=parts)
    if (why := report.nothing_loaded()) is not None:
        # nothing to store: the store is left as it was (``--replace`` renames nothing)
        raise UserError(why)
    # the window given to ingest outranks the manifest's, as its keys in the incident table
    for side, when in window.items():
        if when is not None:
            con.execute("INSERT OR REPLACE INTO incident VALUES (?, ?)",
                        [f"window_{side}", when.isoformat(sep=" ")])
    changed = (any(not f.skipped_duplicate for f in report.files)
               or any(w is not None for w in window.values()))
    return WriteResult(report, store_rollups(con, changed=changed))


def store_rollups(con: duckdb.DuckDBPyConnection, *, changed: bool = True) -> str:
    """Build and mark the rollups in the store behind ``con``; one line saying what was done.

    Kept as they are when nothing was loaded (``changed`` False) and they are
    this code's and current. When they cannot be built on the default grid
    (``UserError``: too many buckets), any old ones are dropped -- stale
    rollups would be read as current -- and readers build their own.
    """
    if not changed and rollups_current(con, trust_own=False):
        return "rollups: current, kept"
    try:
        info = build_rollups(con)
    except UserError as exc:
        for t in ROLLUP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {t}")
        return f"rollups: not stored ({exc}); readers build their own"
    mark_rollups(con)
    if info.start is None:
        return "rollups: stored (no timed rows)"
    line = f"rollups: stored, {info.n_signals:,} signals; {info.describe()}"
    outside = info.outside_line() if info.window and info.window.n_outside else None
    return line + (f"\noutside the window: {outside}" if outside else "")


def _write_beside(db: Path, paths: list[Path], parts: Parts, *, progress: bool,
                  window: dict[str, datetime | None]) -> tuple[WriteResult, set[str]]:
    """``_load`` into a copy of ``db`` beside it, renamed over ``db`` when complete;
    returns the result and the parts to keep (the old store's and the new one's)."""
    tmp = db.with_name(f".{db.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    wal, tmp_wal = (p.with_name(p.name + ".wal") for p in (db, tmp))
    old: set[str] = set()
    try:
        all_reloaded, old = _all_reloaded(db, paths) if db.exists() else (True, set())
        if not all_reloaded:
            shutil.copyfile(db, tmp)
            if wal.exists():  # a crashed writer's log: DuckDB replays it on opening the copy
                shutil.copyfile(wal, tmp_wal)
        else:
            db.parent.mkdir(parents=True, exist_ok=True)
        con = connect(tmp)
        try:
            result = _load(con, paths, parts, replace=True, progress=progress, window=window)
            new = referenced(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())  # whole on disk before it takes the store's name
        wal.unlink(missing_ok=True)  # belongs to the old file; it must not replay into the new
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_wal.unlink(missing_ok=True)
    return result, old | new


def _all_reloaded(db: Path, paths: list[Path]) -> tuple[bool, set[str]]:
    """Whether every file loaded in ``db`` is among ``paths``' files (then the new store
    starts empty: a copy would only grow by the rows deleted from it), and the parts
    ``db`` names."""
    given = {str(p) for p, _ in collect_files([Path(p) for p in paths])}
    check_store_file(db)
    # not ``open_reader``: a store whose parts are gone is still replaced
    con = duckdb.connect(str(db), read_only=True)
    try:
        loaded = {r[0] for r in con.execute("SELECT path FROM ingest_files").fetchall()}
        named = referenced(con)
    finally:
        con.close()
    return loaded <= given, named
