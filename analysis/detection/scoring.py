"""Scoring detectors, apart from the detectors: the robust one against the do-nothing
baseline (with true intervals, recall, precision and onset errors) and the windows found
under a grid of settings."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields, replace
from datetime import datetime

import numpy as np
import polars as pl

from analysis.detection.baseline import baseline_detect
from analysis.detection.contracts import (
    WINDOW_SCHEMA,
    AnomalyWindow,
    DetectorSettings,
    windows_frame,
)
from analysis.detection.detector import detect


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
