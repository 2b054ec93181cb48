"""Microservice incident families: one per failure mechanism, quiet runs and mixed runs.

``simulate_family(family, out, seed)`` draws a service graph (``topology``), base
traffic with a slow daily drift, harmless distractors (a deploy that changes
nothing, a short blip, organic traffic growth) and, unless quiet, one fault (two in
``services-mixed``) from ``faults``; the queueing model (``model``) plays it out
and ``files`` writes what a real export would hold, plus ``truth.json`` naming each
cause's mechanism, root-cause entity and signal. Deterministic for a seed; an
hour at 10 s steps, so one run takes well under a second.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from analysis.simulate.micro.faults import INJECTORS, MECHANISMS, Fault, distractors
from analysis.simulate.micro.files import (
    write_events,
    write_manifest,
    write_metrics,
    write_requests,
)
from analysis.simulate.micro.model import STEP_S, Overrides, run_model
from analysis.simulate.micro.topology import random_services

N_STEPS = 360  # one hour at 10 s

#: family name (as ``simulate --scenario`` takes it) -> the mechanism it injects
FAMILY_MECHANISM = {
    "pool-saturation": "pool_saturation",
    "retry-storm": "retry_storm",
    "slow-dependency": "slow_dependency",
    "resource-saturation": "resource_saturation",
    "bad-deploy": "bad_deploy",
    "services-quiet": None,
    "services-mixed": "mixed",
}
FAMILIES = tuple(FAMILY_MECHANISM)


@dataclass(frozen=True)
class FamilyRun:
    """What ``simulate_family`` wrote."""

    out: Path
    truth: dict
    request_rows: int
    metric_samples: int
    seconds: float


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def simulate_family(family: str, out: Path, seed: int = 1) -> FamilyRun:
    """Simulate one run of ``family`` into the (prepared, empty) directory ``out``."""
    t_start = time.perf_counter()
    mech = FAMILY_MECHANISM[family]
    rng = np.random.default_rng([seed, 77, FAMILIES.index(family)])
    entry_rps = float(rng.uniform(150, 700))
    services = random_services(rng, entry_rps)
    n = N_STEPS
    start = datetime(2026, 1, 1) + timedelta(days=int(rng.integers(0, 330)),
                                             hours=int(rng.integers(0, 24)))
    ov = Overrides(n)
    used: set[int] = set()
    chosen = ([] if mech is None else
              list(rng.choice(MECHANISMS, 2, replace=False)) if mech == "mixed" else [mech])
    t0 = int(rng.integers(int(0.45 * n), int(0.65 * n)))
    faults: list[Fault] = []
    for k, m in enumerate(chosen):
        faults.append(INJECTORS[str(m)](services, ov, rng, t0 + k * int(rng.integers(0, 12)),
                                        used))
    events = distractors(services, ov, rng, n, used)
    for f in faults:
        events += f.events
    # traffic: a slow daily drift and a little noise
    phase = rng.uniform(0, 2 * np.pi)
    hours = np.arange(n) * STEP_S / 3600.0
    entry = entry_rps * (1 + 0.15 * np.sin(2 * np.pi * hours / 24 + phase)) * (
        1 + 0.03 * rng.standard_normal(n))
    run = run_model(services, entry, ov, rng)
    out.mkdir(parents=True, exist_ok=True)
    dialect = int(rng.integers(0, 2))
    label = "service" if rng.random() < 0.75 else "app"
    n_samples = write_metrics(out, run, start, rng, dialect, label)
    n_rows = write_requests(out, run, services, start, rng)
    write_events(out, events, start)
    end = start + timedelta(seconds=n * STEP_S)
    graph = bool(rng.random() < 0.5)
    write_manifest(out, f"{family}-{seed}", start, end, services, graph)
    causes = [{
        "mechanism": f.mechanism, "entity": f.entity, "signal": f.signal,
        "onset": _iso(start + timedelta(seconds=f.start_step * STEP_S)),
        "roles": f.roles, "detail": f.detail,
    } for f in faults]
    truth = {
        "scenario": family, "seed": seed, "family": "services",
        "incident": bool(faults),
        "mechanism": faults[0].mechanism if len(faults) == 1 else ("mixed" if faults else None),
        "causes": causes,
        "culprit": {"entity": faults[0].entity} if faults else None,
        "entry": services[0].name,
        "services": [s.name for s in services],
        "graph_in_manifest": graph,
        "calls": [[s.name, services[c].name] for s in services for c in s.callees],
        "metric_dialect": dialect, "entity_label": label,
        "window": {"start": _iso(start), "end": _iso(end)},
        "corrupt_lines_total": 0,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    return FamilyRun(out, truth, n_rows, n_samples, time.perf_counter() - t_start)
