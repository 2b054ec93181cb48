"""Rollups as Parquet files: made from raw Parquet by ``postmortem rollup``, loaded into a
store by ``postmortem ingest --rollups``.

``rollup_to_files`` reads request records, error (log) records and, when given,
metric samples and events from Parquet paths or globs (local, or any URI the engine
reads: ``s3a://``, ``hdfs://`` on Spark), runs the rollup steps on DuckDB or Spark
(``analysis.rollup_engines``), and writes every rollup table (``ROLLUP_TABLES``) as
``OUT/<table>.parquet`` plus ``OUT/rollup.json`` (which code made them, from what).
The roll tables are small -- grid x callers, not rows -- so the engine hands them to
the driver, where DuckDB builds the dense ``signals`` from them exactly as for a
store.

``load_rollups`` copies those tables into a store that holds no raw rows; the store's
``roll_info.origin`` names the sources, so that anything needing the raw rows says so
in one line (``analysis.rollups.raw_absent``) instead of answering from empty tables.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from analysis.errors import UserError
from analysis.rollup_engines import DuckEngine, Engine, SparkEngine, drop_intermediates, roll_up
from analysis.rollup_sql import RAW_TABLES, STEP_OUTPUTS
from analysis.rollups import (
    ROLLUP_TABLES,
    RollupInfo,
    finish_rollups,
    mark_rollups,
    rollups_fingerprint,
)
from analysis.store import TABLES

EngineChoice = Literal["duckdb", "spark"]

#: the columns each raw table's Parquet must have (the store's names, ``analysis.store``)
NEEDED: dict[str, tuple[str, ...]] = {
    "requests": ("time", "method", "caller", "uris", "status", "duration_ms", "host", "dc"),
    "log_events": ("time", "level", "host", "op", "errno_class", "cache", "sample_rate"),
    "metrics": ("time", "metric", "labels", "value"),
    "events": ("time", "end_time", "kind", "title", "source", "detail"),
}
_SPARK_TYPES = {"TIMESTAMP": "TIMESTAMP_NTZ", "VARCHAR": "STRING", "INTEGER": "INT",
                "DOUBLE": "DOUBLE", "BIGINT": "BIGINT"}
META = "rollup.json"


@dataclass(frozen=True)
class RollupRun:
    """What ``rollup_to_files`` did: where, on which engine, the rollups' grid and window
    (``info``), the rows of each table written, and the seconds it took."""

    out: Path
    engine: str
    info: RollupInfo
    tables: dict[str, int]
    seconds: float

    def summary(self) -> str:
        """A few lines: the engine and time, the grid and window, the tables written."""
        rows = sum(self.info.window.outside.values()) if self.info.window else 0
        lines = [f"rollups on {self.engine} in {self.seconds:.1f} s -> {self.out}",
                 self.info.describe()]
        if rows:
            lines.append(f"outside the window: {self.info.outside_line()}")
        lines.append(", ".join(f"{t} {n:,}" for t, n in self.tables.items()))
        return "\n".join(lines)


def _column_types(table: str) -> dict[str, str]:
    spec = next(t for t in TABLES if t.name == table)
    return {c.name: c.type.split()[0] for c in spec.columns}


def _expand_local(pattern: str, flag: str) -> list[str]:
    """A local path or glob as the files it names; a URI (``s3a://``...) is left to the
    engine. No match is a UserError naming the flag."""
    if "://" in pattern:
        return [pattern]
    found = sorted(glob.glob(os.path.join(pattern, "**", "*.parquet"), recursive=True)
                   if os.path.isdir(pattern) else glob.glob(pattern, recursive=True))
    if not found:
        raise UserError(f"{flag} {pattern}: no Parquet file matches (expected a .parquet"
                        " file, a directory of them, or a glob)")
    return found


def _empty_sql(table: str, spark: bool) -> str:
    types = _column_types(table)
    cols = ", ".join(
        f"CAST(NULL AS {_SPARK_TYPES[types[c]] if spark else types[c]}) AS {c}"
        for c in NEEDED[table])
    return f"SELECT {cols} WHERE 1 = 0"


def _duck_sources(con: duckdb.DuckDBPyConnection, sources: dict[str, list[str]]) -> None:
    """The raw tables as DuckDB views over the Parquet files (empty when not given)."""
    for table in RAW_TABLES:
        paths = sources.get(table)
        if not paths:
            con.execute(f"CREATE VIEW {table} AS {_empty_sql(table, spark=False)}")
            continue
        cols = ", ".join(NEEDED[table])
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        try:
            con.execute(f"CREATE VIEW {table} AS SELECT {cols}"
                        f" FROM read_parquet([{listed}], union_by_name = true)")
        except duckdb.Error as exc:
            raise UserError(f"{table} from {paths[0]}: {_first_line(exc)} (expected Parquet"
                            f" with columns {', '.join(NEEDED[table])})") from exc


def _spark_sources(spark: Any, sources: dict[str, list[str]]) -> None:
    """The raw tables as Spark temporary views over the Parquet paths (empty when not
    given)."""
    for table in RAW_TABLES:
        paths = sources.get(table)
        if not paths:
            spark.sql(_empty_sql(table, spark=True)).createOrReplaceTempView(table)
            continue
        try:
            df = spark.read.option("mergeSchema", "true").parquet(*paths)
            missing = [c for c in NEEDED[table] if c not in df.columns]
            if missing:
                raise UserError(f"{table} from {paths[0]}: no column {', '.join(missing)}"
                                f" (expected Parquet with columns {', '.join(NEEDED[table])})")
            df.select(*NEEDED[table]).createOrReplaceTempView(table)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{table} from {paths[0]}: {_first_line(exc)}") from exc


def _driver_tables(engine: Engine, con: duckdb.DuckDBPyConnection) -> None:
    """The roll tables from the engine into the driver's DuckDB, in the store's types."""
    for name in STEP_OUTPUTS:
        table = engine.arrow(name)
        con.register("_from_engine", table)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _from_engine")
        con.unregister("_from_engine")


def _manifest_facts(manifest: Path | None) -> tuple[dict[str, datetime], dict[str, str]]:
    """An ``incident.toml``'s facts (the store's ``incident`` keys: name, window, the
    environment the chain's arithmetic reads) and its ``[window]`` sides, parsed."""
    if manifest is None:
        return {}, {}
    from analysis.ingest.manifest import load_manifest
    from analysis.ingest.timeparse import parse_time

    m = load_manifest(manifest)
    sides: dict[str, datetime] = {}
    with duckdb.connect() as con:
        for k in ("window_start", "window_end"):
            if k in m.facts:  # as ingest reads them: in the manifest's zone, kept in UTC
                t = parse_time(m.facts[k], m.timezone, con)
                if t is None:
                    raise UserError(f"{manifest}: window {k[7:]} {m.facts[k]!r} is not a time;"
                                    " expected RFC 3339 like 2026-04-06T12:00:00Z")
                sides[k] = t
    return sides, {**m.facts, **{k: v.isoformat(sep=" ") for k, v in sides.items()}}


def rollup_to_files(
    sources: dict[str, list[str]],
    out: Path,
    *,
    engine: EngineChoice = "duckdb",
    master: str = "local[*]",
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    manifest: Path | None = None,
    timeout_s: float = 3600.0,
    driver_memory: str = "2g",
) -> RollupRun:
    """Roll up the raw Parquet ``sources`` (table name -> paths or globs; ``requests`` and
    ``log_events`` at least) on ``engine`` and write the rollup tables under ``out``
    (module docstring). ``driver_memory``: the Spark driver's heap (``spark_session``).
    ``out`` is written beside and renamed into place at the end."""
    if not sources.get("requests") and not sources.get("log_events"):
        raise UserError("rollup needs --requests or --errors: the Parquet request or error"
                        " records to roll up")
    flags = {"requests": "--requests", "log_events": "--errors", "metrics": "--metrics",
             "events": "--events"}
    expanded = {t: [f for p in ps for f in _expand_local(p, flags[t])]
                for t, ps in sources.items() if ps}
    origin = "; ".join(f"{flags[t]} {' '.join(ps)}" for t, ps in sources.items() if ps)
    sides, facts = _manifest_facts(manifest)
    asked = {k: v for k, v in facts.items() if k in ("window_start", "window_end")}
    t0 = time.perf_counter()
    driver = duckdb.connect()
    try:
        if engine == "spark":
            from analysis.spark_session import spark_session

            with spark_session(master, timeout_s=timeout_s, driver_memory=driver_memory) as spark:
                _spark_sources(spark, expanded)
                eng: Engine = SparkEngine(spark)
                plan = roll_up(eng, grid_s, start, end, manifest=sides)
                _driver_tables(eng, driver)
                drop_intermediates(eng)
            label = f"spark ({master})"
        else:
            src = duckdb.connect()
            try:
                _duck_sources(src, expanded)
                eng = DuckEngine(src)
                plan = roll_up(eng, grid_s, start, end, manifest=sides)
                _driver_tables(eng, driver)
            finally:
                src.close()
            label = "duckdb"
        info = finish_rollups(driver, plan, asked=asked, origin=f"{origin} ({label})")
        driver.execute("CREATE TABLE incident (key VARCHAR, value VARCHAR)")
        if facts:
            driver.executemany("INSERT INTO incident VALUES (?, ?)", list(facts.items()))
        tables = _write(driver, out, {"fingerprint": rollups_fingerprint(), "origin": origin,
                                      "engine": label})
    finally:
        driver.close()
    return RollupRun(out, label, info, tables, time.perf_counter() - t0)


def _write(con: duckdb.DuckDBPyConnection, out: Path, meta: dict[str, str]) -> dict[str, int]:
    """Every rollup table as ``out/<table>.parquet`` and ``out/rollup.json``, written in a
    folder beside ``out`` and renamed into place (an old ``out`` of ours is replaced)."""
    out = Path(out)
    if out.exists() and not (out / META).exists():
        raise UserError(f"--out {out}: exists and holds no rollups of ours; give a new"
                        " directory (or one an earlier `postmortem rollup` wrote)")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        rows = {}
        for t in (*ROLLUP_TABLES, "incident"):
            con.execute(f"COPY (SELECT * FROM {t}) TO '{tmp / (t + '.parquet')}'"
                        " (FORMAT parquet)")
            rows[t] = int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
        (tmp / META).write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def load_rollups(db: Path, rollups: Path, *, wait: bool = False) -> str:
    """Load the rollup tables ``postmortem rollup`` wrote under ``rollups`` into the store
    ``db`` (created if missing), through the writer lock; one line saying what was loaded.
    A store that holds raw rows is refused (its rollups come from them), as are tables
    another version of the code made."""
    from analysis.access import open_writer, store_errors, writer_lock

    meta_path = Path(rollups) / META
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--rollups {rollups}: no {META} (expected the --out directory of"
                        " `postmortem rollup`)") from exc
    if meta.get("fingerprint") != rollups_fingerprint():
        raise UserError(f"--rollups {rollups}: made by another version of the rollups"
                        f" ({meta.get('fingerprint')}); rerun `postmortem rollup`")
    for t in (*ROLLUP_TABLES, "incident"):
        if not (Path(rollups) / f"{t}.parquet").is_file():
            raise UserError(f"--rollups {rollups}: {t}.parquet is missing")
    with store_errors(db, "writing"), writer_lock(db, wait=wait):
        con = open_writer(db, wait=wait)
        try:
            held = sum(int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
                       for t in RAW_TABLES)
            if held:
                raise UserError(f"--db {db}: holds {held:,} raw rows, whose rollups it keeps;"
                                " load rollups into a store of their own (another --db)")
            for t in ROLLUP_TABLES:
                path = str(Path(rollups) / f"{t}.parquet").replace("'", "''")
                con.execute(f"CREATE OR REPLACE TABLE {t} AS SELECT * FROM read_parquet('{path}')")
            mark_rollups(con)
            # the manifest's facts (name, window, environment) as ingest keeps them
            facts = str(Path(rollups) / "incident.parquet").replace("'", "''")
            con.execute(f"INSERT OR REPLACE INTO incident SELECT key, value"
                        f" FROM read_parquet('{facts}')")
            con.execute("CHECKPOINT")
        finally:
            con.close()
    rows = meta.get("rows", {})
    return (f"rollups loaded from {rollups} ({meta.get('engine')}): {rows.get('signals', 0):,}"
            f" signal rows, {rows.get('roll_callers', 0):,} caller rows; raw rows stay in"
            f" {meta.get('origin')}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
