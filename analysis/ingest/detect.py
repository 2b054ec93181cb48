"""Tell a file's kind and format: manifest glob, then name, then first lines.

Kinds: requests, errors (the service's own log), metrics, events. The result
says how it was told (``detected_by``: manifest | name | content) and, in
words, what was guessed, for the per-file report line.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import UserError
from analysis.ingest.bounds import json_object
from analysis.ingest.fields import KIND_FIELDS
from analysis.ingest.lines import head, text_head
from analysis.ingest.manifest import FORMATS, Manifest

COMPRESSED = (".gz", ".zst", ".zstd")
EXPECTED = (
    "expected a request log (JSON lines, CSV, Parquet), an error log (JSON lines, logfmt, "
    "Go log text), metrics (Prometheus range JSON, CSV long or wide) or events (CSV, YAML), "
    "told by name (e.g. requests*.jsonl, *errors*.log, *metrics*.csv, events.yaml), "
    "by first lines, or by a [[files]] entry in incident.toml"
)

_GO_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d")
_LOGFMT = re.compile(r'^(?:[^\s="]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$))+$')
_REQUEST_KEYS = {a for c in ("uris", "caller") for a in KIND_FIELDS["requests"][c].aliases}
_REQUEST_KEYS |= {"method"}
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
    name = path.name.lower()
    for c in COMPRESSED:
        if name.endswith(c):
            name = name[: -len(c)]
    stem, dot, ext = name.rpartition(".")
    return (stem, ext) if dot else (name, "")


def _csv_header(line: str) -> list[str]:
    return [h.strip().lower() for h in next(csv.reader([line]), [])]


def _content_kind_fmt(path: Path, lines: list[str]) -> tuple[str, str, str] | None:
    """(kind, fmt, why) from the first lines, or None."""
    if path.suffix.lower() == ".parquet" or _is_parquet(path):
        return "requests", "parquet", "Parquet file (PAR1 magic)"
    if not lines:
        return None
    first = lines[0].lstrip("\ufeff").strip()
    if first.startswith("{"):
        whole = "\n".join(lines)
        if '"resultType"' in whole or ('"status"' in whole and '"data"' in whole):
            return "metrics", "prometheus", "JSON with resultType: Prometheus range query"
        obj = json_object(first)
        if obj is None:
            return None
        keys = set(obj)
        if keys & _REQUEST_KEYS:
            found = ", ".join(sorted(keys & _REQUEST_KEYS))
            return "requests", "jsonl", f"JSON lines with request keys ({found})"
        if keys & {"msg", "message", "error", "err", "level"}:
            return "errors", "jsonl", "JSON lines with msg/level/error keys: service log"
        return None
    if _GO_LINE.match(first):
        return "errors", "gotext", "lines start with YYYY/MM/DD hh:mm:ss: Go log text"
    if first.startswith(("- ", "events:")) or first == "-":
        return "events", "yaml", "YAML list"
    if "=" in first and _LOGFMT.match(first):
        return "errors", "logfmt", "key=value pairs: logfmt"
    if "," in first:
        header = _csv_header(first)
        return _csv_kind(header)
    return None


def _csv_kind(header: list[str]) -> tuple[str, str, str] | None:
    cols = set(header)
    if {"metric", "value"} <= cols:
        return "metrics", "csv-long", "CSV with metric,value columns: metrics (long)"
    if cols & {"kind", "title"}:
        return "events", "csv", "CSV with kind/title columns: events"
    if cols & _REQUEST_KEYS:
        return "requests", "csv", "CSV with request columns"
    if header and header[0] in KIND_FIELDS["metrics"]["time"].aliases and len(header) > 1:
        return "metrics", "csv-wide", "CSV with time then one column per series: metrics (wide)"
    return None


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _fmt_within(kind: str, ext: str, content: tuple[str, str, str] | None) -> str | None:
    """The format of a file of known kind, from content first, then extension."""
    if content is not None and content[0] == kind:
        return content[1]
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

    Raises ``UserError`` when the file is not empty and nothing tells its format.
    """
    stem, ext = base_name(path)
    content = _content_kind_fmt(path, text_head(path))
    rule = manifest.rule_for(path) if manifest else None
    if rule is not None:
        fmt = rule.fmt or _fmt_within(rule.kind, ext, content)
        if fmt is None:
            raise UserError(f"{path}: the manifest says {rule.kind} but the format is unclear;"
                            f" expected format = one of {', '.join(FORMATS[rule.kind])}")
        return Detected(rule.kind, fmt, "manifest",
                        f"manifest glob {rule.glob!r}: {rule.kind}/{fmt}")
    if content is not None and content[1] == "prometheus":  # unambiguous signature
        return Detected(content[0], content[1], "content", content[2])
    for pattern, kind in _NAME_KIND:
        if pattern.search(stem):
            fmt = _fmt_within(kind, ext, content)
            if fmt is not None:
                how = f"first lines: {content[2]}" if content and content[0] == kind else f".{ext}"
                return Detected(kind, fmt, "name", f"name says {kind}; {how}")
    if content is not None:
        return Detected(content[0], content[1], "content", content[2])
    head = text_head(path)
    if path.stat().st_size == 0 or not head:
        return None
    raise UnknownFormat(path, _unknown_why(path, head))


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
