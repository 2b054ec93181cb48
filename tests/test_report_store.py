"""The store the notebooks read: built when missing, read-only, derived tables in memory."""

from __future__ import annotations

import duckdb
import pytest
from test_report_fixture import make_store

from analysis.errors import UserError
from analysis.paths import repo_root
from analysis.report.workspace import ensure_store, open_analysis

SAMPLES = repo_root() / "data" / "samples"


def test_missing_store_is_built_from_a_data_dir(tmp_path) -> None:
    db = ensure_store(tmp_path / "s.duckdb", SAMPLES)
    con = open_analysis(db)
    assert con.execute("SELECT count(*) FROM ingest_files").fetchall()[0][0] > 0
    assert con.execute("SELECT count(*) FROM signals").fetchall()[0][0] > 0  # rollups built
    assert ensure_store(db, SAMPLES) == db  # second time: used as it is


def test_missing_data_dir_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="no such data directory"):
        ensure_store(tmp_path / "s.duckdb", tmp_path / "nowhere")


def test_analysis_writes_go_to_memory_never_to_the_store(tmp_path) -> None:
    db = make_store(tmp_path / "s.duckdb", seconds=60)
    con = open_analysis(db)
    con.execute("CREATE OR REPLACE TABLE signals AS SELECT 1 AS x")  # shadows, in memory
    assert con.execute("SELECT x FROM signals").fetchall() == [(1,)]
    with pytest.raises(duckdb.Error):
        con.execute("DELETE FROM store.main.requests")
    con.close()
    ro = duckdb.connect(str(db), read_only=True)
    assert ro.execute("SELECT count(*) FROM requests").fetchall()[0][0] > 0
    assert "signals" not in {r[0] for r in ro.execute("SHOW TABLES").fetchall()}
