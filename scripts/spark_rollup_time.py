"""Time ``postmortem rollup`` on DuckDB and on Spark (local mode) at a given number of rows.

    python scripts/spark_rollup_time.py --rows 1000000 10000000 --cores 2 [--engines duckdb spark]

Writes canonical request records (``--rows`` of them, over an 8-hour window, the
bench's callers and batch sizes) and error records (a tenth as many) as Parquet
under ``--dir`` (default ``build/spark-time``), then runs the rollups on each engine
with ``--cores`` cores (Spark ``local[N]``; DuckDB uses every core of the machine, so
give ``--cores`` the machine's count) and prints one line per
(rows, engine): seconds, and rows per second per core, the figure
``docs/scale-out.md`` scales from. A Spark time includes starting and stopping its JVM
(printed apart: ``start`` is a session doing nothing). CPU seconds are printed too
(this process and its ended children, the JVM included): on a shared machine they
measure the work better than the wall time. Deterministic: a row's values
are hashes of its number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.rollup_files import rollup_to_files  # noqa: E402

WINDOW = ("2026-04-06 12:00:00", 8 * 3600)


def _h(col: str, k: int) -> str:
    return f"(hash({col}, {k}) % 1000000)::DOUBLE / 1e6"


def write_inputs(root: Path, rows: int) -> dict[str, list[str]]:
    """Canonical requests and log_events as Parquet (a few files each)."""
    root.mkdir(parents=True, exist_ok=True)
    req, err = root / "requests.parquet", root / "errors.parquet"
    if req.exists() and err.exists():
        return {"requests": [str(req)], "log_events": [str(err)]}
    start, span = WINDOW
    con = duckdb.connect()
    con.execute(f"""COPY (
        SELECT TIMESTAMP '{start}' + to_microseconds((i * {span * 1_000_000} // {rows})::BIGINT)
                 AS time,
               'GetPostRecord' AS method,
               CASE WHEN {_h('i', 1)} < 0.0001 THEN 'feed-indexer'
                    ELSE ['appview', 'feed-generator', 'search-indexer', 'notif-service']
                         [1 + (hash(i, 2) % 4)::INT] END AS caller,
               CASE WHEN {_h('i', 1)} < 0.0001 THEN 15000 + (hash(i, 3) % 5000)::INT
                    ELSE 1 + (hash(i, 3) % 50)::INT END AS uris,
               CASE WHEN {_h('i', 4)} < 0.02 THEN 'unavailable' ELSE 'ok' END AS status,
               1 + 50 * {_h('i', 5)} AS duration_ms,
               'dp-' || (1 + hash(i, 6) % 8) AS host,
               CASE WHEN hash(i, 7) % 2 = 0 THEN 'us-east' ELSE 'us-west' END AS dc,
               1 AS file_id, i + 1 AS line
        FROM range({rows}) t(i)) TO '{req}' (FORMAT parquet)""")
    n_err = max(rows // 10, 1)
    con.execute(f"""COPY (
        SELECT TIMESTAMP '{start}' + to_microseconds((i * {span * 1_000_000} // {n_err})::BIGINT)
                 AS time,
               'error' AS level, 'cache get failed' AS msg, 'dp-' || (1 + hash(i, 6) % 8) AS host,
               'dial tcp: address already in use' AS error, 'dial' AS op,
               '127.32.0.1:0' AS local_addr, '10.0.0.1:11211' AS remote_addr,
               CASE WHEN hash(i, 8) % 5 = 0 THEN 'ETIMEDOUT' ELSE 'EADDRINUSE' END
                 AS errno_class,
               ['post', 'user', 'interaction counts'][1 + (hash(i, 9) % 3)::INT] AS cache,
               1.0 AS sample_rate, 2 AS file_id, i + 1 AS line
        FROM range({n_err}) t(i)) TO '{err}' (FORMAT parquet)""")
    con.close()
    return {"requests": [str(req)], "log_events": [str(err)]}


def _cpu() -> float:
    """CPU seconds of this process and its ended children (Spark's JVM, once stopped)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def spark_start_s(cores: int) -> float:
    """Seconds to start and stop a local Spark session that does nothing."""
    from analysis.spark_session import spark_session

    t0 = time.perf_counter()
    with spark_session(f"local[{cores}]") as spark:
        spark.range(1).count()
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--engines", nargs="+", choices=("duckdb", "spark"),
                   default=["duckdb", "spark"])
    p.add_argument("--dir", type=Path, default=Path("build/spark-time"))
    p.add_argument("--grid", type=int, default=1)
    args = p.parse_args()
    results = []
    # the window given, as at scale (inferring it takes a global exact percentile of
    # every row's time, in one task: out of memory at 10M rows in a 2 GB local JVM)
    lo = datetime.fromisoformat(WINDOW[0])
    hi = lo + timedelta(seconds=WINDOW[1])
    if "spark" in args.engines:
        s = spark_start_s(args.cores)
        print(f"spark local[{args.cores}] start+stop: {s:.1f} s", flush=True)
        results.append({"engine": "spark-start", "seconds": round(s, 2)})
    for rows in args.rows:
        sources = write_inputs(args.dir / f"rows-{rows}", rows)
        total = rows + max(rows // 10, 1)
        for engine in args.engines:
            out = args.dir / f"out-{rows}-{engine}"
            t0, c0 = time.perf_counter(), _cpu()
            rollup_to_files(sources, out, engine=engine, master=f"local[{args.cores}]",
                            grid_s=args.grid, timeout_s=7200, start=lo, end=hi)
            dt, cpu = time.perf_counter() - t0, _cpu() - c0
            per_core = total / dt / args.cores
            print(f"{rows:>12,} request rows ({total:,} rows) {engine:>6}: {dt:7.1f} s wall,"
                  f" {cpu:7.1f} CPU s; {per_core:,.0f} rows/s per core (wall),"
                  f" {total / cpu:,.0f} rows per CPU second", flush=True)
            results.append({"rows": total, "engine": engine, "seconds": round(dt, 2),
                            "cpu_seconds": round(cpu, 2), "rows_per_s_per_core": round(per_core),
                            "rows_per_cpu_s": round(total / cpu)})
            shutil.rmtree(out, ignore_errors=True)
    (args.dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
