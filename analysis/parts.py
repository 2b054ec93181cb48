"""Rows the store reads in place: Parquet parts beside the store, and views over them.

A store on disk keeps the bulk of its rows out of DuckDB's own file:

* JSON lines and CSV read by DuckDB's readers (the fast paths) are converted once
  into Parquet files beside the store, under ``<db>.parts/<run>/``, one per file;
* a Parquet export is read where it lies, its rejected rows filtered out by their
  numbers (the ``rejects`` table).

Each such file is a *part*: a row of ``store_parts`` holding the SQL of its rows
(``body``, over ``{src}``, the Parquet file) and which of them to keep (``keep``).
The canonical tables ``requests``, ``log_events``, ``metrics`` and ``events`` are then
views: the rows stored in DuckDB (schema ``stored``: what the line path loaded, and
every line format) and every part's rows. Line accounting is unchanged: a part
holds exactly the rows the file loaded, the others are in ``rejects``.

Paths: a part is recorded by its absolute path, and a converted one also by its path
in the parts folder (``rel``). The views the writer stores use absolute paths; every
reader (``analysis.access.open_reader``) builds them again in memory, taking a part
from the parts folder beside the store as it finds it (``locate``), so a store moved
with its ``.parts`` folder, or opened from another directory, reads the same rows, and
a store file copied alone reads its original's parts.

Each ingest writes into a fresh sub-folder; ``collect_garbage`` deletes what no store
names any more, except what the store just replaced named (its readers may still be
reading it: ``ingest --replace`` renames a new store over theirs).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from analysis.errors import UserError
from analysis.store import sql_str, table

#: the tables whose rows may live in parts, and their columns (file_id and line last)
VIEW_TABLES = ("requests", "log_events", "metrics", "events")
STORED_SCHEMA = "stored"
PARTS_TABLE = "store_parts"
#: Parquet of the converted parts: uncompressed writes fastest and scans fastest here
#: (measured at 1 M rows: COPY 0.9-1.2 s, snappy 1.0-1.6 s, zstd 1.4 s)
PART_OPTIONS = "FORMAT parquet, COMPRESSION uncompressed, ROW_GROUP_SIZE 122880"
#: excluded line numbers written into a view; more, and the file takes the line path
MAX_EXCLUDED = 1000


def parts_root(db: str | Path) -> Path:
    """The folder of the store ``db``'s parts: ``<db>.parts`` beside it (absolute)."""
    db = Path(db).absolute()
    return db.with_name(db.name + ".parts")


def database_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file behind ``con``'s current database, None for an in-memory one."""
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    path = row[0][0] if row else None
    return Path(path) if path else None


@dataclass
class Parts:
    """Where one ingest run writes its parts: ``root/run``."""

    root: Path
    run: str = field(default_factory=lambda: f"{time.strftime('%Y%m%dT%H%M%S')}-"
                                             f"{secrets.token_hex(3)}")

    def new(self, file_id: int, table: str) -> tuple[Path, str]:
        """A fresh part file for ``table``'s rows of ``file_id``: (absolute path, as recorded)."""
        rel = f"{self.run}/{file_id:06d}-{table}-{secrets.token_hex(2)}.parquet"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel


@dataclass
class Part:
    """One file's rows of one table, read from Parquet (see the module doc)."""

    file_id: int
    table: str
    path: str
    """The Parquet file, absolute (where it was written, or the export's own)."""
    rel: str | None
    """Its path in the store's parts folder; None for an export read in place."""
    body: str
    """SQL over ``{src}`` giving the table's columns (but file_id) and ``line``."""
    keep: list[str] = field(default_factory=list)
    """Conditions on the body's columns; ``{rejects}`` names the rejects table."""
    stamp: str | None = None
    """An export read in place: its size and modification time when it was ingested
    (its rejects are by row number: a changed file would be misread)."""

    def renumber(self, line_sql: str) -> None:
        """Number the rows by ``line_sql`` over their current ``line`` instead."""
        self.body = f"SELECT * REPLACE ({line_sql} AS line) FROM ({self.body})"

    def sql(self) -> str:
        """The part's rows, every one (its ``keep`` not applied)."""
        return part_sql(self.body, Path(self.path))

    def exclude(self, lines: list[int]) -> None:
        """Leave the rows of ``lines`` out (their lines were loaded another way)."""
        if lines:
            self.keep.append(f"NOT list_contains([{', '.join(map(str, lines))}], line)")

    def record(self, con: duckdb.DuckDBPyConnection) -> None:
        """Insert this part into ``store_parts`` (in the caller's transaction)."""
        con.execute(f"INSERT INTO {PARTS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [self.file_id, self.table, self.path, self.rel, self.body,
                     " AND ".join(f"({k})" for k in self.keep) or None, self.stamp])


def layout_sql() -> list[str]:
    """DDL of the parts layout's own objects (the views come from ``view_sql``)."""
    out = [f"CREATE SCHEMA IF NOT EXISTS {STORED_SCHEMA}",
           f"CREATE TABLE IF NOT EXISTS {PARTS_TABLE} (file_id INTEGER NOT NULL,"
           " tbl VARCHAR NOT NULL, path VARCHAR NOT NULL, rel VARCHAR,"
           " body VARCHAR NOT NULL, keep VARCHAR, stamp VARCHAR)"]
    for name in VIEW_TABLES:
        out.append(table(name).ddl().replace(
            f"EXISTS {name} (", f"EXISTS {STORED_SCHEMA}.{name} (", 1))
    return out


def has_layout(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> bool:
    """Whether the store behind ``con`` (or its attached ``catalog``) keeps parts."""
    where = f"database_name = {sql_str(catalog)}" if catalog else \
        "database_name = current_database()"
    return bool(con.execute(
        f"SELECT count(*) FROM duckdb_tables() WHERE {where} AND schema_name = 'main'"
        f" AND table_name = '{PARTS_TABLE}'").fetchall()[0][0])


def adopt_layout(con: duckdb.DuckDBPyConnection) -> bool:
    """Give an empty store on disk the parts layout; whether the store has it now.

    A store that already holds rows in its own tables (made before parts existed)
    keeps them: it goes on loading into DuckDB, as it did.
    """
    if has_layout(con):
        return True
    if database_path(con) is None:
        return False
    if con.execute("SELECT count(*) FROM ingest_files").fetchall()[0][0]:
        return False
    for name in VIEW_TABLES:
        if con.execute(f"SELECT count(*) FROM main.{name}").fetchall()[0][0]:
            return False
    con.execute("BEGIN TRANSACTION")
    try:
        for stmt in layout_sql():
            con.execute(stmt)
        for name in VIEW_TABLES:
            con.execute(f"DROP TABLE main.{name}")
            con.execute(view_sql(name, [], parts_root(database_path(con))))
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    return True


def part_sql(body: str, where: Path) -> str:
    """A part's ``body`` over its Parquet file ``where``."""
    return body.replace("{src}", f"read_parquet({sql_str(str(where))}, file_row_number = true)")


def locate(path: str, rel: str | None, root: Path) -> Path:
    """Where a part's file is now: in the store's parts folder ``root`` when it is there
    (the store and its folder moved together), else where it was written (a copy of the
    store file alone reads its original's parts; an export read in place)."""
    if rel is not None and (root / rel).is_file():
        return root / rel
    return Path(path)


def stamp_of(path: Path) -> str:
    """A file's size and modification time: what tells an export changed since ingest."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _columns(name: str) -> list[str]:
    return [c.name for c in table(name).columns]


def view_sql(name: str, parts: list[tuple], root: Path, catalog: str | None = None,
             schema: str = "main") -> str:
    """``CREATE OR REPLACE VIEW`` of table ``name``: its stored rows and its ``parts``
    (rows of ``store_parts``: file_id, path, rel, body, keep), found by ``locate``.
    ``catalog`` qualifies the store's tables (a reader's attached store)."""
    at = f"{catalog}." if catalog else ""
    cols = _columns(name)
    data = ", ".join(cols[:-2])
    selects = [f"SELECT {', '.join(cols)} FROM {at}{STORED_SCHEMA}.{name}"]
    for file_id, path, rel, body, keep, *_ in parts:
        rows = part_sql(body, locate(path, rel, root))
        cond = (keep or "TRUE").replace("{rejects}", f"{at}main.rejects")
        selects.append(f"SELECT {data}, CAST({file_id} AS INTEGER) AS file_id,"
                       f" CAST(line AS BIGINT) AS line FROM ({rows}) WHERE {cond}")
    return f"CREATE OR REPLACE VIEW {schema}.{name} AS " + "\nUNION ALL ".join(selects)


def part_rows(con: duckdb.DuckDBPyConnection, name: str,
              catalog: str | None = None) -> list[tuple]:
    """The parts of table ``name`` recorded in the store (see ``view_sql``)."""
    at = f"{catalog}." if catalog else ""
    return con.execute(
        f"SELECT file_id, path, rel, body, keep, stamp FROM {at}main.{PARTS_TABLE}"
        " WHERE tbl = ? ORDER BY file_id", [name]).fetchall()


def rebuild_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Make the store's views name exactly its parts (after an ingest)."""
    for name in VIEW_TABLES:
        con.execute(view_sql(name, part_rows(con, name), root))


def reader_views(con: duckdb.DuckDBPyConnection, db: Path, catalog: str = "store") -> None:
    """In a reader's in-memory database, views over the attached store ``catalog`` with
    its parts found beside ``db`` as it is now (moved or not, any working directory)."""
    if not has_layout(con, catalog):
        return
    root = parts_root(db)
    for name in VIEW_TABLES:
        rows = part_rows(con, name, catalog)
        for _, path, rel, _, _, stamp in rows:
            if not (where := locate(path, rel, root)).is_file():
                raise UserError(
                    f"{db}: the store reads {where}, which is gone"
                    + (f"; keep {root.name} beside the store (its rows are there)"
                       if rel else "; the store reads Parquet exports in place: put"
                       " the file back, or ingest again with --replace"))
            if stamp is not None and stamp_of(where) != stamp:
                raise UserError(
                    f"{db}: the store reads {where} in place, and it changed since it was"
                    " ingested (size or modification time); ingest it again with --replace")
        con.execute(view_sql(name, rows, root, catalog, schema="memory.main"))


def referenced(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> set[str]:
    """The parts folder's files the store names (as recorded, relative)."""
    if not has_layout(con, catalog):
        return set()
    at = f"{catalog}." if catalog else ""
    return {r[0] for r in con.execute(
        f"SELECT rel FROM {at}main.{PARTS_TABLE} WHERE rel IS NOT NULL").fetchall()}


def collect_garbage(root: Path, keep: set[str]) -> int:
    """Delete the files under ``root`` that are not in ``keep`` (relative paths), and
    the folders left empty; returns how many files went."""
    if not root.is_dir():
        return 0
    gone = 0
    for f in sorted(root.rglob("*"), reverse=True):
        rel = f.relative_to(root).as_posix()
        if f.is_dir():
            with contextlib.suppress(OSError):
                f.rmdir()  # only when empty
        elif rel not in keep:
            f.unlink(missing_ok=True)
            gone += 1
    with contextlib.suppress(OSError):
        root.rmdir()
    return gone


def remove_run(parts: Parts) -> None:
    """Delete what one (failed) run wrote."""
    shutil.rmtree(parts.root / parts.run, ignore_errors=True)
    with contextlib.suppress(OSError):
        parts.root.rmdir()
