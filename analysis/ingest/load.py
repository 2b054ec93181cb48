"""Load one detected file into the store: stage in SQL, then split loaded / rejected.

Line formats go through ``LineReader`` in groups of lines (bounded memory);
each group is parsed and checked by one SQL statement into a temporary
``_stage`` table whose ``reason`` column says reject or load; two INSERTs then
move the rows into the canonical table and into ``rejects``. Parquet and
Prometheus JSON are read by DuckDB's own readers; YAML events (small) by PyYAML.

JSON lines and CSV first go through DuckDB's own readers (``read_json`` /
``read_csv``, parallel, no Python in the loop), which keep going past bad lines;
their clean rows load in one INSERT, and only the bad lines (found by number)
are read again by the line path, which says why each is rejected. The line
path takes a whole file only when the reader cannot account for every line
(damaged compression, a line over 1 MiB, many blank or bad lines).
"""

from __future__ import annotations

import bisect
import contextlib
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import yaml

from analysis.errors import UserError
from analysis.ingest import sql as S
from analysis.ingest.bounds import MAX_FIELDS, json_object
from analysis.ingest.csvhead import file_stem, first_lines, parse_rows, read_header, wide_series
from analysis.ingest.detect import Detected
from analysis.ingest.fields import NUMBER_UNIT_MS, Field, fields_for
from analysis.ingest.lines import (
    MAX_LINE,
    RAW_KEEP,
    LineReader,
    LineStats,
    compression_of,
    open_decompressed,
    pick_lines,
    text_head,
)
from analysis.ingest.neterr import cache_from_msg, parse_net_error
from analysis.ingest.timeparse import sql_str
from analysis.parts import (
    MAX_EXCLUDED,
    PART_OPTIONS,
    STORED_SCHEMA,
    Part,
    Parts,
    part_sql,
    stamp_of,
)
from analysis.progress import Progress

TARGET_COLUMNS = {
    "requests": "time, method, caller, uris, status, duration_ms, host, dc",
    "errors": "time, level, msg, host, error, sample_rate",
    "events": "time, end_time, kind, title, source, detail",
}
SNIFF_LINES, SNIFF_BYTES = 1000, 1 << 20
#: fields whose JSON values the fast path asks DuckDB for as numbers
NUMERIC_FIELDS = ("uris", "duration_ms", "sample_rate")
TABLE_OF = {"requests": "requests", "errors": "log_events", "metrics": "metrics",
            "events": "events"}
#: whitespace-only lines a fast path renumbers around; more, and the file goes line by line
MAX_SKIPPED = 64
#: lines a fast path hands to the line path (in memory at once); more, and the file goes
#: line by line (in bounded groups)
MAX_AGAIN = 100_000


class FastPathMiss(Exception):
    """DuckDB's own reader did not give one clean row per line: use the exact line path
    (which also keeps the text of rejected lines)."""


@dataclass
class Counts:
    """Lines read, loaded and rejected so far in one file."""

    read: int = 0
    loaded: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Job:
    """One file to load: where, what, into which file_id, with which options."""

    path: Path
    detected: Detected
    file_id: int
    zone: str | None
    renames: dict[str, str]
    progress: Callable[[int, int], None] | None = None
    #: what the report line should say about how the file was read
    notes: list[str] = field(default_factory=list)
    #: where the fast paths write their rows as Parquet (a store on disk); None: into DuckDB
    parts: Parts | None = None
    #: the parts written for this file so far (recorded by the fast path at its end)
    written: list[Part] = field(default_factory=list)

    def table(self, kind: str | None = None) -> str:
        """The DuckDB table the rows of ``kind`` (default: the file's) are stored in."""
        name = TABLE_OF[kind or self.detected.kind]
        return f"{STORED_SCHEMA}.{name}" if self.parts else name


class _NetCache:
    """Parses of distinct error texts and messages, reused across groups of one run."""

    def __init__(self) -> None:
        self.errors: dict[str, tuple] = {}
        self.caches: dict[str, str | None] = {}

    def tables(self, errors: list[str], msgs: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        for e in errors:
            if e not in self.errors:
                n = parse_net_error(e)
                self.errors[e] = (n.op, n.local_addr, n.remote_addr, n.errno_class)
        for m in msgs:
            if m not in self.caches:
                self.caches[m] = cache_from_msg(m)
        rows = [self.errors[e] for e in errors]
        # polars, not pa.array: that imports pandas (1.7 s of CPU, once a process)
        net = pl.DataFrame({
            "error": errors,
            **{k: [r[i] for r in rows]
               for i, k in enumerate(("op", "local_addr", "remote_addr", "errno_class"))},
        }, schema={k: pl.String for k in ("error", "op", "local_addr", "remote_addr",
                                          "errno_class")})
        cache = pl.DataFrame({"msg": msgs, "cache": [self.caches[m] for m in msgs]},
                             schema={"msg": pl.String, "cache": pl.String})
        return net, cache


def _emit(con: duckdb.DuckDBPyConnection, job: Job, stage_sql: str, *,
          expected: int | None = None, wide: tuple[list[str], list[str]] | None = None,
          net: _NetCache | None = None, rejects_only: bool = False,
          deferred: list[int] | None = None, first_line: int | None = None,
          to_part: bool = False) -> tuple[int, int]:
    """Insert the rows of ``stage_sql``: reason NULL into the kind's table, the others
    into rejects. Returns (rows loaded, rows rejected), counted in stage rows.

    With ``expected`` (the number of stage rows, known beforehand) and a kind that
    needs no second look, rows go straight in, and the rejects query runs only if
    fewer than ``expected`` loaded; otherwise the rows are staged in a temporary table.
    ``deferred`` (staged only) collects the line numbers of the rows not loadable instead
    of writing them to rejects (the fast paths hand those lines to the line path).
    ``first_line`` (staged only): the stage's ``line`` is a placeholder, and the staged
    rows, kept in the reader's order, are numbered from it (see ``number_rows``).
    ``to_part`` (staged only, a store on disk): the loadable rows go to a Parquet part
    (``job.written``) instead of the kind's table.
    """
    kind, fid, path = job.detected.kind, job.file_id, sql_str(str(job.path))
    rejects = (f"INSERT INTO rejects (file_id, path, line, raw, reason)"
               f" SELECT {fid}, {path}, line, rawtext, left(reason, 1000) FROM {{}}"
               f" WHERE reason IS NOT NULL")
    if expected is not None and net is None and wide is None:
        loaded = con.execute(_insert_sql(job, fid, f"({stage_sql})")).fetchall()[0][0]
        bad = 0 if loaded >= expected else con.execute(
            rejects.format(f"({stage_sql})")).fetchall()[0][0]
        return loaded, bad
    con.execute(f"CREATE TEMP TABLE _stage AS {stage_sql}")
    try:
        if first_line is not None:
            number_rows(con, "_stage", "TRUE", first_line)
        total = con.execute("SELECT count(*) FROM _stage").fetchall()[0][0]
        if net is not None:
            errs, msgs = ([r[0] for r in con.execute(
                f"SELECT DISTINCT {c} FROM _stage WHERE reason IS NULL AND {c} IS NOT NULL"
            ).fetchall()] for c in ("error", "msg"))
            net_t, cache_t = net.tables(errs, msgs)
            con.register("_neterr", net_t)
            con.register("_cache", cache_t)
        if deferred is not None:
            found = [r[0] for r in con.execute(
                "SELECT line FROM _stage WHERE reason IS NOT NULL").fetchall()]
            deferred += found
            bad = len(found)
        else:
            bad = con.execute(rejects.format("_stage")).fetchall()[0][0]
        if not rejects_only and to_part and job.parts is not None:
            _copy_part(con, job, _rows_sql(kind, fid, "_stage", wide), "line")
        elif not rejects_only:
            con.execute(_insert_sql(job, fid, "_stage", wide))
        if net is not None:
            con.unregister("_neterr")
            con.unregister("_cache")
    finally:
        con.execute("DROP TABLE _stage")
    return total - bad, bad


def number_rows(con: duckdb.DuckDBPyConnection, table: str, where: str, first: int) -> None:
    """Set ``line`` of the rows of ``table`` matching ``where`` to their order of insertion,
    counted from ``first``.

    This is how the fast paths number lines without ``row_number() OVER ()``, which
    makes DuckDB read a file on one thread: the rows were inserted in this transaction
    by one statement with ``preserve_insertion_order`` (DuckDB's default, which
    ``store.connect`` and ``_fast`` pin), so their row ids run in the reader's order,
    one per row (``tests/test_ingest_order.py`` checks this on files both threads read).
    """
    base = con.execute(f"SELECT min(rowid) FROM {table} WHERE {where}").fetchall()[0][0]
    if base is not None:
        con.execute(f"UPDATE {table} SET line = rowid - {base} + {first} WHERE {where}")


def _insert_numbered(con: duckdb.DuckDBPyConnection, job: Job, stage: str,
                     first_line: int) -> tuple[int, list[int]]:
    """Every row of a request ``stage`` into ``requests`` in one parallel, order-keeping
    INSERT, the rows not loadable under the file id negated; then all are numbered by
    order (``number_rows``), and the others' line numbers are read and they are deleted.
    Returns (rows loaded, line numbers of the others)."""
    fid, table = job.file_id, job.table()
    con.execute(
        f"INSERT INTO {table} ({TARGET_COLUMNS['requests']}, file_id, line)"
        f" SELECT coalesce(time, TIMESTAMP '1970-01-01'), method, caller,"
        f" CASE WHEN reason IS NULL THEN CAST(uris_d AS INTEGER) END, status, duration_ms,"
        f" host, dc, CASE WHEN reason IS NULL THEN {fid} ELSE -{fid} END, 0 FROM ({stage})")
    mine = f"file_id IN ({fid}, -{fid})"
    number_rows(con, table, mine, first_line)
    bad = [r[0] for r in con.execute(
        f"SELECT line FROM {table} WHERE file_id = -{fid} ORDER BY line").fetchall()]
    if bad:
        con.execute(f"DELETE FROM {table} WHERE file_id = -{fid}")
    loaded = con.execute(f"SELECT count(*) FROM {table} WHERE file_id = {fid}").fetchall()[0][0]
    return loaded, bad


def _copy_numbered(con: duckdb.DuckDBPyConnection, job: Job, stage: str,
                   first_line: int) -> tuple[int, list[int]]:
    """``_insert_numbered`` for a store on disk: every row of a request ``stage`` into a
    Parquet part in one parallel, order-keeping COPY, with ``ok`` saying whether it
    loads; a row's line is its place in the part (``file_row_number``), counted from
    ``first_line``. The part keeps the rows ``ok``. Returns (rows loaded, line numbers of
    the others)."""
    rows = ("requests", f"{TARGET_COLUMNS['requests']}, ok",
            f"SELECT coalesce(time, TIMESTAMP '1970-01-01'), method, caller,"
            f" CASE WHEN reason IS NULL THEN CAST(uris_d AS INTEGER) END, status, duration_ms,"
            f" host, dc, reason IS NULL FROM ({stage})")
    part, n = _copy_part(con, job, rows, f"file_row_number + {first_line}", keep="ok")
    bad = [r[0] for r in con.execute(
        f"SELECT line FROM ({part.sql()}) WHERE NOT ok ORDER BY line").fetchall()]
    return n - len(bad), bad


def _rows_sql(kind: str, fid: int, source: str,
              wide: tuple[list[str], list[str]] | None = None,
              loadable: bool = True) -> tuple[str, str, str]:
    """The loadable rows of ``source`` (a staged relation) for the kind's table:
    (table, its columns, the SELECT giving them). Not ``loadable``: every row, its
    values converted where they can be (the caller filters the rejected ones)."""
    if not loadable:
        table, columns, select = _rows_sql(kind, fid, source, wide)
        cut = select.rindex(" WHERE ")
        return table, columns, select[:cut].replace("CAST(uris_d AS", "TRY_CAST(uris_d AS")
    if kind == "requests":
        return ("requests", f"{TARGET_COLUMNS[kind]}, file_id, line",
                f"SELECT time, method, caller, CAST(uris_d AS INTEGER), status, duration_ms,"
                f" host, dc, {fid}, line FROM {source} WHERE reason IS NULL")
    if kind == "errors":
        return ("log_events", "time, level, msg, host, error, op, local_addr, remote_addr,"
                " errno_class, cache, sample_rate, file_id, line",
                f"SELECT s.time, s.level, s.msg, s.host, s.error, n.op, n.local_addr,"
                f" n.remote_addr, n.errno_class, c.cache, s.sample_rate, {fid}, s.line"
                f" FROM {source} s LEFT JOIN _neterr n ON s.error = n.error"
                f" LEFT JOIN _cache c ON s.msg = c.msg WHERE s.reason IS NULL")
    if kind == "events":
        return ("events", f"{TARGET_COLUMNS[kind]}, file_id, line",
                f"SELECT {TARGET_COLUMNS[kind]}, {fid}, line FROM {source} WHERE reason IS NULL")
    columns = "time, metric, labels, value, file_id, line"
    if wide is not None:
        names = ", ".join(sql_str(m) for m in wide[0])
        labels = ", ".join(sql_str(lb) for lb in wide[1])
        return ("metrics", columns,
                f"SELECT time, metric, labels, value, {fid}, line FROM ("
                f" SELECT time, line, unnest([{names}]) AS metric, unnest([{labels}]) AS labels,"
                f" unnest(vals) AS value, unnest(raws) AS cell FROM {source}"
                f" WHERE reason IS NULL) WHERE cell IS NOT NULL")
    return ("metrics", columns, f"SELECT time, metric, labels, value, {fid}, line FROM {source}"
            f" WHERE reason IS NULL")


def _insert_sql(job: Job, fid: int, source: str,
                wide: tuple[list[str], list[str]] | None = None) -> str:
    """INSERT of the loadable rows of ``source`` (a staged relation) into the kind's table."""
    table, columns, select = _rows_sql(job.detected.kind, fid, source, wide)
    return f"INSERT INTO {job.table()} ({columns}) {select}"


def _copy_part(con: duckdb.DuckDBPyConnection, job: Job, rows: tuple[str, str, str],
               line: str, keep: str | None = None) -> tuple[Part, int]:
    """Write ``rows`` (``_rows_sql``'s, perhaps with more columns) to a new Parquet part of
    the file, in the reader's order; ``line`` is its line numbers' SQL over the part's
    columns and ``file_row_number``, ``keep`` which of its rows the file loaded.
    Returns the part (appended to ``job.written``) and how many rows it holds."""
    assert job.parts is not None
    table, columns, select = rows
    path, rel = job.parts.new(job.file_id, table)
    n = con.execute(f"COPY (SELECT * FROM ({select}) AS _r({columns})) TO"
                    f" {sql_str(str(path))} ({PART_OPTIONS})").fetchall()[0][0]
    part = Part(job.file_id, table, str(path), rel,
                f"SELECT * EXCLUDE (file_row_number), {line} AS line FROM {{src}}"
                if line != "line" else "SELECT * EXCLUDE (file_row_number) FROM {src}",
                [keep] if keep else [])
    job.written.append(part)
    return part, n


def _json_keys(line: str) -> set[str]:
    obj = json_object(line)
    return set(obj) if obj is not None else set()


def json_number_keys(path: Path) -> set[str]:
    """Keys whose value is a JSON number on every one of the first lines that has them."""
    number, other = set(), set()
    for line in text_head(path, n_lines=SNIFF_LINES, n_bytes=SNIFF_BYTES):
        for k, v in (json_object(line) or {}).items():
            is_num = isinstance(v, int | float) and not isinstance(v, bool)
            (number if is_num else other).add(k)
    return number - other


def _logfmt_keys(line: str) -> set[str]:
    return {k for k, _ in re.findall(S.LOGFMT_RE, line)}


def sniffed_aliases(path: Path, fields: dict[str, Field], fmt: str) -> list[str]:
    """The aliases a JSON-lines or logfmt file uses, from its first lines; all aliases
    of a required field none of whose names was seen. (Each alias asked for costs:
    DuckDB's ``from_json`` with 40 keys is 4x slower than with 10.)"""
    keys_of = _json_keys if fmt == "jsonl" else _logfmt_keys
    seen: set[str] = set()
    for line in text_head(path, n_lines=SNIFF_LINES, n_bytes=SNIFF_BYTES):
        seen |= keys_of(line)
    if not seen:
        return S.aliases_of(fields)
    out = []
    for f in fields.values():
        present = [a for a in f.aliases if a in seen]
        out += present if present or not f.required else list(f.aliases)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class CsvLayout:
    """A CSV file's header as the loader sees it: column i is ``"c:i"``; the data start
    after ``header_rows`` lines."""

    names: list[str]  # lower case, manifest renames applied
    get: S.Getter
    extra: dict
    header_rows: int = 1


def csv_layout(job: Job, fields: dict[str, Field]) -> CsvLayout:
    """Read the header; map its columns to fields, series (wide) or labels (long).
    Notes on how a wide header was read (levels, repeated names) go to ``job.notes``."""
    header = read_header(parse_rows(first_lines(job.path)))
    renames = {k.lower(): v for k, v in job.renames.items()}
    names = [renames.get(h.lower(), h.lower()) for h in header.columns]
    cols: dict[str, S.Col] = {}
    for i, name in enumerate(names, 1):
        if name:
            cols.setdefault(name, S.Col(S.q(f"c:{i}")))
    extra: dict = {}
    if job.detected.fmt == "csv-wide":
        parsed, notes = wide_series(header, file_stem(job.path))
        job.notes.extend(n for n in notes if n not in job.notes)
        extra["series"] = [S.Col(S.q(f"c:{i}")) for i in range(2, len(names) + 1)]
        extra["wide"] = ([m for m, _ in parsed], [S.canonical_labels(lb) for _, lb in parsed])
        extra["header_rows"] = header.rows
        return CsvLayout(names, {"time": S.Col(S.q("c:1"))}.get, extra, header.rows)
    if dup := sorted(n for n, k in Counter(filter(None, names)).items() if k > 1):
        note = f"repeated columns ({', '.join(dup)[:100]}): the first of each is read"
        job.notes.extend([note] if note not in job.notes else [])
    if job.detected.fmt == "csv-long":
        known = {a for f in fields.values() for a in f.aliases}
        extra["label_cols"] = {h: c for h, c in cols.items() if h not in known}
    extra["header_rows"] = 1
    return CsvLayout(names, cols.get, extra)


def _line_source(job: Job, fields: dict[str, Field]) -> tuple[str, S.Getter, dict]:
    """Parse-layer SQL for a line format, the alias getter, and extras for the convert layer."""
    fmt = job.detected.fmt
    if fmt in S.PARSERS:
        aliases = sniffed_aliases(job.path, fields, fmt)
        sql, cols = S.PARSERS[fmt](aliases)
        return sql, cols.get, {}
    layout = csv_layout(job, fields)
    return S.parse_csv(layout.names, layout.header_rows), layout.get, layout.extra


def _convert_sql(kind: str, source: str, fields: dict[str, Field], get: S.Getter,
                 zone: str | None, extra: dict) -> str:
    if kind == "requests":
        return S.convert_requests(source, fields, get, zone)
    if kind == "errors":
        return S.convert_errors(source, fields, get, zone)
    if kind == "events":
        return S.convert_events(source, fields, get, zone)
    if "series" in extra:
        return S.convert_metrics_wide(source, fields, get, zone, extra["series"])
    return S.convert_metrics_long(source, fields, get, zone, extra.get("label_cols", {}))


def load_jsonl_fast(con: duckdb.DuckDBPyConnection, job: Job,
                    lines: Callable[[], LineStats | None]) -> Counts:
    """JSON lines through DuckDB's ``read_json`` (parallel, no Python in the loop).

    With ``ignore_errors`` DuckDB gives one row per line that is not whitespace only
    (those it skips; ``line_stats`` finds them), a line it cannot read giving a row of
    NULLs: so row ``k`` is the ``k``-th such line, and the clean rows load at once.
    The few rows that are not loadable (and the skipped lines) are read again by the
    line path, which says why. A numeric field read as NULL may be a value of another
    type (DuckDB nulls it under ``ignore_errors``): such rows go the line path too.
    """
    kind = job.detected.kind
    fields = fields_for(kind, job.renames)
    aliases = sniffed_aliases(job.path, fields, "jsonl")
    # numbers read as DOUBLE by read_json itself (25 % less CPU than text then cast);
    # a time the first lines give as a number (Unix seconds or ms) too: 5x cheaper than
    # text, and a row where it is not a number (NULL then) goes to the line path
    numeric = {a for name in NUMERIC_FIELDS if name in fields
               for a in fields[name].aliases if a not in NUMBER_UNIT_MS}
    times = set(fields["time"].aliases) & json_number_keys(job.path)
    types = {a: "DOUBLE" if a in numeric | times else "VARCHAR" for a in aliases}
    suspect = " OR ".join(
        "(" + " AND ".join(f"{S.q(a)} IS NULL" for a in present) + ")"
        for name in NUMERIC_FIELDS if name in fields
        if (present := [a for a in fields[name].aliases if a in types])
        and any(a in numeric for a in present))
    comp = {"gzip": "gzip", "zstd": "zstd"}.get(compression_of(job.path) or "", "none")
    columns = ", ".join(f"{sql_str(a)}: '{t}'" for a, t in types.items())
    src = (f"read_json({sql_str(str(job.path))}, format = 'newline_delimited',"
           f" records = true, compression = '{comp}', maximum_object_size = {MAX_LINE},"
           f" ignore_errors = true, columns = {{{columns}}})")
    picks = ", ".join(f"{S.q(a)} AS {S.q('a:' + a)}" for a in aliases)
    pre = f"CASE WHEN {suspect} THEN 'check' END" if suspect else "CAST(NULL AS VARCHAR)"
    source = (f"SELECT CAST(0 AS BIGINT) AS line, CAST(NULL AS BLOB) AS raw,"
              f" CAST(NULL AS VARCHAR) AS txt, {pre} AS preason, {picks}"
              f" FROM {src}")
    cols = {a: S.Col(S.q("a:" + a), t) for a, t in types.items()}
    stage = _convert_sql(kind, source, fields, cols.get, job.zone, {})
    return _fast(con, job, stage, lines, skips_blank=True)


def load_csv_fast(con: duckdb.DuckDBPyConnection, job: Job,
                  lines: Callable[[], LineStats | None]) -> Counts:
    """CSV through DuckDB's ``read_csv`` (strict), exact when it reads one row per
    physical line after the header, but for the lines it rejects (ragged, not UTF-8),
    whose numbers it stores. Those, the rows that do not convert (a bad time, a wrong
    type) and the rows with a quote inside a value (which DuckDB keeps, the line path
    rejects or unquotes) go to the line path alone; else ``FastPathMiss``."""
    kind = job.detected.kind
    fields = fields_for(kind, job.renames)
    layout = csv_layout(job, fields)
    comp = {"gzip": "gzip", "zstd": "zstd"}.get(compression_of(job.path) or "", "none")
    columns = ", ".join(f"'c:{i}': 'VARCHAR'" for i in range(1, len(layout.names) + 1))
    src = (f"read_csv({sql_str(str(job.path))}, header = true, auto_detect = false,"
           f" skip = {layout.header_rows - 1},"
           f" delim = ',', quote = '\"', escape = '\"', strict_mode = true,"
           f" compression = '{comp}', max_line_size = {MAX_LINE}, columns = {{{columns}}},"
           f" ignore_errors = true, store_rejects = true, rejects_table = '_csv_rejects',"
           f" rejects_scan = '_csv_scans')")
    cells = [S.q(f"c:{i}") for i in range(1, len(layout.names) + 1)]
    quoted = " OR ".join(f"contains({c}, '\"')" for c in cells)
    source = (f"SELECT CAST(0 AS BIGINT) AS line, CAST(NULL AS BLOB) AS raw,"
              f" CAST(NULL AS VARCHAR) AS txt, CASE WHEN {quoted} THEN 'check' END AS preason,"
              f" {', '.join(cells)} FROM {src}")
    stage = _convert_sql(kind, source, fields, layout.get, job.zone, layout.extra)

    def rejected() -> tuple[int, ...]:
        return tuple(r[0] for r in con.execute(
            "SELECT DISTINCT line FROM _csv_rejects ORDER BY line").fetchall())

    try:
        return _fast(con, job, stage, lines, header=layout.header_rows,
                     wide=layout.extra.get("wide"),
                     skipped_by_reader=rejected)
    finally:
        for t in ("_csv_rejects", "_csv_scans"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {t}")


def _line_of(skipped: tuple[int, ...]) -> Callable[[int], int]:
    """Row number -> line number, when the reader skipped the lines ``skipped`` (sorted):
    row ``k`` lies past skipped line ``i`` (1-based) when ``k > skipped[i] - i``."""
    after = [b - i for i, b in enumerate(skipped, 1)]
    return lambda k: k + bisect.bisect_left(after, k)


def _renumber_sql(skipped: tuple[int, ...]) -> str:
    """SQL of ``_line_of`` over the column ``line``."""
    whens = " ".join(f"WHEN line > {b - i} THEN line + {i}"
                     for i, b in reversed(list(enumerate(skipped, 1))))
    return f"CASE {whens} ELSE line END"


def _fast(con: duckdb.DuckDBPyConnection, job: Job, stage: str,
          lines: Callable[[], LineStats | None], header: int = 0,
          wide: tuple[list[str], list[str]] | None = None, skips_blank: bool = False,
          skipped_by_reader: Callable[[], tuple[int, ...]] | None = None) -> Counts:
    """Run a fast-path stage: load its clean rows, then give the lines of the others
    (and those the reader skipped) to the line path; ``FastPathMiss`` unless DuckDB gave
    one row per physical line (but the ``header``, the blank lines if ``skips_blank``
    and the lines ``skipped_by_reader`` names). ``lines`` gives the file's line
    statistics (None if unknown); it is asked only after DuckDB's work, so that the
    count can run on another thread. The stage's ``line`` is a placeholder: rows are
    numbered by the reader's order (``number_rows``) as if nothing was skipped, and
    renumbered afterwards when lines were skipped (rarely needed: an UPDATE)."""
    try:
        counts = _fast_rows(con, job, stage, lines, header, wide, skips_blank,
                            skipped_by_reader)
    except FastPathMiss:
        for part in job.written:  # its rows go the line path; the file is not kept
            (job.parts.root / part.path).unlink(missing_ok=True)
        raise
    for part in job.written:
        part.record(con)
    return counts


def _fast_rows(con: duckdb.DuckDBPyConnection, job: Job, stage: str,
               lines: Callable[[], LineStats | None], header: int,
               wide: tuple[list[str], list[str]] | None, skips_blank: bool,
               skipped_by_reader: Callable[[], tuple[int, ...]] | None) -> Counts:
    """``_fast``'s work, the rows going into the kind's table or (a store on disk) a
    Parquet part."""
    kind = job.detected.kind
    net = _NetCache() if kind == "errors" else None
    bad: list[int] = []
    # numbering by insertion order needs it; a caller's own connection may have turned it off
    con.execute("SET preserve_insertion_order = true")
    try:
        if kind == "requests" and wide is None:
            numbered = _copy_numbered if job.parts else _insert_numbered
            loaded, bad = numbered(con, job, stage, header + 1)
        else:
            loaded, _ = _emit(con, job, stage, net=net, wide=wide, deferred=bad,
                              first_line=header + 1, to_part=job.parts is not None)
        stats = lines()
        if stats is None:
            raise FastPathMiss("line count unknown: damaged compression or a line over 1 MiB")
        if stats.blank and not skips_blank:
            raise FastPathMiss(f"{len(stats.blank)} blank lines")
        skipped = tuple(sorted({*stats.blank, *(skipped_by_reader() if skipped_by_reader
                                                 else ())}))
        if len(skipped) > MAX_SKIPPED:
            raise FastPathMiss(f"{len(skipped)} lines skipped by DuckDB's reader")
        rows = stats.lines - header - len(skipped)
        if len(bad) + len(stats.suspect) > MAX_AGAIN:
            raise FastPathMiss(f"over {MAX_AGAIN} rows to check line by line")
        if loaded + len(bad) != rows:
            raise FastPathMiss(f"DuckDB gave {loaded + len(bad)} rows for {rows} lines")
        if skipped and job.written:
            job.written[-1].renumber(_renumber_sql(skipped))
            bad = [_line_of(skipped)(k) for k in bad]
        elif skipped:
            con.execute(f"UPDATE {job.table()} SET line = {_renumber_sql(skipped)}"
                        f" WHERE file_id = {job.file_id}")
            bad = [_line_of(skipped)(k) for k in bad]
        loaded -= _unload(con, job, sorted(set(stats.suspect) - {*bad, *skipped}))
    except duckdb.Error as exc:
        raise FastPathMiss(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    again = sorted({*bad, *skipped, *stats.suspect})
    rest = load_lines(con, job, only=again) if again else Counts()
    if rest.read != len(again):
        raise FastPathMiss(f"line path read {rest.read} of {len(again)} lines")
    if job.progress:  # DuckDB read the whole file
        job.progress(stats.lines, job.path.stat().st_size)
    return Counts(stats.lines - header, loaded + rest.loaded, rest.rejected)


def _unload(con: duckdb.DuckDBPyConnection, job: Job, lines: list[int]) -> int:
    """Delete the rows a fast path loaded from ``lines`` (one row each: the lines over
    the bounds screen, which the line path checks instead); returns how many."""
    if not lines:
        return 0
    if job.written:
        if len(lines) > MAX_EXCLUDED:
            raise FastPathMiss(f"{len(lines)} lines over the bounds screen")
        job.written[-1].exclude(lines)
        return len(lines)
    table = job.table()
    gone = con.execute(f"DELETE FROM {table} WHERE file_id = ? AND list_contains(?, line)",
                       [job.file_id, lines]).fetchall()[0][0]
    if gone != len(lines):
        raise FastPathMiss(f"{gone} rows for {len(lines)} lines over the bounds screen")
    return gone


def load_lines(con: duckdb.DuckDBPyConnection, job: Job,
               only: list[int] | None = None) -> Counts:
    """A line-oriented file (JSON lines, logfmt, Go text, CSV), streamed in groups;
    with ``only`` (sorted line numbers), just those lines."""
    kind = job.detected.kind
    fields = fields_for(kind, job.renames)
    source, get, extra = _line_source(job, fields)
    stage = _convert_sql(kind, source, fields, get, job.zone, extra)
    header_lines = extra.get("header_rows", 0) if only is None else 0
    counts, net = Counts(), (_NetCache() if kind == "errors" else None)
    reader = LineReader(job.path)
    for table in reader if only is None else [pick_lines(job.path, only)]:
        expected = table.num_rows - (header_lines if counts.read == 0 else 0)
        if table.num_rows:
            con.register("_lines", table)
            loaded, bad = _emit(con, job, stage, expected=expected, wide=extra.get("wide"),
                                net=net)
            con.unregister("_lines")
            counts.read += loaded + bad
            counts.loaded += loaded
            counts.rejected += bad
        if job.progress and only is None:
            job.progress(reader.lines, reader.disk_bytes)
    return counts


def reject_all_lines(con: duckdb.DuckDBPyConnection, job: Job, reason: str) -> Counts:
    """Every line of the file rejected with one reason (a Prometheus error response,
    a JSON or YAML document that does not parse)."""
    counts = Counts()
    why = sql_str(reason)
    stage = (f"SELECT line, coalesce(preason, {why}) AS reason,"
             f" left(coalesce(txt, CAST(raw AS VARCHAR)), {RAW_KEEP}) AS rawtext"
             f" FROM ({S.base_lines()})")
    for table in LineReader(job.path):
        con.register("_lines", table)
        _, bad = _emit(con, job, stage, rejects_only=True)
        con.unregister("_lines")
        counts.read += bad
        counts.rejected += bad
    return counts


def _counts(loaded_bad: tuple[int, int]) -> Counts:
    loaded, bad = loaded_bad
    return Counts(loaded + bad, loaded, bad)


def load_parquet(con: duckdb.DuckDBPyConnection, job: Job) -> Counts:
    """A Parquet request log, read by DuckDB with its row numbers."""
    src = f"read_parquet({sql_str(str(job.path))}, file_row_number = true)"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
        rows = con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    except duckdb.Error as exc:
        raise UserError(f"{job.path}: cannot read as Parquet ({str(exc).splitlines()[0]});"
                        " expected a Parquet file") from exc
    renames = {k.lower(): v for k, v in job.renames.items()}
    cols: dict[str, S.Col] = {}
    for name, typ, *_ in described:
        if name != "file_row_number":
            cols.setdefault(renames.get(name.lower(), name.lower()), S.Col(S.q(name), typ))
    kind = job.detected.kind
    fields = fields_for(kind, job.renames)
    source = (f"SELECT file_row_number + 1 AS line, CAST(NULL AS BLOB) AS raw,"
              f" CAST(NULL AS VARCHAR) AS txt, CAST(NULL AS VARCHAR) AS preason, *"
              f" FROM {src}")
    stage = _convert_sql(kind, source, fields, cols.get, job.zone, {})
    net = _NetCache() if kind == "errors" else None
    if job.parts is None or net is not None:
        return _counts(_emit(con, job, stage, expected=rows, net=net))
    return _parquet_in_place(con, job, stage.replace(src, "{src}"), rows)


def _parquet_in_place(con: duckdb.DuckDBPyConnection, job: Job, stage: str,
                      rows: int) -> Counts:
    """A Parquet export read where it lies (a store on disk): its rejected rows go to
    ``rejects``, and a part over the file (by its absolute path) keeps the others,
    told by their numbers. ``stage`` is the convert SQL over ``{src}``."""
    fid = job.file_id
    part = Part(fid, TABLE_OF[job.detected.kind], str(job.path.resolve()), None, "",
                stamp=stamp_of(job.path))
    bad = con.execute(
        f"INSERT INTO rejects (file_id, path, line, raw, reason)"
        f" SELECT {fid}, {sql_str(str(job.path))}, line, rawtext, left(reason, 1000)"
        f" FROM ({part_sql(stage, Path(part.path))}) WHERE reason IS NOT NULL"
    ).fetchall()[0][0]
    _, columns, select = _rows_sql(job.detected.kind, fid, f"({stage})", loadable=False)
    part.body = f"SELECT * FROM ({select}) AS _r({columns})"
    if bad:
        part.keep.append(f"line NOT IN (SELECT line FROM {{rejects}} WHERE file_id = {fid}"
                         " AND line IS NOT NULL)")
    part.record(con)
    return Counts(rows, rows - bad, bad)


def load_prometheus(con: duckdb.DuckDBPyConnection, job: Job) -> Counts:
    """A Prometheus ``query_range`` (or instant ``query``) JSON response; one sample a row.

    ``status: error`` rejects every line of the file with the error text; a file
    DuckDB cannot read as JSON rejects every line as not valid JSON.
    """
    comp = {"gzip": "gzip", "zstd": "zstd"}.get(compression_of(job.path) or "", "none")
    src = (f"read_json({sql_str(str(job.path))}, format = 'auto', records = true,"
           f" compression = '{comp}', maximum_object_size = 1073741824,"
           " columns = {status: 'VARCHAR', error: 'VARCHAR', errorType: 'VARCHAR',"
           " data: 'STRUCT(resultType VARCHAR, result STRUCT(metric MAP(VARCHAR, VARCHAR),"
           " \"values\" JSON[], \"value\" JSON)[])'})")
    probe = con.cursor()  # its own transaction: a failed read must not abort the caller's
    try:
        status, err_type, err = probe.execute(
            f"SELECT status, errorType, error FROM {src} LIMIT 1").fetchall()[0]
    except (duckdb.Error, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return reject_all_lines(con, job, f"not a Prometheus JSON response: {first[:300]}")
    finally:
        probe.close()
    if status != "success":
        return reject_all_lines(
            con, job, f"Prometheus status {status}: {err_type or ''}: {err or ''}".strip())
    sample_time = S.time_sql("json_extract_string(pair, '$[0]')", None)
    stage = f"""
    SELECT line, time, metric, labels, value, reason,
           CASE WHEN reason IS NOT NULL THEN left(CAST(pair AS VARCHAR), {RAW_KEEP}) END
             AS rawtext
    FROM (SELECT row_number() OVER (ORDER BY si, vi) AS line, *,
           CASE WHEN pair IS NULL OR json_array_length(pair) <> 2
                  THEN 'Prometheus sample is not a [time, "value"] pair'
                WHEN time IS NULL THEN 'unparseable time ' || left(pair::VARCHAR, 60)
                WHEN metric IS NULL THEN 'series without __name__'
                WHEN value IS NULL THEN 'value is not a number: ' || left(pair::VARCHAR, 60)
           END AS reason
    FROM (SELECT si, vi, pair, m['__name__'] AS metric, {sample_time} AS time,
                 try_cast(json_extract_string(pair, '$[1]') AS DOUBLE) AS value,
                 {S.prometheus_labels("m")} AS labels
          FROM (SELECT si, r.metric AS m,
                       unnest(coalesce(r."values", [r."value"])) AS pair,
                       generate_subscripts(coalesce(r."values", [r."value"]), 1) AS vi
                FROM (SELECT unnest(data.result) AS r, generate_subscripts(data.result, 1) AS si
                      FROM {src}))))"""
    return _counts(_emit(con, job, stage))


def load_yaml_events(con: duckdb.DuckDBPyConnection, job: Job) -> Counts:
    """A YAML list of events (or a mapping with an ``events`` list); line = the item's line."""
    try:
        with open_decompressed(job.path) as f:
            text = f.read().decode("utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError, OSError, EOFError) as exc:
        return reject_all_lines(con, job, f"not valid YAML: {str(exc).splitlines()[0][:300]}")
    except RecursionError:  # PyYAML recurses per level
        return reject_all_lines(con, job, "YAML nested too deep to read")
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        items = data["events"]
        node = next(v for k, v in node.value if k.value == "events")
    elif isinstance(data, list):
        items = data
    elif data is None:
        return Counts()
    else:
        return reject_all_lines(con, job, "YAML is not a list of events (nor events: [...])")
    fields = fields_for("events", job.renames)
    aliases = S.aliases_of(fields)
    cols: dict[str, list] = {a: [] for a in aliases}
    lines, texts, pre = [], [], []
    for item, n in zip(items, node.value, strict=True):
        lines.append(n.start_mark.line + 1)
        ok = isinstance(item, dict)
        texts.append(str(item)[:RAW_KEEP])
        pre.append(None if ok else "event is not a mapping of field: value")
        for a in aliases:
            v = item.get(a) if ok else None
            cols[a].append(None if v is None else (v.isoformat() if hasattr(v, "isoformat")
                                                   else str(v)))
    table = pl.DataFrame({"line": lines, "raw": [None] * len(lines), "txt": texts,
                          "preason": pre, **{f"a:{a}": v for a, v in cols.items()}},
                         schema={"line": pl.Int64, "raw": pl.Binary, "txt": pl.String,
                                 "preason": pl.String, **{f"a:{a}": pl.String for a in cols}})
    get = {a: S.Col(S.q("a:" + a)) for a in aliases}.get
    con.register("_yaml", table)
    try:
        stage = S.convert_events("SELECT * FROM _yaml", fields, get, job.zone)
        return _counts(_emit(con, job, stage, expected=len(lines)))
    finally:
        con.unregister("_yaml")


def _header_width(path: Path) -> int:
    return max(map(len, parse_rows(first_lines(path, 1))), default=0)


def load_file(con: duckdb.DuckDBPyConnection, job: Job,
              lines: Callable[[], LineStats | None] | None = None) -> Counts:
    """Load one detected file; the caller holds the transaction.

    ``lines`` (the file's line statistics, when asked) enables the fast paths for
    JSON lines and CSV (DuckDB's own readers), which raise ``FastPathMiss`` when
    they cannot account for every line.
    """
    fmt = job.detected.fmt
    if fmt == "parquet":
        return load_parquet(con, job)
    if fmt == "prometheus":
        return load_prometheus(con, job)
    if fmt == "yaml":
        return load_yaml_events(con, job)
    if fmt.startswith("csv") and (width := _header_width(job.path)) > MAX_FIELDS:
        return reject_all_lines(con, job, f"the CSV header has {width:,} columns,"
                                f" more than {MAX_FIELDS:,}")
    if fmt == "jsonl" and lines:
        return load_jsonl_fast(con, job, lines)
    if fmt.startswith("csv") and lines:
        return load_csv_fast(con, job, lines)
    return load_lines(con, job)


class FileProgress:
    """One file's share of the ingest's progress line (``analysis.progress``), which
    counts bytes of the files on disk: the bytes the line-by-line path has read
    (compressed bytes for a compressed file), or the share DuckDB reports for its own
    readers (``query_progress``, polled on a thread). A context manager: on exit the
    line stands at the end of this file, whichever path read it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, bar: Progress, path: Path, size: int,
                 interval_s: float = 0.5) -> None:
        self.con, self.bar, self.path, self.size = con, bar, path, size
        self.interval_s = interval_s
        self.start = bar.done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __call__(self, lines: int, disk_bytes: int) -> None:
        self.bar.note(f"{self.path.name}: {lines:,} lines")
        self.bar.reach(self.start + min(disk_bytes, self.size))

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            pct = self.con.query_progress()
            if pct >= 0:
                self.bar.reach(self.start + self.size * min(pct, 100.0) / 100.0)

    def __enter__(self) -> FileProgress:
        self.bar.note(self.path.name)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.bar.reach(self.start + self.size)
