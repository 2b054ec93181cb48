"""The series a role stands for and the measurements every stage makes on them:
upward anomaly windows, coincidence of windows, smoothing, correlation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import polars as pl

from analysis.chain.result import TooShort
from analysis.chain.settings import ChainSettings
from analysis.correlation import Coincidence, coincidence
from analysis.detection import AnomalyWindow, Detection, detect_series
from analysis.signal_id import SignalId

# Within a role, which signal stands for it (first pattern that matches wins).
_PREFERRED: dict[str, tuple[str, ...]] = {
    # client-side dial attempts (failed ones too) first: memcached's accepted-connection
    # counter stops rising once the ports are gone, while the fan-out goes on
    "fan_out": ("dial", "connections_total", "current_connections", "open", "goroutines"),
    "port_exhaustion": ("errors:EADDR",),
    "cache_errors": ("errors:total", "errors:cache:"),
    "runtime_stress": ("go_threads", "threads", "gc_duration", "restarts"),
    "user_impact": ("appview", "requests_per_second", "http_requests_total"),
}


@dataclass(frozen=True)
class Capture:
    """The rollups the chain reads: the wanted signals (columns) on one grid (``t``)."""

    frame: pl.DataFrame

    @property
    def t(self) -> pl.Series:
        return self.frame["t"]

    @property
    def grid_s(self) -> float:
        """The grid step in seconds (1 when there is a single bucket)."""
        t = self.t
        return (t[1] - t[0]).total_seconds() if self.frame.height > 1 else 1.0

    @property
    def span(self) -> tuple[datetime, datetime]:
        """The first and last bucket."""
        return (self.t[0], self.t[-1])

    @property
    def span_s(self) -> float:
        """Seconds the buckets cover, the last one included."""
        return (self.t[-1] - self.t[0]).total_seconds() + self.grid_s

    def col(self, s: str) -> np.ndarray:
        """Signal ``s`` as floats (missing buckets NaN)."""
        return self.frame[s].cast(pl.Float64).fill_null(float("nan")).to_numpy()


@dataclass
class RoleSeries:
    """The series that stands for a role, with its upward anomaly windows."""

    role: str
    signal: str  # the name, or names joined by '+' when several signals are summed
    values: np.ndarray  # signed so that "up" is the active direction
    windows: list[AnomalyWindow]
    family: str = "metric"  # of the signal(s): counts (callers, errors) or metrics


def pick(role: str, candidates: list[str], ids: dict[str, SignalId]) -> list[str]:
    """Candidates of a role ordered by preference (aggregates before per-label series)."""
    prefs = _PREFERRED.get(role, ())

    def rank(s: str) -> tuple[int, bool, str]:
        hit = next((i for i, p in enumerate(prefs) if p.lower() in s.lower()), len(prefs))
        return (hit, bool(ids[s].labels), s)

    return sorted(candidates, key=rank)


def up_windows(
    t: pl.Series, values: np.ndarray, name: str, settings: ChainSettings, *, counts: bool,
    samples: int | None = None,
) -> list[AnomalyWindow]:
    """Upward anomaly windows of a (signed) series; error and caller series are ``counts``
    (``detect_up``)."""
    return detect_up(t, values, name, settings, counts=counts, samples=samples).windows


def detect_up(
    t: pl.Series, values: np.ndarray, name: str, settings: ChainSettings, *, counts: bool,
    samples: int | None = None,
) -> Detection:
    """Detection of a (signed) series keeping its upward windows. ``samples``: the raw
    samples behind a metric (a gauge's rollup holds each sample over many buckets); a
    series with fewer than its baseline needs is ``too_short``. A flat series has no
    window, whatever its length."""
    v = np.nan_to_num(values, nan=0.0)
    if not np.any(v != v[0]):
        return Detection(name, [], int(samples if samples is not None else v.size), 0)
    frame = pl.DataFrame({"t": t, "value": values})
    found = detect_series(frame, settings.detector, signal=name, counts=counts,
                          samples=samples)
    return replace(found, windows=[w for w in found.windows if w.direction == "up"])


def refused(found: Detection) -> list[TooShort]:
    """The refusal of a ``too_short`` detection as a record (none otherwise)."""
    return [TooShort(found.signal, found.samples, found.needed)] if found.too_short else []


def samples_of(signals: list[str], raw: dict[str, int]) -> int | None:
    """Raw samples behind a sum of signals: the fewest of any (``None``: none is a metric
    with known samples, so detection counts the finite buckets)."""
    known = [raw[s] for s in signals if s in raw]
    return min(known) if known else None


def coincide(cause: list[AnomalyWindow], effect: list[AnomalyWindow],
             span: tuple[datetime, datetime], settings: ChainSettings,
             max_lag_s: float | None = None) -> Coincidence:
    """Coincidence of window starts, tolerating an effect detected ``slack_s`` early
    (metrics sampled every 5-15 s put a counter's rise up to one step early)."""
    return coincidence(cause, effect, max_lag_s=max_lag_s or settings.max_lag_s,
                       min_lag_s=-settings.slack_s, n_shuffle=settings.n_shuffle,
                       seed=settings.seed, span=span)


def point_window(signal: str, at: datetime) -> AnomalyWindow:
    """A one-bucket window at ``at`` (for a cause known from the request log)."""
    return AnomalyWindow(signal, at, at, at, "up", 0.0, 0.0, 0.0, 0.0, 0.0)


def weight(windows: list[AnomalyWindow]) -> float:
    """How anomalous a series is: the summed scores of its windows (inf counted as large)."""
    return float(sum(min(abs(w.score), 1e6) for w in windows))


def smooth(v: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average (NaN as 0), so one-bucket misalignments do not hide a link."""
    k = max(1, width)
    return np.convolve(np.nan_to_num(v), np.ones(k) / k, mode="same")


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, 0 when either side is constant."""
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])

