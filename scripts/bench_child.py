"""One measured benchmark job, run in its own process so its peak memory is its own.

``python scripts/bench_child.py JOB '<json args>'`` runs JOB and prints one JSON
line on stdout: the timings of its stages (seconds) and what it produced. The
parent (``scripts/bench.py``) measures wall time and peak RSS around it.

Jobs:

- ``floor``: DuckDB's bare aggregate scan of a request file (``read_json`` or
  ``read_parquet``, one GROUP BY per second and caller): the floor for this work.
- ``pandas``: what a user would write in a notebook: ``read_json(lines=True)``, then
  a per-second groupby.
- ``polars``: ``scan_ndjson`` then ``group_by_dynamic`` per second and caller.
- ``ours``: ``analysis.ingest.ingest_paths`` into a fresh store, then (optionally)
  ``analysis.rollups.build_rollups``, ``analysis.detection.detect_all`` and
  ``analysis.chain.find_chain``, each timed.
- ``convert``: ``postmortem convert`` of a request file into partitioned Parquet.
- ``engine_rollup``: ``postmortem rollup --engine duckdb|spark`` over Parquet records
  (reports ``skipped`` when this checkout has no such command or no PySpark).

All contenders compute the per-(second, caller) aggregates that the suite's
``roll_callers`` rollup holds: request count, error count, URIs summed, their
median, 99th percentile and maximum, and the 99th percentile of latency
(percentiles interpolated linearly, as DuckDB's ``quantile_cont``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def floor(path: str, fmt: str, explain: str | None = None) -> dict[str, Any]:
    """DuckDB reading the file itself, no store: the least work that gives the rollup.

    With ``explain`` (a path), the query's EXPLAIN ANALYZE is written there too.
    """
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if fmt == "jsonl":
        source = (
            f"read_json('{path}', format = 'newline_delimited', columns = {{time: 'TIMESTAMP',"
            " caller: 'VARCHAR', uris: 'INTEGER', status: 'VARCHAR', duration_ms: 'DOUBLE'})"
        )
    elif fmt == "parquet":
        source = f"read_parquet('{path}')"
    else:
        raise ValueError(f"no DuckDB floor for format {fmt!r}")
    # Materialised, as the rollup is: a bare count over the groups would let the
    # optimiser drop every aggregate.
    query = f"""CREATE OR REPLACE TEMP TABLE floor_rollup AS
              SELECT date_trunc('second', time) AS t, caller, count(*) AS n,
                     count(*) FILTER (WHERE status <> 'ok') AS errors,
                     sum(uris) AS uris, quantile_cont(uris, 0.5) AS p50_uris,
                     quantile_cont(uris, 0.99) AS p99_uris, max(uris) AS max_uris,
                     quantile_cont(duration_ms, 0.99) AS p99_ms
              FROM {source} GROUP BY ALL"""
    t0 = time.perf_counter()
    con.execute(query)
    seconds = time.perf_counter() - t0
    n_groups = con.execute("SELECT count(*) FROM floor_rollup").fetchone()[0]
    if explain:
        plan = con.execute("EXPLAIN ANALYZE " + query).fetchall()
        Path(explain).write_text("\n".join(str(row[-1]) for row in plan))
    return {"stages": {"scan+aggregate": seconds}, "groups": n_groups}


def pandas_jsonl(path: str) -> dict[str, Any]:
    """pandas as a notebook user writes it: load everything, then group by second and caller."""
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_json(path, lines=True)
    t1 = time.perf_counter()
    df["time"] = pd.to_datetime(df["time"])
    df["is_error"] = df["status"] != "ok"
    groups = df.groupby([df["time"].dt.floor("s"), "caller"])
    per_second = groups.agg(
        n=("uris", "size"),
        errors=("is_error", "sum"),
        uris=("uris", "sum"),
        p50_uris=("uris", "median"),
        max_uris=("uris", "max"),
    )
    per_second["p99_uris"] = groups["uris"].quantile(0.99)
    per_second["p99_ms"] = groups["duration_ms"].quantile(0.99)
    t2 = time.perf_counter()
    return {"stages": {"read": t1 - t0, "aggregate": t2 - t1}, "groups": len(per_second)}


def polars_jsonl(path: str) -> dict[str, Any]:
    """polars' lazy reader and dynamic group-by, as its user guide shows them."""
    import polars as pl

    t0 = time.perf_counter()
    per_second = (
        pl.scan_ndjson(path)
        .with_columns(pl.col("time").str.to_datetime(time_zone="UTC"))
        .sort("time")
        .group_by_dynamic("time", every="1s", group_by="caller")
        .agg(
            n=pl.len(),
            errors=(pl.col("status") != "ok").sum(),
            uris=pl.col("uris").sum(),
            p50_uris=pl.col("uris").median(),
            p99_uris=pl.col("uris").quantile(0.99, interpolation="linear"),
            max_uris=pl.col("uris").max(),
            p99_ms=pl.col("duration_ms").quantile(0.99, interpolation="linear"),
        )
        .collect()
    )
    return {"stages": {"scan+aggregate": time.perf_counter() - t0}, "groups": per_second.height}


class TimedConnection:
    """A DuckDB connection that records the wall time of every ``execute``/``sql`` call.

    Used only when profiling: it shows which statement of a stage the time goes to.
    Relations from ``sql`` run lazily, so their time shows where they are fetched
    (the cProfile part of the profile names those callers).
    """

    def __init__(self, con: Any) -> None:
        self._con = con
        self.log: list[tuple[float, str]] = []

    def _timed(self, method: str, query: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = getattr(self._con, method)(query, *args, **kwargs)
        self.log.append((time.perf_counter() - t0, " ".join(str(query).split())))
        return result

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("execute", query, *args, **kwargs)

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("sql", query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _write_profile(path: str, con: TimedConnection, prof: Any, stages: dict[str, float]) -> None:
    """Statements by time, then Python functions by cumulative time, into ``path``."""
    import io
    import pstats

    out = io.StringIO()
    out.write("stages (s): " + json.dumps({k: round(v, 3) for k, v in stages.items()}) + "\n\n")
    out.write("DuckDB statements by wall time (execute/sql calls):\n")
    total = sum(d for d, _ in con.log)
    for d, query in sorted(con.log, reverse=True)[:25]:
        out.write(f"{d:9.3f} s {100 * d / max(total, 1e-9):5.1f}%  {query[:220]}\n")
    out.write(f"{total:9.3f} s in {len(con.log)} statements\n\nPython (cProfile, cumulative):\n")
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
    out.write(_explain_top(con))
    Path(path).write_text(out.getvalue())


def _explain_top(con: TimedConnection, n: int = 3) -> str:
    """EXPLAIN ANALYZE of the ``n`` slowest statements that can run again: each is re-run
    inside a transaction that is rolled back, so the store is left as it was. Statements
    that read temporary tables since dropped are skipped."""
    parts = []
    writes = [(d, q) for d, q in con.log if q.upper().startswith(("INSERT", "CREATE", "SELECT"))]
    for d, query in sorted(writes, reverse=True)[:n]:
        try:
            con._con.execute("BEGIN TRANSACTION")
            plan = con._con.execute("EXPLAIN ANALYZE " + query).fetchall()
            text = "\n".join(str(row[-1]) for row in plan)
        except Exception as exc:  # noqa: BLE001 - a profile is best effort
            text = f"(not re-runnable: {str(exc).splitlines()[0][:200]})"
        finally:
            con._con.execute("ROLLBACK")
        parts.append(f"\nEXPLAIN ANALYZE of a {d:.3f} s statement: {query[:300]}\n{text}\n")
    return "".join(parts)


def ours(
    paths: list[str],
    db: str,
    steps: list[str] | None = None,
    profile: str | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """The suite itself: ingest ``paths`` into a fresh store at ``db``, then run ``steps``
    (any of ``rollups``, ``detection``, ``chain``), timing each. The store is deleted
    afterwards unless ``keep``.

    With ``profile`` (a path), every DuckDB statement is timed and the run is under
    cProfile; both are written there, to show where the time goes.
    """
    from analysis import store
    from analysis.ingest import ingest_paths

    steps = steps or []
    _remove_store(db)
    con: Any = store.connect(db)
    prof = None
    if profile:
        import cProfile

        con = TimedConnection(con)
        prof = cProfile.Profile()
        prof.enable()
    stages: dict[str, float] = {}
    out: dict[str, Any] = {"stages": stages}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        stages[name] = time.perf_counter() - t0
        return result

    for path in paths:
        timed(f"ingest:{Path(path).name}", lambda p=path: ingest_paths(con, [Path(p)]))
    if "rollups" in steps:
        from analysis.rollups import build_rollups

        info = timed("rollups", lambda: build_rollups(con))
        out["rollup"] = {"n_buckets": info.n_buckets, "n_signals": info.n_signals}
    if "detection" in steps:
        from analysis.detection import detect_all

        windows = timed("detection", lambda: detect_all(con))
        out["anomalies"] = windows.height
    if "chain" in steps:
        from analysis.chain import find_chain

        chain = timed("chain", lambda: find_chain(con))
        out["chain"] = repr(chain)[:300]
    if prof is not None:
        prof.disable()
        _write_profile(str(profile), con, prof, stages)
    out["rows"] = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("requests", "log_events", "metrics", "rejects")
    }
    out["parts_bytes"] = sum(p.stat().st_size for p in Path(db + ".parts").rglob("*")
                             if p.is_file())
    out["store_bytes"] = Path(db).stat().st_size
    con.close()
    if not keep:
        _remove_store(db)
    return out


def _remove_store(db: str) -> None:
    """The store ``db``, its log and its Parquet parts (``<db>.parts``)."""
    import shutil

    for suffix in ("", ".wal"):
        Path(db + suffix).unlink(missing_ok=True)
    shutil.rmtree(db + ".parts", ignore_errors=True)


def convert(paths: list[str], out: str) -> dict[str, Any]:
    """``postmortem convert`` of ``paths`` into ``out`` (replaced), timed."""
    import shutil

    from analysis.ingest.convert import convert as run

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = run([Path(p) for p in paths], Path(out))
    return {"stages": {"convert": time.perf_counter() - t0}, "rows": result.rows}


def engine_rollup(engine: str, requests: str, out: str, master: str = "local[2]") -> dict[str, Any]:
    """``postmortem rollup --engine ENGINE --requests REQUESTS --out OUT``, timed in
    process (a Spark run includes its session's start). ``skipped`` when the command or
    PySpark is not there."""
    import importlib.util

    if importlib.util.find_spec("analysis.cli.rollup") is None:
        return {"stages": {}, "skipped": "spark engine not available (no postmortem rollup)"}
    if engine == "spark" and importlib.util.find_spec("pyspark") is None:
        return {"stages": {}, "skipped": "pyspark not importable"}
    from analysis.cli import main as pm

    argv = ["rollup", "--engine", engine, "--requests", requests, "--out", out]
    t0 = time.perf_counter()
    # a local Spark runs every task in its driver's JVM: the exact time quartiles that
    # infer the window hold every distinct time of a table at once (2g fails at 10M rows)
    code = pm(argv + (["--master", master, "--driver-memory", "6g"] if engine == "spark" else []))
    if code:
        raise SystemExit(f"postmortem {' '.join(argv)} exited {code}")
    return {"stages": {f"rollup:{engine}": time.perf_counter() - t0}}


def generate(
    scale: int, root: str, seed: int, window_s: int, formats: list[str] | None = None
) -> dict[str, Any]:
    """Write the incident's files at ``scale`` request rows (see ``bench_data``)."""
    import bench_data

    files = bench_data.generate(
        scale,
        Path(root),
        seed=seed,
        window_s=window_s,
        formats=tuple(formats or bench_data.FORMATS),
    )
    return {
        "stages": {"generate": files.total_s},
        "files": {k: str(p) for k, p in files.files.items()},
        "per_file_s": files.seconds,
        "bytes": files.bytes(),
        "rows": files.rows,
    }


JOBS: dict[str, Callable[..., dict[str, Any]]] = {
    "floor": floor,
    "pandas": pandas_jsonl,
    "polars": polars_jsonl,
    "ours": ours,
    "generate": generate,
    "convert": convert,
    "engine_rollup": engine_rollup,
}


def main(argv: list[str]) -> int:
    """Run the job named in ``argv[0]`` with the JSON keyword arguments in ``argv[1]``."""
    job, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    result = JOBS[job](**kwargs)
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
