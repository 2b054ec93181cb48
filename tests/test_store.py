"""The store's canonical schema, its data dictionary and the CLI that shows it."""

from __future__ import annotations

from pathlib import Path

from analysis.cli import main
from analysis.store import TABLES, connect, data_dictionary_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_connect_creates_every_table_in_utc(tmp_path):
    con = connect(tmp_path / "x.duckdb")
    rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    names = {r[0] for r in rows}
    assert {t.name for t in TABLES} <= names
    assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"


def test_schema_matches_declared_columns():
    con = connect(None)
    for t in TABLES:
        cols = [r[0] for r in con.execute(f"DESCRIBE {t.name}").fetchall()]
        assert cols == [c.name for c in t.columns]


def test_docs_data_dictionary_is_current():
    doc = ROOT / "docs" / "data-dictionary.md"
    assert doc.read_text() == data_dictionary_markdown() + "\n", "run `make docs`"


def test_schema_command_prints_dictionary(capsys):
    assert main(["schema"]) == 0
    assert "## `requests`" in capsys.readouterr().out
