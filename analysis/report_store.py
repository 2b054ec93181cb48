"""Finding and opening the store that the notebooks and the report read.

Notebooks must run anywhere: in a clean clone under nbval (no ``make report``
first), under papermill for the report, and in JupyterLab. So they ask
``ensure_store`` for their store, which builds the bundled april-2026 incident
(simulate, ingest, roll up) when the file is missing, once, under a lock,
and then ``open_analysis`` opens it *read-only* beneath an in-memory database:
whatever the analysis derives (rollups, anomalies) lands in memory, so any
number of notebooks can read one store at the same time and none can damage
it.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb

from analysis.errors import UserError
from analysis.store import connect

BUNDLED_SCENARIO = "april-2026"
BUNDLED_SEED = 1
ROLLUP_TABLES = ("signals", "signal_catalog", "roll_callers", "roll_errors", "roll_metrics",
                 "roll_events", "roll_heavy", "roll_info")


def repo_root() -> Path:
    """The checkout this package lives in (``analysis/..``)."""
    return Path(__file__).resolve().parent.parent


def default_paths() -> tuple[Path, Path]:
    """``(data_dir, db)`` of the bundled incident, as the Makefile names them."""
    root = repo_root()
    return root / "data" / "generated" / BUNDLED_SCENARIO, root / "data" / "incident.duckdb"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock next to ``path``: one builder at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def has_tables(con: duckdb.DuckDBPyConnection, names: tuple[str, ...]) -> bool:
    """Whether every table in ``names`` exists (in any attached database)."""
    found = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return set(names) <= found


def _store_ready(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return False
    try:
        if not has_tables(con, ("requests", *ROLLUP_TABLES)):
            return False
        return con.execute("SELECT count(*) FROM requests").fetchone()[0] > 0
    finally:
        con.close()


def prepare_rollups(db: Path, *, force: bool = False) -> None:
    """Build the rollups inside the store file when missing (or always, with ``force``).

    Done once, with a write connection, so that readers find them ready.
    """
    from analysis.rollups import build_rollups

    with _locked(db):
        con = connect(db)
        try:
            if force or not has_tables(con, ROLLUP_TABLES):
                build_rollups(con)
        finally:
            con.close()


def ensure_store(
    db: str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    scenario: str = BUNDLED_SCENARIO,
    seed: int = BUNDLED_SEED,
) -> Path:
    """The path of a store ready to read, building it if it is missing.

    When ``db`` does not exist it is built from ``data_dir`` (ingest, then the
    rollups); with no ``data_dir``, from the bundled ``scenario``, simulated
    into the Makefile's data directory unless its ``truth.json`` is already
    there. An existing store is used as it is (rollups added if missing).
    Defaults are the Makefile's paths, so notebooks and ``make`` share one cache.
    """
    d_default, db_default = default_paths()
    db = Path(db) if db else db_default
    if _store_ready(db):
        return db
    if db.exists():
        prepare_rollups(db)
        return db
    bundled = data_dir is None
    source = d_default if bundled else Path(data_dir)
    if not bundled and not source.is_dir():
        raise UserError(f"{source}: no such data directory to build the store {db} from")
    with _locked(db):
        if not db.exists():
            if bundled and not (source / "truth.json").exists():
                _run(["simulate", "--scenario", scenario, "--seed", str(seed),
                      "--out", str(source)])
            _run(["ingest", str(source), "--db", str(db), "--replace"])
    prepare_rollups(db)
    return db


def _run(argv: list[str]) -> None:
    """``postmortem ARGV`` in a child process.

    Not in-process: inside a Jupyter kernel DuckDB refuses some settings the
    CLI makes (progress bars want ipywidgets), and the CLI's output belongs in
    a log, not in a notebook cell. Its errors are raised with its last lines.
    """
    code = "import sys; from analysis.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise UserError(f"`postmortem {' '.join(argv)}` failed ({proc.returncode}): {tail}")


def open_analysis(db: str | Path) -> duckdb.DuckDBPyConnection:
    """A connection that reads the store at ``db`` and writes only to memory.

    The store is attached read-only as ``store``; unqualified names resolve in
    memory first, then in the store, so ``CREATE OR REPLACE TABLE signals``
    (the analysis rebuilding something) shadows the store's table in memory.
    """
    db = Path(db)
    if not db.exists():
        raise UserError(f"{db}: no such store (expected a DuckDB file from `postmortem ingest`)")
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    with contextlib.suppress(duckdb.InvalidInputException):  # refused in Jupyter; off there
        con.execute("SET enable_progress_bar = false")  # a bar on stdout corrupts outputs
    path = str(db).replace("'", "''")
    con.execute(f"ATTACH '{path}' AS store (READ_ONLY)")
    con.execute("SET search_path = 'memory.main,store.main'")
    return con
