"""Detection: spikes, drops and level shifts against a robust, daily-aware baseline.

How a series becomes anomaly windows (vectorised with numpy, bottleneck and
polars; the only Python loops run per window or per pass, never per bucket):

1. Daily curve: when the series spans two days or more (``daily_curve="auto"``)
   a time-of-day profile (median per ``profile_bin_s`` bin across days) is
   taken out first, so the ordinary daily rise and fall is not an anomaly.
   Within one day the trailing baseline below follows the slow daily curve.
2. Baseline: a trailing rolling median (excluding the current bucket, so a
   level shift is measured against the level before it). With ``trend`` the
   medians of the trailing window's three thirds give a slope, kept only when
   both steps agree ("minmod"), and the baseline is carried along it: a steady
   drift is followed, a level shift is not.
3. Scale: the largest of a rolling MAD around the baseline, the local noise
   (rolling median of first differences), ``min_scale_rel`` of the baseline and
   ``min_scale_range`` of the series' 1-99 % range. Count series (requests,
   log lines) add a Poisson floor ``sqrt(level)`` and, separately upward and
   downward, the spread of their own past 1-99 % range, so a bursty caller's
   usual zeros and peaks are not anomalies; they also warm up on 30 buckets.
4. Robust z = (value - baseline) / scale. Buckets with ``|z| >= z_threshold``
   are the cores of windows; a window covers the neighbouring buckets with
   ``|z| >= hysteresis * z_threshold`` in the same direction, so its start is
   the first departing bucket, not the first bucket past the high threshold.
   Runs closer than ``merge_gap_s`` merge; windows need ``min_duration_s`` of
   core buckets, up to ``bridge_buckets`` between two core buckets counted too (a
   drop broken by one recovered second is as long as the whole drop), or the same
   evidence spread over more buckets: their ``|z|``, capped at ``z_threshold``,
   summing to ``min_duration_s`` worth of core buckets (a drop of several seconds
   mostly just under the threshold).
5. Extension: each window is followed against the baseline and scale frozen
   at its start, across returns shorter than ``rejoin_s`` to bursts that would
   make a window themselves: an intermittent anomaly (errors only in the
   seconds a batch runs, a plateau broken by restarts) is one window, not
   absorbed into the trailing baseline. A dip inside a longer rise is dropped.
6. Refinement passes: buckets inside windows are masked and the baseline is
   recomputed without them (frozen until a quarter of the window is clean).

A window that runs to the end of the series or lasts at least ``baseline_s``
is a ``shift``; otherwise an upward window is a ``spike`` and a downward one a
``drop``. Known limit: the first buckets have no past, so an anomaly under way
when the series starts is taken as its normal level.

Too little data is said, not guessed at: a series with fewer samples than its
baseline needs (``MIN_SAMPLES``: 10 for gauges and rates, whose baseline takes
5 samples before it judges one and as many again for its scale; 30 for counts,
the warm-up their bursts need) gets no windows and ``too_short`` with the reason
(``detect_series``). A series' samples are its finite buckets, unless the caller
knows better: ``detect_all`` passes a metric's raw sample count
(from ``metrics`` over the grid's span), since the rollups hold a gauge's sample over every bucket

The package, one job a module (data flows down the list, never back up):

- ``contracts``: ``DetectorSettings``, ``AnomalyWindow``, ``Detection``, ``windows_frame``;
- ``arrays``: the shared array helpers (trailing rolling statistics, lags, runs);
- ``profile``: the daily-profile baseline (step 1);
- ``robust``: the robust z-score fit (steps 2-4, ``robust_z``);
- ``windows``: runs, growing and merging of windows (steps 4-5);
- ``detector``: the robust detector over one series, with its passes (``detect_series``);
- ``baseline``: the do-nothing detector (``baseline_detect``);
- ``scoring``: detectors against truth and each other, and under a grid of settings;
- ``store``: detection over the store (``detect_all``, ``raw_samples``).
"""

from analysis.detection.baseline import baseline_detect
from analysis.detection.contracts import (
    MIN_SAMPLES,
    MIN_SAMPLES_COUNTS,
    WINDOW_SCHEMA,
    AnomalyWindow,
    Detection,
    DetectorSettings,
    windows_frame,
)
from analysis.detection.detector import detect, detect_series
from analysis.detection.robust import MAD_TO_SD, MIN_BASELINE_BUCKETS, RobustFit, robust_z
from analysis.detection.scoring import compare_to_baseline, sensitivity, settings_grid
from analysis.detection.store import detect_all, raw_samples
from analysis.detection.windows import extend_windows, window_indices

__all__ = [
    "MAD_TO_SD",
    "MIN_BASELINE_BUCKETS",
    "MIN_SAMPLES",
    "MIN_SAMPLES_COUNTS",
    "WINDOW_SCHEMA",
    "AnomalyWindow",
    "Detection",
    "DetectorSettings",
    "RobustFit",
    "baseline_detect",
    "compare_to_baseline",
    "detect",
    "detect_all",
    "detect_series",
    "extend_windows",
    "raw_samples",
    "robust_z",
    "sensitivity",
    "settings_grid",
    "window_indices",
    "windows_frame",
]
