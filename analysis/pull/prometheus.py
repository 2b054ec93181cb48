"""Pull metric series from Prometheus (or a compatible API such as VictoriaMetrics or
Thanos) as the ``query_range`` JSON files that ingest reads (``metrics/prometheus``).

What is pulled: the user's series selectors (``--match``) and PromQL (``--query``),
plus, unless turned off, every metric whose name the root-cause chain looks for
(:data:`CHAIN_METRICS`), expanded to the names the server holds in the window
through ``/api/v1/label/__name__/values``. Each query is evaluated with
``/api/v1/query_range`` over time slices short enough that no request asks for
more than :data:`MAX_POINTS` points per series (Prometheus refuses more than
11,000). Each slice's response is written as received, one file per slice
(``prom-<query>-<slice>.json``); the slices of a query do not overlap, so no
sample is loaded twice. The one change: a series without ``__name__`` (the result
of a function such as ``rate(...)``) gets the query text as its name, since the
store needs one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from analysis.errors import UserError
from analysis.pull.common import (
    Auth,
    Chunk,
    PullManifest,
    RequestFailed,
    Retry,
    Window,
    fetch_json,
    file_slug,
    iso_ms,
    make_client,
    now_iso,
    prepare_out,
)

#: Prometheus's limit on the points of one series in one ``query_range`` request
MAX_POINTS = 11_000

#: What the chain needs, by metric-name pattern (matched case-insensitively): the
#: same families ``analysis.roles`` recognises, plus every memcached_exporter stat.
CHAIN_METRICS: tuple[tuple[str, str], ...] = (
    ("TIME_WAIT sockets", r"sockstat_tcp_tw|time_?wait|tcp_tw\b|_tw$|tw_count"),
    ("ephemeral ports in use", r"ephemeral_port|ports_in_use|port_exhaust"),
    ("dials and connections", r"connections_total|connections_opened|dials?_total|new_conn"
                              r"|current_connections|open_connections|conns_open"),
    ("goroutines and threads", r"goroutines|go_threads|os_threads|threads$"),
    ("request rates", r"requests_per_second|http_requests_total|request_rate|requests_total"
                      r"|qps|availability|success_rate"),
    ("memcached stats", r"^memcached_|memcache.*(error|fail)|cache.*(error|fail)"),
    ("runtime stress", r"gc_duration|gc_pause|restarts_total|oom|resident_memory"
                       r"|memory_working_set|memstats_heap"),
    ("network loss (a rival)", r"packet_loss|loss_ratio|packets_dropped|retrans"),
)
_CHAIN_RE = re.compile("|".join(f"(?:{p})" for _, p in CHAIN_METRICS), re.IGNORECASE)


@dataclass(frozen=True)
class PromPull:
    """What to pull from a Prometheus API, and how."""

    url: str
    window: Window
    step_ms: int = 15_000
    matches: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()
    builtin: bool = True
    auth: Auth = field(default_factory=Auth)
    retry: Retry = field(default_factory=Retry)
    timeout_s: float = 60.0
    max_points: int = MAX_POINTS


def chain_metric(name: str) -> bool:
    """Whether the chain looks for a metric of this name (:data:`CHAIN_METRICS`)."""
    return _CHAIN_RE.search(name) is not None


def time_slices(window: Window, step_ms: int, max_points: int = MAX_POINTS
                ) -> list[tuple[int, int]]:
    """``[(start_ms, end_ms), ...]`` covering the window's evaluation points
    ``start, start + step, ... <= end``, each with at most ``max_points`` points
    (``(end - start) / step + 1 <= max_points``); consecutive slices are one step
    apart, so none shares a point."""
    if step_ms <= 0 or max_points < 1:
        raise ValueError("step and max_points must be positive")
    n = (window.end_ms - window.start_ms) // step_ms + 1
    out = []
    for first in range(0, n, max_points):
        last = min(first + max_points, n) - 1
        out.append((window.start_ms + first * step_ms, window.start_ms + last * step_ms))
    return out


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _names(client: httpx.Client, req: PromPull, match: str | None) -> list[str]:
    """Metric names the server holds in the window (those of ``match`` if given)."""
    params = {"start": _seconds(req.window.start_ms), "end": _seconds(req.window.end_ms)}
    if match is not None:
        params["match[]"] = match
    try:
        got = fetch_json(client, "GET", "api/v1/label/__name__/values", params, req.retry)
    except RequestFailed as exc:
        which = f" matching {match!r}" if match else ""
        raise UserError(f"{req.url}: cannot list the metric names{which}"
                        f" ({exc.reason}); expected a Prometheus HTTP API") from None
    data = got.doc.get("data")
    if not isinstance(data, list):
        raise UserError(f"{req.url}: the metric-name list is not a list; expected a"
                        " Prometheus HTTP API")
    return [str(n) for n in data]


def plan_queries(client: httpx.Client, req: PromPull) -> list[str]:
    """The queries to run: the user's selectors and PromQL, then one selector per
    chain metric present in the window that no user selector already covers."""
    queries = list(dict.fromkeys([*req.matches, *req.queries]))
    if req.builtin:
        covered = {n for m in req.matches for n in _names(client, req, m)}
        names = sorted(n for n in _names(client, req, None) if chain_metric(n))
        queries += [f'{{__name__="{n}"}}' for n in names if n not in covered]
    if not queries:
        raise UserError(f"{req.url}: nothing to pull in {req.window.text()}: no --match or"
                        " --query given and none of the chain's metrics is present")
    return queries


def _named(doc: dict, query: str) -> tuple[int, int, bool]:
    """(series, samples, renamed) of a matrix response; series without ``__name__``
    get the query text as their name."""
    result = doc["data"]["result"]
    renamed = False
    samples = 0
    for series in result:
        metric = series.setdefault("metric", {})
        if "__name__" not in metric:
            metric["__name__"] = query
            renamed = True
        samples += len(series.get("values") or [])
    return len(result), samples, renamed


def pull_chunk(client: httpx.Client, req: PromPull, query: str, span: tuple[int, int],
               path: Path) -> Chunk:
    """One ``query_range`` over one slice, written to ``path``; the chunk says how it went."""
    chunk = Chunk(query, iso_ms(span[0]), iso_ms(span[1]), "failed")
    params = {"query": query, "start": _seconds(span[0]), "end": _seconds(span[1]),
              "step": _seconds(req.step_ms)}
    try:
        got = fetch_json(client, "POST", "api/v1/query_range", params, req.retry)
    except RequestFailed as exc:
        chunk.error, chunk.attempts = exc.reason, exc.attempts
        return chunk
    chunk.attempts = got.attempts
    data = got.doc.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix" \
            or not isinstance(data.get("result"), list):
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        chunk.error = f"expected a matrix result, got {kind!r}"
        return chunk
    # e.g. a partial response from a federated store: kept, and said in the manifest
    chunk.warnings = [" ".join(str(w).split()) for w in got.doc.get("warnings") or []]
    chunk.series, chunk.samples, renamed = _named(got.doc, query)
    body = json.dumps(got.doc, ensure_ascii=False).encode() if renamed else got.body
    try:
        path.write_bytes(body)
    except OSError as exc:
        chunk.error = f"cannot write {path} ({exc.strerror})"
        return chunk
    chunk.status, chunk.file = "ok", path.name
    return chunk


def pull_prometheus(req: PromPull, out: Path,
                    transport: httpx.BaseTransport | None = None) -> PullManifest:
    """Pull every planned query over every slice into ``out``; write the manifest.

    Returns the manifest (every chunk with its status). The caller decides what
    a failed chunk means (the CLI exits non-zero: :meth:`PullManifest.check`).
    """
    prepare_out(out)
    slices = time_slices(req.window, req.step_ms, req.max_points)
    with make_client(req.url, req.auth, req.timeout_s, transport) as client:
        queries = plan_queries(client, req)
        manifest = PullManifest(
            "prometheus", req.url, iso_ms(req.window.start_ms), iso_ms(req.window.end_ms),
            queries, {"step_s": req.step_ms / 1000, "max_points": req.max_points,
                      "builtin": req.builtin, "matches": list(req.matches),
                      "auth": repr(req.auth)}, pulled_at=now_iso())
        for qi, query in enumerate(queries):
            slug = file_slug(query, qi)
            for si, span in enumerate(slices):
                path = out / f"prom-{slug}-{si:03d}.json"
                manifest.chunks.append(pull_chunk(client, req, query, span, path))
    manifest.write(out)
    return manifest
