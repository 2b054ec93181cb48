"""Port exhaustion (the reference case): the chain's own mechanism, as a module.

The arithmetic lives in the chain (``analysis.chain``): a batch of B URIs against an
idle pool of P dials B - P connections; each closed one holds its port in TIME_WAIT
for 60 s; dials/s x 60 s beyond the port range exhausts it. This module reads the
chain's result, so its fit is exactly today's verdict and culprit.
"""

from __future__ import annotations

import numpy as np

from analysis.chain.mechanisms.base import MechanismFit
from analysis.chain.view import IncidentView
from analysis.roles import ROLES, plateau_matches_range
from analysis.signal_id import SignalId


class PortExhaustion:
    name = "port_exhaustion"
    roles = ROLES
    kinds = ("rate",)
    rivals = ("packet_loss", "request_rate", "deploy", "daily_curve")
    knobs = ("concurrency_limit", "max_batch", "source_addresses", "port_range", "idle_pool")

    def by_data(self, values: np.ndarray, port_range: int = 28232) -> str | None:
        return "port_exhaustion" if plateau_matches_range(values, port_range) else None

    def check(self, view: IncidentView, chain=None) -> list[MechanismFit]:
        if chain is None or chain.verdict != "root_cause_found" or chain.culprit is None:
            return []
        c = chain.culprit
        return [MechanismFit(self.name, c.caller, SignalId.for_caller(c.caller, "uris").key,
                             c.evidence,
                             dict(chain.onsets), {}, tuple(r.candidate for r in chain.rejected))]


MECHANISM = PortExhaustion()
