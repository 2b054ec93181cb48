"""When each role of the chain starts (``onsets``), on the definitions an analyst uses."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from analysis.chain.result import CallerScore
from analysis.chain.series import Capture, RoleSeries, point_window, up_windows
from analysis.chain.settings import IMPACT_BIN_S, IMPACT_SHARE, STRESS_FACTOR, ChainSettings
from analysis.signal_id import SignalId


def add_trigger(
    series: dict[str, RoleSeries], best: CallerScore, cap: Capture, settings: ChainSettings
) -> None:
    """The culprit's URI rate becomes the ``trigger`` series; batches without a rate
    anomaly get a one-bucket window at the first one."""
    trig_sig = SignalId.for_caller(best.caller, "uris").key
    uris = cap.col(trig_sig)
    trig_w = up_windows(cap.t, uris, trig_sig, settings, counts=True)
    if not trig_w and best.first_forced is not None:
        trig_w = [point_window(trig_sig, best.first_forced)]
    series["trigger"] = RoleSeries("trigger", trig_sig, uris, trig_w, "caller")


def onsets(
    series: dict[str, RoleSeries],
    present: list[str],
    t: pl.Series,
    grid_s: float,
    best: CallerScore,
    any_forced: np.ndarray,
    settings: ChainSettings,
) -> dict[str, datetime]:
    """When each role starts, on the definitions an analyst would use.

    * trigger: the culprit's first request larger than the idle pool;
    * fan_out: the first request larger than the pool inside the dial counter's
      first window (a counter sampled every 5-15 s only says the dials happened
      somewhere in the interval; the request log says when);
    * runtime_stress (OS threads): the first time threads reach
      ``STRESS_FACTOR`` times their level before the window;
    * user_impact: the first minute whose mean traffic is below ``IMPACT_SHARE``
      of the level before the window, in ``impact_bin_s`` bins counted from the grid's
      start (a minute on long incidents, a few seconds on short captures; never a bin
      that starts before the trigger);
    * otherwise the start of the role's first anomaly window.

    Windows that end before the trigger (noise before the story starts) are skipped.
    """
    t0 = t[0]
    trig = best.first_forced or series["trigger"].windows[0].start
    earliest = trig - timedelta(seconds=settings.slack_s)
    i_earliest = max(0, int((earliest - t0).total_seconds() / grid_s))
    out: dict[str, datetime] = {"trigger": trig}
    for role in present:
        if role == "trigger":
            continue
        rs = series[role]
        w = next((w for w in rs.windows if w.end >= earliest), rs.windows[0])
        i0 = int((w.start - t0).total_seconds() / grid_s)
        onset = w.start
        if w.start < earliest:
            # a window that began before the story (background noise merged into it):
            # the role starts where the series first leaves its baseline after the trigger
            i1 = int((w.end - t0).total_seconds() / grid_s) + 1
            seg = np.nan_to_num(rs.values[i_earliest:i1], nan=-np.inf)
            above = np.flatnonzero(seg > w.baseline + 1e-9)
            i0 = i_earliest + (int(above[0]) if above.size else 0)
            onset = t[min(i0, len(t) - 1)]
        if role == "fan_out":
            lo = max(0, i0 - int(settings.slack_s / grid_s))
            hi = int((w.end - t0).total_seconds() / grid_s) + 1
            nz = np.flatnonzero(any_forced[lo:hi])
            if nz.size:
                onset = t[lo + int(nz[0])]
        elif role in ("runtime_stress", "user_impact"):
            v = np.abs(rs.values)  # user traffic is stored negated
            before = v[max(0, i0 - max(1, int(600 / grid_s))):i0]
            base = float(np.nanmedian(before)) if np.isfinite(before).any() else float("nan")
            if np.isfinite(base) and base > 0:
                if role == "runtime_stress" and "thread" in rs.signal:
                    hit = np.flatnonzero(np.nan_to_num(v[i0:]) >= STRESS_FACTOR * base)
                    if hit.size:
                        onset = t[i0 + int(hit[0])]
                elif role == "user_impact":
                    onset = _first_low_bin(v, base, i0, i_earliest, t, grid_s,
                                           settings.impact_bin_s) or onset
        out[role] = onset
    return out


def _first_low_bin(
    v: np.ndarray, base: float, i0: int, i_earliest: int, t: pl.Series, grid_s: float,
    bin_s: float = IMPACT_BIN_S,
) -> datetime | None:
    """Start of the first ``bin_s`` bin (from the grid start) around or after ``i0``
    whose mean is below ``IMPACT_SHARE`` of ``base``; bins starting before
    ``i_earliest`` (the trigger, less the slack) are not the story's impact."""
    k = max(1, int(bin_s / grid_s))
    first_bin = max(0, i0 // k - 1, -(-i_earliest // k))
    n_bins = v.size // k
    for b in range(first_bin, n_bins):
        chunk = v[b * k:(b + 1) * k]
        if np.isfinite(chunk).any() and float(np.nanmean(chunk)) < IMPACT_SHARE * base:
            return t[b * k]
    return None
