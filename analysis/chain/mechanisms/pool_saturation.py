"""Connection-pool / worker saturation (Little's law).

In-flight L = arrival rate x time in system W. When L reaches the pool's N slots,
requests queue, the wait grows and callers time out. Check: the pool in use sits at
its size after the onset, and the demand lambda x W, calibrated by the pre-incident
ratio L / (lambda x W) (so a p99 latency serves as W), reaches N. Rivals: a slower
callee (its latency rose first: a slow dependency), the CPU quota (resource
saturation), a traffic spike (lambda rose first by half or more). A callee whose
latency or errors moved no later than the pool filled is a slower callee (W rose
first), not a pool of its own.
"""

from __future__ import annotations

import numpy as np

from analysis.chain.mechanisms.base import (
    MechanismFit,
    at_cap,
    earliest,
    fits_per_entity,
    median,
    onset_of,
    pre,
    seconds_per_unit,
)
from analysis.chain.view import IncidentView


class PoolSaturation:
    name = "pool_saturation"
    roles = ("pool_in_use", "queue_wait", "latency", "errors")
    kinds = ("pool_in_use", "inflight", "pool_size", "queue", "rate", "latency", "errors")
    rivals = ("slow_dependency", "resource_saturation", "traffic_spike")
    knobs = ("pool_size", "concurrency_limit", "timeout_ms")

    def by_data(self, values: np.ndarray) -> str | None:
        """A series flat at its own maximum a third of the time is a pool at its cap."""
        v = values[np.isfinite(values)]
        if v.size >= 10 and np.max(v) > 0 and at_cap(v, float(np.max(v)), 0.3, 0.01) \
                and np.median(v) < 0.9 * np.max(v):
            return "pool_in_use"
        return None

    def check(self, view: IncidentView) -> list[MechanismFit]:
        # the deepest saturated pool is the cause; its callers' pools fill after it
        return fits_per_entity(view, self._entity, deepest=True)

    def _entity(self, view: IncidentView, e: str) -> MechanismFit | None:
        use = earliest(view.of(e, "pool_in_use") + view.of(e, "inflight"))
        if use is None or use.onset is None:
            return None
        size = view.first(e, "pool_size")
        cap = median(size.values[np.isfinite(size.values)]) if size is not None else float(
            np.nanmax(use.values))
        after = use.values[use.onset:]
        if not at_cap(after, cap):
            return None
        rate, lat = view.first(e, "rate"), view.first(e, "latency")
        little = float("nan")
        if rate is not None and lat is not None:
            demand = rate.values * lat.values * seconds_per_unit(lat)
            k = median(pre(view, use)) / max(median(demand[: view.n_baseline]), 1e-9)
            little = median(k * demand[use.onset:]) / max(cap, 1e-9)
            if not little >= 0.95:
                return None
        rejected = []
        # rivals: a callee slowed no later than the pool filled; the CPU at its quota;
        # traffic rose first
        full = np.flatnonzero(np.nan_to_num(after) >= 0.95 * cap)
        i_full = use.onset + int(full[0]) if full.size else use.onset
        for c in view.callees(e):
            c_on = onset_of(view, c, ("latency", "errors"))
            if c_on is not None and c_on <= i_full:
                return None
        rejected.append("slow dependency: no callee's latency or errors rose before the pool"
                        " filled (or with it)")
        cpu, lim = view.first(e, "cpu"), view.first(e, "cpu_limit")
        if cpu is not None and lim is not None and at_cap(cpu.values[use.onset:],
                                                         median(lim.values), 0.3, 0.08):
            return None
        rejected.append("resource saturation: CPU stayed below its limit")
        if rate is not None and median(rate.values[use.onset:]) > 1.5 * rate.base:
            return None
        rejected.append("traffic spike: the arrival rate did not rise by half")
        # the role starts when the pool is full, not when its use starts to climb
        onsets = {"pool_in_use": view.time_of(i_full)}
        for role, kinds in (("queue_wait", ("queue",)), ("latency", ("latency",)),
                            ("errors", ("errors",))):
            i = onset_of(view, e, kinds)
            if i is not None:
                onsets[role] = view.time_of(i)
        text = (f"{e}: pool in use at its size {cap:g} from {onsets['pool_in_use']:%H:%M:%S};"
                + (f" Little's law: rate x latency = {little:.2f} x the pool" if little == little
                   else "") + "; queue wait and latency after it")
        return MechanismFit(self.name, e, use.signal, text,
                            {k: v for k, v in onsets.items() if v is not None},
                            {"pool_size": cap, "demand_over_pool": little}, tuple(rejected))


MECHANISM = PoolSaturation()
