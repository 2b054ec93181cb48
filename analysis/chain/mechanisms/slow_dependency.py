"""Slow dependency: a downstream's latency leads its callers' latency and errors.

Check: the callee's own latency rises first (none of its callees moved before it),
at least one caller's latency follows (onset at or after the callee's), and the rise
carries up: the caller's latency grew by at least a third of the callee's growth
(caller latency ~ own + calls x callee latency). Rivals: the callee's CPU at its
quota (resource saturation), its pool filled before its latency rose (pool
saturation), a deploy of the callee within the bad deploy's window before (bad deploy),
a traffic rise into it before its latency rose (load).
"""

from __future__ import annotations

import numpy as np

from analysis.chain.mechanisms.bad_deploy import MAX_DELAY_S
from analysis.chain.mechanisms.base import (
    MechanismFit,
    at_cap,
    deploy_near,
    earliest,
    fits_per_entity,
    median,
    onset_of,
    seconds_per_unit,
)
from analysis.chain.view import IncidentView


class SlowDependency:
    name = "slow_dependency"
    roles = ("dependency_latency", "caller_latency", "caller_errors")
    kinds = ("latency", "errors", "cpu", "cpu_limit", "pool_in_use", "rate")
    rivals = ("resource_saturation", "pool_saturation", "bad_deploy", "load")
    knobs = ("timeout_ms", "dependency_latency_ms")

    def by_data(self, values: np.ndarray) -> str | None:
        return None

    def check(self, view: IncidentView) -> list[MechanismFit]:
        return fits_per_entity(view, self._entity, deepest=True)

    def _entity(self, view: IncidentView, y: str) -> MechanismFit | None:
        lat = earliest(view.of(y, "latency"))
        callers = view.callers(y)
        if lat is None or lat.onset is None or not callers:
            return None
        for c in view.callees(y):  # the latency must be its own
            c_on = onset_of(view, c, ("latency", "errors"))
            if c_on is not None and c_on <= lat.onset:
                return None
        d_y = median(lat.values[lat.onset:]) - lat.base
        follow = []
        for c in callers:
            cl = earliest(view.of(c, "latency"))
            if cl is None or cl.onset is None or cl.onset < lat.onset:
                continue
            d_c = median(cl.values[cl.onset:]) - cl.base
            if d_c * seconds_per_unit(cl) >= d_y * seconds_per_unit(lat) / 3:
                follow.append((cl.onset, c, d_c))
        if not follow:
            return None
        rejected = []
        cpu, lim = view.first(y, "cpu"), view.first(y, "cpu_limit")
        if cpu is not None and lim is not None and at_cap(cpu.values[lat.onset:],
                                                         median(lim.values), 0.3, 0.08):
            return None
        rejected.append(f"resource saturation: {y}'s CPU stayed below its limit")
        use, size = view.first(y, "pool_in_use"), view.first(y, "pool_size")
        if use is not None and size is not None and use.onset is not None \
                and use.onset < lat.onset and at_cap(use.values[use.onset:], median(size.values)):
            return None
        rejected.append(f"pool saturation: {y}'s pool did not fill before its latency rose")
        if deploy_near(view, y, lat.onset, MAX_DELAY_S):
            return None
        rejected.append(f"bad deploy: no deploy of {y} in the {MAX_DELAY_S / 60:g} minutes"
                        " before")
        # load is a rival only when it rose first: callers' retries and time-outs raise the
        # rate into a slow dependency after its latency did
        rate = view.first(y, "rate")
        if rate is not None and rate.onset is not None and rate.onset <= lat.onset \
                and median(rate.values[lat.onset:]) > 1.5 * rate.base:
            return None
        rejected.append(f"load: the request rate into {y} did not rise by half before its"
                        " latency")
        first = min(follow)
        onsets = {"dependency_latency": view.time_of(lat.onset),
                  "caller_latency": view.time_of(first[0])}
        errs = [i for c in callers if (i := onset_of(view, c, ("errors",))) is not None
                and i >= lat.onset]
        if errs:
            onsets["caller_errors"] = view.time_of(min(errs))
        text = (f"{y}'s latency rose by {d_y:.3g} from {onsets['dependency_latency']:%H:%M:%S}"
                f" with none of its callees moving first; callers followed: "
                + ", ".join(f"{c} (+{d:.3g}, {view.step_s * (i - lat.onset):.0f} s later)"
                            for i, c, d in sorted(follow)))
        return MechanismFit(self.name, y, lat.signal, text, onsets,
                            {"latency_rise": d_y, "callers_following": len(follow)},
                            tuple(rejected))


MECHANISM = SlowDependency()
