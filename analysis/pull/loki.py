"""Pull log lines from Loki as JSON lines that ingest reads (``errors/jsonl`` by
default, or ``requests/jsonl`` for access logs).

``/loki/api/v1/query_range`` returns at most ``limit`` entries per request, so a
window is read in pages, oldest first (``direction=forward``). Loki's ``start``
is inclusive, and more entries than fit a page may share one nanosecond, so the
next page starts *at* the last timestamp seen, not after it, and the entries of
that timestamp already written are dropped from it (the same stream, time and
line: Loki itself keeps only one of those). A full page that brings nothing new
(``limit`` or more entries in one nanosecond) is an error, not a gap.

Each entry becomes one JSON object: a JSON log line keeps its own fields, a
logfmt line is split into its pairs, any other line goes to ``msg``. The
stream's labels are added as fields (a label whose name the line already uses,
or a name ingest reads as a time, is kept as ``label_<name>``), and ``time`` is
Loki's timestamp when the line carries no time of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from analysis.errors import UserError
from analysis.ingest.fields import TIME_ALIASES
from analysis.pull.common import (
    Auth,
    Chunk,
    PullManifest,
    RequestFailed,
    Retry,
    Window,
    fetch_json,
    iso_ms,
    make_client,
    now_iso,
    prepare_out,
)

#: Loki's default ``max_entries_limit_per_query``
DEFAULT_LIMIT = 5000
# logfmt splits at ASCII white space only (as Go's logfmt and ingest's SQL do)
_LOGFMT_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)', re.ASCII)
_LOGFMT_LINE = re.compile(r'^\s*(?:[^\s="]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$))+$', re.ASCII)


@dataclass(frozen=True)
class LokiPull:
    """What to pull from a Loki API, and how."""

    url: str
    query: str
    window: Window
    limit: int = DEFAULT_LIMIT
    kind: Literal["errors", "requests"] = "errors"
    auth: Auth = field(default_factory=Auth)
    retry: Retry = field(default_factory=Retry)
    timeout_s: float = 60.0


def iso_ns(ns: int) -> str:
    """Unix nanoseconds as RFC 3339 UTC with nine fractional digits."""
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000:09d}Z"


def _logfmt(line: str) -> dict[str, str] | None:
    if "=" not in line or not _LOGFMT_LINE.match(line):
        return None
    out = {}
    for key, value in _LOGFMT_PAIR.findall(line):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        out[key] = value
    return out


def entry_record(labels: dict[str, str], ns: int, line: str) -> dict:
    """One log entry as the JSON object written: the line's own fields (JSON or
    logfmt) or its text as ``msg``, the stream labels, and Loki's time if the line
    has none."""
    fields: dict | None = None
    if line.lstrip().startswith("{"):
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        fields = parsed if isinstance(parsed, dict) else None
    if fields is None:
        fields = _logfmt(line)
    if fields is None:
        fields = {"msg": line}
    if not any(a in fields for a in TIME_ALIASES):
        fields["time"] = iso_ns(ns)
    for k, v in labels.items():  # a label never stands for the line's time
        fields[k if k not in fields and k not in TIME_ALIASES else f"label_{k}"] = v
    return fields


@dataclass
class _Page:
    """The new entries of one page, and where the next page starts."""

    entries: list[tuple[int, str, str, dict[str, str]]]
    full: bool
    last_ns: int


def _page_entries(doc: dict, limit: int) -> _Page:
    data = doc.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "streams":
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise RequestFailed(f"expected a streams result (a log query), got {kind!r}", 1)
    entries = []
    for stream in data.get("result") or []:
        labels = {str(k): str(v) for k, v in (stream.get("stream") or {}).items()}
        key = json.dumps(labels, sort_keys=True, ensure_ascii=False)
        for ns, line, *_ in stream.get("values") or []:
            entries.append((int(ns), key, line, labels))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return _Page(entries, len(entries) >= limit, entries[-1][0] if entries else -1)


def pull_loki(req: LokiPull, out: Path,
              transport: httpx.BaseTransport | None = None) -> PullManifest:
    """Page through the window into ``out/<kind>-loki.jsonl``; write the manifest.

    Every page is a chunk of the manifest. A page that fails after its retries
    ends the pull with a failed chunk for the rest of the window.
    """
    if req.limit < 1:
        raise UserError(f"--limit {req.limit} must be at least 1")
    prepare_out(out)
    start_ns, end_ns = req.window.start_ms * 1_000_000, req.window.end_ms * 1_000_000
    manifest = PullManifest("loki", req.url, iso_ms(req.window.start_ms),
                            iso_ms(req.window.end_ms), [req.query],
                            {"limit": req.limit, "direction": "forward", "kind": req.kind,
                             "auth": repr(req.auth)}, pulled_at=now_iso())
    name = f"{req.kind}-loki.jsonl"
    seen_at_edge: set[tuple[str, str]] = set()  # (stream, line) written at the edge time
    edge = -1
    with make_client(req.url, req.auth, req.timeout_s, transport) as client, \
            open(out / name, "w", encoding="utf-8") as f:
        cursor = start_ns
        while cursor < end_ns:
            chunk = Chunk(req.query, iso_ns(cursor), iso_ns(end_ns), "failed", file=name)
            manifest.chunks.append(chunk)
            params = {"query": req.query, "start": str(cursor), "end": str(end_ns),
                      "limit": str(req.limit), "direction": "forward"}
            try:
                got = fetch_json(client, "GET", "loki/api/v1/query_range", params, req.retry)
                chunk.attempts = got.attempts
                page = _page_entries(got.doc, req.limit)
            except RequestFailed as exc:
                chunk.error, chunk.attempts = exc.reason, max(exc.attempts, chunk.attempts)
                break
            new = [e for e in page.entries if e[0] != edge or (e[1], e[2]) not in seen_at_edge]
            try:
                f.writelines(json.dumps(entry_record(labels, ns, line), ensure_ascii=False)
                             + "\n" for ns, _, line, labels in new)
                f.flush()
            except OSError as exc:
                chunk.error = f"cannot write {out / name} ({exc.strerror})"
                break
            chunk.status, chunk.samples = "ok", len(new)
            chunk.series = len({e[1] for e in new})
            if not page.full:
                break
            if not new:
                chunk.status = "failed"
                chunk.error = (f"{req.limit} or more entries share the time {iso_ns(edge)}"
                               " (a page can hold no more); expected a larger --limit")
                break
            if page.last_ns != edge:
                seen_at_edge.clear()
                edge = page.last_ns
            seen_at_edge |= {(e[1], e[2]) for e in new if e[0] == edge}
            chunk.end = iso_ns(edge)
            cursor = edge
    manifest.write(out)
    return manifest
