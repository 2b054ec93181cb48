"""Compare two directories of rollup tables (``postmortem rollup --out``) row for row."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb

from analysis.rollups import ROLLUP_TABLES

#: roll_info columns that say how the rollups were made, not what they hold
_HOW = ("origin",)


def table_rows(path: Path, table: str) -> tuple[list[str], list[tuple]]:
    """A table's column names and rows, sorted on every column (NULLs first)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rel = con.sql(f"SELECT * FROM read_parquet('{path / (table + '.parquet')}')")
    cols = [c for c in rel.columns if not (table == "roll_info" and c in _HOW)]
    order = ", ".join(f'"{c}" NULLS FIRST' for c in cols)
    rows = con.sql(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM rel"
                   f" ORDER BY {order}").fetchall()
    return cols, rows


def _same(a: object, b: object, tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, float) or isinstance(b, float):
        return False  # a float against a non-float is a type difference
    return a == b


def differences(a: Path, b: Path, tol: float = 1e-9, limit: int = 5) -> list[str]:
    """Every difference between the rollup tables under ``a`` and ``b``: columns, row
    counts (exact), and values (floats within ``tol``, relative or absolute; everything
    else exactly). Empty when they agree."""
    out: list[str] = []
    for t in ROLLUP_TABLES:
        cols_a, rows_a = table_rows(a, t)
        cols_b, rows_b = table_rows(b, t)
        if cols_a != cols_b:
            out.append(f"{t}: columns {cols_a} != {cols_b}")
            continue
        if len(rows_a) != len(rows_b):
            out.append(f"{t}: {len(rows_a)} rows != {len(rows_b)} rows")
            continue
        bad = [(ra, rb) for ra, rb in zip(rows_a, rows_b, strict=True)
               if not all(_same(x, y, tol) for x, y in zip(ra, rb, strict=True))]
        out += [f"{t}: {ra} != {rb}" for ra, rb in bad[:limit]]
        if len(bad) > limit:
            out.append(f"{t}: ... {len(bad)} rows differ")
    return out
