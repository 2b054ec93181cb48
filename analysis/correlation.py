"""Lead/lag between signals and coincidence of their anomaly windows.

``lead_lag`` finds the lag at which the cross-correlation of two (differenced)
series peaks and puts a moving-block bootstrap interval around it.
``coincidence`` counts how often a cause window is followed by an effect
window within a lag, with a p-value against circularly shifted effect windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl


@dataclass(frozen=True)
class LeadLag:
    """Lag (seconds, positive = cause leads effect) with a bootstrap interval and the peak
    correlation at that lag."""

    lag_s: float
    ci_low: float
    ci_high: float
    corr: float


@dataclass(frozen=True)
class Coincidence:
    """Share of cause windows followed by an effect window within ``max_lag_s``, and the
    p-value of that share against shuffled (circularly shifted) effect windows."""

    share: float
    n_cause: int
    n_followed: int
    p_value: float
    max_lag_s: float
    median_delay_s: float | None


def lead_lag(
    cause: np.ndarray | pl.Series,
    effect: np.ndarray | pl.Series,
    *,
    max_lag: int,
    n_boot: int = 200,
    seed: int = 0,
    step_s: float = 1.0,
) -> LeadLag:
    """The lag (in samples x ``step_s``) at which ``cause`` best leads ``effect``."""
    raise NotImplementedError


WindowLike = datetime | float | tuple[datetime, datetime] | object


def coincidence(
    cause_windows: Sequence[WindowLike],
    effect_windows: Sequence[WindowLike],
    *,
    max_lag_s: float,
    n_shuffle: int = 1000,
    seed: int = 0,
    span: tuple[datetime, datetime] | tuple[float, float],
) -> Coincidence:
    """How often cause windows are followed by effect windows within ``max_lag_s``."""
    raise NotImplementedError
