"""The robust detector over one series: too-short series refused by name, then fit,
windows and refinement passes with the windows masked out of the baseline."""

from __future__ import annotations

import numpy as np
import polars as pl

from analysis.detection.arrays import prepare
from analysis.detection.contracts import (
    MIN_SAMPLES,
    MIN_SAMPLES_COUNTS,
    AnomalyWindow,
    Detection,
    DetectorSettings,
)
from analysis.detection.robust import robust_z
from analysis.detection.windows import extend_windows, to_windows, window_indices


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
    """The detector itself (the package docstring), on a series long enough for it."""
    settings = settings or DetectorSettings()
    prepared = prepare(series, signal)
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
            fit.z,
            settings.z_threshold,
            low=low,
            min_core=min_core,
            merge_gap=gap,
            bridge=settings.bridge_buckets,
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
            bridge=settings.bridge_buckets,
        )
        if (new_idx == idx and mask is not None) or not new_idx:
            idx = new_idx
            break
        idx = new_idx
        mask = np.zeros(len(x), dtype=bool)
        for s, e, _sign in idx:
            mask[s : e + 1] = True
    return to_windows(name, t, x, fit, idx, settings.baseline_s)
