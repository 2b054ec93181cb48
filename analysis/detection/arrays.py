"""Array helpers the detectors share: a series as numpy arrays, trailing rolling
statistics that exclude the current bucket, lags, forward filling, runs of a mask and
epoch seconds back to datetimes. Arrays in, arrays out; no settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import bottleneck as bn
import numpy as np
import polars as pl


def series_arrays(series: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
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


def rolling_median(x: np.ndarray, window: int, min_samples: int, *, stride: int = 1) -> np.ndarray:
    """Trailing rolling median (see ``_trailing``), with bottleneck."""
    return _trailing(x, window, min_samples, stride, _median_stat)


def rolling_quantile(
    x: np.ndarray, q: float, window: int, min_samples: int, *, stride: int = 1
) -> np.ndarray:
    """Trailing rolling ``q`` quantile (see ``_trailing``), with polars."""

    def stat(v: np.ndarray, w: int, m: int) -> np.ndarray:
        s = pl.Series(v, nan_to_null=True)
        return s.rolling_quantile(q, interpolation="linear", window_size=w, min_samples=m)

    return _trailing(x, window, min_samples, stride, stat)


def lagged(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` delayed by ``k`` buckets (NaN before the start)."""
    return np.concatenate((np.full(min(k, len(a)), np.nan), a[: max(0, len(a) - k)]))


def lagged_or_now(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` delayed by ``k`` buckets; where there is no value that old yet (the first
    ``k`` buckets), ``a`` itself."""
    old = lagged(a, k)
    return np.where(np.isfinite(old), old, a)


def fill(a: np.ndarray) -> np.ndarray:
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


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and (inclusive) end indices of the runs of True in ``mask``."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1


_EPOCH = datetime(1970, 1, 1)


def to_datetime(epoch_s: float) -> datetime:
    """Epoch seconds to a naive UTC datetime, exact to the microsecond."""
    return _EPOCH + timedelta(microseconds=int(round(epoch_s * 1e6)))


def prepare(
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
    t, x, step = series_arrays(series)
    finite = x[np.isfinite(x)]
    if len(finite) == 0 or finite.min() == finite.max():  # nothing, or a constant
        return None
    return name, t, x, step
