"""A small queueing model of a microservice system, step by step.

Each service has an own service time ``s`` (ms), a worker/connection pool of ``N``
slots, a CPU per request and a CPU limit, a memory level and limit, and callees it
calls ``k`` times per request (sequentially, holding its worker meanwhile). Per step:

* offered rate: the entry's traffic (a slow daily drift, noise), callees the sum of
  their callers' calls, times ``1 + r x e`` for callers that retry ``r`` times on the
  callee's error ratio ``e`` of the previous step (a retry storm needs no budget);
* time in system ``W = s + sum(k x L_callee)``; capacity ``N / W`` (Little's law:
  in-flight = rate x W reaches ``N``); past capacity the surplus waits in a backlog
  bounded by the deadline and what overflows is shed (errors);
* CPU demand = served rate x CPU per request; beyond the limit the service is
  throttled and its service time stretches by demand / limit;
* errors: its own ratio, shed requests, callees' errors passed up, time-outs once
  the latency passes the caller's deadline.

Faults (``faults.py``) act by changing these parameters from a step on; the model
does the rest, so symptoms propagate the way the physics says. Cheap: a Python loop
over steps and services (a few thousand iterations), vectorised noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STEP_S = 10


@dataclass
class Service:
    """One service's parameters (base values; faults write per-step overrides)."""

    name: str
    callees: dict[int, float]  # callee index -> calls per request
    s_ms: float  # own service time
    pool: float  # workers / connections
    cpu_per_req: float  # cores x seconds per request
    cpu_limit: float  # cores
    mem_base: float  # bytes
    mem_limit: float
    err_base: float  # own error ratio
    deadline_ms: float  # this service's time-out on its callees
    retries: int = 0  # retries per failed call, without a budget when > 1
    busy: float = 0.0  # in-flight at the base traffic (rate x time in system)
    w_ms: float = 0.0  # time in system at the base traffic (own + callees)


@dataclass
class Overrides:
    """Per-step multipliers and additions a fault applies (arrays of the run's length)."""

    n: int
    s_mult: dict[int, np.ndarray] = field(default_factory=dict)
    s_add: dict[int, np.ndarray] = field(default_factory=dict)
    err_add: dict[int, np.ndarray] = field(default_factory=dict)
    cpu_mult: dict[int, np.ndarray] = field(default_factory=dict)
    mem_add: dict[int, np.ndarray] = field(default_factory=dict)
    entry_mult: np.ndarray | None = None
    retries: dict[int, int] = field(default_factory=dict)  # from the fault's start
    retry_from: int = 0

    def get(self, table: dict[int, np.ndarray], i: int, default: float) -> np.ndarray:
        return table.get(i, np.full(self.n, default))


@dataclass
class Run:
    """The per-step state of every service (arrays shaped steps x services)."""

    names: list[str]
    rate: np.ndarray  # offered req/s
    served: np.ndarray
    errors: np.ndarray  # failed req/s (as its callers see them)
    latency_ms: np.ndarray  # mean time in system
    p99_ms: np.ndarray
    inflight: np.ndarray
    pool: np.ndarray  # pool size
    pool_in_use: np.ndarray
    queue_ms: np.ndarray
    cpu: np.ndarray
    cpu_limit: np.ndarray
    throttled: np.ndarray  # share of periods throttled
    mem: np.ndarray
    mem_limit: np.ndarray
    restarts: np.ndarray  # cumulative
    out_rate: dict[tuple[int, int], np.ndarray]  # (caller, callee) -> req/s sent
    out_err: dict[tuple[int, int], np.ndarray]  # (caller, callee) -> failed req/s


def topo_order(services: list[Service]) -> list[int]:
    """Callers before callees (the graph is a DAG rooted at service 0)."""
    seen: list[int] = []

    def visit(i: int) -> None:
        for c in services[i].callees:
            if c not in seen:
                visit(c)
        if i not in seen:
            seen.append(i)

    for i in range(len(services)):
        visit(i)
    return seen[::-1]


def run_model(services: list[Service], entry_rps: np.ndarray, ov: Overrides,
              rng: np.random.Generator) -> Run:
    """Step the system through ``len(entry_rps)`` steps (see the module docstring)."""
    n, m = ov.n, len(services)
    order = topo_order(services)
    z = np.zeros((n, m))
    rate, served, errs, lat, p99, infl, inuse, queue = (z.copy() for _ in range(8))
    cpu, thr, mem, restarts = z.copy(), z.copy(), z.copy(), z.copy()
    pool = np.tile([float(s.pool) for s in services], (n, 1))
    cpu_lim = np.tile([s.cpu_limit for s in services], (n, 1))
    mem_lim = np.tile([s.mem_limit for s in services], (n, 1))
    edges = [(i, c) for i, s in enumerate(services) for c in s.callees]
    out_rate = {e: np.zeros(n) for e in edges}
    out_err = {e: np.zeros(n) for e in edges}
    backlog = np.zeros(m)
    err_ratio_prev = np.zeros(m)
    lat_prev = np.array([s.s_ms for s in services], dtype=float)
    entry = entry_rps * (ov.entry_mult if ov.entry_mult is not None else 1.0)
    noise = 1 + 0.04 * rng.standard_normal((n, m))
    s_mult = {i: ov.get(ov.s_mult, i, 1.0) for i in range(m)}
    s_add = {i: ov.get(ov.s_add, i, 0.0) for i in range(m)}
    err_add = {i: ov.get(ov.err_add, i, 0.0) for i in range(m)}
    cpu_mult = {i: ov.get(ov.cpu_mult, i, 1.0) for i in range(m)}
    mem_add = {i: ov.get(ov.mem_add, i, 0.0) for i in range(m)}
    mem_state = np.zeros(m)
    restart_count = np.zeros(m)
    down = np.zeros(m, dtype=int)
    for t in range(n):
        offered = np.zeros(m)
        offered[0] = entry[t]
        # rates flow from callers to callees
        for i in order:
            s = services[i]
            rate[t, i] = offered[i]
            for c, k in s.callees.items():
                r = ov.retries.get(i, s.retries) if t >= ov.retry_from else s.retries
                amp = 1 + r * err_ratio_prev[c] if r > 1 else 1 + min(r * err_ratio_prev[c], 0.1)
                send = offered[i] * k * amp
                out_rate[(i, c)][t] = send
                offered[c] += send
        # latency and errors flow back from callees to callers
        for i in order[::-1]:
            s = services[i]
            callee_ms = sum(k * min(lat_prev[c], s.deadline_ms) for c, k in s.callees.items())
            own = s.s_ms * s_mult[i][t] + s_add[i][t]
            demand_cpu = rate[t, i] * s.cpu_per_req * cpu_mult[i][t] + 0.05 * s.cpu_limit
            stretch = max(1.0, demand_cpu / s.cpu_limit)
            thr[t, i] = min(1.0, max(0.0, 1 - 1 / stretch) + 0.01 * abs(rng.standard_normal()))
            cpu[t, i] = min(demand_cpu, s.cpu_limit) * (1 + 0.02 * rng.standard_normal())
            w_ms = own * stretch + callee_ms
            cap = s.pool / (w_ms / 1000.0)  # req/s the pool can hold (Little's law)
            cpu_cap = 0.95 * s.cpu_limit / max(s.cpu_per_req * cpu_mult[i][t], 1e-9)
            cap = min(cap, cpu_cap)  # and what the CPU quota can serve
            lam = rate[t, i]
            backlog[i] = max(0.0, backlog[i] + (lam - cap) * STEP_S)
            # a wait beyond half the deadline is given up on: shed, an error
            max_backlog = cap * s.deadline_ms / 1000.0 * 0.5
            shed = 0.0
            if backlog[i] > max_backlog:
                shed = (backlog[i] - max_backlog) / STEP_S
                backlog[i] = max_backlog
            rho = min(lam * w_ms / 1000.0 / s.pool, 0.98)
            q_ms = backlog[i] / max(cap, 1e-9) * 1000.0 + w_ms * 0.05 * rho**4 / (1 - rho)
            queue[t, i] = q_ms
            infl[t, i] = min(lam, cap) * w_ms / 1000.0 + backlog[i]
            inuse[t, i] = min(float(s.pool), min(lam, cap) * w_ms / 1000.0)
            lat[t, i] = (w_ms + q_ms) * noise[t, i]
            p99[t, i] = lat[t, i] * (2.2 + 0.2 * rng.random())
            # memory: baseline, a fault's growth; at the limit the pod is OOM-killed
            mem_state[i] += mem_add[i][t] if t == 0 else mem_add[i][t] - mem_add[i][t - 1]
            mem[t, i] = s.mem_base * (1 + 0.01 * rng.standard_normal()) + max(mem_state[i], 0)
            oom = 0.0
            if down[i] > 0:
                down[i] -= 1
                oom = 0.6
            elif mem[t, i] >= s.mem_limit:
                restart_count[i] += 1
                mem_state[i] -= mem[t, i] - s.mem_base
                mem[t, i] = s.mem_base
                down[i] = 2
                oom = 0.9
            restarts[t, i] = restart_count[i]
            own_err = min(1.0, s.err_base * abs(noise[t, i]) + err_add[i][t] + oom)
            shed_ratio = min(1.0, shed / lam) if lam > 0 else 0.0
            late = 0.0
            callee_err = 1.0
            for c, k in s.callees.items():
                e_c = err_ratio_prev[c]
                if lat_prev[c] > s.deadline_ms:
                    late = max(late, min(1.0, (lat_prev[c] - s.deadline_ms) / s.deadline_ms + 0.3))
                r = ov.retries.get(i, s.retries) if t >= ov.retry_from else s.retries
                callee_err *= (1 - e_c ** (1 + r)) ** min(k, 3)
            ok = (1 - own_err) * (1 - shed_ratio) * callee_err * (1 - late)
            e = min(1.0, max(0.0, 1 - ok))
            errs[t, i] = lam * e
            served[t, i] = lam * (1 - e)
        for (i, c), arr in out_err.items():
            # failed attempts; a caller counts at most one success per request it
            # retried (later successes of duplicates are discarded work)
            e_c = min(1.0, errs[t, c] / max(rate[t, c], 1e-9))
            r = ov.retries.get(i, services[i].retries) if t >= ov.retry_from else \
                services[i].retries
            logical = rate[t, i] * services[i].callees[c]
            ok = min(out_rate[(i, c)][t] * (1 - e_c), logical * (1 - e_c ** (1 + r)))
            arr[t] = out_rate[(i, c)][t] - ok
        err_ratio_prev = np.where(rate[t] > 0, errs[t] / np.maximum(rate[t], 1e-9), 0.0)
        lat_prev = lat[t].copy()
    return Run([s.name for s in services], rate, served, errs, lat, p99, infl, pool, inuse,
               queue, cpu, cpu_lim, thr, mem, mem_lim, restarts, out_rate, out_err)
