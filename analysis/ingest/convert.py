"""``postmortem convert``: raw exports to partitioned Parquet, accounted as ingest accounts.

The distributed path (``postmortem rollup --engine spark``) reads Parquet; users have
JSON lines, CSV, logfmt, Go ``log`` text, Prometheus JSON and YAML. ``convert`` runs the
very ingest (``ingest_paths``: the same detection, parsers, checks and line numbers)
into a scratch store inside the output folder, then writes each canonical table as
Parquet partitioned by kind, day and hour::

    OUT/requests/day=2026-04-06/hour=12/data_0.parquet
    OUT/log_events/...   OUT/metrics/...   OUT/events/...
    OUT/rejects.parquet       every line not loaded, with its file, line and reason
    OUT/ingest_files.parquet  per file: format, lines read, loaded, rejected

Every table keeps ``file_id`` and ``line``, so a row traces back to its line, and
read = loaded + rejected holds per file exactly as in the store. The output is written
beside ``OUT`` and renamed into place when complete: a failed run leaves nothing.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import UserError
from analysis.ingest import INGEST_MEMORY_LIMIT_BYTES, IngestReport, ingest_paths
from analysis.parts import VIEW_TABLES
from analysis.store import connect, sql_str

#: Parquet written by convert: compressed (it is the hand-off to a cluster)
OUT_OPTIONS = "FORMAT parquet, COMPRESSION zstd"


@dataclass
class ConvertResult:
    """What ``convert`` wrote: the ingest's accounting and the rows per table."""

    ingest: IngestReport
    out: Path
    rows: dict[str, int]

    def summary(self) -> str:
        """The ingest's per-file lines, then one line per table written."""
        tables = ", ".join(f"{t} {n:,}" for t, n in self.rows.items() if n)
        return (f"{self.ingest.summary()}\nwrote {self.out}: {tables or 'no rows'}"
                f" (partitioned by day and hour), rejects.parquet, ingest_files.parquet")


def convert(paths: list[Path], out: Path, *, progress: bool = False) -> ConvertResult:
    """Convert every file under ``paths`` into partitioned Parquet under ``out`` (new)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists; expected a new (or empty) folder for"
                        " convert's output")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        result = _convert_into(paths, tmp, progress=progress)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.out = out
    return result


def _convert_into(paths: list[Path], tmp: Path, *, progress: bool) -> ConvertResult:
    scratch = tmp / ".scratch" / "convert.duckdb"
    con = connect(scratch)
    # the memory ingest is held to, for the partitioned writes too (they spill beyond it)
    con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT_BYTES >> 20}MiB'")
    try:
        report = ingest_paths(con, paths, progress=progress)
        if (why := report.nothing_loaded()) is not None:
            raise UserError(why)
        # rows go to partitions by time: their order in a file is not kept (less memory)
        con.execute("SET preserve_insertion_order = false")
        rows = {}
        for table in VIEW_TABLES:
            rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            if rows[table]:
                con.execute(
                    f"COPY (SELECT *, strftime(time, '%Y-%m-%d') AS day,"
                    f" strftime(time, '%H') AS hour FROM {table}) TO {sql_str(str(tmp / table))}"
                    f" ({OUT_OPTIONS}, PARTITION_BY (day, hour))")
        for table in ("rejects", "ingest_files"):
            con.execute(f"COPY (SELECT * FROM {table} ORDER BY ALL) TO"
                        f" {sql_str(str(tmp / (table + '.parquet')))} ({OUT_OPTIONS})")
    finally:
        con.close()
    shutil.rmtree(tmp / ".scratch")
    return ConvertResult(report, tmp, rows)
