"""The robust z-score detector's fit: a trailing rolling-median baseline (carried along
its slope), a robust scale and the z of every bucket (package docstring, steps 1-4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.detection.arrays import fill, lagged, lagged_or_now, rolling_median, rolling_quantile
from analysis.detection.contracts import DetectorSettings
from analysis.detection.profile import daily_profile

MAD_TO_SD = 1.4826
#: the baseline window spans at least this many buckets (coarse grids: ``baseline_s`` of
#: 900 s is 3 buckets of 300 s, too few for a median and a MAD)
MIN_BASELINE_BUCKETS = 30


@dataclass(frozen=True)
class RobustFit:
    """Per-bucket baseline, scales upward and downward, robust z and baseline slope (value
    per bucket); ``horizon`` is the baseline window in buckets, how far a slope may be
    carried."""

    baseline: np.ndarray
    up: np.ndarray
    down: np.ndarray
    z: np.ndarray
    slope: np.ndarray
    horizon: int

    def scale(self, sign: int) -> np.ndarray:
        """The scale of departures in direction ``sign`` (+1 up, -1 down)."""
        return self.up if sign > 0 else self.down


def robust_z(
    t: np.ndarray,
    x: np.ndarray,
    settings: DetectorSettings,
    *,
    step_s: float = 1.0,
    counts: bool = False,
    mask: np.ndarray | None = None,
) -> RobustFit:
    """Baseline, scale, slope and robust z of ``x`` (see the package docstring); ``mask``
    marks buckets to keep out of the baseline."""
    xb = x.copy()
    if mask is not None:
        xb[mask] = np.nan
    profile = _profile(t, xb, settings)
    r, rb = x - profile, xb - profile
    window = max(MIN_BASELINE_BUCKETS, int(round(settings.baseline_s / step_s)))
    min_samples = _min_samples(rb, window, counts=counts, masked=mask is not None)
    if settings.trend:
        med, slope = _trend_level(rb, window, min_samples)
    else:
        med = fill(rolling_median(rb, window, min_samples))
        slope = np.zeros_like(x)
    stride = max(1, window // 100)  # scales vary slowly: a coarse rolling median will do
    baseline = med + profile
    scale = _scale(r, rb, med, baseline, settings, window, min_samples, stride)
    if counts:
        level = np.maximum(np.nan_to_num(baseline) * step_s, 1.0)
        scale = np.maximum(scale, np.sqrt(level) / step_s)
    up = down = scale
    if counts:
        low = settings.hysteresis * settings.z_threshold
        up, down = _count_scales(rb, med, scale, window, min_samples, stride, low)
    with np.errstate(invalid="ignore"):
        z = np.where(x >= baseline, (x - baseline) / up, (x - baseline) / down)
    return RobustFit(baseline, up, down, z, np.nan_to_num(slope), window)


def _profile(t: np.ndarray, xb: np.ndarray, settings: DetectorSettings) -> np.ndarray:
    """The daily profile to take out (zeros unless ``daily_curve`` asks for it and, for
    ``"auto"``, the series spans two days)."""
    span = t[-1] - t[0] if len(t) else 0.0
    if settings.daily_curve == "on" or (settings.daily_curve == "auto" and span >= 2 * 86400):
        return daily_profile(t, xb, settings.profile_bin_s)
    return np.zeros_like(xb)


def _min_samples(rb: np.ndarray, window: int, *, counts: bool, masked: bool) -> int:
    """Samples the trailing window needs before it judges a bucket."""
    # the first buckets have little past: counts, bursty by nature, need more of it
    min_samples = min(window, 30 if counts else 5)
    if masked:
        # after a masked window the baseline stays frozen until a quarter of the window is
        # clean again: a few seconds between two bursts of an outage are not "normal"
        clean = int(np.isfinite(rb).sum())
        min_samples = max(min_samples, min(window // 4, clean // 4))
    return min_samples


def _trend_level(rb: np.ndarray, window: int, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Baseline level and slope (per bucket) carried along the trailing window's trend."""
    # medians of the three thirds of the trailing window; the slope is the smaller of
    # the two steps between them when both go the same way (a "minmod" limiter), so a
    # steady drift is followed while a level shift, which moves one step only, is not
    third = max(2, window // 3)
    recent = rolling_median(rb, third, min(third, max(min_samples // 3, 1)))
    middle = lagged(recent, third)
    older = lagged(recent, 2 * third)
    s1, s2 = (recent - middle) / third, (middle - older) / third
    slope = np.where(
        np.sign(s1) == np.sign(s2), np.sign(s1) * np.minimum(np.abs(s1), np.abs(s2)), 0.0
    )
    slope = fill(np.where(np.isfinite(slope), slope, np.nan))
    slope = np.nan_to_num(slope)
    return fill(recent + slope * (third + 1) / 2), slope


def _scale(
    r: np.ndarray,
    rb: np.ndarray,
    med: np.ndarray,
    baseline: np.ndarray,
    settings: DetectorSettings,
    window: int,
    min_samples: int,
    stride: int,
) -> np.ndarray:
    """The robust scale: the largest of the rolling MAD, the local noise, ``min_scale_rel``
    of the baseline and ``min_scale_range`` of the series' 1-99 % range."""
    mad = fill(rolling_median(np.abs(rb - med), window, min_samples, stride=stride))
    # local noise from first differences: not inflated by drifts or by the baseline's lag
    diffs = np.abs(np.diff(rb, prepend=np.nan))
    noise = fill(rolling_median(diffs, window, min_samples, stride=stride))
    finite = r[np.isfinite(r)]
    spread = float(np.subtract(*np.percentile(finite, [99, 1]))) if len(finite) else 0.0
    top = float(np.max(np.abs(finite))) if len(finite) else 1.0
    floor = max(settings.min_scale_range * spread, 1e-9 * max(1.0, top))
    return np.maximum.reduce(
        [
            np.nan_to_num(MAD_TO_SD * mad),
            np.nan_to_num(MAD_TO_SD * noise / np.sqrt(2)),
            settings.min_scale_rel * np.abs(np.nan_to_num(baseline)),
            np.full_like(r, floor),
        ]
    )


def _count_scales(
    rb: np.ndarray,
    med: np.ndarray,
    scale: np.ndarray,
    window: int,
    min_samples: int,
    stride: int,
    low: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Upward and downward scales of a count series: the 1-99 % range of its past is
    normal, so a bursty series (a caller whose seconds hold one batch or none) is not
    anomalous at its usual zeros and peaks."""
    # taken over the window before the trailing one, so that a decline or a rise has to
    # last ``baseline_s`` before it widens the range it is judged against
    q_lo, q_hi = (
        lagged_or_now(rolling_quantile(rb, q, window, min_samples, stride=stride), window)
        for q in (0.01, 0.99)
    )
    up = np.maximum(scale, np.nan_to_num((q_hi - med) / low))
    down = np.maximum(scale, np.nan_to_num((med - q_lo) / low))
    return up, down
