"""The faults: each family's cause, written as parameter changes the model then plays out.

Every injector draws where and when (``t0`` between 45 % and 65 % of the run) and how
strong, writes ``Overrides`` and returns the truth: mechanism, root-cause entity and
signal, the roles in causal order and deploy events. The effects are never written
directly; queueing, time-outs and retries in ``model.py`` produce them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.simulate.micro.model import STEP_S, Overrides, Service
from analysis.simulate.micro.topology import callers_of, depth_of

MECHANISMS = ("pool_saturation", "retry_storm", "slow_dependency", "resource_saturation",
              "bad_deploy")


@dataclass
class Fault:
    """What one injected fault is, in the truth's terms."""

    mechanism: str
    entity: str
    signal: str
    start_step: int
    roles: list[str]
    events: list[dict] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


def _ramp(n: int, t0: int, width: int, top: float, base: float = 1.0) -> np.ndarray:
    """``base`` until ``t0``, then a ramp to ``top`` over ``width`` steps."""
    x = np.full(n, base)
    idx = np.arange(n)
    on = idx >= t0
    x[on] = base + (top - base) * np.minimum(1.0, (idx[on] - t0 + 1) / max(width, 1))
    return x


def _non_entry(services: list[Service], rng: np.random.Generator, *, leafward: bool) -> int:
    """A service other than the entry; ``leafward`` prefers deep ones."""
    depth = np.array(depth_of(services), dtype=float)
    cand = np.arange(1, len(services))
    w = (depth[cand] + 0.5) ** (2 if leafward else 0)
    return int(rng.choice(cand, p=w / w.sum()))


def pool_saturation(services, ov: Overrides, rng, t0: int, used: set[int]) -> Fault:
    """A slower code path (service time x 1.5-2.5) pushes utilisation past the pool."""
    j = _pick(services, rng, used, leafward=False)
    # the pool runs at 55-80 % and the slower path takes it past 1 (x 1.15-1.7)
    services[j].pool = max(4, int(np.ceil(services[j].busy / rng.uniform(0.55, 0.8))))
    rho = services[j].busy / services[j].pool
    # own time x f so that the whole time in system grows by target / rho
    s = services[j]
    grow = float(rng.uniform(1.15, 1.7) / max(rho, 0.05))
    f = (grow * s.w_ms - (s.w_ms - s.s_ms)) / s.s_ms
    ov.s_mult[j] = _ramp(ov.n, t0, int(rng.integers(1, 4)), f)
    services[j].cpu_limit *= 3  # not a CPU story
    return Fault("pool_saturation", services[j].name, "pool_in_use", t0,
                 ["pool_in_use", "queue_wait", "latency", "errors"], detail={"factor": f})


def retry_storm(services, ov: Overrides, rng, t0: int, used: set[int]) -> Fault:
    """A caller retrying ``r`` times without a budget turns a callee's short error burst
    into a lasting overload (offered = base x (1 + r x e); the callee sheds the rest)."""
    # a caller and a callee it alone calls when there is one (else its storm is diluted
    # by the callee's other traffic)
    pairs = [(i, c) for i, s in enumerate(services) if i not in used for c in s.callees
             if c not in used]
    sole = [(i, c) for i, c in pairs if callers_of(services, c) == [i]]
    # (with every service already taken by another fault, any call edge will do)
    pool = sole or pairs or [(i, c) for i, s in enumerate(services) for c in s.callees]
    i, c = pool[int(rng.integers(0, len(pool)))]
    used.update({i, c})
    r = int(rng.integers(4, 7))
    ov.retries[i] = r
    ov.retry_from = t0
    # the callee runs near capacity, so the amplified load keeps it there
    # a storm sustains itself when the callee's capacity c x base load is below
    # (1 + r)^2 / 4r x base (the fixed point of load = base x (1 + r x (1 - cap/load)))
    c_max = (1 + r) ** 2 / (4 * r)
    ratio = float(rng.uniform(1.08, 1.08 + 0.6 * (c_max - 1.08)))
    services[c].pool = services[c].busy * ratio  # slots on average (a float is fine here)
    services[c].cpu_limit *= 3
    burst = np.zeros(ov.n)
    burst[t0: t0 + int(rng.integers(4, 10))] = rng.uniform(0.7, 0.95)
    ov.err_add[c] = ov.get(ov.err_add, c, 0.0) + burst
    return Fault("retry_storm", services[i].name, "requests", t0,
                 ["callee_errors", "offered_load", "goodput_drop"],
                 detail={"retries": r, "callee": services[c].name})


def slow_dependency(services, ov: Overrides, rng, t0: int, used: set[int]) -> Fault:
    """A downstream's own latency rises (a slow disk, a slow query): callers follow."""
    j = _pick(services, rng, used, leafward=True)
    add = float(rng.uniform(120, 700))
    ov.s_add[j] = ov.get(ov.s_add, j, 0.0) + _ramp(ov.n, t0, int(rng.integers(1, 4)), add, 0.0)
    services[j].pool *= 40  # its own pool is not what fills
    services[j].cpu_limit *= 3
    return Fault("slow_dependency", services[j].name, "latency", t0,
                 ["dependency_latency", "caller_latency", "caller_errors"],
                 detail={"added_ms": add})


def resource_saturation(services, ov: Overrides, rng, t0: int, used: set[int]) -> Fault:
    """CPU per request grows past the limit (throttling), or memory leaks to the limit
    (OOM kills and restarts)."""
    j = _pick(services, rng, used, leafward=False)
    s = services[j]
    services[j].pool *= 3
    if rng.random() < 0.5:
        f = float(rng.uniform(2.5, 4.5))
        ov.cpu_mult[j] = _ramp(ov.n, t0, int(rng.integers(1, 6)), f)
        return Fault("resource_saturation", s.name, "cpu", t0,
                     ["cpu_at_limit", "throttling", "latency", "errors"],
                     detail={"resource": "cpu", "factor": f})
    steps = int(rng.integers(8, 30))  # reaches the limit within 1.5-5 min
    grow = (s.mem_limit - s.mem_base) * 1.05 / steps
    leak = np.maximum(0, np.arange(ov.n) - t0 + 1) * grow
    ov.mem_add[j] = leak
    return Fault("resource_saturation", s.name, "memory", t0,
                 ["memory_at_limit", "restarts", "errors"],
                 detail={"resource": "memory", "seconds_to_limit": steps * STEP_S})


def bad_deploy(services, ov: Overrides, rng, t0: int, used: set[int]) -> Fault:
    """A new version: errors and/or latency step up within minutes of the deploy event."""
    j = _pick(services, rng, used, leafward=False)
    delay = int(rng.integers(0, 13))  # 0-2 minutes
    on = np.arange(ov.n) >= t0 + delay
    err = float(rng.uniform(0.04, 0.3))
    ov.err_add[j] = ov.get(ov.err_add, j, 0.0) + on * err
    if rng.random() < 0.5:
        ov.s_mult[j] = np.where(on, rng.uniform(1.3, 2.0), 1.0)
    services[j].pool *= 3
    version = f"v{int(rng.integers(1, 9))}.{int(rng.integers(0, 30))}.{int(rng.integers(0, 9))}"
    ev = {"step": t0, "kind": "deploy", "title": f"deploy {services[j].name} {version}",
          "source": "ci", "detail": f"rolled out {version} to {services[j].name}"}
    return Fault("bad_deploy", services[j].name, "errors", t0 + delay,
                 ["deploy_event", "errors", "caller_errors"], events=[ev],
                 detail={"delay_s": delay * STEP_S, "version": version})


def _pick(services, rng, used: set[int], *, leafward: bool) -> int:
    for _ in range(20):
        j = _non_entry(services, rng, leafward=leafward)
        if j not in used:
            used.add(j)
            return j
    j = next(k for k in range(1, len(services)) if k not in used)
    used.add(j)
    return j


INJECTORS = {
    "pool_saturation": pool_saturation,
    "retry_storm": retry_storm,
    "slow_dependency": slow_dependency,
    "resource_saturation": resource_saturation,
    "bad_deploy": bad_deploy,
}


def distractors(services, ov: Overrides, rng, n: int, used: set[int]) -> list[dict]:
    """Harmless things that happen anyway: a deploy that changes nothing, a short blip in
    one service, an organic rise of traffic (everyone's goodput rises with it)."""
    events = []
    if rng.random() < 0.7:
        j = int(rng.integers(0, len(services)))
        step = int(rng.integers(10, n - 10))
        events.append({"step": step, "kind": "deploy",
                       "title": f"deploy {services[j].name} v{int(rng.integers(1, 9))}.0."
                                f"{int(rng.integers(0, 9))}", "source": "ci",
                       "detail": "routine release"})
    if rng.random() < 0.6:
        j = int(rng.integers(1, len(services)))
        if j not in used:
            blip = np.zeros(n)
            a = int(rng.integers(20, n - 10))
            blip[a: a + int(rng.integers(1, 3))] = rng.uniform(0.5, 2.0)
            ov.s_mult[j] = ov.get(ov.s_mult, j, 1.0) * (1 + blip)
    if rng.random() < 0.4:
        a = int(rng.integers(int(n * 0.2), int(n * 0.8)))
        grow = _ramp(n, a, int(rng.integers(20, 60)), float(rng.uniform(1.1, 1.35)))
        ov.entry_mult = grow if ov.entry_mult is None else ov.entry_mult * grow
    if rng.random() < 0.3:
        events.append({"step": int(rng.integers(10, n - 10)), "kind": "note",
                       "title": "on-call handover", "source": "pager", "detail": ""})
    return events


def callers_chain(services: list[Service], j: int) -> list[str]:
    """Names of ``j``'s callers (for the truth's description of who is affected)."""
    return [services[i].name for i in callers_of(services, j)]
