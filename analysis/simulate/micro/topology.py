"""A random service graph with varied names, and the base parameters of each service.

Names are data: now and then a name holds non-ASCII letters, a dot or a space, so
every reader downstream must carry it exactly.
"""

from __future__ import annotations

import numpy as np

from analysis.simulate.micro.model import Service

_PLAIN = ("cart", "checkout", "payment", "catalog", "search",
          "recommend", "shipping", "currency", "auth", "profile", "inventory", "orders",
          "notify", "ledger", "pricing", "media", "feed", "session", "ads", "geo", "quote",
          "reviews", "email")
_ODD = ("café-api", "zahlungs·dienst", "поиск", "目录服务", "κατάλογος", "naïve-cache",
        "svc.billing v2", "ünïcode-store", "データ", "ação")
_DATASTORES = ("postgres", "redis", "mysql", "mongo", "kafka", "elastic", "memcached")


def service_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct service names; the entry first, datastores among the last."""
    pool = list(_PLAIN)
    rng.shuffle(pool)
    names = pool[:n]
    if rng.random() < 0.35:  # sometimes a name is not plain ASCII
        names[int(rng.integers(1, n))] = str(rng.choice(_ODD))
    if rng.random() < 0.5:
        names[-1] = str(rng.choice(_DATASTORES))
    names[0] = str(rng.choice(["frontend", "web", "edge", "api-gateway", "storefront"]))
    suffix = str(rng.choice(["", "", "-svc", "-service", "-prod"]))
    out: list[str] = []
    for nm in names:
        cand = nm + suffix if nm not in _DATASTORES else nm
        while cand in out:
            cand += "-2"
        out.append(cand)
    return out


def random_services(rng: np.random.Generator, entry_rps: float) -> list[Service]:
    """A layered DAG of 5-9 services rooted at the entry (index 0), each with pools,
    CPU and memory sized for a normal utilisation below capacity."""
    n = int(rng.integers(5, 10))
    names = service_names(n, rng)
    layers: list[list[int]] = [[0]]
    i = 1
    while i < n:
        width = int(rng.integers(1, 4))
        layers.append(list(range(i, min(n, i + width))))
        i += width
    callees: list[dict[int, float]] = [{} for _ in range(n)]
    for d in range(1, len(layers)):
        for j in layers[d]:
            parents = [p for layer in layers[:d] for p in layer]
            main = int(rng.choice(layers[d - 1]))
            callees[main][j] = float(rng.choice([1.0, 1.0, 2.0, 0.5]))
            if len(parents) > 1 and rng.random() < 0.3:
                other = int(rng.choice([p for p in parents if p != main]))
                callees[other][j] = float(rng.choice([1.0, 0.5]))
    # rates each service sees at the base entry traffic, to size pools and CPU
    rates = np.zeros(n)
    rates[0] = entry_rps
    for d in range(len(layers)):
        for j in layers[d]:
            for c, k in callees[j].items():
                rates[c] += rates[j] * k
    services = []
    for j in range(n):
        s_ms = float(rng.uniform(3, 40))
        services.append(Service(
            name=names[j], callees=callees[j], s_ms=s_ms, pool=0,
            cpu_per_req=float(rng.uniform(0.002, 0.01)), cpu_limit=0.0,
            mem_base=float(rng.uniform(200, 900)) * 2**20, mem_limit=0.0,
            err_base=float(rng.uniform(0.0005, 0.004)),
            deadline_ms=float(rng.uniform(800, 2500)), retries=int(rng.integers(0, 2)),
        ))
    # time in system at base: own time plus callees' (bottom-up)
    w = np.zeros(n)
    for d in reversed(range(len(layers))):
        for j in layers[d]:
            w[j] = services[j].s_ms + sum(k * w[c] for c, k in callees[j].items())
    for j, s in enumerate(services):
        busy = rates[j] * w[j] / 1000.0  # Little's law: base in-flight
        s.busy, s.w_ms = busy, float(w[j])
        s.pool = int(max(4, np.ceil(busy / rng.uniform(0.08, 0.4))))
        s.cpu_limit = float(round(max(0.25, rates[j] * s.cpu_per_req / rng.uniform(0.3, 0.55)), 2))
        s.mem_limit = float(s.mem_base * rng.uniform(1.6, 2.5))
    return services


def depth_of(services: list[Service]) -> list[int]:
    """Each service's depth below the entry (longest call path)."""
    depth = [0] * len(services)
    for _ in range(len(services)):
        for i, s in enumerate(services):
            for c in s.callees:
                depth[c] = max(depth[c], depth[i] + 1)
    return depth


def callers_of(services: list[Service], j: int) -> list[int]:
    """The services that call ``j``."""
    return [i for i, s in enumerate(services) if j in s.callees]
