"""The chain's knobs (``ChainSettings``), their shrinking on short captures, and the
verdicts and thresholds every stage shares."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from analysis.detection import DetectorSettings

ROOT_CAUSE = "root_cause_found"
NO_CAUSE = "no_supported_cause"

STRESS_FACTOR = 2.0  # runtime stress: OS threads at twice their level
IMPACT_SHARE = 0.9  # user impact: a minute below 90 % of the usual traffic
IMPACT_BIN_S = 60  # the longest user-impact bin (``scale_to_span`` shortens it)
# Effects that build up over minutes (threads ratchet, pods run out of memory):
# their hops are measured over ``slow_lag_s`` instead of ``max_lag_s``.
SLOW_EFFECTS = frozenset({"runtime_stress", "user_impact"})


@dataclass(frozen=True)
class ChainSettings:
    """Knobs of the chain search.

    ``max_lag_s``: the longest delay a hop may have (``slow_lag_s`` for hops
    into effects that build up over minutes, ``SLOW_EFFECTS``); ``min_share`` and
    ``max_p``: coincidence a hop (and the culprit) needs to count as supported;
    ``n_boot``/``n_shuffle``: resamples for the lag interval and the p-value;
    ``exhaustion_tolerance_s``: how close the predicted and observed moments of
    exhaustion must be for the mechanism check; ``min_corr``: correlation the
    culprit's forced dials need with the fan-out; ``smooth_s``: moving average
    applied before that correlation; ``impact_bin_s``: bins in which user traffic is
    compared with its level before the drop. ``find_chain`` shortens the time
    knobs on short captures (``scale_to_span``).
    """

    detector: DetectorSettings = field(default_factory=DetectorSettings)
    max_lag_s: int = 120
    min_share: float = 0.5
    max_p: float = 0.05
    n_boot: int = 100
    n_shuffle: int = 300
    seed: int = 0
    exhaustion_tolerance_s: float = 15.0
    min_corr: float = 0.1
    smooth_s: int = 15
    slack_s: float = 15.0
    slow_lag_s: int = 1800
    lag_how: str = "diff"
    impact_bin_s: int = IMPACT_BIN_S


def scale_to_span(settings: ChainSettings, span_s: float, grid_s: float) -> ChainSettings:
    """The settings with their time knobs shrunk to fit a capture of ``span_s`` seconds.

    Lags and coincidence are only meaningful when the lag window is short against
    the data: with a 120 s lag on a 2-minute capture every shifted window still
    "coincides" (p near 1) and the cross-correlation has almost no common range
    left. So the lag window is at most a tenth of the span (slow effects a
    quarter), the early-detection slack a quarter of the lag window, the
    smoothing an eighth of the span, the user-impact bins a sixtieth (whole grid
    steps, at least one), and the shuffles no more than the span has grid steps
    (each distinct shift once, about). Every knob only ever shrinks: an
    incident of two hours or more keeps the settings as given, one of 20
    minutes or more keeps the lag window (only slow effects look less far).
    """
    g = max(grid_s, 1e-9)
    span = max(span_s, g)
    max_lag = min(settings.max_lag_s, max(int(3 * g), int(span / 10)))
    return replace(
        settings,
        max_lag_s=max_lag,
        slow_lag_s=min(settings.slow_lag_s, max(max_lag, int(span / 4))),
        slack_s=min(settings.slack_s, max(g, max_lag / 4)),
        smooth_s=min(settings.smooth_s, max(int(g), int(span / 8))),
        impact_bin_s=min(settings.impact_bin_s, max(1, int(span / 60 / g)) * int(max(g, 1))),
        n_shuffle=min(settings.n_shuffle, max(99, int(span / g))),
        exhaustion_tolerance_s=min(settings.exhaustion_tolerance_s, max(g, float(max_lag))),
    )


def scale_note(given: ChainSettings, used: ChainSettings, span_s: float) -> str | None:
    """Says which knobs a short capture shrank and the smallest p-value one pair of
    windows can reach (the lag window's share of the span)."""
    if used == given:
        return None
    width = used.max_lag_s + used.slack_s
    return (f"short capture ({span_s:.0f} s): lag window {used.max_lag_s} s (slow effects"
            f" {used.slow_lag_s} s), slack {used.slack_s:.0f} s, user-impact bins"
            f" {used.impact_bin_s} s; one cause window and one effect window cannot reach a"
            f" coincidence p below about {min(1.0, width / max(span_s, 1e-9)):.2f}")

