"""The one small interface every failure mechanism implements, and what a fit is.

A mechanism is data plus code: the ``roles`` it needs in causal order, the signal
kinds it reads (recognised by name in ``view.KIND_PATTERNS``; some also by data,
``by_data``), its ``rivals`` (what else could explain the same signals, each ruled
out in ``check`` with a reason), its what-if ``knobs``, and ``check``: the
arithmetic that turns co-movement into a mechanism (Little's law, the retry
factor, lead/lag down the call graph, a limit reached, an event-to-step delay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from analysis.chain.view import IncidentView, Series


@dataclass(frozen=True)
class MechanismFit:
    """One mechanism that fits the data: its culprit, the check's numbers and text,
    the onsets of its roles, and the rivals it ruled out."""

    mechanism: str
    culprit: str
    signal: str
    evidence: str
    onsets: dict[str, datetime]
    numbers: dict[str, float] = field(default_factory=dict)
    rivals_rejected: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready (times as ISO 8601 UTC)."""
        return {"mechanism": self.mechanism, "culprit": self.culprit, "signal": self.signal,
                "evidence": self.evidence,
                "onsets": {r: t.replace(microsecond=0).isoformat() + "Z"
                           for r, t in self.onsets.items()},
                "numbers": {k: (None if v != v else v) for k, v in self.numbers.items()},
                "rivals_rejected": list(self.rivals_rejected)}

    def roles_in_order(self, roles: tuple[str, ...], tie_s: float = 0.0) -> list[str]:
        """The found roles sorted by onset; onsets less than ``tie_s`` apart keep the
        mechanism's causal order."""
        found = [r for r in roles if r in self.onsets]
        out: list[str] = []
        for r in sorted(found, key=lambda r: (self.onsets[r], roles.index(r))):
            i = len(out)
            while i > 0 and roles.index(out[i - 1]) > roles.index(r) and (
                    self.onsets[r] - self.onsets[out[i - 1]]).total_seconds() < tie_s:
                i -= 1
            out.insert(i, r)
        return out


class Mechanism(Protocol):
    """What every mechanism module provides (see the module docstring)."""

    name: str
    roles: tuple[str, ...]
    kinds: tuple[str, ...]
    rivals: tuple[str, ...]
    knobs: tuple[str, ...]

    def by_data(self, values: np.ndarray) -> str | None:
        """A kind this mechanism recognises from the data of an unnamed series."""
        ...

    def check(self, view: IncidentView) -> list[MechanismFit]:
        """Every fit of this mechanism in the incident (usually none or one)."""
        ...


# --- helpers the checks share ---------------------------------------------------------


def post(s: Series, start: int | None = None) -> np.ndarray:
    """Finite values from ``start`` (the series' onset by default) on."""
    i = s.onset if start is None else start
    v = s.values[(i or 0):]
    return v[np.isfinite(v)]


def pre(view: IncidentView, s: Series) -> np.ndarray:
    v = s.values[: view.n_baseline]
    return v[np.isfinite(v)]


def median(v: np.ndarray) -> float:
    """Median of the finite values (NaN when there is none)."""
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def seconds_per_unit(s: Series) -> float:
    """Seconds per unit of a latency series: 0.001 when it is in milliseconds. Judged by
    its pre-incident level (above 5 means milliseconds), not by the whole series, whose
    median an incident longer than the baseline can push past 5 seconds."""
    return 0.001 if s.base > 5 else 1.0


def fits_per_entity(view: IncidentView,
                    fit: Callable[[IncidentView, str], MechanismFit | None],
                    *, deepest: bool = False) -> list[MechanismFit]:
    """``fit`` tried on every entity of the view, the fits it found. ``deepest``: keep
    only fits none of whose culprit's descendants (callees, transitively) also fit, since
    a slow or saturated callee makes its callers look the same after it."""
    fits = [f for f in (fit(view, e) for e in view.entities) if f is not None]
    if not deepest:
        return fits
    culprits = {f.culprit for f in fits}
    return [f for f in fits if not (view.descendants(f.culprit) & culprits)]


def earliest(series: list[Series]) -> Series | None:
    """The series with the earliest onset (None when none has one)."""
    got = [s for s in series if s.onset is not None]
    return min(got, key=lambda s: (s.onset, -abs(s.peak_z))) if got else None


def onset_of(view: IncidentView, entity: str, kinds: tuple[str, ...]) -> int | None:
    s = earliest([x for k in kinds for x in view.of(entity, k)])
    return None if s is None else s.onset


def deploy_near(view: IncidentView, entity: str, step: int, before_s: float) -> str | None:
    """The title of a deploy naming ``entity`` at most ``before_s`` before step ``step``."""
    at = view.time_of(step)
    if at is None:
        return None
    for t, kind, title, detail in view.events:
        if kind == "deploy" and names(entity, f"{title} {detail}") and \
                0 <= (at - t).total_seconds() <= before_s:
            return title
    return None


def names(entity: str, text: str) -> bool:
    """Whether ``text`` names ``entity`` as a whole word (names are data: any Unicode)."""
    i = text.find(entity)
    while i >= 0:
        before = text[i - 1] if i > 0 else " "
        after = text[i + len(entity)] if i + len(entity) < len(text) else " "
        if not (before.isalnum() or before in "-_.") and not (after.isalnum() or after in "-_"):
            return True
        i = text.find(entity, i + 1)
    return False


def at_cap(values: np.ndarray, cap: float, share: float = 0.3, tol: float = 0.05) -> bool:
    """At least ``share`` of the samples within ``tol`` of ``cap``."""
    v = values[np.isfinite(values)]
    return bool(v.size and cap > 0 and np.mean(v >= (1 - tol) * cap) >= share)
