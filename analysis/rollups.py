"""Rollups: every source on one dense time grid, built in DuckDB SQL.

``build_rollups`` turns the canonical tables (``requests``, ``log_events``,
``metrics``, ``events``) into per-bucket tables and one long-form ``signals``
table in which every series shares the same grid, so that detection and
lead/lag can treat every signal alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl


@dataclass(frozen=True)
class RollupInfo:
    """What ``build_rollups`` built: the grid and how many signals it holds."""

    grid_s: int
    start: datetime | None
    end: datetime | None
    n_buckets: int
    n_signals: int


def build_rollups(con: duckdb.DuckDBPyConnection, grid_s: int = 1) -> RollupInfo:
    """Create or replace ``roll_*``, ``signals`` and ``signal_catalog`` on a ``grid_s`` grid."""
    raise NotImplementedError


def signal_series(con: duckdb.DuckDBPyConnection, signal: str) -> pl.DataFrame:
    """One signal as a frame ``[t, value]`` ordered by time (empty if unknown)."""
    raise NotImplementedError


def signal_frame(con: duckdb.DuckDBPyConnection, signals: Sequence[str]) -> pl.DataFrame:
    """Several signals side by side: ``t`` plus one column per signal, on the dense grid."""
    raise NotImplementedError
