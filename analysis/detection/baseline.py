"""The do-nothing detector the robust one is measured against: runs of buckets beyond the
series' global mean +- k standard deviations."""

from __future__ import annotations

import numpy as np
import polars as pl

from analysis.detection.arrays import prepare
from analysis.detection.contracts import AnomalyWindow
from analysis.detection.robust import RobustFit
from analysis.detection.windows import to_windows, window_indices


def baseline_detect(
    series: pl.DataFrame, k: float = 3.0, *, signal: str | None = None
) -> list[AnomalyWindow]:
    """The do-nothing detector: runs of buckets beyond the global mean +- ``k`` sd."""
    prepared = prepare(series, signal)
    if prepared is None:
        return []
    name, t, x, _ = prepared
    mean, sd = float(np.nanmean(x)), float(np.nanstd(x))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - mean) / sd if sd > 0 else np.zeros_like(x)
    flat = np.zeros_like(x)
    fit = RobustFit(flat + mean, flat + (sd or 1.0), flat + (sd or 1.0), z, flat, 0)
    idx = window_indices(z, k, low=k, min_core=1, merge_gap=0)
    return to_windows(name, t, x, fit, idx, np.inf)
