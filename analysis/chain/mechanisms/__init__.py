"""Failure mechanisms, one module each behind one interface (``base.Mechanism``).

``MECHANISMS`` lists them; ``check_all`` runs every check on an incident's view
(``view.build_view``) and returns the fits, earliest onset first, without those another
fit explains (a pool filled by a retry storm's extra load is the storm's effect).
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
    # a retry storm's extra load fills its callees' pools: those are its effect, not a cause
    stormed = {c for f in fits if f.mechanism == "retry_storm" for c in view.callees(f.culprit)}
    fits = [f for f in fits if not (f.mechanism == "pool_saturation" and f.culprit in stormed)]
    return sorted(fits, key=lambda f: (min(f.onsets.values()) if f.onsets else view.t[-1],
                                       f.mechanism, f.culprit))
