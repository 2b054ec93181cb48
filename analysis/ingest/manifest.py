"""The optional ``incident.toml`` / ``incident.yaml`` at a data directory's root.

It may name the incident, its window, the zone of zone-less logs, the kind
(and format) of file globs whose names do not tell, field renames, and
environment facts other modules need (``ephemeral_port_range``,
``time_wait_s``, ``idle_pool``, ...) and the service graph (``[graph] calls``,
stored as JSON under ``service_graph``). Every scalar top-level key is stored in
the ``incident`` table as text.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from analysis.errors import UserError

MANIFEST_NAMES = ("incident.toml", "incident.yaml", "incident.yml")
#: what ``postmortem pull`` writes beside the responses it keeps (source, queries, chunks);
#: a record of the pull, not data, so ingest skips it
PULL_MANIFEST_NAME = "pull-manifest.json"
KINDS = ("requests", "errors", "metrics", "events")
KIND_ALIASES = {"logs": "errors", "log": "errors", "error": "errors", "request": "requests",
                "metric": "metrics", "event": "events", "timeline": "events"}
FORMATS = {
    "requests": ("jsonl", "csv", "parquet"),
    "errors": ("jsonl", "logfmt", "gotext"),
    "metrics": ("prometheus", "csv-long", "csv-wide"),
    "events": ("csv", "yaml"),
}


@dataclass(frozen=True)
class FileRule:
    """A ``[[files]]`` entry: files matching ``glob`` are of ``kind`` (and ``fmt``)."""

    glob: str
    kind: str
    fmt: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def matches(self, rel: str) -> bool:
        """Whether the path relative to the manifest's directory matches the glob."""
        name = rel.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(rel, self.glob) or fnmatch.fnmatchcase(name, self.glob)


@dataclass(frozen=True)
class Manifest:
    """What an incident manifest says; ``facts`` are the key/values for the incident table."""

    path: Path
    root: Path
    timezone: str | None = None
    files: tuple[FileRule, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)

    def rule_for(self, path: Path) -> FileRule | None:
        """The first ``[[files]]`` rule matching ``path``, if any."""
        try:
            rel = path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None
        return next((r for r in self.files if r.matches(rel)), None)


def find_manifest(directory: Path) -> Path | None:
    """The manifest at the root of ``directory`` or, failing that, of its nearest
    ancestor that has one (so that a sub-folder or a single file given alone is
    read as it would be inside its data directory)."""
    for d in (directory, *directory.resolve().parents):
        for name in MANIFEST_NAMES:
            p = d / name
            if p.is_file():
                return p
    return None


def _kind(value: object, where: str) -> str:
    k = str(value).strip().lower()
    k = KIND_ALIASES.get(k, k)
    if k not in KINDS:
        raise UserError(f"{where}: kind {value!r} is not one of {', '.join(KINDS)}")
    return k


def _renames(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: fields must be a table of source_name = canonical_name")
    return {str(k): str(v) for k, v in value.items()}


def _graph(value: object, path: Path) -> str | None:
    """The ``[graph]`` table's ``calls`` (``[[caller, callee], ...]``: who calls whom) as
    canonical JSON text for the incident table, names kept exactly; None when absent."""
    if value is None:
        return None
    calls = value.get("calls") if isinstance(value, dict) else None
    ok = isinstance(calls, list) and all(
        isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) and x for x in c)
        for c in calls)
    if not ok:
        raise UserError(f"{path}: graph must be a table with calls = [[caller, callee], ...]"
                        " of non-empty service names")
    return json.dumps(sorted({(a, b) for a, b in calls}), ensure_ascii=False)


def load_manifest(path: Path) -> Manifest:
    """Read and check a manifest; a malformed one is a ``UserError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read the manifest ({exc}); expected TOML or YAML") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a table of keys at the top of the manifest")
    rules = []
    for i, entry in enumerate(data.get("files") or [], 1):
        where = f"{path}: files entry {i}"
        if not isinstance(entry, dict) or "glob" not in entry or "kind" not in entry:
            raise UserError(f"{where}: expected glob and kind")
        kind = _kind(entry["kind"], where)
        fmt = entry.get("format")
        if fmt is not None and fmt not in FORMATS[kind]:
            raise UserError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS[kind])}")
        rules.append(FileRule(str(entry["glob"]), kind, fmt, _renames(entry.get("fields"), where)))
    facts: dict[str, str] = {}
    window = data.get("window") or {}
    if not isinstance(window, dict):
        raise UserError(f"{path}: window must be a table with start and end")
    for key in ("start", "end"):
        if key in window:
            facts[f"window_{key}"] = str(window[key])
    graph = _graph(data.get("graph"), path)
    if graph is not None:
        facts["service_graph"] = graph
    for key, value in data.items():
        if key in ("files", "fields", "window", "graph") or isinstance(value, dict | list):
            continue
        facts[key] = str(value).lower() if isinstance(value, bool) else str(value)
    zone = data.get("timezone")
    return Manifest(
        path=path,
        root=path.parent,
        timezone=str(zone) if zone else None,
        files=tuple(rules),
        fields=_renames(data.get("fields"), str(path)),
        facts=facts,
    )
