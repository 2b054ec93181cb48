"""Lead/lag between signals and coincidence of their anomaly windows.

``lead_lag`` finds the lag at which the cross-correlation of two transformed
series peaks (by default their first differences, which whitens trends and
puts the weight on changes such as onsets) and puts a moving-block bootstrap
interval around it: the lagged products ``a[t] * b[t + k]`` are resampled in
blocks of consecutive buckets (the same blocks for every lag; blocks start
every quarter block), the peak lag is found again in each replicate, and the
interval is the replicates' percentile range. Block sums for every lag come
from one batched FFT, replicates from one matrix product.

``coincidence`` counts how often a cause window is followed by an effect
window within a lag, and compares that share with the shares obtained after
circularly shifting the effect windows by a uniform random offset within the
span (which keeps their number and spacing but breaks any alignment with the
causes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

TRANSFORMS = ("diff", "level", "prewhiten")
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class LeadLag:
    """Lag (seconds, positive = cause leads effect) with a bootstrap interval and the peak
    correlation at that lag.

    ``corr`` is signed: negative when the effect moves against the cause (errors up,
    user requests down). ``lag_s`` is NaN when either series is constant.
    """

    lag_s: float
    ci_low: float
    ci_high: float
    corr: float


@dataclass(frozen=True)
class Coincidence:
    """Share of cause windows followed by an effect window within ``max_lag_s``, and the
    p-value of that share against shuffled (circularly shifted) effect windows.

    ``null_share`` is the mean share under shuffling, so ``share - null_share`` is the
    effect size; ``median_delay_s`` the median delay from a cause window's start to the
    first following effect window's start (None when none is followed).
    """

    share: float
    n_cause: int
    n_followed: int
    p_value: float
    max_lag_s: float
    median_delay_s: float | None
    null_share: float = float("nan")


def _as_float_array(x: np.ndarray | pl.Series | Sequence[float]) -> np.ndarray:
    """Float array with missing values carried forward (then backward, then 0)."""
    s = pl.Series(values=np.asarray(x, dtype=np.float64), nan_to_null=True)
    s = s.forward_fill().backward_fill().fill_null(0.0)
    return s.to_numpy().astype(np.float64)


def transform(x: np.ndarray, how: str) -> np.ndarray:
    """The series as cross-correlated: ``diff`` (first differences, with a leading 0 so
    indices keep their time), ``level`` (as is) or ``prewhiten`` (residuals of an AR(1)
    fit); standardised to mean 0, sd 1 (all zeros when constant)."""
    if how == "diff":
        y = np.diff(x, prepend=x[:1])
    elif how == "level":
        y = x.copy()
    elif how == "prewhiten":
        c = x - x.mean()
        denom = float(c[:-1] @ c[:-1])
        phi = float(c[1:] @ c[:-1]) / denom if denom > 0 else 0.0
        y = np.concatenate(([0.0], c[1:] - phi * c[:-1]))
    else:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {how!r}")
    y = y - y.mean()
    sd = y.std()
    return y / sd if sd > 0 else np.zeros_like(y)


def cross_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> np.ndarray:
    """``c[k + max_lag] = mean_t a[t] * b[t + k]`` for ``k`` in ``-max_lag..max_lag``, over the
    buckets ``t`` where every lag is defined (``max_lag <= t < n - max_lag``)."""
    n = len(a)
    m = n - 2 * max_lag
    size = 1 << int(np.ceil(np.log2(n + m)))
    fa = np.fft.rfft(a[max_lag : n - max_lag], size)
    fb = np.fft.rfft(b, size)
    full = np.fft.irfft(np.conj(fa) * fb, size)  # full[j] = sum_t a'[t] b[t + j]
    return full[: 2 * max_lag + 1] / m


def block_products(a: np.ndarray, b: np.ndarray, max_lag: int, block: int) -> np.ndarray:
    """``P[j, k + max_lag] = sum over the block j of a[t] * b[t + k]``, for blocks of ``block``
    buckets starting every ``block // 4`` buckets of the common range (see
    ``cross_correlation``); one batched FFT over all blocks."""
    n = len(a)
    m = n - 2 * max_lag
    stride = max(1, block // 4)
    seg_starts = np.arange(0, m - block + 1, stride)
    width = block + 2 * max_lag
    size = 1 << int(np.ceil(np.log2(width)))
    core = a[max_lag : n - max_lag]
    a_seg = core[seg_starts[:, None] + np.arange(block)[None, :]]
    b_seg = b[seg_starts[:, None] + np.arange(width)[None, :]]
    fa = np.fft.rfft(a_seg, size, axis=1)
    fb = np.fft.rfft(b_seg, size, axis=1)
    return np.fft.irfft(np.conj(fa) * fb, size, axis=1)[:, : 2 * max_lag + 1]


def lead_lag(
    cause: np.ndarray | pl.Series,
    effect: np.ndarray | pl.Series,
    *,
    max_lag: int,
    n_boot: int = 200,
    seed: int = 0,
    step_s: float = 1.0,
    how: str = "diff",
    block: int | None = None,
    level: float = 0.95,
) -> LeadLag:
    """The lag (in samples x ``step_s``) at which ``cause`` best leads ``effect``.

    Both series must share one grid. The peak is the lag of largest absolute
    cross-correlation of the transformed series (``how``, see ``transform``)
    within ``+-max_lag`` samples; the ``level`` interval comes from a
    moving-block bootstrap with blocks of ``block`` samples (default
    ``sqrt(n)``, at least 10). Deterministic given ``seed``.
    """
    x, y = _as_float_array(cause), _as_float_array(effect)
    if len(x) != len(y):
        raise ValueError(f"cause and effect differ in length: {len(x)} vs {len(y)}")
    max_lag = int(min(max_lag, max(0, (len(x) - 10) // 2)))
    a, b = transform(x, how), transform(y, how)
    if not a.any() or not b.any() or len(a) < 10:
        nan = float("nan")
        return LeadLag(nan, nan, nan, 0.0)
    c = cross_correlation(a, b, max_lag)
    best = int(np.argmax(np.abs(c)))
    sign = 1.0 if c[best] >= 0 else -1.0
    m = len(a) - 2 * max_lag
    blk = int(block or max(10, round(np.sqrt(m))))
    blk = min(blk, m)
    products = block_products(a, b, max_lag, blk)
    n_blocks = int(np.ceil(m / blk))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, products.shape[0], size=(n_boot, n_blocks))
    counts = np.zeros((n_boot, products.shape[0]))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_blocks), picks.ravel()), 1.0)
    boot = np.argmax(sign * (counts @ products), axis=1) - max_lag
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail]) if n_boot else (best - max_lag,) * 2
    return LeadLag(
        lag_s=float((best - max_lag) * step_s),
        ci_low=float(np.floor(lo) * step_s),
        ci_high=float(np.ceil(hi) * step_s),
        corr=float(c[best]),
    )


def _epoch_s(value: Any) -> float:
    """Seconds since the epoch of a datetime (naive = UTC) or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.timestamp()
        return (value - _EPOCH) / timedelta(seconds=1)
    if isinstance(value, np.datetime64):
        return float(value.astype("datetime64[us]").astype(np.int64)) / 1e6
    return float(value)


def window_starts(windows: Any) -> np.ndarray:
    """Start times (epoch seconds, sorted) of windows given as ``AnomalyWindow``s, a frame or
    dicts with ``start``, ``(start, end)`` tuples, datetimes or numbers."""
    if isinstance(windows, pl.DataFrame):
        windows = windows["start"].to_list() if windows.height else []
    out = []
    for w in windows:
        if hasattr(w, "start"):
            w = w.start
        elif isinstance(w, dict):
            w = w["start"]
        elif isinstance(w, tuple):
            w = w[0]
        out.append(_epoch_s(w))
    return np.sort(np.asarray(out, dtype=np.float64))


def _followed(cause: np.ndarray, effects: np.ndarray, lo_lag: float, hi_lag: float) -> np.ndarray:
    """Per row of ``effects`` (sorted starts), which causes have an effect in
    ``[c + lo_lag, c + hi_lag]``; rows are searched at once by offsetting each row past
    the previous one."""
    rows = effects.shape[0]
    both = np.concatenate((cause, effects.ravel()))
    stride = float(both.max() - both.min()) + abs(lo_lag) + abs(hi_lag) + 1.0
    offset = (np.arange(rows) * stride)[:, None]
    flat = (effects + offset).ravel()
    q_lo = (cause[None, :] + lo_lag + offset).ravel()
    q_hi = (cause[None, :] + hi_lag + offset).ravel()
    hits = np.searchsorted(flat, q_hi, side="right") - np.searchsorted(flat, q_lo, side="left")
    return (hits > 0).reshape(rows, len(cause))


def coincidence(
    cause_windows: Any,
    effect_windows: Any,
    *,
    max_lag_s: float,
    n_shuffle: int = 1000,
    seed: int = 0,
    span: tuple[datetime, datetime] | tuple[float, float],
    min_lag_s: float = 0.0,
) -> Coincidence:
    """How often cause windows are followed by effect windows within ``max_lag_s``.

    A cause window is followed when an effect window starts between
    ``min_lag_s`` and ``max_lag_s`` seconds after it starts (a small negative
    ``min_lag_s`` tolerates onsets detected in the same bucket). The p-value is
    ``(1 + #shuffles with share >= observed) / (1 + n_shuffle)`` where each
    shuffle shifts all effect starts by one uniform offset, circularly within
    ``span``. Deterministic given ``seed``.
    """
    cause = window_starts(cause_windows)
    effect = window_starts(effect_windows)
    lo, hi = _epoch_s(span[0]), _epoch_s(span[1])
    period = max(hi - lo, 1e-9)
    if len(cause) == 0:
        return Coincidence(float("nan"), 0, 0, 1.0, max_lag_s, None)
    if len(effect) == 0:
        return Coincidence(0.0, len(cause), 0, 1.0, max_lag_s, None, 0.0)
    followed = _followed(cause, effect[None, :], min_lag_s, max_lag_s)[0]
    share = float(followed.mean())
    after = np.searchsorted(effect, cause + min_lag_s, side="left")
    delays = effect[np.minimum(after, len(effect) - 1)] - cause
    median_delay = float(np.median(delays[followed])) if followed.any() else None
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(0, period, size=(n_shuffle, 1))
    shuffled = np.sort(lo + np.mod(effect[None, :] - lo + shifts, period), axis=1)
    null = _followed(cause, shuffled, min_lag_s, max_lag_s).mean(axis=1)
    p = (1 + int(np.sum(null >= share))) / (1 + n_shuffle)
    return Coincidence(
        share=share,
        n_cause=len(cause),
        n_followed=int(followed.sum()),
        p_value=float(p),
        max_lag_s=float(max_lag_s),
        median_delay_s=median_delay,
        null_share=float(null.mean()) if n_shuffle else float("nan"),
    )
