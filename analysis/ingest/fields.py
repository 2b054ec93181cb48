"""Canonical fields of each kind and the names real exports give them (aliases).

The first alias is the canonical name. The manifest can add more
(``[fields] source = "canonical"``, or per ``[[files]]`` entry).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

TIME_ALIASES = ("time", "ts", "timestamp", "@timestamp", "t", "datetime", "date")


@dataclass(frozen=True)
class Field:
    """A canonical field: the names it may carry and whether a row needs it."""

    aliases: tuple[str, ...]
    required: bool = False


KIND_FIELDS: dict[str, dict[str, Field]] = {
    "requests": {
        "time": Field(TIME_ALIASES, required=True),
        "method": Field(("method", "rpc", "endpoint", "grpc_method")),
        "caller": Field(("caller", "client", "peer_service", "peer.service", "source_service")),
        "uris": Field(("uris", "batch_size", "n_uris", "items", "num_uris")),
        "status": Field(("status", "code", "grpc_code", "status_code")),
        # duration: a Go duration string, or a number of nanoseconds (slog's encoding)
        "duration_ms": Field(("duration_ms", "latency_ms", "elapsed_ms", "duration")),
        "host": Field(("host", "hostname", "pod", "instance")),
        "dc": Field(("dc", "datacenter", "data_center", "region", "zone")),
    },
    "errors": {
        "time": Field(TIME_ALIASES, required=True),
        "level": Field(("level", "lvl", "severity")),
        "msg": Field(("msg", "message")),
        "host": Field(("host", "hostname", "pod", "instance")),
        "error": Field(("error", "err", "error.message", "exception")),
        "sample_rate": Field(("sample_rate", "sampling_rate")),
    },
    "metrics": {
        "time": Field(TIME_ALIASES, required=True),
        "metric": Field(("metric", "__name__", "name", "series"), required=True),
        "value": Field(("value", "val", "v"), required=True),
    },
    "events": {
        "time": Field(TIME_ALIASES + ("start", "start_time"), required=True),
        "end_time": Field(("end_time", "end", "until")),
        "kind": Field(("kind", "type", "category")),
        "title": Field(("title", "summary", "what", "name")),
        "source": Field(("source", "by", "author")),
        "detail": Field(("detail", "details", "description", "text")),
    },
}

#: aliases whose bare numbers are not milliseconds: units in milliseconds
NUMBER_UNIT_MS = {"duration": 1e-6}

LEVELS = {
    "debug": "debug", "trace": "debug", "dbg": "debug",
    "info": "info", "information": "info", "notice": "info", "inf": "info",
    "warn": "warn", "warning": "warn", "wrn": "warn",
    "error": "error", "err": "error", "eror": "error",
    "fatal": "fatal", "panic": "fatal", "critical": "fatal", "crit": "fatal", "dpanic": "fatal",
}
EVENT_KINDS = ("deploy", "page", "alert", "mitigation", "fix", "status", "note")


def fields_for(kind: str, renames: dict[str, str] | None = None) -> dict[str, Field]:
    """The fields of ``kind`` with the manifest's renames (source -> canonical) added first."""
    out = dict(KIND_FIELDS[kind])
    for source, canonical in (renames or {}).items():
        if canonical in out:
            f = out[canonical]
            rest = tuple(a for a in f.aliases if a != source)
            out[canonical] = replace(f, aliases=(source, *rest))
    return out


def all_aliases(fields: dict[str, Field]) -> list[str]:
    """Every alias of every field, each once, in order."""
    seen: dict[str, None] = {}
    for f in fields.values():
        for a in f.aliases:
            seen.setdefault(a, None)
    return list(seen)
