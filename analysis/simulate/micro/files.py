"""Write a microservice run as the files ingest reads (``docs/formats.md``).

* ``requests/requests-mesh.jsonl.gz``: the mesh's access log, one sampled row per
  request with ``caller`` (the calling service, ``users`` at the entry), ``host`` (the
  callee), ``method``, ``status`` and ``duration_ms``;
* ``metrics/prom-services.json`` (one Prometheus ``query_range`` response), one series
  per service and metric labelled ``service`` (or ``app``), in one of two naming
  dialects; memory, in half the runs, as CSV long instead;
* ``events/events.yaml``: deploys and notes;
* ``incident.toml``: name, window and, in about half the runs, the service graph
  (``[graph] calls``); otherwise only the request logs tell who calls whom.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from analysis.simulate.files import iso, lines_of, write_bytes
from analysis.simulate.micro.model import STEP_S, Run, Service

#: metric names per dialect: role -> (name, scale applied to the model's value)
DIALECTS: tuple[dict[str, tuple[str, float]], ...] = (
    {"rate": ("requests_per_second", 1.0), "errors": ("errors_per_second", 1.0),
     "latency": ("request_latency_p99_ms", 1.0), "inflight": ("inflight_requests", 1.0),
     "pool_in_use": ("pool_in_use", 1.0), "pool_size": ("pool_size", 1.0),
     "queue": ("pool_wait_ms", 1.0), "cpu": ("cpu_usage_cores", 1.0),
     "cpu_limit": ("cpu_limit_cores", 1.0), "throttle": ("cpu_throttled_ratio", 1.0),
     "memory": ("memory_usage_bytes", 1.0), "memory_limit": ("memory_limit_bytes", 1.0),
     "restarts": ("kube_pod_container_status_restarts_total", 1.0)},
    {"rate": ("http_requests_total", 1.0), "errors": ("http_requests_failed_total", 1.0),
     "latency": ("http_server_duration_p99_seconds", 0.001),
     "inflight": ("http_server_active_requests", 1.0),
     "pool_in_use": ("db_client_connections_in_use", 1.0),
     "pool_size": ("db_client_connections_max", 1.0),
     "queue": ("db_client_connections_wait_seconds", 0.001),
     "cpu": ("container_cpu_usage_seconds_total", 1.0),
     "cpu_limit": ("container_spec_cpu_limit_cores", 1.0),
     "throttle": ("container_cpu_cfs_throttled_ratio", 1.0),
     "memory": ("container_memory_working_set_bytes", 1.0),
     "memory_limit": ("container_spec_memory_limit_bytes", 1.0),
     "restarts": ("kube_pod_container_status_restarts_total", 1.0)},
)


def _values(run: Run, role: str, j: int) -> np.ndarray:
    table = {"rate": run.rate, "errors": run.errors, "latency": run.p99_ms,
             "inflight": run.inflight, "pool_in_use": run.pool_in_use, "pool_size": run.pool,
             "queue": run.queue_ms, "cpu": run.cpu, "cpu_limit": run.cpu_limit,
             "throttle": run.throttled, "memory": run.mem, "memory_limit": run.mem_limit,
             "restarts": run.restarts}
    return table[role][:, j]


def _counter(v: np.ndarray) -> np.ndarray:
    """A per-second rate as a Prometheus counter sampled every step."""
    return 1000.0 + np.cumsum(v * STEP_S)


def write_metrics(out: Path, run: Run, start: datetime, rng: np.random.Generator,
                  dialect: int, label: str) -> int:
    """One Prometheus response per metric (memory as CSV long); returns samples written."""
    names = DIALECTS[dialect]
    n = run.rate.shape[0]
    unix = int(start.timestamp()) + STEP_S * np.arange(n)
    total = 0
    memory_csv = rng.random() < 0.5
    result: list[dict] = []  # one query_range response holds every series (one file)
    for role, (metric, scale) in names.items():
        series = []
        for j, svc in enumerate(run.names):
            v = _values(run, role, j) * scale
            if role == "pool_size":
                v = np.round(v)
            if metric.endswith("_total") and role != "restarts":
                v = _counter(v)
            series.append(({"__name__": metric, label: svc, "namespace": "shop"}, v))
        if role.startswith("memory") and memory_csv:
            frame = pl.concat([pl.DataFrame({
                "us": unix.astype(np.int64) * 1_000_000, "metric": metric, "value": v,
                label: lab[label]}) for lab, v in series])
            body = lines_of(frame.select(iso(pl.col("us"), "%Y-%m-%dT%H:%M:%SZ")
                                         .alias("time"), pl.exclude("us")), "csv")
            write_bytes(out, f"metrics/metrics-{metric}.csv", body)
        else:
            result += [{"metric": lab, "values": [[int(t), repr(round(float(x), 6))]
                                                  for t, x in zip(unix, v, strict=True)]}
                       for lab, v in series]
        total += n * len(series)
    doc = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    write_bytes(out, "metrics/prom-services.json",
                json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
    return total


def write_requests(out: Path, run: Run, services: list[Service], start: datetime,
                   rng: np.random.Generator, max_rows: int = 20_000) -> int:
    """Sampled access-log rows of every call edge (and of users at the entry)."""
    n = run.rate.shape[0]
    edges = {(-1, 0): (run.rate[:, 0], run.errors[:, 0])}
    edges.update({e: (r, run.out_err[e]) for e, r in run.out_rate.items()})
    total_rate = sum(float(r.mean()) for r, _ in edges.values())
    keep = min(1.0, max_rows / max(total_rate * n * STEP_S, 1.0))
    t0_us = int(start.timestamp()) * 1_000_000
    parts: dict[int, list[pl.DataFrame]] = {}
    methods = ["Get", "List", "Put", "Query"]
    for (i, c), (r, e) in edges.items():
        k = rng.poisson(r * STEP_S * keep)
        step = np.repeat(np.arange(n), k)
        if step.size == 0:
            continue
        err_p = np.clip(e / np.maximum(r, 1e-9), 0, 1)[step]
        bad = rng.random(step.size) < err_p
        lat = run.latency_ms[step, c] * rng.lognormal(0, 0.35, step.size)
        us = t0_us + (step * STEP_S * 1_000_000 + rng.integers(0, STEP_S * 1_000_000, step.size))
        caller = "users" if i < 0 else services[i].name
        parts.setdefault(c, []).append(pl.DataFrame({
            "us": us, "caller": caller,
            "method": f"{methods[c % 4]}{services[c].name.split('-')[0].title()}",
            "status": np.where(bad, "error", "ok"), "duration_ms": np.round(lat, 2),
            "host": services[c].name,
        }))
    # one access log for the whole mesh (as a log pipeline would ship it)
    df = pl.concat([f for frames in parts.values() for f in frames]).sort("us")
    body = lines_of(df.select(iso(pl.col("us")).alias("time"), pl.lit("INFO").alias("level"),
                              pl.lit("rpc").alias("msg"), pl.exclude("us")), "json")
    write_bytes(out, "requests/requests-mesh.jsonl.gz", body)
    return df.height


def write_events(out: Path, events: list[dict], start: datetime) -> None:
    """The humans' timeline as YAML (deploys, notes)."""
    items = []
    for e in sorted(events, key=lambda e: e["step"]):
        at = start + timedelta(seconds=e["step"] * STEP_S)
        item = {"time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": e["kind"],
                "title": e["title"], "source": e["source"]}
        if e.get("detail"):
            item["detail"] = e["detail"]
        items.append(item)
    write_bytes(out, "events/events.yaml",
                yaml.safe_dump(items, sort_keys=False, allow_unicode=True).encode())


def write_manifest(out: Path, name: str, start: datetime, end: datetime,
                   services: list[Service], graph: bool) -> None:
    """``incident.toml``: name, window, and the service graph when ``graph``."""
    lines = [f"name = {json.dumps(name)}", 'timezone = "UTC"', "", "[window]",
             f'start = "{start:%Y-%m-%dT%H:%M:%SZ}"', f'end = "{end:%Y-%m-%dT%H:%M:%SZ}"']
    if graph:
        pairs = ", ".join(f"[{json.dumps(s.name, ensure_ascii=False)},"
                          f" {json.dumps(services[c].name, ensure_ascii=False)}]"
                          for s in services for c in s.callees)
        lines += ["", "[graph]", f"calls = [{pairs}]"]
    (out / "incident.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
