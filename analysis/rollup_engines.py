"""Run the rollup steps (``analysis.rollup_sql``) on an engine: DuckDB or Spark.

``roll_up`` is the one driver both engines share: it resolves the incident window
(inferring it on the engine when neither flags nor a manifest give it), makes one pass
over each raw table's times for its rows and span, chooses the grid, runs every step,
and counts the rows left outside. The roll tables it makes stay on the engine
(``Engine.arrow`` hands each to the driver); ``analysis.rollups`` builds the dense
``signals`` from them on the driver, in DuckDB, whichever engine made them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from analysis.progress import Progress
from analysis.rollup_sql import (
    DUCKDB,
    RAW_TABLES,
    SPARK,
    WINDOW_TABLES,
    Dialect,
    Grid,
    Step,
    outside_sql,
    rollup_steps,
    table_stats_sql,
)
from analysis.window import GridSource, Window, choose_grid, n_buckets, resolve_window

_EPOCH = datetime(1970, 1, 1)


class Engine(Protocol):
    """Where the steps run: a dialect, a way to run a query for its rows, to make a
    step's table, to hand a table to the driver as Arrow, and to drop intermediates."""

    dialect: Dialect

    def rows(self, sql: str) -> list[tuple]: ...

    def create(self, step: Step) -> None: ...

    def arrow(self, name: str) -> pa.Table: ...

    def drop(self, name: str) -> None: ...


class DuckEngine:
    """DuckDB on a connection whose raw tables (or views over Parquet) are named
    ``requests``, ``log_events``, ``metrics``, ``events``. Output steps become tables of
    the connection's database (the store's rollups), intermediates temporary tables."""

    dialect = DUCKDB

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def create(self, step: Step) -> None:
        temp = "" if step.output else "TEMP "
        self.con.execute(f"CREATE OR REPLACE {temp}TABLE {step.name} AS {step.sql}")

    def arrow(self, name: str) -> pa.Table:
        return self.con.sql(f"SELECT * FROM {name}").to_arrow_table()

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")


class SparkEngine:
    """Spark SQL on a session whose raw tables are temporary views of those names. Each
    step is a temporary view; intermediates are cached (each is read twice)."""

    dialect = SPARK

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self._cached: dict[str, Any] = {}

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]

    def create(self, step: Step) -> None:
        df = self.spark.sql(step.sql)
        if not step.output:
            df = df.cache()
            self._cached[step.name] = df
        df.createOrReplaceTempView(step.name)

    def arrow(self, name: str) -> pa.Table:
        return self.spark.table(name).toArrow()

    def drop(self, name: str) -> None:
        if (df := self._cached.pop(name, None)) is not None:
            df.unpersist()
        self.spark.catalog.dropTempView(name)


@dataclass(frozen=True)
class RollupPlan:
    """What ``roll_up`` ran on: the grid (step, first and last bucket start, buckets),
    whether the step was given, the window with the rows left outside it, and the rows
    of each raw table."""

    grid: Grid
    grid_from: GridSource
    start: datetime | None
    end: datetime | None
    window: Window
    rows: dict[str, int]


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _stats(engine: Engine, window: Window) -> tuple[dict[str, int], datetime | None,
                                                     datetime | None]:
    """One pass over each raw table's times: its rows, and the span the grid covers --
    the data of ``requests``, ``log_events`` and ``metrics`` (not ``events``: a deploy a
    week earlier must not stretch it) clipped to the window; (None, None) when no row is
    inside it."""
    ws = None if window.start is None else _us(window.start)
    we = None if window.end is None else _us(window.end)
    q = " UNION ALL ".join(table_stats_sql(engine.dialect, t, ws, we) for t in RAW_TABLES)
    found = {str(r[0]): r[1:] for r in engine.rows(q)}
    rows = {t: int(found[t][0]) for t in RAW_TABLES}
    span = [found[t] for t in WINDOW_TABLES]
    los = [int(r[1]) for r in span if r[1] is not None]
    his = [int(r[2]) for r in span if r[2] is not None]
    if ws is None or we is None or not los or not sum(int(r[3]) for r in span):
        return rows, None, None
    lo, hi = max(min(los), ws), min(max(his), we)
    if hi < lo:
        return rows, None, None
    return rows, _EPOCH + timedelta(microseconds=lo), _EPOCH + timedelta(microseconds=hi)


def roll_up(
    engine: Engine,
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    manifest: dict[str, datetime] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    stale_s: int = 300,
    progress: Progress | None = None,
) -> RollupPlan:
    """Make every roll table on ``engine`` (``analysis.rollup_sql.rollup_steps``) and say
    what grid and window they were made on. The window's sides come from ``start``/
    ``end``, else the manifest (``manifest``, or the store's ``incident`` table when
    ``con`` is the store), else are inferred on the engine. ``progress`` is told each
    output table as it is made."""
    window = resolve_window(con, start, end, manifest=manifest, rows=engine.rows,
                            dialect=engine.dialect)
    rows, first, last = _stats(engine, window)
    g, grid_from = choose_grid(first, last, grid_s)
    us = g * 1_000_000
    lo = hi = 0
    n = 0
    bucket_start = bucket_end = None
    if first is not None and last is not None:
        lo = (_us(first) // us) * us
        hi = (_us(last) // us) * us + us
        n = n_buckets(first, last, g)
        bucket_start = _EPOCH + timedelta(microseconds=lo)
        bucket_end = _EPOCH + timedelta(microseconds=hi - us)
    grid = Grid(us=us, lo_us=lo, hi_us=hi, n=n, stale_us=int(stale_s) * 1_000_000)
    steps = rollup_steps(engine.dialect, grid)
    for step in steps:
        if progress is not None and step.output:
            progress.note(step.name)
        engine.create(step)
        if progress is not None and step.output:
            progress.advance()
    outside = {str(t): int(c) for t, c in engine.rows(
        outside_sql(engine.dialect, WINDOW_TABLES, grid if n else None))}
    window = replace(window, outside={t: outside.get(t, 0) for t in WINDOW_TABLES})
    return RollupPlan(grid, grid_from, bucket_start, bucket_end, window, rows)


def output_tables(dialect: Dialect) -> list[str]:
    """The roll tables ``roll_up`` makes, in order (the steps' named outputs)."""
    return [s.name for s in rollup_steps(dialect, Grid(1_000_000, 0, 0, 0, 0)) if s.output]


def drop_intermediates(engine: Engine) -> None:
    """Drop the steps' intermediate tables (``_mser``, ``_msamples``, ``_rm``)."""
    for step in rollup_steps(engine.dialect, Grid(1_000_000, 0, 0, 0, 0)):
        if not step.output:
            engine.drop(step.name)
