"""Detection: spikes, drops and level shifts against a robust, daily-aware baseline.

A series is compared with a rolling median baseline (optionally after taking
out the daily curve) and scaled by a rolling MAD, giving a robust z-score.
Runs of ``|z| >= threshold`` become anomaly windows with a start, peak, end,
direction and size. A do-nothing baseline detector (global mean + k sd) is
provided for comparison, and ``sensitivity`` shows how windows move with the
settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl


@dataclass(frozen=True)
class DetectorSettings:
    """Knobs of the robust detector.

    ``baseline_s``: length of the trailing window the baseline (median) and
    scale (MAD) are taken over; ``z_threshold``: robust z at which a bucket is
    anomalous; ``min_duration_s``: shorter runs are dropped; ``merge_gap_s``:
    runs closer than this merge into one window; ``daily_curve``: ``"auto"``
    removes a per-time-of-day profile when the series spans at least two days,
    ``"on"`` always, ``"off"`` never; ``min_scale_rel``: floor of the scale as a
    share of the baseline's typical level, so flat series do not flag noise.
    """

    baseline_s: int = 600
    z_threshold: float = 5.0
    min_duration_s: int = 3
    merge_gap_s: int = 10
    daily_curve: str = "auto"
    min_scale_rel: float = 0.05


@dataclass(frozen=True)
class AnomalyWindow:
    """One anomaly in one signal.

    ``size`` is the peak value minus the baseline at the peak; ``rel_size`` that
    divided by the baseline (``inf`` when the baseline is 0); ``score`` the peak
    robust z.
    """

    signal: str
    start: datetime
    peak: datetime
    end: datetime
    direction: str  # 'up' | 'down'
    size: float
    rel_size: float
    score: float
    baseline: float
    peak_value: float


def detect(
    series: pl.DataFrame, settings: DetectorSettings | None = None, *, signal: str | None = None
) -> list[AnomalyWindow]:
    """Anomaly windows in ``series`` (columns ``t``, ``value``; optionally ``signal``)."""
    raise NotImplementedError


def detect_all(
    con: duckdb.DuckDBPyConnection,
    settings: DetectorSettings | None = None,
    *,
    signals: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Windows of every signal in the ``signals`` table; also written to table ``anomalies``."""
    raise NotImplementedError


def baseline_detect(
    series: pl.DataFrame, k: float = 3.0, *, signal: str | None = None
) -> list[AnomalyWindow]:
    """The do-nothing detector: buckets beyond the global mean +- ``k`` sd, as windows."""
    raise NotImplementedError


def compare_to_baseline(
    series: pl.DataFrame,
    settings: DetectorSettings | None = None,
    *,
    truth: Sequence[tuple[datetime, datetime]] | None = None,
    k: float = 3.0,
    tolerance_s: float = 10.0,
) -> pl.DataFrame:
    """Robust detector vs the do-nothing baseline: windows found, and with ``truth``, recall,
    precision and median onset error."""
    raise NotImplementedError


def sensitivity(series: pl.DataFrame, grid_of_settings: Iterable[DetectorSettings]) -> pl.DataFrame:
    """Windows found under each settings in the grid: one row per (settings, window)."""
    raise NotImplementedError
