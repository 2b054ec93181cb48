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
   core buckets.
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
until the next one: 5 samples a minute apart are 5 samples, not 300 buckets. On
a coarse grid the baseline window is at least ``MIN_BASELINE_BUCKETS`` buckets,
whatever ``baseline_s``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta

import bottleneck as bn
import duckdb
import numpy as np
import polars as pl

from analysis.rollups import rollup_info, signal_parts

MAD_TO_SD = 1.4826
#: the fewest samples a series needs for a baseline (see the module docstring)
MIN_SAMPLES = 10
MIN_SAMPLES_COUNTS = 30
#: the baseline window spans at least this many buckets (coarse grids: ``baseline_s`` of
#: 900 s is 3 buckets of 300 s, too few for a median and a MAD)
MIN_BASELINE_BUCKETS = 30


@dataclass(frozen=True)
class DetectorSettings:
    """Knobs of the robust detector.

    ``baseline_s``: length of the trailing window the baseline (median) and
    scale (MAD) are taken over; ``z_threshold``: robust z at which a bucket is
    anomalous; ``min_duration_s``: windows need this many seconds of buckets at
    or past the threshold; ``merge_gap_s``: windows closer than this merge into
    one; ``daily_curve``: ``"auto"`` removes a per-time-of-day profile when the
    series spans at least two days, ``"on"`` always, ``"off"`` never;
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
    range, for series that are flat before an anomaly (TIME_WAIT at 0).
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


@dataclass(frozen=True)
class AnomalyWindow:
    """One anomaly in one signal.

    ``start``/``end`` are the first and last anomalous buckets; ``peak`` the
    most extreme bucket in the window's direction. ``size`` is the value at the
    peak minus the baseline there; ``rel_size`` that divided by the baseline
    (``inf`` when the baseline is 0); ``score`` the robust z at the peak.
    ``kind`` is ``spike``, ``drop`` or ``shift`` (see the module docstring).
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


# --- the maths: arrays in, arrays out ------------------------------------------------------


def _series_arrays(series: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    """Times (epoch seconds), values (NaN for missing) and the grid step of a series."""
    s = series if series["t"].is_sorted() else series.sort("t")
    t = s["t"].cast(pl.Datetime("us")).to_numpy().astype("datetime64[us]").astype(np.int64) / 1e6
    x = s["value"].cast(pl.Float64).to_numpy()  # nulls become NaN
    x = np.array(x, dtype=np.float64)  # writable, own copy
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    return t, x, max(step, 1e-6)


def _trailing(
    x: np.ndarray,
    window: int,
    min_samples: int,
    stride: int,
    stat: Callable[[np.ndarray, int, int], np.ndarray],
) -> np.ndarray:
    """A trailing rolling statistic ``stat(values, window, min_count)`` ignoring NaN and
    excluding the current point. With ``stride > 1`` it is taken over every
    ``stride``-th point and held for ``stride`` buckets (still strictly trailing): for
    slowly varying scales. The window is clamped to the series (a short capture)."""
    stride = max(1, stride)
    coarse = x[::stride]
    w = max(1, min(window // stride if stride > 1 else window, len(coarse)))
    if stride > 1:
        w = max(1, min(max(3, w), len(coarse)))
    m = min(max(1, min_samples // stride), w)
    out = np.concatenate(([np.nan], np.asarray(stat(coarse, w, m), dtype=np.float64)[:-1]))
    return np.repeat(out, stride)[: len(x)] if stride > 1 else out


def _median_stat(v: np.ndarray, w: int, m: int) -> np.ndarray:
    return bn.move_median(v, w, min_count=m)


def _rolling_median(x: np.ndarray, window: int, min_samples: int, *, stride: int = 1) -> np.ndarray:
    """Trailing rolling median (see ``_trailing``), with bottleneck."""
    return _trailing(x, window, min_samples, stride, _median_stat)


def _rolling_quantile(
    x: np.ndarray, q: float, window: int, min_samples: int, *, stride: int = 1
) -> np.ndarray:
    """Trailing rolling ``q`` quantile (see ``_trailing``), with polars."""

    def stat(v: np.ndarray, w: int, m: int) -> np.ndarray:
        s = pl.Series(v, nan_to_null=True)
        return s.rolling_quantile(q, interpolation="linear", window_size=w, min_samples=m)

    return _trailing(x, window, min_samples, stride, stat)


def _lagged(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` delayed by ``k`` buckets (NaN before the start)."""
    return np.concatenate((np.full(min(k, len(a)), np.nan), a[: max(0, len(a) - k)]))


def _lagged_or_now(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` delayed by ``k`` buckets; where there is no value that old yet (the first
    ``k`` buckets), ``a`` itself."""
    old = _lagged(a, k)
    return np.where(np.isfinite(old), old, a)


def _fill(a: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward, and the first one backward (numpy only)."""
    ok = np.isfinite(a)
    if ok.all() or not ok.any():
        return a
    idx = np.where(ok, np.arange(len(a)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = a[idx]
    first = int(np.argmax(ok))
    out[:first] = a[first]
    return out


def _daily_profile(t: np.ndarray, x: np.ndarray, bin_s: int) -> np.ndarray:
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
    """Baseline, scale, slope and robust z of ``x`` (see the module docstring); ``mask``
    marks buckets to keep out of the baseline."""
    xb = x.copy()
    if mask is not None:
        xb[mask] = np.nan
    profile = np.zeros_like(x)
    span = t[-1] - t[0] if len(t) else 0.0
    if settings.daily_curve == "on" or (settings.daily_curve == "auto" and span >= 2 * 86400):
        profile = _daily_profile(t, xb, settings.profile_bin_s)
    r, rb = x - profile, xb - profile
    window = max(MIN_BASELINE_BUCKETS, int(round(settings.baseline_s / step_s)))
    # the first buckets have little past: counts, bursty by nature, need more of it
    min_samples = min(window, 30 if counts else 5)
    if mask is not None:
        # after a masked window the baseline stays frozen until a quarter of the window is
        # clean again: a few seconds between two bursts of an outage are not "normal"
        clean = int(np.isfinite(rb).sum())
        min_samples = max(min_samples, min(window // 4, clean // 4))
    if settings.trend:
        # medians of the three thirds of the trailing window; the slope is the smaller of
        # the two steps between them when both go the same way (a "minmod" limiter), so a
        # steady drift is followed while a level shift, which moves one step only, is not
        third = max(2, window // 3)
        recent = _rolling_median(rb, third, min(third, max(min_samples // 3, 1)))
        middle = _lagged(recent, third)
        older = _lagged(recent, 2 * third)
        s1, s2 = (recent - middle) / third, (middle - older) / third
        slope = np.where(
            np.sign(s1) == np.sign(s2), np.sign(s1) * np.minimum(np.abs(s1), np.abs(s2)), 0.0
        )
        slope = _fill(np.where(np.isfinite(slope), slope, np.nan))
        slope = np.nan_to_num(slope)
        med = _fill(recent + slope * (third + 1) / 2)
    else:
        med = _fill(_rolling_median(rb, window, min_samples))
        slope = np.zeros_like(x)
    stride = max(1, window // 100)  # scales vary slowly: a coarse rolling median will do
    mad = _fill(_rolling_median(np.abs(rb - med), window, min_samples, stride=stride))
    # local noise from first differences: not inflated by drifts or by the baseline's lag
    diffs = np.abs(np.diff(rb, prepend=np.nan))
    noise = _fill(_rolling_median(diffs, window, min_samples, stride=stride))
    finite = r[np.isfinite(r)]
    spread = float(np.subtract(*np.percentile(finite, [99, 1]))) if len(finite) else 0.0
    top = float(np.max(np.abs(finite))) if len(finite) else 1.0
    floor = max(settings.min_scale_range * spread, 1e-9 * max(1.0, top))
    baseline = med + profile
    scale = np.maximum.reduce(
        [
            np.nan_to_num(MAD_TO_SD * mad),
            np.nan_to_num(MAD_TO_SD * noise / np.sqrt(2)),
            settings.min_scale_rel * np.abs(np.nan_to_num(baseline)),
            np.full_like(x, floor),
        ]
    )
    if counts:
        level = np.maximum(np.nan_to_num(baseline) * step_s, 1.0)
        scale = np.maximum(scale, np.sqrt(level) / step_s)
    # for counts, the 1-99 % range of the past is normal: a bursty series (a caller whose
    # seconds hold one batch or none) is not anomalous at its usual zeros and peaks
    low = settings.hysteresis * settings.z_threshold
    # taken over the window before the trailing one, so that a decline or a rise has to
    # last ``baseline_s`` before it widens the range it is judged against
    up = down = scale
    if counts:
        q_lo, q_hi = (
            _lagged_or_now(_rolling_quantile(rb, q, window, min_samples, stride=stride), window)
            for q in (0.01, 0.99)
        )
        up = np.maximum(scale, np.nan_to_num((q_hi - med) / low))
        down = np.maximum(scale, np.nan_to_num((med - q_lo) / low))
    with np.errstate(invalid="ignore"):
        z = np.where(x >= baseline, (x - baseline) / up, (x - baseline) / down)
    return RobustFit(baseline, up, down, z, np.nan_to_num(slope), window)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and (inclusive) end indices of the runs of True in ``mask``."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1


def window_indices(
    z: np.ndarray,
    threshold: float,
    *,
    low: float,
    min_core: int,
    merge_gap: int,
) -> list[tuple[int, int, int]]:
    """``(start, end, sign)`` index runs: extended while ``sign*z >= low``, merged across gaps
    of at most ``merge_gap`` buckets, kept when holding ``min_core`` buckets past
    ``threshold``."""
    out: list[tuple[int, int, int]] = []
    zz = np.nan_to_num(z, nan=0.0)
    for sign in (1, -1):
        core = sign * zz >= threshold
        starts, ends = _runs(sign * zz >= low)
        cs = np.concatenate(([0], np.cumsum(core)))
        has_core = cs[ends + 1] - cs[starts] > 0
        starts, ends = starts[has_core], ends[has_core]
        if len(starts) == 0:
            continue
        new_group = np.concatenate(([True], starts[1:] - ends[:-1] - 1 > merge_gap))
        g_starts = starts[new_group]
        g_ends = np.maximum.reduceat(ends, np.flatnonzero(new_group))
        keep = cs[g_ends + 1] - cs[g_starts] >= min_core
        out += [(int(s), int(e), sign) for s, e in zip(g_starts[keep], g_ends[keep], strict=True)]
    return sorted(out)


def _frozen(fit: RobustFit, s: int, lo: int, hi: int) -> np.ndarray:
    """The baseline frozen at bucket ``s``, carried along its slope for at most
    ``fit.horizon`` buckets, over buckets ``lo..hi-1``."""
    ahead = np.minimum(np.arange(lo - s, hi - s), fit.horizon)
    return fit.baseline[s] + fit.slope[s] * ahead


def _grow(
    x: np.ndarray,
    fit: RobustFit,
    s: int,
    e: int,
    sign: int,
    *,
    low: float,
    high: float,
    merge_gap: int,
    min_core: int = 1,
    burst_gap: int = 0,
) -> int:
    """New end of the window ``s..e``: it goes on while the series stays past ``low``
    against the frozen baseline, and across gaps of at most ``merge_gap`` buckets to a
    burst: runs past ``low`` no more than ``burst_gap`` apart that together hold
    ``min_core`` buckets past ``high`` (as a window needs). Looks ahead in growing chunks,
    so a short window costs little."""
    n = len(x)
    end, chunk = e, max(256, 8 * merge_gap)
    scale = fit.scale(sign)[s]
    near = x[e + 1 : e + 2 + merge_gap]  # most windows end here: answer that cheaply
    with np.errstate(invalid="ignore", divide="ignore"):
        z_near = sign * (near - _frozen(fit, s, e + 1, e + 1 + len(near))) / scale
    if not (z_near >= low).any():
        return e
    while end + 1 < n:
        lo, hi = end + 1, min(n, end + 1 + chunk)
        with np.errstate(invalid="ignore", divide="ignore"):
            zf = sign * (x[lo:hi] - _frozen(fit, s, lo, hi)) / scale
        starts, ends = _runs(zf >= low)
        if len(starts) == 0:
            return end
        cs = np.concatenate(([0], np.cumsum(zf >= high)))
        gaps = starts - np.concatenate(([-1], ends[:-1])) - 1
        group = np.cumsum(np.concatenate(([True], gaps[1:] > burst_gap)))
        first = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
        last = np.concatenate((first[1:], [len(starts)])) - 1
        burst_core = (cs[ends[last] + 1] - cs[starts[first]])[group - 1]
        ok = (gaps == 0) | ((gaps <= merge_gap) & (burst_core >= min_core))
        bad = np.flatnonzero(~ok)
        if len(bad) and (hi == n or hi - (lo + starts[bad[0]]) > (burst_gap + 1) * min_core):
            return end if bad[0] == 0 else lo + int(ends[bad[0] - 1])
        if len(bad):  # the burst may go on past this chunk: look further
            chunk *= 2
            continue
        end = lo + int(ends[-1])
        if hi == n or hi - 1 - end > merge_gap:
            return end
        chunk *= 2
    return end


def extend_windows(
    x: np.ndarray,
    fit: RobustFit,
    idx: list[tuple[int, int, int]],
    *,
    low: float,
    high: float,
    merge_gap: int,
    min_core: int = 1,
    burst_gap: int = 0,
) -> list[tuple[int, int, int]]:
    """Extend each window against the baseline and scale frozen at its start (see
    ``_grow``; a burst it absorbs needs ``min_core`` buckets past ``high``, as a window
    does), then merge same-direction windows within ``merge_gap`` buckets.

    A trailing baseline absorbs a lasting shift after ``baseline_s / 2``, and an
    intermittent one (errors only in the seconds a batch runs) sooner; the frozen
    baseline keeps the window open until the level really returns.
    """
    kw = {
        "low": low,
        "high": high,
        "merge_gap": merge_gap,
        "min_core": min_core,
        "burst_gap": burst_gap,
    }
    merged: list[tuple[int, int, int]] = []
    for s, e, sign in sorted(idx, key=lambda w: (w[2], w[0])):
        if merged and merged[-1][2] == sign and s <= merged[-1][1] + merge_gap + 1:
            ps, pe, _ = merged[-1]
            if e > pe:  # it reaches past the grown window: grow on from there
                pe = _grow(x, fit, ps, e, sign, **kw)
            merged[-1] = (ps, pe, sign)
        else:
            end = _grow(x, fit, s, e, sign, **kw)
            merged.append((s, end, sign))
    # a dip inside a longer rise (a restart inside a TIME_WAIT plateau) is part of that
    # anomaly, not a return to normal nor a new anomaly: drop it
    return sorted(
        w for w in merged if not any(o[2] != w[2] and o[0] <= w[0] and w[1] <= o[1] for o in merged)
    )


def _to_windows(
    signal: str,
    t: np.ndarray,
    x: np.ndarray,
    fit: RobustFit,
    idx: list[tuple[int, int, int]],
    long_s: float,
) -> list[AnomalyWindow]:
    """Describe each index run as an ``AnomalyWindow`` against the baseline frozen at its
    start (one Python step per window)."""
    out = []
    n = len(x)
    for s, e, sign in idx:
        frozen = _frozen(fit, s, s, e + 1)
        p = int(np.nanargmax(sign * (x[s : e + 1] - frozen)))
        size = float(x[s + p] - frozen[p])
        base = float(frozen[p])
        rel = size / abs(base) if base != 0 else (np.inf if size > 0 else -np.inf)
        shift = e == n - 1 or t[e] - t[s] >= long_s
        kind = "shift" if shift else ("spike" if sign > 0 else "drop")
        out.append(
            AnomalyWindow(
                signal=signal,
                start=_dt(t[s]),
                peak=_dt(t[s + p]),
                end=_dt(t[e]),
                direction="up" if sign > 0 else "down",
                size=size,
                rel_size=float(rel),
                score=float(size / fit.scale(sign)[s]),
                baseline=base,
                peak_value=float(x[s + p]),
                kind=kind,
            )
        )
    return out


_EPOCH = datetime(1970, 1, 1)


def _dt(epoch_s: float) -> datetime:
    """Epoch seconds to a naive UTC datetime, exact to the microsecond."""
    return _EPOCH + timedelta(microseconds=int(round(epoch_s * 1e6)))


def _prepare(
    series: pl.DataFrame, signal: str | None
) -> tuple[str, np.ndarray, np.ndarray, float] | None:
    """The signal's name, times, values and step; None when there is nothing to detect in
    (fewer than 3 buckets, no finite value, or a constant)."""
    name = signal
    if name is None:
        has_name = "signal" in series.columns and series.height
        name = str(series["signal"][0]) if has_name else "series"
    if series.height < 3:
        return None
    t, x, step = _series_arrays(series)
    finite = x[np.isfinite(x)]
    if len(finite) == 0 or finite.min() == finite.max():  # nothing, or a constant
        return None
    return name, t, x, step


# --- public API ----------------------------------------------------------------------------


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


def detect_series(
    series: pl.DataFrame,
    settings: DetectorSettings | None = None,
    *,
    signal: str | None = None,
    counts: bool = False,
    samples: int | None = None,
) -> Detection:
    """``detect`` with what it could not do said: a series with fewer samples than
    ``MIN_SAMPLES`` (``MIN_SAMPLES_COUNTS`` for counts) is ``too_short`` and gets no
    windows. ``samples``: the raw samples behind the series when known (a metric's),
    else its finite buckets."""
    needed = MIN_SAMPLES_COUNTS if counts else MIN_SAMPLES
    name = signal or (str(series["signal"][0]) if "signal" in series.columns
                      and series.height else "series")
    if samples is None:
        values = series["value"].cast(pl.Float64).fill_nan(None)
        samples = values.len() - values.null_count()
    n = int(samples)
    if n < needed:
        return Detection(name, [], n, needed, True,
                         f"{n} samples, fewer than the {needed} its baseline needs: no windows")
    return Detection(name, _detect_windows(series, settings, signal, counts), n, needed)


def detect(
    series: pl.DataFrame,
    settings: DetectorSettings | None = None,
    *,
    signal: str | None = None,
    counts: bool = False,
) -> list[AnomalyWindow]:
    """Anomaly windows in ``series`` (columns ``t``, ``value``; optionally ``signal``).

    ``counts`` says the values are event rates (requests, log lines), which
    adds a Poisson floor to the scale. Windows are ordered by start. A series too short
    for its baseline has none (``detect_series`` says why).
    """
    return detect_series(series, settings, signal=signal, counts=counts).windows


def _detect_windows(
    series: pl.DataFrame, settings: DetectorSettings | None, signal: str | None, counts: bool
) -> list[AnomalyWindow]:
    """The detector itself (the module docstring), on a series long enough for it."""
    settings = settings or DetectorSettings()
    prepared = _prepare(series, signal)
    if prepared is None:
        return []
    name, t, x, step = prepared
    min_core = max(1, int(np.ceil(settings.min_duration_s / step)))
    gap = int(settings.merge_gap_s // step)
    rejoin = int(settings.rejoin_s // step)
    low = settings.hysteresis * settings.z_threshold
    mask: np.ndarray | None = None
    idx: list[tuple[int, int, int]] = []
    for _ in range(1 + max(0, settings.passes)):
        fit = robust_z(t, x, settings, step_s=step, counts=counts, mask=mask)
        new_idx = window_indices(
            fit.z, settings.z_threshold, low=low, min_core=min_core, merge_gap=gap
        )
        new_idx = extend_windows(
            x,
            fit,
            new_idx,
            low=low,
            high=settings.z_threshold,
            merge_gap=max(gap, rejoin),
            min_core=min_core,
            burst_gap=gap,
        )
        if (new_idx == idx and mask is not None) or not new_idx:
            idx = new_idx
            break
        idx = new_idx
        mask = np.zeros(len(x), dtype=bool)
        for s, e, _sign in idx:
            mask[s : e + 1] = True
    return _to_windows(name, t, x, fit, idx, settings.baseline_s)


def detect_all(
    con: duckdb.DuckDBPyConnection,
    settings: DetectorSettings | None = None,
    *,
    signals: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Windows of every signal in the ``signals`` table; also written to table ``anomalies``,
    and the signals too short for a baseline to table ``too_short`` (signal, samples,
    needed, reason).

    Count signals (catalog kind ``count``) get the Poisson scale floor. The
    frame has the ``AnomalyWindow`` fields plus ``duration_s``, ordered by start.
    """
    settings = settings or DetectorSettings()
    kinds = dict(con.execute("SELECT signal, kind FROM signal_catalog").fetchall())
    wanted = None if signals is None else [s for s in signals if s in kinds]
    windows: list[AnomalyWindow] = []
    short: list[Detection] = []
    raw = raw_samples(con)
    for name, part in signal_parts(con, wanted):
        found = detect_series(part, settings, signal=name, counts=kinds.get(name) == "count",
                              samples=raw.get(name))
        windows += found.windows
        short += [found] if found.too_short else []
    frame = windows_frame(windows).sort("start", "signal")
    notes = pl.DataFrame(
        [(d.signal, d.samples, d.needed, d.reason) for d in short],
        schema={"signal": pl.String, "samples": pl.Int64, "needed": pl.Int64,
                "reason": pl.String}, orient="row",
    )
    for table, data in (("anomalies", frame), ("too_short", notes)):
        con.register("_detect_view", data)
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _detect_view")
        con.unregister("_detect_view")
    return frame


def raw_samples(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Raw samples behind each metric signal on the grid (``roll_info``'s buckets): a label
    set's own count; an aggregate over label sets, that of its best-sampled set. Empty
    without ``roll_info``. ``detect_all`` and the chain pass them to ``detect_series``."""
    info = rollup_info(con)
    if info is None or info.start is None or info.end is None:
        return {}
    # the raw samples per series inside the grid, as the rollups counted them
    rows = con.execute("""
        SELECT c.signal, max(s.samples) FROM signal_catalog c
        JOIN roll_series s ON s.metric = c.metric AND (c.labels IS NULL OR s.labels = c.labels)
        WHERE c.source = 'metrics' GROUP BY c.signal
    """).fetchall()
    return {str(k): int(v) for k, v in rows}


def baseline_detect(
    series: pl.DataFrame, k: float = 3.0, *, signal: str | None = None
) -> list[AnomalyWindow]:
    """The do-nothing detector: runs of buckets beyond the global mean +- ``k`` sd."""
    prepared = _prepare(series, signal)
    if prepared is None:
        return []
    name, t, x, _ = prepared
    mean, sd = float(np.nanmean(x)), float(np.nanstd(x))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - mean) / sd if sd > 0 else np.zeros_like(x)
    flat = np.zeros_like(x)
    fit = RobustFit(flat + mean, flat + (sd or 1.0), flat + (sd or 1.0), z, flat, 0)
    idx = window_indices(z, k, low=k, min_core=1, merge_gap=0)
    return _to_windows(name, t, x, fit, idx, np.inf)


def _score_against_truth(
    windows: Sequence[AnomalyWindow],
    truth: Sequence[tuple[datetime, datetime]],
    tolerance_s: float,
) -> dict[str, float | None]:
    """Recall, precision and onset/end errors of ``windows`` against true intervals."""
    tol = np.timedelta64(int(tolerance_s * 1e6), "us")
    ws = np.array([w.start for w in windows], dtype="datetime64[us]")
    we = np.array([w.end for w in windows], dtype="datetime64[us]")
    ts = np.array([a for a, _ in truth], dtype="datetime64[us]")
    te = np.array([b for _, b in truth], dtype="datetime64[us]")
    # overlap[i, j]: window i overlaps truth j (widened by the tolerance)
    overlap = (ws[:, None] <= te[None, :] + tol) & (we[:, None] >= ts[None, :] - tol)
    found = overlap.any(axis=0)
    onset = np.abs((ws[:, None] - ts[None, :]) / np.timedelta64(1, "s"))
    onset = np.where(overlap, onset, np.inf).min(axis=0) if len(ws) else np.full(len(ts), np.inf)
    ends = np.abs((we[:, None] - te[None, :]) / np.timedelta64(1, "s"))
    ends = np.where(overlap, ends, np.inf).min(axis=0) if len(ws) else np.full(len(ts), np.inf)
    return {
        "recall": float(found.mean()) if len(ts) else None,
        "precision": float(overlap.any(axis=1).mean()) if len(ws) else None,
        "median_onset_error_s": float(np.median(onset[found])) if found.any() else None,
        "median_end_error_s": float(np.median(ends[found])) if found.any() else None,
    }


def compare_to_baseline(
    series: pl.DataFrame,
    settings: DetectorSettings | None = None,
    *,
    truth: Sequence[tuple[datetime, datetime]] | None = None,
    k: float = 3.0,
    tolerance_s: float = 10.0,
    counts: bool = False,
) -> pl.DataFrame:
    """Robust detector vs the do-nothing baseline: windows found, and with ``truth``, recall,
    precision and median onset error.

    One row per detector (``robust``, ``baseline``) with ``n_windows``,
    ``flagged_s`` (seconds inside windows) and, when true intervals are
    given, ``recall`` (share of true intervals overlapped by a window,
    widened by ``tolerance_s``), ``precision`` (share of windows overlapping
    a true interval) and the median onset/end errors of the found ones.
    """
    rows = []
    for name, wins in (
        ("robust", detect(series, settings, counts=counts)),
        ("baseline", baseline_detect(series, k)),
    ):
        row: dict[str, object] = {
            "detector": name,
            "n_windows": len(wins),
            "flagged_s": float(sum(w.duration_s for w in wins)),
        }
        if truth is not None:
            row |= _score_against_truth(wins, truth, tolerance_s)
        rows.append(row)
    return pl.DataFrame(rows)


def settings_grid(base: DetectorSettings | None = None, **axes: Iterable) -> list[DetectorSettings]:
    """Every combination of the given values, e.g. ``settings_grid(z_threshold=[3, 5, 8])``."""
    base = base or DetectorSettings()
    names = list(axes)
    return [
        replace(base, **dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*(list(axes[n]) for n in names))
    ]


def sensitivity(
    series: pl.DataFrame,
    grid_of_settings: Iterable[DetectorSettings],
    *,
    counts: bool = False,
) -> pl.DataFrame:
    """Windows found under each settings in the grid: one row per (settings, window).

    Columns: ``setting`` (index in the grid), every ``DetectorSettings`` field,
    ``n_windows``, then the window fields (null when a setting finds nothing),
    so a chart can show how starts, ends and counts move with each knob.
    """
    frames = []
    for i, st in enumerate(grid_of_settings):
        wins = windows_frame(detect(series, st, counts=counts))
        head = {"setting": i, **asdict(st), "n_windows": wins.height}
        if wins.height == 0:
            wins = wins.clear(1)
        heads = pl.DataFrame([head] * wins.height)
        frames.append(pl.concat([heads, wins], how="horizontal"))
    if not frames:
        names = ["setting", *(f.name for f in fields(DetectorSettings)), "n_windows"]
        return pl.DataFrame(schema=[*names, *WINDOW_SCHEMA, "duration_s"])
    return pl.concat(frames, how="vertical_relaxed")
