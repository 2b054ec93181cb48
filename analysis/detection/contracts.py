"""What detection is told and what it answers: ``DetectorSettings`` (the knobs),
``AnomalyWindow`` (one anomaly), ``Detection`` (one series' windows, or why it has none),
``windows_frame`` (windows as a table) and the fewest samples a baseline needs.

Every other module of the package reads these; this one reads none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import polars as pl

#: the fewest samples a series needs for a baseline (see the package docstring)
MIN_SAMPLES = 10
MIN_SAMPLES_COUNTS = 30


@dataclass(frozen=True)
class DetectorSettings:
    """Knobs of the robust detector.

    ``baseline_s``: length of the trailing window the baseline (median) and
    scale (MAD) are taken over; ``z_threshold``: robust z at which a bucket is
    anomalous; ``min_duration_s``: windows need this many seconds of buckets at
    or past the threshold, or as much evidence spread wider (``|z|`` capped at the
    threshold, summed over buckets past the hysteresis level); ``merge_gap_s``:
    windows closer than this merge into one; ``daily_curve``: ``"auto"`` removes a
    per-time-of-day profile when the series spans at least two days, ``"on"``
    always, ``"off"`` never;
    ``min_scale_rel``: floor of the scale as a share of the baseline's level,
    so flat series do not flag noise; ``hysteresis``: a window extends while
    ``|z|`` stays above this share of the threshold; ``passes``: refinement
    passes with window buckets masked out of the baseline; ``profile_bin_s``:
    width of the time-of-day bins of the daily profile; ``trend``: carry the
    baseline along the slope of the trailing window (so a rising daily curve
    is not measured against where it was ``baseline_s / 2`` ago);
    ``rejoin_s``: a window, measured against the baseline frozen at its start,
    absorbs a later burst past the threshold when the series came back for less
    than this (an outage's bursts, a restart inside a plateau);
    ``min_scale_range``: floor of the scale as a share of the series' 1-99 %
    range, for series that are flat before an anomaly (TIME_WAIT at 0);
    ``bridge_buckets``: up to this many buckets back inside the threshold between
    two buckets past it count towards ``min_duration_s`` (default 1: a user-facing
    drop of a few seconds broken by one recovered second is one drop, not two runs
    each too short to count); 0 counts only the buckets past the threshold.
    """

    baseline_s: int = 900
    z_threshold: float = 5.0
    min_duration_s: int = 3
    merge_gap_s: int = 10
    daily_curve: str = "auto"
    min_scale_rel: float = 0.02
    hysteresis: float = 0.5
    passes: int = 1
    profile_bin_s: int = 300
    trend: bool = True
    rejoin_s: int = 120
    min_scale_range: float = 1e-3
    bridge_buckets: int = 1


@dataclass(frozen=True)
class AnomalyWindow:
    """One anomaly in one signal.

    ``start``/``end`` are the first and last anomalous buckets; ``peak`` the
    most extreme bucket in the window's direction. ``size`` is the value at the
    peak minus the baseline there; ``rel_size`` that divided by the baseline
    (``inf`` when the baseline is 0); ``score`` the robust z at the peak.
    ``kind`` is ``spike``, ``drop`` or ``shift`` (see the package docstring).
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
    kind: str = "spike"

    @property
    def duration_s(self) -> float:
        """Seconds from the start of the first bucket to the start of the last one."""
        return (self.end - self.start).total_seconds()


WINDOW_SCHEMA: dict[str, pl.DataType] = {
    "signal": pl.String(),
    "start": pl.Datetime("us"),
    "peak": pl.Datetime("us"),
    "end": pl.Datetime("us"),
    "direction": pl.String(),
    "size": pl.Float64(),
    "rel_size": pl.Float64(),
    "score": pl.Float64(),
    "baseline": pl.Float64(),
    "peak_value": pl.Float64(),
    "kind": pl.String(),
}


def windows_frame(windows: Sequence[AnomalyWindow]) -> pl.DataFrame:
    """Windows as a frame (one row each, the ``AnomalyWindow`` fields plus ``duration_s``)."""
    frame = pl.DataFrame([asdict(w) for w in windows], schema=WINDOW_SCHEMA)
    return frame.with_columns(
        duration_s=(pl.col("end") - pl.col("start")).dt.total_microseconds() / 1e6
    )


@dataclass(frozen=True)
class Detection:
    """What detection found in one series: its windows, how many samples it has against
    the ``needed`` its baseline wants, and ``too_short`` (then no windows) with the
    reason."""

    signal: str
    windows: list[AnomalyWindow]
    samples: int
    needed: int
    too_short: bool = False
    reason: str | None = None
