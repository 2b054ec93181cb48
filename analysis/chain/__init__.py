"""The root-cause chain: from the user-facing drop back to a culprit, hop by hop.

``find_chain`` reads the rolled-up ``signals`` (building them if needed), gives
signals roles (``analysis.roles``), finds their anomaly windows
(``analysis.detection``) and measures each hop of the causal order
``trigger -> fan_out -> port_exhaustion -> cache_errors -> runtime_stress ->
user_impact`` with a lead/lag and its bootstrap interval, the coincidence of
windows and its p-value (``analysis.correlation``), an effect size, and a
mechanism check where the physics allows one:

* trigger -> fan_out: a batch of ``B`` URIs, one lookup each, against an idle
  pool of ``P`` dials ``B - P`` connections;
* fan_out -> port_exhaustion: dials per second times the TIME_WAIT duration
  against the port range, and the moment the observed dials should fill the
  range against the moment address errors were first seen.

The culprit is ranked by per-caller *weight* (URIs, the largest batch and the
dials its batches force past the idle pool) and by how its heavy windows
coincide with the fan-out, never by request rate: a busy caller of small
batches is a rival, rejected because its batches cannot dial past the pool.
Rivals (other callers, packet loss, deploys, the daily curve) are listed with
the reason each was rejected. Without exhaustion evidence, or without a caller
whose batches explain it, the verdict is ``no_supported_cause``.

The package reads as ``find_chain``'s stages (``find``): ``environment`` (the facts
the mechanism depends on, read by ``whatif`` too), ``settings``, ``roles`` (which
signal plays which part), ``series`` (windows, coincidence), ``callers`` (caller
scoring), ``onsets``, ``hops`` (measured hops and the mechanism check), ``rivals``,
``result`` (the typed ``ChainResult``) and ``text`` (``format_chain``).

Importing the package imports none of its stages: names are loaded on first use
(``__getattr__``), so ``from analysis.chain.environment import environment``
(``whatif``) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# eager and light (no stage): binding the function ``environment`` after its module is
# imported keeps ``from analysis.chain import environment`` the function, not the module
from analysis.chain.environment import (
    KERNEL_PORT_RANGE,
    KERNEL_TIME_WAIT_S,
    UNKNOWN_POOL_CAP,
    Environment,
    environment,
)

if TYPE_CHECKING:
    from analysis.chain.callers import (
        Forced,
        caller_method,
        forced_dials,
    )
    from analysis.chain.find import find_chain
    from analysis.chain.result import (
        CallerScore,
        ChainResult,
        Culprit,
        Hop,
        Rejected,
    )
    from analysis.chain.settings import (
        IMPACT_BIN_S,
        IMPACT_SHARE,
        NO_CAUSE,
        ROOT_CAUSE,
        SLOW_EFFECTS,
        STRESS_FACTOR,
        ChainSettings,
        scale_to_span,
    )
    from analysis.chain.text import format_chain

_EXPORTS: dict[str, str] = {
    "Forced": "analysis.chain.callers",
    "caller_method": "analysis.chain.callers",
    "forced_dials": "analysis.chain.callers",
    "find_chain": "analysis.chain.find",
    "CallerScore": "analysis.chain.result",
    "ChainResult": "analysis.chain.result",
    "Culprit": "analysis.chain.result",
    "Hop": "analysis.chain.result",
    "Rejected": "analysis.chain.result",
    "IMPACT_BIN_S": "analysis.chain.settings",
    "IMPACT_SHARE": "analysis.chain.settings",
    "NO_CAUSE": "analysis.chain.settings",
    "ROOT_CAUSE": "analysis.chain.settings",
    "SLOW_EFFECTS": "analysis.chain.settings",
    "STRESS_FACTOR": "analysis.chain.settings",
    "ChainSettings": "analysis.chain.settings",
    "scale_to_span": "analysis.chain.settings",
    "format_chain": "analysis.chain.text",
}

__all__ = [
    "CallerScore",
    "ChainResult",
    "ChainSettings",
    "Culprit",
    "Environment",
    "Forced",
    "Hop",
    "IMPACT_BIN_S",
    "IMPACT_SHARE",
    "KERNEL_PORT_RANGE",
    "KERNEL_TIME_WAIT_S",
    "NO_CAUSE",
    "ROOT_CAUSE",
    "Rejected",
    "SLOW_EFFECTS",
    "STRESS_FACTOR",
    "UNKNOWN_POOL_CAP",
    "caller_method",
    "environment",
    "find_chain",
    "forced_dials",
    "format_chain",
    "scale_to_span",
]


def __getattr__(name: str):
    """The public name ``name`` from the module that defines it (imported on first use)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis.chain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
