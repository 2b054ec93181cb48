"""The workspace: finding and opening the store that the notebooks and the report read.

Notebooks must run anywhere: in a clean clone under nbval (no ``make report``
first), under papermill for the report, and in JupyterLab. So they ask
``ensure_store`` for their store, which builds the bundled april-2026 incident
(simulate, then ``postmortem ingest``, the store's only writer, which also
stores the rollups) when the file is missing, once, under a lock; an existing
store is never written. ``open_analysis`` then opens it *read-only* beneath an
in-memory database (``analysis.access.open_reader``, the reader's connection of
the CLI too): whatever the analysis derives (rollups missing from, or stale in,
an older store; anomalies) lands in memory, so any number of notebooks, the
report and ``chain`` read one store at the same time, JupyterLab included,
and none can damage it or lock another out.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb

from analysis.access import check_store_file, open_reader, store_errors
from analysis.errors import UserError
from analysis.filelock import locked
from analysis.paths import BUNDLED_DATA, BUNDLED_SCENARIO, BUNDLED_SEED, DEFAULT_DB
from analysis.rollups import ROLLUP_TABLES, ensure_rollups

__all__ = ["ROLLUP_TABLES", "ensure_store", "open_analysis"]


@contextlib.contextmanager
def _building(db: Path) -> Iterator[None]:
    """An exclusive advisory lock beside ``db`` (``<db>.build.lock``): one builder of a
    missing store at a time (``ingest`` takes the store's own writer lock inside)."""
    with locked(db.with_name(db.name + ".build")):
        yield


def ensure_store(
    db: str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    scenario: str = BUNDLED_SCENARIO,
    seed: int = BUNDLED_SEED,
) -> Path:
    """The path of a store ready to read, building it if it is missing.

    When ``db`` does not exist it is built from ``data_dir`` (``postmortem
    ingest``, which stores the rollups too); with no ``data_dir``, from the
    bundled ``scenario``, simulated into the Makefile's data directory unless
    its ``truth.json`` is already there. An existing store is used as it is:
    never written (its readers build missing rollups in memory).
    Defaults are the Makefile's paths (``analysis.paths``), so notebooks and ``make``
    share one cache.
    """
    db = Path(db) if db else DEFAULT_DB
    if db.exists():
        return check_store_file(db)
    bundled = data_dir is None
    source = BUNDLED_DATA if bundled else Path(data_dir)
    if not bundled and not source.is_dir():
        raise UserError(f"{source}: no such data directory to build the store {db} from")
    with _building(db):
        if not db.exists():
            if bundled and not (source / "truth.json").exists():
                _run(["simulate", "--scenario", scenario, "--seed", str(seed),
                      "--out", str(source)])
            _run(["ingest", str(source), "--db", str(db), "--replace", "--wait"])
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
    """The reader's connection (``analysis.access.open_reader``) with rollups ready.

    The store is attached read-only as ``store``; unqualified names resolve in
    memory first, then in the store. Rollups the store lacks, or holds from
    other code or older data, are built in memory (``ensure_rollups``).
    """
    con = open_reader(db)
    try:
        with store_errors(db, "reading"):
            ensure_rollups(con)
    except BaseException:
        con.close()
        raise
    return con
