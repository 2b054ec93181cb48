"""Detection: spikes, drops and level shifts against a robust, daily-aware baseline.

How a series becomes anomaly windows (all vectorised with numpy/polars; the
only Python loops run per window or per pass, never per bucket):

1. Daily curve: when the series spans two days or more (``daily_curve="auto"``)
   a time-of-day profile (median per ``profile_bin_s`` bin across days) is
   taken out first, so the ordinary daily rise and fall is not an anomaly.
   Within one day the trailing baseline below follows the slow daily curve.
2. Baseline and scale: a trailing rolling median over ``baseline_s`` (excluding
   the current bucket, so a level shift is measured against the level before
   it) and a rolling MAD around it. The scale has floors: the series' own
   noise (MAD of first differences), ``min_scale_rel`` of the baseline, and for
   count series a Poisson floor ``sqrt(level)``, so flat or all-zero series do
   not flag noise.
3. Robust z = (value - baseline) / scale. Buckets with ``|z| >= z_threshold``
   are the cores of windows; a window extends over neighbouring buckets with
   ``|z| >= hysteresis * z_threshold`` in the same direction, so its start is
   the first departing bucket, not the first bucket past the high threshold.
   Extended runs closer than ``merge_gap_s`` merge; windows need
   ``min_duration_s`` of core buckets.
4. Refinement passes: buckets inside windows are masked and the baseline is
   recomputed without them (carried forward across the window), so a long
   anomaly is measured against the level before it instead of being absorbed
   into the baseline after ``baseline_s / 2``.

A window that runs to the end of the series or lasts at least ``baseline_s``
is a ``shift``; otherwise an upward window is a ``spike`` and a downward one a
``drop``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime

import duckdb
import numpy as np
import polars as pl

MAD_TO_SD = 1.4826


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
    is not measured against where it was ``baseline_s / 2`` ago).
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
    s = series.sort("t")
    t = s["t"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6
    x = s["value"].cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    return t, x, max(step, 1e-6)


def _rolling_median(x: np.ndarray, window: int, min_samples: int) -> np.ndarray:
    """Trailing rolling median ignoring NaN, excluding the current point."""
    s = pl.Series(x, nan_to_null=True).rolling_median(window, min_samples=min_samples)
    return s.shift(1).to_numpy().astype(np.float64)


def _fill(a: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN value forward, and the first one backward."""
    return pl.Series(a, nan_to_null=True).forward_fill().backward_fill().to_numpy().astype(float)


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
    """Per-bucket baseline, scale, robust z and baseline slope (value per bucket);
    ``horizon`` is the baseline window in buckets, how far a slope may be carried."""

    baseline: np.ndarray
    scale: np.ndarray
    z: np.ndarray
    slope: np.ndarray
    horizon: int


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
    window = max(3, int(round(settings.baseline_s / step_s)))
    min_samples = min(window, 5)
    if settings.trend:
        # medians of the two halves of the trailing window give a robust slope; the
        # baseline is the recent half's median carried to now along it
        half = max(2, window // 2)
        recent = _rolling_median(rb, half, min(half, min_samples))
        older = np.concatenate((np.full(half, np.nan), recent[:-half]))[: len(recent)]
        slope = np.nan_to_num((recent - older) / half)
        med = _fill(recent + slope * (half + 1) / 2)
        slope = _fill(np.where(np.isfinite(recent), slope, np.nan))
    else:
        med = _fill(_rolling_median(rb, window, min_samples))
        slope = np.zeros_like(x)
    mad = _fill(_rolling_median(np.abs(rb - med), window, min_samples))
    finite = r[np.isfinite(r)]
    noise = MAD_TO_SD * np.median(np.abs(np.diff(finite))) / np.sqrt(2) if len(finite) > 2 else 0.0
    eps = 1e-9 * max(1.0, float(np.max(np.abs(finite))) if len(finite) else 1.0)
    baseline = med + profile
    scale = np.maximum.reduce(
        [
            np.nan_to_num(MAD_TO_SD * mad),
            np.full_like(x, noise),
            settings.min_scale_rel * np.abs(np.nan_to_num(baseline)),
            np.full_like(x, eps),
        ]
    )
    if counts:
        level = np.maximum(np.nan_to_num(baseline) * step_s, 1.0)
        scale = np.maximum(scale, np.sqrt(level) / step_s)
    with np.errstate(invalid="ignore"):
        z = (x - baseline) / scale
    return RobustFit(baseline, scale, z, np.nan_to_num(slope), window)


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


def extend_windows(
    x: np.ndarray,
    fit: RobustFit,
    idx: list[tuple[int, int, int]],
    *,
    low: float,
    merge_gap: int,
) -> list[tuple[int, int, int]]:
    """Extend each window while the series stays past ``low`` robust z measured against the
    baseline and scale frozen at the window's start (carried along its slope for at most
    ``fit.horizon`` buckets), then merge same-direction windows within ``merge_gap``
    buckets.

    A trailing baseline absorbs a lasting shift after ``baseline_s / 2``; the frozen
    baseline keeps the window open until the level really returns.
    """
    grown = []
    for s, e, sign in idx:
        with np.errstate(invalid="ignore", divide="ignore"):
            ahead = np.minimum(np.arange(e + 1 - s, len(x) - s), fit.horizon)
            frozen = fit.baseline[s] + fit.slope[s] * ahead
            zf = sign * (x[e + 1 :] - frozen) / fit.scale[s]
        # the window lasts while a short centred median of zf stays past ``low`` (so one
        # noisy bucket neither ends it nor keeps it open), and ends at the last bucket
        # itself past ``low`` before that
        width = max(3, min(merge_gap, 9)) | 1
        smooth = (
            pl.Series(zf, nan_to_null=True)
            .rolling_median(width, min_samples=1, center=True)
            .fill_null(0.0)
            .to_numpy()
        )
        over = ~(smooth >= low)
        stop = int(np.argmax(over)) if over.any() else len(zf)
        still = np.flatnonzero(zf[:stop] >= low)
        grow = int(still[-1]) + 1 if len(still) else 0
        grown.append((s, e + grow, sign))
    merged: list[tuple[int, int, int]] = []
    for s, e, sign in sorted(grown, key=lambda w: (w[2], w[0])):
        if merged and merged[-1][2] == sign and s <= merged[-1][1] + merge_gap + 1:
            ps, pe, _ = merged[-1]
            merged[-1] = (ps, max(pe, e), sign)
        else:
            merged.append((s, e, sign))
    return sorted(merged)


def _to_windows(
    signal: str,
    t: np.ndarray,
    x: np.ndarray,
    baseline: np.ndarray,
    z: np.ndarray,
    idx: list[tuple[int, int, int]],
    long_s: float,
) -> list[AnomalyWindow]:
    """Describe each index run as an ``AnomalyWindow`` (one Python step per window)."""
    out = []
    n = len(x)
    for s, e, sign in idx:
        dev = sign * (x[s : e + 1] - baseline[s : e + 1])
        p = s + int(np.nanargmax(dev))
        size = float(x[p] - baseline[p])
        base = float(baseline[p])
        rel = size / abs(base) if base != 0 else (np.inf if size > 0 else -np.inf)
        shift = e == n - 1 or t[e] - t[s] >= long_s
        kind = "shift" if shift else ("spike" if sign > 0 else "drop")
        out.append(
            AnomalyWindow(
                signal=signal,
                start=_dt(t[s]),
                peak=_dt(t[p]),
                end=_dt(t[e]),
                direction="up" if sign > 0 else "down",
                size=size,
                rel_size=float(rel),
                score=float(z[p]),
                baseline=base,
                peak_value=float(x[p]),
                kind=kind,
            )
        )
    return out


def _dt(epoch_s: float) -> datetime:
    """Epoch seconds to a naive UTC datetime, exact to the microsecond."""
    return pl.Series([int(round(epoch_s * 1e6))], dtype=pl.Int64).cast(pl.Datetime("us")).item()


def _signal_name(series: pl.DataFrame, signal: str | None) -> str:
    if signal is not None:
        return signal
    if "signal" in series.columns and series.height:
        return str(series["signal"][0])
    return "series"


# --- public API ----------------------------------------------------------------------------


def detect(
    series: pl.DataFrame,
    settings: DetectorSettings | None = None,
    *,
    signal: str | None = None,
    counts: bool = False,
) -> list[AnomalyWindow]:
    """Anomaly windows in ``series`` (columns ``t``, ``value``; optionally ``signal``).

    ``counts`` says the values are event rates (requests, log lines), which
    adds a Poisson floor to the scale. Windows are ordered by start.
    """
    settings = settings or DetectorSettings()
    name = _signal_name(series, signal)
    if series.height < 3:
        return []
    t, x, step = _series_arrays(series)
    if not np.isfinite(x).any():
        return []
    min_core = max(1, int(np.ceil(settings.min_duration_s / step)))
    gap = int(settings.merge_gap_s // step)
    low = settings.hysteresis * settings.z_threshold
    mask: np.ndarray | None = None
    idx: list[tuple[int, int, int]] = []
    for _ in range(1 + max(0, settings.passes)):
        fit = robust_z(t, x, settings, step_s=step, counts=counts, mask=mask)
        new_idx = window_indices(
            fit.z, settings.z_threshold, low=low, min_core=min_core, merge_gap=gap
        )
        new_idx = extend_windows(x, fit, new_idx, low=low, merge_gap=gap)
        if new_idx == idx and mask is not None:
            break
        idx = new_idx
        mask = np.zeros(len(x), dtype=bool)
        for s, e, _sign in idx:
            mask[s : e + 1] = True
    return _to_windows(name, t, x, fit.baseline, fit.z, idx, settings.baseline_s)


def detect_all(
    con: duckdb.DuckDBPyConnection,
    settings: DetectorSettings | None = None,
    *,
    signals: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Windows of every signal in the ``signals`` table; also written to table ``anomalies``.

    Count signals (catalog kind ``count``) get the Poisson scale floor. The
    frame has the ``AnomalyWindow`` fields plus ``duration_s``, ordered by start.
    """
    settings = settings or DetectorSettings()
    kinds = dict(con.execute("SELECT signal, kind FROM signal_catalog").fetchall())
    wanted = list(kinds) if signals is None else [s for s in signals if s in kinds]
    data = con.sql(
        "SELECT signal, t, value FROM signals WHERE list_contains(?, signal) ORDER BY signal, t",
        params=[wanted],
    ).pl()
    windows: list[AnomalyWindow] = []
    for (name,), part in data.partition_by("signal", as_dict=True, maintain_order=True).items():
        windows += detect(part, settings, signal=name, counts=kinds.get(name) == "count")
    frame = windows_frame(windows).sort("start", "signal")
    con.register("_anomalies_view", frame)
    con.execute("CREATE OR REPLACE TABLE anomalies AS SELECT * FROM _anomalies_view")
    con.unregister("_anomalies_view")
    return frame


def baseline_detect(
    series: pl.DataFrame, k: float = 3.0, *, signal: str | None = None
) -> list[AnomalyWindow]:
    """The do-nothing detector: runs of buckets beyond the global mean +- ``k`` sd."""
    name = _signal_name(series, signal)
    if series.height < 3:
        return []
    t, x, _ = _series_arrays(series)
    if not np.isfinite(x).any():
        return []
    mean, sd = float(np.nanmean(x)), float(np.nanstd(x))
    base = np.full_like(x, mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - mean) / sd if sd > 0 else np.zeros_like(x)
    idx = window_indices(z, k, low=k, min_core=1, merge_gap=0)
    return _to_windows(name, t, x, base, z, idx, np.inf)


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
