"""Metrics-only cases shaped like public microservice RCA data (RCAEval-style wide CSV).

Independent of the queueing model (``model.py``), so the suspects are tested on data
they were not tuned on: one CSV, ``time`` then one column per service x metric
(``<service>_cpu``, ``_mem``, ``_diskio``, ``_socket``, ``_workload``, ``_error``,
``_latency-50``, ``_latency-90``), sampled every second for a few minutes (or a few
dozen samples), no manifest and no call graph. One service gets a fault halfway
(cpu, mem, disk, delay, loss or socket, as such benchmarks inject them); its callers'
latency follows with 0-2 s of lag, scaled down; another service has a harmless spike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SERVICES = ("adservice", "cartservice", "checkoutservice", "currencyservice", "emailservice",
            "frontend", "paymentservice", "productcatalogservice", "recommendationservice",
            "shippingservice", "redis", "frontend-external")
FAULTS = ("cpu", "mem", "disk", "delay", "loss", "socket")
METRICS = ("cpu", "mem", "diskio", "socket", "workload", "error", "latency-50", "latency-90")


def write_wide_case(out: Path, seed: int, n: int = 240) -> dict:
    """Write ``out/data.csv``; returns the truth (root-cause service, fault, services)."""
    rng = np.random.default_rng([seed, 991])
    k = int(rng.integers(6, len(SERVICES) + 1))
    names = list(rng.choice(SERVICES, k, replace=False))
    parent = {names[i]: names[int(rng.integers(0, i))] for i in range(1, k)}
    root = names[int(rng.integers(1, k))]
    fault = str(rng.choice(FAULTS))
    t_f = n // 2 + int(rng.integers(-n // 10, n // 10 + 1))
    t = np.arange(n)
    cols: dict[str, np.ndarray] = {}

    def ar(level: float, rel: float) -> np.ndarray:
        e = rng.standard_normal(n) * rel * level
        x = np.empty(n)
        x[0] = e[0]
        for i in range(1, n):
            x[i] = 0.6 * x[i - 1] + e[i]
        return level + x

    for s in names:
        cols[f"{s}_cpu"] = ar(rng.uniform(0.05, 0.6), 0.08)
        cols[f"{s}_mem"] = ar(rng.uniform(50, 800), 0.01)
        cols[f"{s}_diskio"] = np.abs(ar(rng.uniform(0.1, 5), 0.3))
        cols[f"{s}_socket"] = np.round(ar(rng.uniform(20, 200), 0.03))
        cols[f"{s}_workload"] = np.round(np.abs(ar(rng.uniform(5, 80), 0.1)))
        cols[f"{s}_error"] = rng.poisson(0.05, n).astype(float)
        lat = np.abs(ar(rng.uniform(0.005, 0.2), 0.1))
        cols[f"{s}_latency-50"] = lat
        cols[f"{s}_latency-90"] = lat * rng.uniform(1.5, 3)
    on = t >= t_f
    lat_add = np.zeros(n)
    if fault == "cpu":
        cols[f"{root}_cpu"] += on * rng.uniform(0.5, 1.5)
        lat_add = on * np.median(cols[f"{root}_latency-50"]) * rng.uniform(0.5, 2)
    elif fault == "mem":
        cols[f"{root}_mem"] += np.maximum(0, t - t_f) * rng.uniform(2, 10)
        lat_add = on * np.median(cols[f"{root}_latency-50"]) * rng.uniform(0.2, 1)
    elif fault == "disk":
        cols[f"{root}_diskio"] += on * rng.uniform(20, 80)
        lat_add = on * np.median(cols[f"{root}_latency-50"]) * rng.uniform(0.5, 2)
    elif fault == "delay":
        lat_add = on * rng.uniform(0.1, 0.5)
    elif fault == "loss":
        cols[f"{root}_error"] += on * rng.poisson(rng.uniform(2, 10), n)
        lat_add = on * np.median(cols[f"{root}_latency-50"]) * rng.uniform(0.3, 1)
    else:  # socket
        cols[f"{root}_socket"] += on * rng.uniform(200, 600)
        cols[f"{root}_error"] += on * rng.poisson(rng.uniform(1, 5), n)
    cols[f"{root}_latency-50"] += lat_add
    cols[f"{root}_latency-90"] += lat_add * 1.8
    # callers follow: up the tree, scaled down, lagging 0-2 s per hop
    s, add = root, lat_add
    while s in parent:
        s = parent[s]
        lag = int(rng.integers(0, 3))
        add = np.r_[np.zeros(lag), add[: n - lag]] * rng.uniform(0.5, 0.9)
        cols[f"{s}_latency-50"] += add
        cols[f"{s}_latency-90"] += add * 1.8
    # a harmless spike elsewhere
    other = str(rng.choice([x for x in names if x != root]))
    a = int(rng.integers(n // 3, n - 5))
    cols[f"{other}_cpu"][a: a + 2] *= 4
    out.mkdir(parents=True, exist_ok=True)
    start = 1_700_000_000 + int(rng.integers(0, 10**6))
    header = "time," + ",".join(cols)
    rows = [",".join([str(start + i)] + [f"{cols[c][i]:.6g}" for c in cols]) for i in range(n)]
    (out / "data.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return {"root": root, "fault": fault, "services": names, "onset_index": t_f}
