"""The DuckDB store: canonical tables every other module reads and writes.

All times are UTC, stored as DuckDB ``TIMESTAMP`` (microseconds, no zone).
The schema is declared once here, as data, so that the DDL, the data
dictionary in the docs and the exploration notebook all come from one place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

DEFAULT_DB = Path("data/incident.duckdb")


@dataclass(frozen=True)
class Column:
    """One column of a canonical table: its name, DuckDB type and meaning."""

    name: str
    type: str
    doc: str


@dataclass(frozen=True)
class Table:
    """A canonical table: its name, purpose and columns."""

    name: str
    doc: str
    columns: tuple[Column, ...]

    def ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` statement for this table."""
        cols = ",\n  ".join(f"{c.name} {c.type}" for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}\n)"


_SOURCE = (
    Column("file_id", "INTEGER NOT NULL", "the file the row came from (ingest_files.file_id)"),
    Column("line", "BIGINT NOT NULL", "1-based line (or row) number in that file"),
)

TABLES: tuple[Table, ...] = (
    Table(
        "requests",
        "The service's access log: one row per request to the data plane.",
        (
            Column("time", "TIMESTAMP NOT NULL", "when the request was logged, UTC"),
            Column("method", "VARCHAR", "the RPC, e.g. GetPostRecord"),
            Column("caller", "VARCHAR", "the calling service: the per-client dimension"),
            Column("uris", "INTEGER", "batch size: items looked up in this one request"),
            Column("status", "VARCHAR", "ok | error | a gRPC code name"),
            Column("duration_ms", "DOUBLE", "request latency in milliseconds"),
            Column("host", "VARCHAR", "the data-plane host that served it"),
            Column("dc", "VARCHAR", "data centre"),
            *_SOURCE,
        ),
    ),
    Table(
        "log_events",
        "The service's own log: one row per log line, errors parsed into parts.",
        (
            Column("time", "TIMESTAMP NOT NULL", "when the line was logged, UTC"),
            Column("level", "VARCHAR", "debug | info | warn | error | fatal (lower case)"),
            Column("msg", "VARCHAR", "the log message"),
            Column("host", "VARCHAR", "the host that wrote the line"),
            Column("error", "VARCHAR", "the raw error text, if any"),
            Column("op", "VARCHAR", "network operation: dial | read | write | bind | connect"),
            Column("local_addr", "VARCHAR", "local address in the error text, e.g. 127.32.0.1:0"),
            Column("remote_addr", "VARCHAR", "remote address in the error text"),
            Column(
                "errno_class",
                "VARCHAR",
                "EADDRINUSE | EADDRNOTAVAIL | ECONNREFUSED | ECONNRESET | ETIMEDOUT"
                " | EMFILE | EOF | other (NULL when the line has no error)",
            ),
            Column("cache", "VARCHAR", "cache named in msg: post, user, interaction counts, ..."),
            Column(
                "sample_rate",
                "DOUBLE",
                "fraction of such lines the logger kept (1 = unsampled); a line stands for"
                " 1/sample_rate events",
            ),
            *_SOURCE,
        ),
    ),
    Table(
        "metrics",
        "Metric series in long form, as dashboards showed them.",
        (
            Column("time", "TIMESTAMP NOT NULL", "sample time, UTC"),
            Column("metric", "VARCHAR NOT NULL", "metric name, e.g. node_sockstat_TCP_tw"),
            Column("labels", "VARCHAR", "labels as canonical JSON (sorted keys), '{}' if none"),
            Column("value", "DOUBLE", "sample value (NaN kept as NaN)"),
            *_SOURCE,
        ),
    ),
    Table(
        "events",
        "The humans' timeline: deploys, pages, alerts, mitigations, fixes, status posts.",
        (
            Column("time", "TIMESTAMP NOT NULL", "when it happened or started, UTC"),
            Column("end_time", "TIMESTAMP", "when it ended, for intervals"),
            Column("kind", "VARCHAR", "deploy | page | alert | mitigation | fix | status | note"),
            Column("title", "VARCHAR", "one-line title"),
            Column("source", "VARCHAR", "who or what recorded it"),
            Column("detail", "VARCHAR", "free text"),
            *_SOURCE,
        ),
    ),
    Table(
        "rejects",
        "Every line read but not loaded, with the reason: nothing is silently lost.",
        (
            Column("file_id", "INTEGER NOT NULL", "the file (ingest_files.file_id)"),
            Column("path", "VARCHAR NOT NULL", "the file's path"),
            Column("line", "BIGINT", "1-based line number"),
            Column("raw", "VARCHAR", "the line's text, truncated to 500 characters"),
            Column("reason", "VARCHAR NOT NULL", "why it was rejected"),
        ),
    ),
    Table(
        "ingest_files",
        "One row per file loaded: what it was taken for and how every line was accounted.",
        (
            Column("file_id", "INTEGER PRIMARY KEY", "identifier referenced by every row"),
            Column("path", "VARCHAR NOT NULL", "path as given"),
            Column("sha256", "VARCHAR NOT NULL", "content hash: a file loaded twice counts once"),
            Column("format", "VARCHAR NOT NULL", "detected format, e.g. requests/jsonl"),
            Column("detected_by", "VARCHAR", "name | content | manifest: how the format was told"),
            Column("bytes", "BIGINT", "size on disk"),
            Column("lines_read", "BIGINT NOT NULL", "lines (or rows) read"),
            Column("loaded", "BIGINT NOT NULL", "rows loaded"),
            Column("rejected", "BIGINT NOT NULL", "rows rejected; read = loaded + rejected"),
            Column("loaded_at", "TIMESTAMP NOT NULL", "when it was loaded, UTC"),
        ),
    ),
    Table(
        "incident",
        "Key/value facts about the incident, from the manifest (name, window, zone).",
        (
            Column("key", "VARCHAR PRIMARY KEY", "e.g. name, window_start, window_end, timezone"),
            Column("value", "VARCHAR", "its value as text"),
        ),
    ),
)


def sql_str(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def table(name: str) -> Table:
    """The canonical table called ``name``."""
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(f"no canonical table {name!r}; known: {', '.join(t.name for t in TABLES)}")


def connect(
    path: str | Path | None = None, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the store at ``path`` with the canonical schema.

    ``None`` or ``":memory:"`` gives an in-memory store. The session time zone
    is pinned to UTC so that nothing is shown in the machine's local zone.
    """
    target = ":memory:" if path in (None, ":memory:") else str(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(target, read_only=read_only)
    configure(con)
    # ingest numbers lines by the order rows were inserted in (ingest.load.number_rows)
    con.execute("SET preserve_insertion_order = true")
    if not read_only:
        ensure_schema(con)
    return con


def configure(con: duckdb.DuckDBPyConnection) -> None:
    """The session settings every connection gets: UTC, and no progress bar.

    DuckDB draws a progress bar on stdout for queries over ~2 s, even when stdout
    is not a terminal: it would corrupt `chain --json` and notebook outputs (a
    Jupyter kernel without ipywidgets refuses the setting; its bar is off there).
    """
    con.execute("SET TimeZone = 'UTC'")
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every canonical table that does not exist yet."""
    for t in TABLES:
        con.execute(t.ddl())


def data_dictionary_markdown() -> str:
    """The data dictionary of the canonical tables, as Markdown."""
    out = ["# Data dictionary", "", "All times are UTC (DuckDB `TIMESTAMP`, no zone).", ""]
    for t in TABLES:
        out += [f"## `{t.name}`", "", t.doc, "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | `{c.type}` | {c.doc} |" for c in t.columns]
        out.append("")
    return "\n".join(out)
