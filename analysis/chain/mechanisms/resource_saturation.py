"""Resource saturation: CPU, memory or disk reach their limit, then throttling, OOM
kills and restarts.

Check: usage reaches its limit (within 8 %) after its onset and before or with the
symptom; for CPU, usage per request rose (x 1.3 or more), so it is not only load (when
the rate rose only after usage reached the limit, per request at the rate up to then:
callers' retries raise it afterwards); for memory, the rise ends in restarts (OOM kills)
or sits at the limit. Rival: a load increase (usage rose because traffic did).
"""

from __future__ import annotations

import numpy as np

from analysis.chain.mechanisms.base import (
    MechanismFit,
    at_cap,
    fits_per_entity,
    median,
    onset_of,
    pre,
)
from analysis.chain.view import IncidentView


class ResourceSaturation:
    name = "resource_saturation"
    roles = ("cpu_at_limit", "memory_at_limit", "throttling", "restarts", "latency", "errors")
    kinds = ("cpu", "cpu_limit", "memory", "memory_limit", "throttle", "restarts", "rate")
    rivals = ("load_increase",)
    knobs = ("cpu_limit", "memory_limit")

    def by_data(self, values: np.ndarray) -> str | None:
        return None

    def check(self, view: IncidentView) -> list[MechanismFit]:
        return fits_per_entity(view, lambda v, e: self._cpu(v, e) or self._memory(v, e))

    def _effects(self, view: IncidentView, e: str, onsets: dict) -> None:
        for role, kinds in (("throttling", ("throttle",)), ("restarts", ("restarts",)),
                            ("latency", ("latency",)), ("errors", ("errors",))):
            i = onset_of(view, e, kinds)
            if i is not None:
                onsets.setdefault(role, view.time_of(i))

    def _cpu(self, view: IncidentView, e: str) -> MechanismFit | None:
        cpu, lim = view.first(e, "cpu"), view.first(e, "cpu_limit")
        if cpu is None or lim is None or cpu.onset is None:
            return None
        limit = median(lim.values[np.isfinite(lim.values)])
        if not at_cap(cpu.values[cpu.onset:], limit, 0.3, 0.08):
            return None
        rate = view.first(e, "rate")
        per_req = float("nan")
        if rate is not None:
            before = median(pre(view, cpu)) / max(median(pre(view, rate)), 1e-9)
            # at the cap usage is clipped: the demand per request is at least this
            full = np.flatnonzero(np.nan_to_num(cpu.values[cpu.onset:]) >= 0.92 * limit)
            i_cap = cpu.onset + int(full[0])
            if rate.onset is not None and rate.onset <= i_cap:  # load rose first
                after = median(cpu.values[cpu.onset:]) / max(
                    median(rate.values[cpu.onset:]), 1e-9)
            else:  # the rate rose only after the limit (callers' retries): the load until then
                after = median(cpu.values[i_cap:]) / max(
                    median(rate.values[max(0, i_cap - 2): i_cap + 1]), 1e-9)
            per_req = after / max(before, 1e-12)
            if per_req < 1.3:
                return None
        onsets = {"cpu_at_limit": view.time_of(cpu.onset)}
        self._effects(view, e, onsets)
        text = (f"{e}: CPU at its limit {limit:g} from {onsets['cpu_at_limit']:%H:%M:%S};"
                f" CPU per request x{per_req:.2f} (not load alone)")
        return MechanismFit(self.name, e, cpu.signal, text, onsets,
                            {"limit": limit, "per_request_factor": per_req},
                            ("load increase: usage per request rose",))

    def _memory(self, view: IncidentView, e: str) -> MechanismFit | None:
        mem, lim = view.first(e, "memory"), view.first(e, "memory_limit")
        if mem is None or mem.onset is None:
            return None
        limit = median(lim.values[np.isfinite(lim.values)]) if lim is not None else float("nan")
        after = mem.values[mem.onset:]
        reached = limit == limit and np.nanmax(after) >= 0.9 * limit
        rs = view.first(e, "restarts")
        restarted = rs is not None and np.nanmax(rs.values[mem.onset:]) > np.nanmax(
            rs.values[: mem.onset + 1]) if rs is not None else False
        if not (reached or (restarted and limit != limit)):
            return None
        if not (restarted or at_cap(after, limit, 0.3, 0.05)):
            return None
        onsets = {"memory_at_limit": view.time_of(mem.onset)}
        if restarted and rs is not None:
            jump = np.flatnonzero(np.diff(np.nan_to_num(rs.values[mem.onset:])) > 0)
            if jump.size:
                onsets["restarts"] = view.time_of(mem.onset + int(jump[0]) + 1)
        self._effects(view, e, onsets)
        text = (f"{e}: memory rose from {onsets['memory_at_limit']:%H:%M:%S} to its limit"
                + (f" {limit:.3g}" if limit == limit else "")
                + ("; the pod restarted (OOM kills)" if restarted else "; held at the limit"))
        return MechanismFit(self.name, e, mem.signal, text, onsets,
                            {"limit": limit, "restarted": float(restarted)},
                            ("load increase: memory grows without the traffic growing",))


MECHANISM = ResourceSaturation()
