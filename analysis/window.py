"""The incident window and the time grid the rollups are built on.

``build_rollups`` (``analysis.rollups``) asks this module two questions before it rolls
anything up: which span of time is the incident (``resolve_window``), and how wide a
bucket keeps that span within bounds (``choose_grid``). Both read only the canonical
tables; neither writes anything.

The window, side by side (each of ``start`` and ``end`` on its own), comes from:

1. ``flag``: the caller's ``start``/``end`` (``--start/--end`` on ``chain``, ``whatif``,
   ``report``);
2. ``manifest``: the ``incident`` table's ``window_start``/``window_end`` (an
   ``incident.toml`` ``[window]``, or ``ingest --start/--end``);
3. ``inferred``: where the rows of ``requests``, ``log_events`` and ``metrics`` are dense
   (``INFERENCE_RULE``), so that a handful of stray rows dated 1970 or 9999 neither
   stretch the grid to millions of buckets nor stop the analysis.

Rows outside the window stay in the store; they are counted per table (``outside``) so
that every output can say how many were left out, never silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import duckdb

from analysis.errors import UserError
from analysis.ingest.timeparse import parse_flag_time
from analysis.rollup_sql import (
    DUCKDB,
    WINDOW_TABLES,
    Dialect,
    fenced_span_sql,
    quartiles_sql,
    whole_quartiles_sql,
)

Source = Literal["flag", "manifest", "inferred"]
GridSource = Literal["flag", "auto"]

#: auto grid steps (seconds), finest first: the first whose grid has at most
#: ``TARGET_BUCKETS`` buckets is taken (1 s for up to a day, 5 s for up to ~5 days, 60 s for
#: up to ~10 weeks, 300 s for up to ~1 year)
GRID_STEPS: tuple[int, ...] = (1, 5, 10, 30, 60, 300, 900, 3600)
TARGET_BUCKETS = 100_000
#: the most buckets a grid set by ``--grid`` may have (the dense ``signals`` table holds
#: every signal on every bucket)
MAX_BUCKETS = 5_000_000
#: Tukey's "far out" fence factor and its floor: a table's fence is its quartiles widened
#: by ``FENCE_K`` interquartile ranges, and by at least ``FENCE_MIN_S`` seconds
FENCE_K = 3.0
FENCE_MIN_S = 3600.0
#: tables with fewer rows than this set no fence of their own (too few for quartiles)
FENCE_MIN_ROWS = 20

INFERENCE_RULE = (
    "per table (requests, log_events, metrics) with at least 20 rows: the quartiles Q1, Q3"
    " of its row times, fence [Q1 - 3 x max(Q3 - Q1, 1 h), Q3 + 3 x max(Q3 - Q1, 1 h)] (all"
    " rows together when no table has 20); the window runs from the first to the last row"
    " of any of the three tables inside any fence"
)

_EPOCH = datetime(1970, 1, 1)
_WHY: dict[str, str] = {
    "flag": "set by --start/--end",
    "manifest": "from the manifest's window",
    "inferred": "inferred from where the rows are dense",
}


@dataclass(frozen=True)
class Window:
    """The incident window ``[start, end]`` (None when the store has no rows), where each
    side came from, and the rows of each table outside it: outside the grid's buckets,
    which cover the window's data in whole buckets (a row a fraction of a bucket past
    ``end``, in the last bucket, is inside)."""

    start: datetime | None
    end: datetime | None
    start_from: Source
    end_from: Source
    outside: dict[str, int] = field(default_factory=dict)

    @property
    def n_outside(self) -> int:
        """Rows outside the window over all tables."""
        return sum(self.outside.values())

    def how(self) -> str:
        """Where the window came from, in words (each side when they differ)."""
        if self.start_from == self.end_from:
            return _WHY[self.start_from]
        return f"start {_WHY[self.start_from]}, end {_WHY[self.end_from]}"

    def outside_line(self) -> str:
        """The "N rows outside the window [start, end] (per table)" sentence."""
        per = ", ".join(f"{t} {n:,}" for t, n in self.outside.items())
        return (f"{self.n_outside:,} rows outside the window [{_iso(self.start)},"
                f" {_iso(self.end)}] ({per}); kept in the store, left out of the analysis")


def _iso(t: datetime | None) -> str:
    return "none" if t is None else t.isoformat(sep="T") + "Z"


def _manifest_sides(con: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
    """``window_start``/``window_end`` of the ``incident`` table, parsed."""
    try:
        rows = con.execute(
            "SELECT key, value FROM incident WHERE key IN ('window_start', 'window_end')"
        ).fetchall()
    except duckdb.Error:
        return {}
    return {k: parse_flag_time(v, f"incident table key {k}") for k, v in rows if v}


RowsFn = Callable[[str], list[tuple]]
"""Runs one query on an engine and returns its rows (``analysis.rollup_engines``)."""


def infer_window(
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    rows: RowsFn | None = None,
    dialect: Dialect = DUCKDB,
) -> tuple[datetime | None, datetime | None]:
    """The span where the data are dense (``INFERENCE_RULE``): the exact time quartiles
    per table, the fences from them, then the first and last row inside a fence. Runs
    on the store's connection ``con``, or on any engine through ``rows`` and its
    ``dialect`` (the queries are ``analysis.rollup_sql``'s)."""
    if rows is None:
        assert con is not None

        def rows(q: str) -> list[tuple]:
            return con.execute(q).fetchall()

    qs = [(q1, q3) for _, n, q1, q3 in rows(quartiles_sql(dialect, WINDOW_TABLES))
          if n >= FENCE_MIN_ROWS]
    if not qs:  # no table has enough rows for quartiles of its own: all rows together
        qs = [tuple(r) for r in rows(whole_quartiles_sql(dialect, WINDOW_TABLES))]
    floor = FENCE_MIN_S * 1e6
    fences = [(q1 - FENCE_K * max(q3 - q1, floor), q3 + FENCE_K * max(q3 - q1, floor))
              for q1, q3 in qs if q1 is not None and q3 is not None]
    if not fences:
        return None, None
    lo, hi = rows(fenced_span_sql(dialect, WINDOW_TABLES, fences))[0]
    if lo is None:
        return None, None
    return _EPOCH + timedelta(microseconds=int(lo)), _EPOCH + timedelta(microseconds=int(hi))


def resolve_window(
    con: duckdb.DuckDBPyConnection | None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    manifest: dict[str, datetime] | None = None,
    rows: RowsFn | None = None,
    dialect: Dialect = DUCKDB,
) -> Window:
    """The incident window: flags, else the manifest, else inferred (module docstring).
    ``build_rollups`` counts the rows outside it (``Window.outside``) once it knows the
    grid, since the grid widens the window to whole buckets. Without a store (``con``
    None) the manifest's sides are ``manifest`` (``window_start``/``window_end``) and
    the inference runs through ``rows`` in ``dialect`` (``infer_window``)."""
    if manifest is None:
        manifest = {} if con is None else _manifest_sides(con)
    sides: dict[str, tuple[datetime | None, Source]] = {}
    inferred: tuple[datetime | None, datetime | None] | None = None
    for i, (side, given) in enumerate((("start", start), ("end", end))):
        if given is not None:
            sides[side] = (given, "flag")
        elif f"window_{side}" in manifest:
            sides[side] = (manifest[f"window_{side}"], "manifest")
        else:
            inferred = inferred or infer_window(con, rows=rows, dialect=dialect)
            sides[side] = (inferred[i], "inferred")
    (lo, lo_from), (hi, hi_from) = sides["start"], sides["end"]
    if lo is not None and hi is not None and hi < lo:
        raise UserError(
            f"the window ends ({_iso(hi)}, {hi_from}) before it starts ({_iso(lo)}, {lo_from}):"
            " give --start before --end (or fix [window] in incident.toml)"
        )
    return Window(lo, hi, lo_from, hi_from)


def n_buckets(first: datetime, last: datetime, grid_s: int) -> int:
    """Buckets of a ``grid_s`` grid from the bucket of ``first`` to that of ``last``."""
    us = grid_s * 1_000_000
    return int(_epoch_us(last) // us - _epoch_us(first) // us) + 1


def _epoch_us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def choose_grid(
    first: datetime | None, last: datetime | None, grid_s: int | None = None
) -> tuple[int, GridSource]:
    """The grid step in seconds for data from ``first`` to ``last``, and whether it was
    given (``flag``) or chosen (``auto``: the finest of ``GRID_STEPS`` with at most
    ``TARGET_BUCKETS`` buckets; past them, whole hours). A given step must be a whole
    number of seconds >= 1 and give at most ``MAX_BUCKETS`` buckets; the error names the
    flags that fix it."""
    if grid_s is not None:
        if int(grid_s) != grid_s or grid_s < 1:
            raise UserError(f"--grid {grid_s!r}: expected a whole number of seconds >= 1")
        g = int(grid_s)
        if first is not None and last is not None:
            n = n_buckets(first, last, g)
            if n > MAX_BUCKETS:
                fit, _ = choose_grid(first, last)
                raise UserError(
                    f"a {g} s grid from {_iso(first)} to {_iso(last)} has {n:,} buckets (limit"
                    f" {MAX_BUCKETS:,}): pass a coarser --grid SECONDS (--grid {fit} fits), or"
                    " narrow the window with --start/--end (or [window] start/end in"
                    " incident.toml)"
                )
        return g, "flag"
    if first is None or last is None:
        return GRID_STEPS[0], "auto"
    for g in GRID_STEPS:
        if n_buckets(first, last, g) <= TARGET_BUCKETS:
            return g, "auto"
    g = 3600 * math.ceil((last - first).total_seconds() / TARGET_BUCKETS / 3600)
    while n_buckets(first, last, g) > TARGET_BUCKETS:  # at most a step or two
        g += 3600
    return g, "auto"
