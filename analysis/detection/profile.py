"""The daily-profile baseline: the ordinary time-of-day curve of a series spanning days,
taken out before the robust fit so the daily rise and fall is not an anomaly."""

from __future__ import annotations

import numpy as np
import polars as pl


def daily_profile(t: np.ndarray, x: np.ndarray, bin_s: int) -> np.ndarray:
    """Per-bucket value of the time-of-day profile (median per bin across days), centred."""
    bins = ((t % 86400) // bin_s).astype(np.int64)
    prof = (
        pl.DataFrame({"b": bins, "x": x}, nan_to_null=True).group_by("b").agg(pl.col("x").median())
    )
    lookup = np.full(int(86400 // bin_s) + 1, np.nan)
    lookup[prof["b"].to_numpy()] = prof["x"].to_numpy().astype(float)
    per_bucket = lookup[bins]
    centre = np.nanmedian(per_bucket) if np.isfinite(per_bucket).any() else 0.0
    return np.nan_to_num(per_bucket - centre)
