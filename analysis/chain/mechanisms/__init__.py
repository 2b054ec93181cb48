"""Failure mechanisms, one module each behind one interface (``base.Mechanism``).

``MECHANISMS`` lists them; ``check_all`` runs every check on an incident's view
(``view.build_view``) and returns the fits, earliest onset first, without those another
fit explains (a callee's pool filled, or its latency raised, by a retry storm's extra load
is the storm's effect; errors that follow a resource reaching its limit are the
saturation's, not a deploy's step).
"""

from __future__ import annotations

from analysis.chain.mechanisms import (
    bad_deploy,
    pool_saturation,
    port_exhaustion,
    resource_saturation,
    retry_storm,
    slow_dependency,
)
from analysis.chain.mechanisms.base import Mechanism, MechanismFit
from analysis.chain.view import IncidentView, build_view

MECHANISMS: tuple[Mechanism, ...] = (
    port_exhaustion.MECHANISM,
    pool_saturation.MECHANISM,
    retry_storm.MECHANISM,
    slow_dependency.MECHANISM,
    resource_saturation.MECHANISM,
    bad_deploy.MECHANISM,
)
BY_NAME = {m.name: m for m in MECHANISMS}

__all__ = ["BY_NAME", "MECHANISMS", "IncidentView", "Mechanism", "MechanismFit", "build_view",
           "check_all"]


def check_all(view: IncidentView, chain=None) -> list[MechanismFit]:
    """Every mechanism's fits; port exhaustion reads the chain's result ``chain``."""
    fits: list[MechanismFit] = list(port_exhaustion.MECHANISM.check(view, chain))
    for m in MECHANISMS[1:]:
        fits += m.check(view)
    # a retry storm's extra load fills its callees' pools and slows them: those are its
    # effect, not a cause
    stormed = {c for f in fits if f.mechanism == "retry_storm" for c in view.callees(f.culprit)}
    fits = [f for f in fits if not (f.mechanism in ("pool_saturation", "slow_dependency")
                                    and f.culprit in stormed)]
    # a deploy's step comes at the deploy; when the entity's CPU or memory reached its limit
    # before its errors stepped, the errors are the saturation's and the deploy coincidental
    fits = [f for f in fits if not (f.mechanism == "bad_deploy" and _saturated_first(f, fits))]
    return sorted(fits, key=lambda f: (min(f.onsets.values()) if f.onsets else view.t[-1],
                                       f.mechanism, f.culprit))


def _saturated_first(deploy: MechanismFit, fits: list[MechanismFit]) -> bool:
    """Whether a resource-saturation fit of the deploy's entity reached its limit before
    the deploy's errors stepped."""
    step = deploy.onsets.get("errors")
    return step is not None and any(
        f.mechanism == "resource_saturation" and f.culprit == deploy.culprit
        and any(f.onsets.get(r, step) < step for r in ("cpu_at_limit", "memory_at_limit"))
        for f in fits)
