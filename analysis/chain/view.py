"""The incident as entities and their signals: what suspects and mechanisms read.

From the rolled-up ``signals`` (``analysis.rollups``) this builds, once per incident:

* **entities**: a metric series belongs to the service its ``service`` (``app``,
  ``entity``, ``job``, ``pod``, ``container``, ``instance``, ``host``) label names; a
  caller's request-log signals to the caller; wide-CSV columns without labels to the
  entity named before the first ``_`` of the metric, when several metrics share it;
* **kinds**: what a series measures, told by its name (``KIND_PATTERNS``): latency,
  errors, rate, inflight, pool size, queue wait, CPU, memory, their limits,
  throttling, restarts; limits and sizes are settings, never suspects themselves; a
  caller's request-log signals are what it sent (``sent_rate``) and what it saw of its
  callees (``client_errors``, ``client_latency``: evidence about the callees); an
  entity's errors are taken per request (divided by its rate) when it has a rate, so
  that traffic growth alone is not an error anomaly;
* **robust scores**: each series, on the step its samples come at (a gauge held over
  1 s buckets is one sample, not ten), against its own baseline, the median and MAD
  of the first quarter of the window (the pre-incident part; at least 5 samples);
  the onset is the first step from which the departure holds (3 of 4 steps beyond
  ``z_onset``), in the direction that is bad for its kind; where the name gives a unit,
  a change under a millisecond (or 0.2 points of error ratio) never counts;
* **the call graph**: the manifest's ``[graph] calls`` or, without one, the request
  logs' caller -> host pairs; and the timeline's events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from analysis.rollups import has_table, signal_frame, signal_ids
from analysis.signal_id import SignalId

ENTITY_LABELS = ("service", "app", "entity", "service_name", "job", "container", "pod",
                 "instance", "host")
#: kind -> name pattern (first match wins, so settings come before the usage they cap)
KIND_PATTERNS: tuple[tuple[str, str], ...] = (
    ("pool_size", r"(pool|conn\w*)_(size|max|limit)|max_conn|workers_max|pool_size"),
    ("cpu_limit", r"cpu.*(limit|quota)|spec_cpu"),
    ("memory_limit", r"mem\w*_limit|spec_memory"),
    ("throttle", r"throttl"),
    ("restarts", r"restart|oom"),
    ("queue", r"queue|wait|pending"),
    ("pool_in_use", r"in_use|inuse|busy|pool_active|connections_active"),
    ("inflight", r"inflight|in_flight|active_requests|concurren"),
    ("latency", r"latency|duration|p99|p95|p50|response_time|_rt\b|\brt\b|_ms$"),
    ("errors", r"error|fail|5xx|fault|exception"),
    ("cpu", r"cpu"),
    ("memory", r"mem|rss|working_set|heap"),
    ("io", r"diskio|disk_io|socket|_io\b|iops"),
    ("rate", r"request|rps|qps|throughput|traffic|calls|count|workload|_total$"),
)
#: kinds whose rise is trouble (rates may move either way)
BAD_UP = frozenset({"latency", "errors", "queue", "pool_in_use", "inflight", "cpu", "memory",
                    "throttle", "restarts", "io"})
SETTINGS = frozenset({"pool_size", "cpu_limit", "memory_limit"})
Z_ONSET = 6.0


def kind_of(name: str) -> str:
    """The kind of a series told by its (metric or measure) name; ``other`` if none."""
    low = name.lower()
    for kind, pat in KIND_PATTERNS:
        if re.search(pat, low):
            return kind
    return "other"


@dataclass
class Series:
    """One entity's series on the incident's sample step."""

    signal: str
    entity: str
    kind: str
    values: np.ndarray
    base: float = 0.0  # median of the pre-incident part
    scale: float = 1.0
    z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    onset: int | None = None  # first step of a sustained departure in the bad direction
    peak_z: float = 0.0  # largest |z| from the onset on (signed by direction)
    ratio: bool = False  # errors divided by the entity's rate (per request)


@dataclass
class IncidentView:
    """Entities, their series, the call graph and the events of one incident."""

    t: list[datetime]
    step_s: float
    series: list[Series]
    calls: set[tuple[str, str]]  # (caller, callee)
    graph_from: str  # manifest | requests | none
    events: list[tuple[datetime, str, str, str]]  # (time, kind, title, detail)
    n_baseline: int = 0

    def of(self, entity: str, kind: str | None = None) -> list[Series]:
        return [s for s in self.series if s.entity == entity and (kind is None or s.kind == kind)]

    def first(self, entity: str, kind: str) -> Series | None:
        got = self.of(entity, kind)
        return got[0] if got else None

    @property
    def entities(self) -> list[str]:
        return sorted({s.entity for s in self.series})

    def callees(self, e: str) -> set[str]:
        return {b for a, b in self.calls if a == e}

    def callers(self, e: str) -> set[str]:
        return {a for a, b in self.calls if b == e}

    def descendants(self, e: str) -> set[str]:
        out: set[str] = set()
        todo = [e]
        while todo:
            for c in self.callees(todo.pop()):
                if c not in out and c != e:
                    out.add(c)
                    todo.append(c)
        return out

    def roots(self) -> list[str]:
        """Entities nobody calls (the user-facing ones), among those with series."""
        have = set(self.entities)
        called = {b for a, b in self.calls if a in have}
        return sorted(e for e in have if e not in called)

    def time_of(self, i: int | None) -> datetime | None:
        return None if i is None else self.t[min(i, len(self.t) - 1)]


def _entity_of(sid: SignalId, prefixes: dict[str, int], labelled: set) -> str | None:
    if sid.family == "caller":
        return sid.caller
    if sid.family != "metric":
        return None
    labels = dict(sid.labels)
    for key in ENTITY_LABELS:
        if labels.get(key):
            return labels[key]
    if not sid.labels and sid.subject and "_" in sid.subject and sid.subject not in labelled:
        head = sid.subject.split("_", 1)[0]  # wide CSV: <service>_<metric>
        if prefixes.get(head, 0) >= 2:
            return head
    return None


def _kind_for(sid: SignalId) -> str:
    if sid.family == "caller":  # what the caller sent, and what it saw of its callees
        return {"requests": "sent_rate", "errors": "client_errors",
                "p99_ms": "client_latency"}.get(sid.measure, "other")
    name = sid.subject or ""
    if sid.labels and not any(k in ENTITY_LABELS for k, _ in sid.labels):
        name += " " + " ".join(v for _, v in sid.labels)  # a wide CSV's metric as a label
    return kind_of(name)


def _sample_step(frame: pl.DataFrame, grid_s: float) -> int:
    """Buckets per sample: the median run of repeated values (gauges are held)."""
    runs = []
    for col in frame.columns[1:][:40]:
        v = frame[col].to_numpy()
        v = v[np.isfinite(v)] if v.dtype.kind == "f" else v
        if v.size < 4:
            continue
        changes = np.flatnonzero(np.diff(v) != 0)
        if changes.size >= 3:
            runs.append(float(np.median(np.diff(changes))))
    k = int(round(np.median(runs))) if runs else 1
    return max(1, min(k, max(1, frame.height // 10)))


def _absolute_floor(s: Series) -> float:
    """The smallest change that matters, where the name gives a unit: a millisecond of
    latency or wait, 0.2 points of error ratio (per request)."""
    low = s.signal.lower()
    if s.kind in ("latency", "queue", "client_latency"):
        if "second" in low:
            return 1e-3
        if "_ms" in low or "millis" in low or s.kind == "client_latency":
            return 1.0
    if s.kind == "errors" and s.ratio:
        return 2e-3
    return 0.0


def _score(s: Series, n_base: int, counts: bool, step_s: float) -> None:
    """Robust z against the pre-incident part, the sustained onset and the peak."""
    v = s.values
    pre = v[:n_base]
    pre = pre[np.isfinite(pre)]
    if pre.size < 3:
        return
    med = float(np.median(pre))
    mad = 1.4826 * float(np.median(np.abs(pre - med)))
    spread = float(np.percentile(pre, 95) - np.percentile(pre, 5)) / 3.3
    floor = max(0.05 * abs(med), _absolute_floor(s), 1e-9)
    if counts:  # Poisson: a rate of ``med`` per second over a step of ``step_s``
        floor = max(floor, np.sqrt(max(med * step_s, 1.0)) / step_s)
    s.base, s.scale = med, max(mad, spread, floor)
    z = (np.nan_to_num(v, nan=med) - med) / s.scale
    s.z = z
    sign = 1.0 if s.kind in BAD_UP else 0.0
    lead = z * sign if sign else np.abs(z)
    hit = lead >= Z_ONSET
    held = np.convolve(hit.astype(float), np.ones(4), mode="full")[3:3 + hit.size] >= 3
    # ``held[i]``: of steps i..i+3, at least 3 beyond the threshold
    cand = np.flatnonzero(hit[:hit.size] & held[:hit.size])
    cand = cand[cand >= n_base]
    if cand.size:
        s.onset = int(cand[0])
        tail = lead[s.onset:]
        s.peak_z = float(np.max(tail))


def build_view(con: duckdb.DuckDBPyConnection) -> IncidentView:
    """The view of the current rollups (see the module docstring)."""
    ids = signal_ids(con)
    prefixes: dict[str, int] = {}
    labelled = {sid.subject for sid in ids.values() if sid.family == "metric" and sid.labels}
    for sid in ids.values():
        if sid.family == "metric" and not sid.labels and sid.subject and "_" in sid.subject \
                and sid.subject not in labelled:
            head = sid.subject.split("_", 1)[0]
            prefixes[head] = prefixes.get(head, 0) + 1
    chosen: dict[str, tuple[str, str]] = {}
    for key, sid in ids.items():
        if sid.family == "caller" and sid.measure not in ("requests", "errors", "p99_ms"):
            continue
        ent = _entity_of(sid, prefixes, labelled)
        if ent is None:
            continue
        chosen[key] = (ent, _kind_for(sid))
    calls, graph_from = _graph(con)
    events = _events(con)
    if not chosen:
        return IncidentView([], 1.0, [], calls, graph_from, events)
    frame = signal_frame(con, sorted(chosen))
    if frame.height < 2:
        return IncidentView(list(frame["t"]), 1.0, [], calls, graph_from, events)
    grid_s = (frame["t"][1] - frame["t"][0]).total_seconds()
    frame = frame.with_columns(pl.exclude("t").cast(pl.Float64))
    # a short capture inside a longer window: only the span where metrics have samples
    metric_cols = [c for c in frame.columns[1:] if ids[c].family == "metric"]
    if metric_cols:
        has = frame.select(pl.any_horizontal(pl.col(metric_cols).is_not_null())).to_series()
        idx = np.flatnonzero(has.to_numpy())
        if idx.size:
            frame = frame.slice(int(idx[0]), int(idx[-1] - idx[0] + 1))
    k = _sample_step(frame.select("t", *metric_cols) if metric_cols else frame, grid_s)
    if k > 1:
        frame = (frame.with_row_index("_i").with_columns((pl.col("_i") // k).alias("_g"))
                 .group_by("_g", maintain_order=True)
                 .agg(pl.col("t").first(), pl.exclude("t", "_i", "_g").mean()).drop("_g"))
    t = list(frame["t"])
    n_base = max(5, len(t) // 4)
    series = []
    rates = {ent: key for key, (ent, kind) in chosen.items() if kind == "rate"}
    for key, (ent, kind) in chosen.items():
        v = frame[key].to_numpy().astype(float)
        if kind == "errors" and ent in rates:  # per request: errors grow with traffic
            r = frame[rates[ent]].to_numpy().astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                v = np.where(r > 0, v / r, np.nan)
        if np.all(~np.isfinite(v)):
            continue
        s = Series(key, ent, kind, v, ratio=kind == "errors" and ent in rates)
        if kind not in SETTINGS:
            _score(s, n_base, ids[key].family == "caller", grid_s * k)
        series.append(s)
    return IncidentView(t, grid_s * k, series, calls, graph_from, events, n_base)


def _graph(con: duckdb.DuckDBPyConnection) -> tuple[set[tuple[str, str]], str]:
    """Call edges: the manifest's graph, else the request log's caller -> host pairs."""
    try:
        rows = con.execute("SELECT value FROM incident WHERE key = 'service_graph'").fetchall()
        row = rows[0] if rows else None
    except duckdb.Error:
        row = None
    if row and row[0]:
        return {(str(a), str(b)) for a, b in json.loads(row[0])}, "manifest"
    if has_table(con, "requests"):
        rows = con.execute("SELECT DISTINCT caller, host FROM requests WHERE caller IS NOT NULL"
                           " AND host IS NOT NULL AND caller <> host").fetchall()
        if rows:
            return {(str(a), str(b)) for a, b in rows}, "requests"
    return set(), "none"


def _events(con: duckdb.DuckDBPyConnection) -> list[tuple[datetime, str, str, str]]:
    if not has_table(con, "events"):
        return []
    rows = con.execute("SELECT time, kind, coalesce(title, ''), coalesce(detail, '')"
                       " FROM events ORDER BY time").fetchall()
    return [(t, str(k), str(ti), str(d)) for t, k, ti, d in rows]


def within(view: IncidentView, a: int | None, b: int | None, steps: int) -> bool:
    """Whether step ``a`` is at most ``steps`` after ``b`` (both known)."""
    return a is not None and b is not None and a <= b + steps


def seconds(view: IncidentView, steps: float) -> timedelta:
    return timedelta(seconds=steps * view.step_s)
