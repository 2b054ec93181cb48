"""Tell a file's kind and format: manifest glob, then first lines; a name breaks ties.

Content outranks names: ``ec2_request_latency.csv`` holding ``time,value`` is a
metric series, whatever its name says. Kinds: requests, errors (the service's
own log), metrics, events. The result says how it was told (``detected_by``:
manifest | name, when the name picked or agreed | content) and, in words, what
was guessed, for the per-file report line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import UserError
from analysis.ingest.bounds import json_object
from analysis.ingest.csvhead import HEAD_LINES, parse_rows, read_header
from analysis.ingest.fields import KIND_FIELDS, TIME_ALIASES
from analysis.ingest.lines import head, strip_compression, text_head
from analysis.ingest.manifest import FORMATS, Manifest

EXPECTED = (
    "expected a request log (JSON lines, CSV, Parquet), an error log (JSON lines, logfmt, "
    "Go log text), metrics (Prometheus range JSON, CSV long or wide) or events (CSV, YAML), "
    "told by name (e.g. requests*.jsonl, *errors*.log, *metrics*.csv, events.yaml), "
    "by first lines, or by a [[files]] entry in incident.toml"
)

_GO_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d")
#: logfmt pairs; a key has no comma (a CSV header such as ``time,go_threads{job=x}`` is
#: no logfmt line)
_LOGFMT = re.compile(r'^(?:[^\s=",]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$))+$')
_REQUEST_KEYS = {a for c in ("uris", "caller") for a in KIND_FIELDS["requests"][c].aliases}
_REQUEST_KEYS |= {"method"}
_BATCH_KEYS = set(KIND_FIELDS["requests"]["uris"].aliases)
_PROMETHEUS = re.compile(r'"resultType"\s*:|"status"\s*:\s*"(?:success|error)"')
_LOG_KEYS = {"msg", "message", "error", "err", "level"}
#: columns of requests, errors and events (but their times): a wide CSV's columns of
#: these names may be no series
_OTHER_KINDS_COLUMNS = {a for k in ("requests", "errors", "events")
                        for name, f in KIND_FIELDS[k].items() if name not in ("time", "end_time")
                        for a in f.aliases}
_NAME_KIND = (
    (re.compile(r"request|access|rpc"), "requests"),
    (re.compile(r"prom|metric|series|dashboard"), "metrics"),
    (re.compile(r"event|timeline|incident"), "events"),
    (re.compile(r"error|log|dataplane|memcache"), "errors"),
)


class UnknownFormat(UserError):
    """Nothing tells a non-empty file's format; ``why`` says in a few words what its
    first bytes look like. In a run of many files it is skipped, and said so."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: unknown format ({why}); {EXPECTED}")
        self.why = why


@dataclass(frozen=True)
class Detected:
    """A file's kind and format, how they were told, and what was guessed in words."""

    kind: str
    fmt: str
    detected_by: str
    guess: str

    @property
    def format(self) -> str:
        """``kind/format``, e.g. ``errors/logfmt``."""
        return f"{self.kind}/{self.fmt}"


def base_name(path: Path) -> tuple[str, str]:
    """(stem, extension) of the name without a compression suffix, lower case."""
    name = strip_compression(path.name).lower()
    stem, dot, ext = name.rpartition(".")
    return (stem, ext) if dot else (name, "")


@dataclass(frozen=True)
class _Content:
    """What a file's first lines say: the (kind, format) pairs they fit, best first
    (a name that says one of these kinds picks it), whether they outrank a name that
    says another kind (``strong``), and why, in words."""

    fits: tuple[tuple[str, str], ...]
    why: str
    strong: bool = True


def _content(path: Path, lines: list[str]) -> _Content | None:
    """What the first lines say, or None."""
    if path.suffix.lower() == ".parquet" or _is_parquet(path):
        return _Content((("requests", "parquet"),), "Parquet file (PAR1 magic)")
    if not lines:
        return None
    first = lines[0].lstrip("\ufeff").strip()
    if first.startswith("{"):
        return _json_content(first, "\n".join(lines))
    if _GO_LINE.match(first):
        return _Content((("errors", "gotext"),),
                        "lines start with YYYY/MM/DD hh:mm:ss: Go log text")
    if first.startswith(("- ", "events:")) or first == "-":
        return _Content((("events", "yaml"),), "YAML list")
    if "=" in first and _LOGFMT.match(first):
        return _Content((("errors", "logfmt"),), "key=value pairs: logfmt")
    if "," in first:
        header = read_header(parse_rows(lines))
        if header.levels:
            return _Content((("metrics", "csv-wide"),),
                            f"CSV with a {len(header.levels)}-level header (pandas"
                            " MultiIndex columns): metrics (wide)")
        return _csv_content([h.lower() for h in header.columns])
    return None


def _json_content(first: str, whole: str) -> _Content | None:
    obj = json_object(first)
    prometheus = _Content((("metrics", "prometheus"),),
                          "JSON with resultType: Prometheus range query")
    if obj is None:  # pretty-printed, or one line longer than the head read
        return prometheus if _PROMETHEUS.search(whole) else None
    keys = set(obj)
    if "status" in keys and keys & {"data", "errorType"}:  # a response, or an error response
        return prometheus
    req, log = sorted(keys & _REQUEST_KEYS), sorted(keys & _LOG_KEYS)
    if req and log and not keys & _BATCH_KEYS:  # only a batch size says request for sure
        return _Content((("requests", "jsonl"), ("errors", "jsonl")),
                        f"JSON lines with request keys ({', '.join(req)}) and log keys"
                        f" ({', '.join(log)}): request log or service log")
    if req:
        return _Content((("requests", "jsonl"),),
                        f"JSON lines with request keys ({', '.join(req)})")
    if log:
        return _Content((("errors", "jsonl"),),
                        "JSON lines with msg/level/error keys: service log")
    return None


def _csv_content(header: list[str]) -> _Content | None:
    cols = set(header)
    if {"metric", "value"} <= cols:
        return _Content((("metrics", "csv-long"),),
                        "CSV with metric,value columns: metrics (long)")
    if cols & {"kind", "title"}:
        return _Content((("events", "csv"),), "CSV with kind/title columns: events")
    if cols & _REQUEST_KEYS:
        return _Content((("requests", "csv"),), "CSV with request columns")
    if header and header[0] in TIME_ALIASES and len(header) > 1:
        shared = sorted(set(header[1:]) & _OTHER_KINDS_COLUMNS)
        if shared:  # maybe not series: a name that says another kind breaks the tie
            return _Content((("metrics", "csv-wide"),),
                            "CSV with time then other columns, some also named by other"
                            f" kinds ({', '.join(shared)[:80]}): metrics (wide)?", strong=False)
        return _Content((("metrics", "csv-wide"),),
                        "CSV with time then one column per series: metrics (wide)")
    return None


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _fmt_within(kind: str, ext: str, content: _Content | None) -> str | None:
    """The format of a file of known kind, from content first, then extension."""
    fits = dict(reversed(content.fits)) if content is not None else {}
    if kind in fits:
        return fits[kind]
    by_ext = {
        "requests": {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv",
                     "parquet": "parquet"},
        "errors": {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "logfmt": "logfmt"},
        "metrics": {"json": "prometheus"},
        "events": {"csv": "csv", "yaml": "yaml", "yml": "yaml"},
    }[kind]
    return by_ext.get(ext)


def detect(path: Path, manifest: Manifest | None = None) -> Detected | None:
    """Kind and format of ``path``; None for an empty file whose kind cannot be told.

    A manifest glob decides; else the first lines, when they fit a kind the name
    does not contradict or fit one kind only; a name pattern breaks a tie (lines that
    fit two kinds, or a weak fit), or tells the kind of lines that fit none.
    Raises ``UnknownFormat`` when the file is not empty and nothing tells its format.
    """
    stem, ext = base_name(path)
    head_lines = text_head(path, n_lines=HEAD_LINES)
    content = _content(path, head_lines)
    rule = manifest.rule_for(path) if manifest else None
    if rule is not None:
        fmt = rule.fmt or _fmt_within(rule.kind, ext, content)
        if fmt is None:
            raise UserError(f"{path}: the manifest says {rule.kind} but the format is unclear;"
                            f" expected format = one of {', '.join(FORMATS[rule.kind])}")
        return Detected(rule.kind, fmt, "manifest",
                        f"manifest glob {rule.glob!r}: {rule.kind}/{fmt}")
    named = [kind for pattern, kind in _NAME_KIND if pattern.search(stem)]
    if content is not None:
        fits = dict(reversed(content.fits))
        agreed = next((k for k in named if k in fits), None)
        if agreed is not None:
            return Detected(agreed, fits[agreed], "name",
                            f"name says {agreed}; first lines: {content.why}")
        if content.strong:
            kind, fmt = content.fits[0]
            said = f"; the name says {named[0]}, the content outranks it" if named else ""
            return Detected(kind, fmt, "content", content.why + said)
    for kind in named:
        fmt = _fmt_within(kind, ext, None)
        if fmt is not None:
            weak = f" (the first lines alone: {content.why})" if content else ""
            return Detected(kind, fmt, "name", f"name says {kind}; .{ext}{weak}")
    if content is not None:
        return Detected(*content.fits[0], "content", content.why)
    if path.stat().st_size == 0 or not head_lines:
        return None
    raise UnknownFormat(path, _unknown_why(path, head_lines))


def _unknown_why(path: Path, lines: list[str]) -> str:
    """What the first bytes of a file no format fits look like, in a few words."""
    data = head(path, 4096)
    if b"\0" in data or data.decode("utf-8", errors="replace").count("\ufffd") > len(data) // 10:
        return "binary content"
    first = lines[0].lstrip("\ufeff").strip()
    if first.startswith(("{", "[")):
        return ("JSON without request keys, log keys (msg, level, error) or a Prometheus"
                " resultType")
    return f"text whose first line fits no format: {first[:60]!r}"
