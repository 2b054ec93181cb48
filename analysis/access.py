"""One writer, many readers: how every command opens the store.

Only ``postmortem ingest`` writes the store; ``chain``, ``whatif``, ``report``
and the notebooks read it, any number at once. What DuckDB itself does
(checked on DuckDB 2.0, and by ``tests/test_access.py``):

* A file opened for writing by one process cannot be opened at all by another,
  not even read-only: the other gets "Conflicting lock is held in ... (PID N)".
* Any number of processes may hold the file read-only at once, and while one
  does, no process can open it for writing (the same error).
* Renaming a new file over the store while readers hold it is safe: they keep
  reading the file they opened (their snapshot), and the next open sees the new one.

So a reader (``open_reader``) attaches the store read-only beneath an in-memory
database: whatever it derives lands in memory and the file is never changed.
A writer first takes an advisory lock beside the store (``writer_lock``:
``<db>.lock``, holding its PID), so that a second writer learns who is writing
instead of fighting DuckDB. ``ingest --replace`` writes a copy beside the store
and renames it into place at the end, so readers never block it; an
incremental ingest writes in place and so needs the readers gone
(``open_writer`` says who is reading, or waits with ``--wait``).

Every way a store fails to open or to be written -- busy, disk full, a file
that is no DuckDB database -- becomes one line naming the path
(``UserError``), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import duckdb

from analysis.errors import UserError
from analysis.parts import reader_views
from analysis.store import configure, connect

DUCKDB_MAGIC = b"DUCK"
"""Bytes 8-11 of every DuckDB database file."""
IDENTITY_VARIABLE = "postmortem_store"
"""The reader connection's variable holding the identity of the file it attached."""
_CONFLICT = re.compile(r"Conflicting lock is held in .*?\(PID (\d+)\)", re.S)
_FILE_IN_MESSAGE = re.compile(r'file "([^"]+)"')


class StoreBusy(UserError):
    """Another process holds the store in a way that excludes what was asked."""


def lock_path(db: Path) -> Path:
    """The writers' advisory lock file beside the store: ``<db>.lock``."""
    return db.with_name(db.name + ".lock")


def _holder(path: Path) -> str:
    """The PID a lock holder wrote into ``path`` (``?`` when not yet written)."""
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "?"


@contextlib.contextmanager
def writer_lock(db: str | Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the store's writer lock while the block runs: one writer at a time.

    A second writer gets ``StoreBusy`` ("store busy: PID N is writing <db>"),
    or, with ``wait``, says so on stderr and blocks until the first is done.
    The lock is ``flock`` on ``<db>.lock``: the kernel drops it when its holder
    exits, however it exits, so a crashed writer never leaves the store locked.
    """
    db = Path(db)
    path = lock_path(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:  # "a+": opening must not erase the holder's PID
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = f"store busy: PID {_holder(path)} is writing {db}"
            if not wait:
                raise StoreBusy(busy) from None
            print(f"postmortem: {busy}; waiting (--wait)", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


def check_store_file(db: str | Path) -> Path:
    """``db`` as a Path if it is an existing DuckDB database file; else a one-line UserError.

    Told by the file's header, before DuckDB sees it: DuckDB's own errors for a
    Parquet file ("cannot launch in-memory database in read-only mode") do not
    say what is wrong.
    """
    db = Path(db)
    if not db.is_file():
        what = "is a directory" if db.is_dir() else "does not exist"
        raise UserError(f"{db}: no such store ({what}); expected a DuckDB file made by"
                        f" `postmortem ingest DIR --db {db}`")
    try:
        with open(db, "rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise UserError(f"{db}: cannot read the store ({exc.strerror})") from None
    if head[8:12] != DUCKDB_MAGIC:
        kind = ("is empty" if not head else "is a Parquet file" if head.startswith(b"PAR1")
                else "has no DuckDB header")
        raise UserError(f"{db}: not a DuckDB database (the file {kind}); expected a store"
                        f" made by `postmortem ingest DIR --db {db}`")
    return db


def store_error(exc: BaseException, db: Path,
                doing: Literal["reading", "writing"]) -> UserError | None:
    """The one-line UserError that ``exc`` (raised while ``doing`` ``db``) means, if any.

    A lock conflict names the other process: a reader is blocked only by a
    writer, and a writer holding ``writer_lock`` only by readers.
    """
    text = str(exc)
    if m := _CONFLICT.search(text):
        other = "writing" if doing == "reading" else "reading"
        return StoreBusy(f"store busy: PID {m[1]} is {other} {db}")
    if "No space left on device" in text or getattr(exc, "errno", None) == errno.ENOSPC:
        named = _FILE_IN_MESSAGE.search(text)
        where = named[1] if named else getattr(exc, "filename", None)
        at = f" (at {where})" if where and Path(where) != db else ""
        return UserError(f"{db}: disk full while {doing} the store{at}: no space left on"
                         " device; free some space and run again")
    if isinstance(exc, PermissionError):
        return UserError(f"{exc.filename or db}: permission denied while {doing} the store {db}")
    if isinstance(exc, OSError):
        return None
    if "not a valid DuckDB database file" in text:
        return UserError(f"{db}: not a DuckDB database; expected a store made by"
                         f" `postmortem ingest DIR --db {db}`")
    if isinstance(exc, duckdb.IOException | duckdb.SerializationException):
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return UserError(f"{db}: cannot use the store for {doing}: {first}")
    return None


def disk_full(exc: OSError, where: str | Path | None = None) -> UserError | None:
    """The one-line UserError of a full disk (``ENOSPC``) met writing ``exc.filename``
    (else ``where``, else "a file"); None for any other error."""
    if exc.errno != errno.ENOSPC:
        return None
    return UserError(f"{exc.filename or where or 'a file'}: disk full: no space left on"
                     " device; free some space and run again")


@contextlib.contextmanager
def store_errors(db: str | Path, doing: Literal["reading", "writing"]) -> Iterator[None]:
    """Turn DuckDB's and the OS's store errors raised in the block into one-line UserErrors."""
    try:
        yield
    except (duckdb.Error, OSError) as exc:
        mapped = store_error(exc, Path(db), doing)
        if mapped is None:
            raise
        raise mapped from None


def identity(db: Path) -> str:
    """What tells one version of the store file from another: device, inode, size, mtime.

    A store renamed into place is a new inode, an ingest in place a new size or
    mtime; caches key their results by this, never by the path alone.
    """
    st = db.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def open_reader(db: str | Path) -> duckdb.DuckDBPyConnection:
    """The reader's connection, for the CLI, the notebooks and the report alike.

    An in-memory database with the store attached ``READ_ONLY`` as ``store``;
    unqualified names resolve in memory first, then in the store, so whatever
    a reader derives (``CREATE OR REPLACE TABLE signals``: rollups built for
    an old store) shadows the store's table in memory and the file is never
    changed. The identity of the file attached (``identity``) is kept in the
    connection's variable ``postmortem_store`` for the caches. A store that keeps
    rows as Parquet beside it (``analysis.parts``) gets its views built again in
    memory over the parts found beside ``db`` as it is now, so a store moved with
    its ``.parts`` folder, or named from another directory, reads the same rows.
    """
    db = check_store_file(db)
    con = duckdb.connect(":memory:")
    configure(con)
    quoted = str(db).replace("'", "''")
    try:
        for _ in range(5):  # a writer may rename a new store into place between stat and attach
            before = identity(db)
            with store_errors(db, "reading"):
                con.execute(f"ATTACH '{quoted}' AS store (READ_ONLY)")
            if identity(db) == before:
                break
            con.execute("DETACH store")
    except BaseException:
        con.close()
        raise
    con.execute("SET search_path = 'memory.main,store.main'")
    con.execute(f"SET VARIABLE {IDENTITY_VARIABLE} = '{before}'")
    try:
        with store_errors(db, "reading"):
            reader_views(con, db)
    except BaseException:
        con.close()
        raise
    return con


def reader_identity(con: duckdb.DuckDBPyConnection) -> str | None:
    """The identity of the store file ``con`` attached (``open_reader``), if any."""
    try:
        value = con.execute(f"SELECT getvariable('{IDENTITY_VARIABLE}')").fetchall()[0][0]
    except duckdb.Error:
        return None
    return value


def _wait_for_readers(db: Path) -> None:
    """Block until no process holds DuckDB's lock on ``db`` (the readers have closed it).

    Takes and drops the same ``fcntl`` lock DuckDB takes; only called while this
    process has no DuckDB connection to ``db`` (closing the descriptor drops
    every lock this process holds on the file).
    """
    fd = os.open(db, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def open_writer(db: str | Path, *, wait: bool = False) -> duckdb.DuckDBPyConnection:
    """The writer's connection to ``db`` (created if missing); call it under ``writer_lock``.

    Readers holding the file make it ``StoreBusy`` ("store busy: PID N is
    reading <db>"); with ``wait``, say so on stderr and wait for them to close it.
    """
    db = Path(db)
    if db.exists():
        check_store_file(db)
    while True:
        try:
            with store_errors(db, "writing"):
                return connect(db)
        except StoreBusy as busy:
            if not wait:
                raise
            print(f"postmortem: {busy}; waiting (--wait)", file=sys.stderr, flush=True)
            _wait_for_readers(db)
