"""Ground truth of a simulated incident: the culprit, the chain's roles and their onsets.

Onsets are defined on the world's per-second arrays the way an analyst could
observe them in the loaded data (first second of the first episode where the
signal departs from its baseline), in causal order:

- ``trigger``: the first second of the culprit's batch load (its first request
  of ``batch_lo`` URIs or more at or after the scenario's onset).
- ``fan_out``: the first second in which some host dials more connections than
  its idle pool holds (lookups fanned out beyond the pool).
- ``port_exhaustion``: the first second in which some host has a failed dial
  (TIME_WAIT plus idle connections at the port ceiling).
- ``cache_errors``: the first second with a failed cache lookup on some host
  (with the mechanism's one-lookup-per-connection model this is the second of
  the first failed dial; the logs show it sampled).
- ``runtime_stress``: the first second in which some host runs more than twice
  its baseline OS threads.
- ``user_impact``: the first second of the first minute in which the affected
  DC serves less than 90% of its user-facing traffic.

``incident`` is true when every role is observed. A culprit whose load never
exhausts the ports gives ``incident: false`` (nothing to explain).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from analysis.mechanism import PoolSettings
from analysis.simulate.world import World

ROLES = ("trigger", "fan_out", "port_exhaustion", "cache_errors", "runtime_stress",
         "user_impact")

ONSET_DEFINITIONS = {
    "trigger": "first second of the culprit's batch load (first big request at/after onset)",
    "fan_out": "first second a host dials more connections than its idle pool",
    "port_exhaustion": "first second a host has a failed dial (TIME_WAIT at the port ceiling)",
    "cache_errors": "first second with a failed cache lookup on some host",
    "runtime_stress": "first second a host runs more than twice its baseline OS threads",
    "user_impact": "first second of the first minute the affected DC serves < 90% of users",
}


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def onsets(w: World) -> dict[str, int]:
    """Onset second (from the window's start) of every role observed (see module doc)."""
    sc = w.scenario
    if sc.culprit is None:
        return {}
    ci = [i for i, c in enumerate(sc.callers) if c.name == sc.culprit and c.batch_rate > 0][0]
    b = w.batches
    out: dict[str, int | None] = {}
    onset = sc.onset_s or 0
    out["trigger"] = _first((b.caller == ci) & (b.second >= onset))
    trig = out["trigger"]
    if trig is not None:
        out["trigger"] = int(b.second[out["trigger"]])
    idle = np.array([sc.pool.idle_pool])
    out["fan_out"] = _first((w.pool["dials"] > idle).any(axis=1))
    out["port_exhaustion"] = _first((w.pool["failed_dials"] > 0).any(axis=1))
    out["cache_errors"] = _first((w.pool["failed_lookups"] > 0).any(axis=1))
    threads = np.nan_to_num(w.threads, nan=0.0)
    out["runtime_stress"] = _first((threads > 2 * sc.runtime.threads_base).any(axis=1))
    d = sc.dcs.index(sc.affected_dc) if sc.affected_dc else 0
    served = w.served[:, d]
    n = served.size // 60 * 60
    minute = served[:n].reshape(-1, 60).mean(axis=1)
    low = _first(minute < 0.9)
    out["user_impact"] = None if low is None else low * 60
    return {k: v for k, v in out.items() if v is not None}


def _settings(s: PoolSettings) -> dict[str, Any]:
    d = asdict(s)
    d["port_range"] = list(s.port_range)
    return d


def build_truth(w: World, corrupt: dict[str, int], rows: dict[str, int]) -> dict[str, Any]:
    """The ``truth.json`` document for a simulated world."""
    sc = w.scenario
    on = onsets(w)
    incident = sc.culprit is not None and all(r in on for r in ROLES)
    roles = [r for r in ROLES if r in on] if incident else []
    iso = lambda s: sc.at(s).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    culprit_rows = [c for c in sc.callers if c.name == sc.culprit]
    facts: dict[str, Any] = {
        "port_ceiling": sc.pool.ports,
        "time_wait_max": int(w.pool["time_wait"].max()),
        "restarts_total": int(w.restarts[-1].sum()),
        "failed_lookups_total": int(w.pool["failed_lookups"].sum()),
    }
    if culprit_rows:
        ci = sc.callers.index(culprit_rows[0])
        b = w.batches
        facts["culprit_batches"] = int((b.caller == ci).sum())
        facts["culprit_batch_uris"] = [culprit_rows[0].batch_lo, culprit_rows[0].batch_hi]
    return {
        "scenario": sc.name,
        "seed": sc.seed,
        "scale": sc.scale,
        "incident": incident,
        "culprit": ({"caller": sc.culprit, "method": sc.culprit_method}
                    if incident else None),
        "affected_dc": sc.affected_dc if incident else None,
        "roles": roles,
        "onsets": {r: iso(on[r]) for r in roles},
        "onset_definitions": ONSET_DEFINITIONS,
        "rivals": [
            {"name": r.name, "kind": r.kind, "why_not": r.why_not,
             "episodes": [[iso(a), iso(b)] for a, b in r.episodes]}
            for r in sc.rivals
        ],
        "corrupt_lines": dict(sorted(corrupt.items())),
        "corrupt_lines_total": int(sum(corrupt.values())),
        "rows": dict(sorted(rows.items())),
        "settings": {
            **_settings(sc.pool),
            "sample_rate": sc.sample_rate,
            "metric_step_s": sc.metric_step_s,
            "changes": [{"time": iso(c.at_s), "kind": c.kind, "title": c.title,
                         "settings": _settings(c.settings)} for c in sc.changes],
        },
        "window": {"start": iso(0), "end": iso(sc.duration_s)},
        "hosts": [{"name": h.name, "dc": h.dc, "skew_s": h.skew_s,
                   "requests_format": h.requests_format, "log_format": h.log_format}
                  for h in sc.hosts],
        "gaps": [{"metric": m, "host": h, "start": iso(a), "end": iso(b)}
                 for m, h, a, b in sc.gaps],
        "facts": facts,
    }
