"""Compare two directories of rollup tables (``postmortem rollup --out``) row for row."""

from __future__ import annotations

from pathlib import Path

import duckdb

from analysis.rollups import ROLLUP_TABLES

#: roll_info columns that say how the rollups were made, not what they hold
_HOW = ("origin",)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def differences(a: Path, b: Path, tol: float = 1e-9, limit: int = 5) -> list[str]:
    """Every difference between the rollup tables under ``a`` and ``b``: columns and row
    counts exactly; rows, sorted on every column and paired in that order, equal with
    floats within ``tol`` (relative to the larger of 1 and the value) and everything
    else exactly (NULL equals NULL, NaN equals NaN). Empty when they agree."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    out: list[str] = []
    for t in ROLLUP_TABLES:
        for side, path in (("a", a), ("b", b)):
            con.execute(f"CREATE OR REPLACE TABLE {side} AS SELECT * FROM"
                        f" read_parquet('{path / (t + '.parquet')}')")
        cols = {s: [(c, ty) for c, ty, *_ in con.execute(f"DESCRIBE {s}").fetchall()
                    if not (t == "roll_info" and c in _HOW)] for s in ("a", "b")}
        if cols["a"] != cols["b"]:
            out.append(f"{t}: columns {cols['a']} != {cols['b']}")
            continue
        n = {s: con.execute(f"SELECT count(*) FROM {s}").fetchall()[0][0] for s in ("a", "b")}
        if n["a"] != n["b"]:
            out.append(f"{t}: {n['a']} rows != {n['b']} rows")
            continue
        names = [c for c, _ in cols["a"]]
        order = ", ".join(f"{_q(c)} NULLS FIRST" for c in names)
        for s in ("a", "b"):
            con.execute(f"CREATE OR REPLACE TABLE {s}_n AS SELECT row_number() OVER"
                        f" (ORDER BY {order}) AS rn, * FROM {s}")
        same = []
        for c, ty in cols["a"]:
            x, y = f"x.{_q(c)}", f"y.{_q(c)}"
            if ty in ("DOUBLE", "FLOAT"):
                same.append(f"({x} IS NOT DISTINCT FROM {y} OR (isnan({x}) AND isnan({y}))"
                            f" OR abs({x} - {y}) <= {tol!r} * greatest(1, abs({x})))")
            else:
                same.append(f"{x} IS NOT DISTINCT FROM {y}")
        shown = ", ".join(f"x.{_q(c)}" for c in names) + ", " + ", ".join(
            f"y.{_q(c)}" for c in names)
        bad = con.execute(
            f"SELECT {shown} FROM a_n x JOIN b_n y USING (rn)"
            f" WHERE NOT ({' AND '.join(same)}) ORDER BY rn LIMIT {limit + 1}").fetchall()
        k = len(names)
        out += [f"{t}: {r[:k]} != {r[k:]}" for r in bad[:limit]]
        if len(bad) > limit:
            out.append(f"{t}: more rows differ")
    con.close()
    return out
