"""Windows from a robust fit: runs of buckets past the threshold (with hysteresis), grown
against the baseline frozen at their start across short returns, merged, and described as
``AnomalyWindow`` (package docstring, steps 4-5)."""

from __future__ import annotations

import numpy as np

from analysis.detection.arrays import runs, to_datetime
from analysis.detection.contracts import AnomalyWindow
from analysis.detection.robust import RobustFit


def window_indices(
    z: np.ndarray,
    threshold: float,
    *,
    low: float,
    min_core: int,
    merge_gap: int,
    bridge: int = 0,
) -> list[tuple[int, int, int]]:
    """``(start, end, sign)`` index runs: extended while ``sign*z >= low``, merged across gaps
    of at most ``merge_gap`` buckets, kept when holding ``min_core`` buckets past
    ``threshold`` (the buckets of gaps of at most ``bridge`` buckets between two of them
    counted too: a drop broken by one recovered second is as long as the whole drop), or
    as much evidence spread wider: the sum of ``sign*z`` capped at ``threshold`` over
    the buckets past ``low`` reaches ``min_core * threshold`` (a drop of 8 s mostly just
    under the threshold, one second past it, is a drop)."""
    out: list[tuple[int, int, int]] = []
    zz = np.nan_to_num(z, nan=0.0)
    for sign in (1, -1):
        core = sign * zz >= threshold
        starts, ends = runs(sign * zz >= low)
        cs = np.concatenate(([0], np.cumsum(core)))
        has_core = cs[ends + 1] - cs[starts] > 0
        starts, ends = starts[has_core], ends[has_core]
        if len(starts) == 0:
            continue
        gap = max(merge_gap, bridge)
        new_group = np.concatenate(([True], starts[1:] - ends[:-1] - 1 > gap))
        g_starts = starts[new_group]
        g_ends = np.maximum.reduceat(ends, np.flatnonzero(new_group))
        counted = np.concatenate(([0], np.cumsum(_bridged(core, bridge))))
        # the evidence of ``min_core`` core buckets spread over more buckets past ``low``
        capped = np.where(sign * zz >= low, np.minimum(sign * zz, threshold), 0.0)
        ev = np.concatenate(([0.0], np.cumsum(capped)))
        keep = (counted[g_ends + 1] - counted[g_starts] >= min_core) | (
            ev[g_ends + 1] - ev[g_starts] >= min_core * threshold
        )
        out += [(int(s), int(e), sign) for s, e in zip(g_starts[keep], g_ends[keep], strict=True)]
    return sorted(out)


def _bridged(mask: np.ndarray, n: int) -> np.ndarray:
    """``mask`` with its runs of False of at most ``n`` buckets between two True filled in."""
    starts, ends = runs(~mask)
    inner = (starts > 0) & (ends < len(mask) - 1) & (ends - starts < n)
    if not inner.any():
        return mask
    edges = np.zeros(len(mask) + 1, dtype=np.int64)
    np.add.at(edges, starts[inner], 1)
    np.add.at(edges, ends[inner] + 1, -1)
    return mask | (np.cumsum(edges)[:-1] > 0)


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
    bridge: int = 0,
) -> int:
    """New end of the window ``s..e``: it goes on while the series stays past ``low``
    against the frozen baseline, and across gaps of at most ``merge_gap`` buckets to a
    burst: runs past ``low`` no more than ``burst_gap`` apart that together hold
    ``min_core`` buckets past ``high``, gaps of at most ``bridge`` buckets between them
    counted (as a window needs). Looks ahead in growing chunks,
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
        starts, ends = runs(zf >= low)
        if len(starts) == 0:
            return end
        cs = np.concatenate(([0], np.cumsum(_bridged(zf >= high, bridge))))
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
    bridge: int = 0,
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
        "bridge": bridge,
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


def to_windows(
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
                start=to_datetime(t[s]),
                peak=to_datetime(t[s + p]),
                end=to_datetime(t[e]),
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
