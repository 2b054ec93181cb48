"""Suspects: a ranked list of entities and signals for every incident, with evidence.

Standard practice (BARO, BubbleUp, Sift), on the incident's view
(``analysis.chain.view``):

1. each entity's departure from its own baseline: the largest robust z of its
   signals that moved in the direction that is trouble for their kind, and the
   earliest sustained onset among them;
2. dependency direction: an entity with a callee that departed no later than it is
   *explained* (its trouble can come from below) and ranks after those that are not;
3. onset order: among the unexplained, earlier first; the size of the departure
   breaks ties (onsets within one step are ties);
4. a confirmed mechanism (``chain.mechanisms.check_all``) puts its culprit first, with
   the mechanism's evidence (its score stays its own departure, log(1 + z)).

``baseline_suspects`` is the do-nothing baseline it must beat: every entity ranked by
the largest z-score jump of any of its signals against the whole series' mean and
standard deviation, with no baseline window, onset or graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from analysis.chain.mechanisms.base import MechanismFit
from analysis.chain.view import BAD_UP, SETTINGS, IncidentView, Series

TIE_STEPS = 1


@dataclass(frozen=True)
class Suspect:
    """One entity under suspicion: its most telling signal, how far it moved (robust z),
    when it started, and why it ranks where it does."""

    entity: str
    signal: str
    score: float
    onset: datetime | None
    evidence: str

    def to_dict(self) -> dict:
        return {"entity": self.entity, "signal": self.signal, "score": round(self.score, 3),
                "onset": None if self.onset is None else
                self.onset.replace(microsecond=0).isoformat() + "Z",
                "evidence": self.evidence}


def _trouble(s: Series) -> bool:
    return s.onset is not None and s.kind in BAD_UP


def _entity_summary(view: IncidentView, e: str) -> tuple[int | None, float, Series | None]:
    """(earliest trouble onset, largest trouble z, the series of that onset)."""
    moved = [s for s in view.of(e) if _trouble(s)]
    if not moved:
        return None, 0.0, None
    first = min(moved, key=lambda s: (s.onset, -s.peak_z))
    return first.onset, max(s.peak_z for s in moved), first


def rank_suspects(view: IncidentView, fits: list[MechanismFit] | None = None,
                  limit: int = 10) -> list[Suspect]:
    """Entities ranked (see the module docstring); at most ``limit``."""
    info = {e: _entity_summary(view, e) for e in view.entities}
    moved = {e: v for e, v in info.items() if v[0] is not None}
    rows = []
    for e, (on, z, s) in moved.items():
        assert on is not None and s is not None
        below = [c for c in view.descendants(e) if c in moved
                 and moved[c][0] is not None and moved[c][0] <= on + TIE_STEPS]
        rank = (bool(below), on // (TIE_STEPS + 1), -z)
        why = (f"{s.kind} left its baseline (z {z:.1f}) at {view.time_of(on):%H:%M:%S}"
               + (f"; after {', '.join(sorted(below)[:3])} below it" if below else
                  "; nothing it calls moved first"))
        rows.append((rank, e, Suspect(e, s.signal, float(np.log1p(z)), view.time_of(on), why)))
    rows.sort(key=lambda r: (r[0], r[1]))
    out = [r[2] for r in rows]
    for fit in reversed(fits or []):
        own = next((x.score for x in out if x.entity == fit.culprit), 0.0)
        out = [x for x in out if x.entity != fit.culprit]
        first = min(fit.onsets.values()) if fit.onsets else None
        out.insert(0, Suspect(fit.culprit, fit.signal, own, first,
                              f"{fit.mechanism}: {fit.evidence}"))
    return out[:limit]


def baseline_suspects(view: IncidentView, limit: int = 10) -> list[Suspect]:
    """The naive ranking: the largest |x - mean| / sd of any signal, per entity."""
    best: dict[str, tuple[float, str]] = {}
    for s in view.series:
        if s.kind in SETTINGS:
            continue
        v = s.values[np.isfinite(s.values)]
        if v.size < 3 or np.std(v) == 0:
            continue
        z = float(np.max(np.abs(v - np.mean(v))) / np.std(v))
        if z > best.get(s.entity, (-1.0, ""))[0]:
            best[s.entity] = (z, s.signal)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [Suspect(e, sig, z, None, f"largest z-score jump {z:.1f}")
            for e, (z, sig) in ranked[:limit]]
