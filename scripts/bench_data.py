"""Benchmark input: the april-2026 incident's exports at a chosen number of request rows.

The bench needs tens of millions of rows written in seconds, so the request and
error logs are written by DuckDB (``COPY ... TO``) straight from a ``range()``,
in the exact formats of ``/work/shared/formats.md`` (slog JSON lines, CSV and
Parquet with the same fields, logfmt, Go ``log`` text, Prometheus range-query
JSON). The incident's shape follows the reference outage: an 8-hour window of
~30-minute up/down cycles; in each down phase user requests fail and the data
plane logs cache errors (EADDRINUSE from the fixed 127.32.0.1 source); a
``feed-indexer`` caller sends under 3 requests/s with 15,000-20,000 URIs each.
Every pseudo-random choice is a hash of the row number and the seed, so a
seed gives the same bytes on every run, in parallel or not.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

WINDOW_START = datetime(2026, 4, 6, 12, 0, 0)
WINDOW_S = 8 * 3600
CYCLE_S = 1800  # one up/down cycle of the death spiral
DOWN_FROM_S = 1200  # within a cycle, seconds [1200, 1800) are the down phase
CULPRIT_RPS = 2.5  # the new internal caller: under 3 requests per second
ERROR_LINES_PER_REQUEST = 0.1  # error-log lines per request row, in each error format
HOSTS = 8

#: Format keys, in the order the bench ingests them.
FORMATS: tuple[str, ...] = (
    "requests/jsonl",
    "requests/parquet",
    "requests/csv",
    "errors/jsonl",
    "errors/logfmt",
    "errors/gotext",
    "metrics/prometheus",
)

FILE_NAMES: dict[str, str] = {
    "requests/jsonl": "requests.jsonl",
    "requests/parquet": "requests.parquet",
    "requests/csv": "requests.csv",
    "errors/jsonl": "errors.jsonl",
    "errors/logfmt": "errors.logfmt",
    "errors/gotext": "errors.log",
    "metrics/prometheus": "prometheus.json",
}


@dataclass(frozen=True)
class BenchFiles:
    """Files written for one scale: path and row count per format key, and how long each took."""

    scale: int
    root: Path
    files: dict[str, Path]
    rows: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        """Wall time of the whole generation."""
        return sum(self.seconds.values())

    def bytes(self) -> dict[str, int]:
        """Size on disk of each file."""
        return {k: p.stat().st_size for k, p in self.files.items()}


def _u(i: str, k: int, seed: int) -> str:
    """SQL for a uniform [0, 1) draw keyed by row expression ``i``, stream ``k`` and the seed."""
    return f"((hash({i}, {k}, {seed}) % 1000000007) / 1000000007.0)"


def _request_sql(n: int, seed: int, window_s: int) -> str:
    """SELECT of ``n`` request rows in time order, fields in slog order."""
    window_us = window_s * 1_000_000
    culprit_share = min(0.5, CULPRIT_RPS * window_s / max(n, 1))
    start = WINDOW_START.strftime("%Y-%m-%d %H:%M:%S")
    return f"""
    WITH r AS (
      SELECT i,
             TIMESTAMP '{start}' + to_microseconds((i * {window_us} // {n})::BIGINT) AS ts,
             {_u("i", 1, seed)} AS u_caller,
             {_u("i", 2, seed)} AS u_uris,
             {_u("i", 3, seed)} AS u_status,
             {_u("i", 4, seed)} AS u_dur,
             {_u("i", 5, seed)} AS u_method
      FROM range({n}) t(i)
    ), c AS (
      SELECT *,
             (epoch(ts) - epoch(TIMESTAMP '{start}'))::BIGINT % {CYCLE_S} >= {DOWN_FROM_S}
               AS down,
             CASE WHEN u_caller < {culprit_share} THEN 'feed-indexer'
                  WHEN u_caller < {culprit_share} + 0.6 * (1 - {culprit_share}) THEN 'appview'
                  WHEN u_caller < {culprit_share} + 0.8 * (1 - {culprit_share}) THEN 'feed-gen'
                  WHEN u_caller < {culprit_share} + 0.93 * (1 - {culprit_share}) THEN 'search'
                  ELSE 'notifications' END AS caller
      FROM r
    ), s AS (
      SELECT *,
             CASE WHEN caller = 'feed-indexer' THEN 15000 + floor(u_uris * 5001)::INT
                  ELSE 1 + floor(u_uris * 50)::INT END AS uris,
             CASE WHEN down AND u_status < 0.45 THEN 'error'
                  WHEN u_status > 0.9995 THEN 'DeadlineExceeded'
                  ELSE 'ok' END AS status
      FROM c
    )
    SELECT ts AS time,
           CASE WHEN status = 'ok' THEN 'INFO' ELSE 'ERROR' END AS level,
           'rpc' AS msg,
           CASE WHEN caller = 'feed-indexer' OR u_method < 0.5 THEN 'GetPostRecord'
                WHEN u_method < 0.8 THEN 'GetProfile' ELSE 'GetFeed' END AS method,
           caller,
           uris,
           status,
           round(CASE WHEN down THEN 200 ELSE 5 END * (0.2 + u_dur * u_dur * 4)
                 + uris * 0.05, 1) AS duration_ms,
           'dp-' || (i % {HOSTS}) AS host,
           CASE WHEN i % {HOSTS} < {HOSTS // 2} THEN 'us-east' ELSE 'us-west' END AS dc
    FROM s ORDER BY i
    """


def _error_sql(n: int, seed: int, window_s: int) -> str:
    """SELECT of ``n`` cache-error events in time order, all inside down phases."""
    down_per_cycle = CYCLE_S - DOWN_FROM_S
    n_down = max(1, window_s // CYCLE_S) * down_per_cycle
    start = WINDOW_START.strftime("%Y-%m-%d %H:%M:%S")
    return f"""
    WITH e AS (
      SELECT i, (i * {n_down} // {n})::BIGINT AS pos,
             {_u("i", 6, seed)} AS u_cache, {_u("i", 7, seed)} AS u_us,
             {_u("i", 8, seed)} AS u_op
      FROM range({n}) t(i)
    )
    SELECT TIMESTAMP '{start}'
             + to_seconds(pos // {down_per_cycle} * {CYCLE_S} + {DOWN_FROM_S}
                          + pos % {down_per_cycle})
             + to_microseconds((u_us * 999999)::BIGINT) AS time,
           CASE WHEN u_op < 0.5 THEN 'set' ELSE 'get' END AS verb,
           CASE WHEN u_cache < 0.55 THEN 'post' WHEN u_cache < 0.8 THEN 'user'
                ELSE 'interaction counts' END AS cache,
           'dial tcp 127.32.0.1:0->127.0.0.1:11211: bind: address already in use' AS error,
           'dp-' || (i % {HOSTS}) AS host,
           i
    FROM e ORDER BY i
    """


def _copy(con: duckdb.DuckDBPyConnection, select: str, path: Path, options: str) -> None:
    """``COPY (select) TO path (options)``."""
    con.execute(f"COPY ({select}) TO '{path}' ({options})")


_LINES = "FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x1f'"


def write_prometheus(path: Path, *, window_s: int = WINDOW_S, step_s: int = 15) -> int:
    """A Prometheus ``query_range`` matrix response for the window; returns the sample count.

    Series: TIME_WAIT sockets per host, Go threads per host and the AppView request rate,
    following the up/down cycles. Fixed size: metrics do not grow with request rows.
    """
    start = WINDOW_START.replace(tzinfo=UTC).timestamp()
    steps = window_s // step_s
    results = []
    for h in range(HOSTS):
        for name, up, down in (("node_sockstat_TCP_tw", 900, 28232), ("go_threads", 150, 1500)):
            values = []
            for k in range(steps):
                t = start + k * step_s
                in_down = (k * step_s) % CYCLE_S >= DOWN_FROM_S
                v = (down if in_down else up) * (1 + 0.02 * math.sin(k + h))
                values.append([t, f"{v:.0f}"])
            results.append(
                {"metric": {"__name__": name, "instance": f"dp-{h}:9100"}, "values": values}
            )
    rate = [
        [start + k * step_s, f"{(9000 if (k * step_s) % CYCLE_S >= DOWN_FROM_S else 18000):.1f}"]
        for k in range(steps)
    ]
    results.append({"metric": {"__name__": "appview_requests_per_second"}, "values": rate})
    body = {"status": "success", "data": {"resultType": "matrix", "result": results}}
    path.write_text(json.dumps(body))
    return sum(len(r["values"]) for r in results)


def generate(
    scale: int,
    root: Path,
    *,
    seed: int = 1,
    formats: tuple[str, ...] = FORMATS,
    window_s: int = WINDOW_S,
) -> BenchFiles:
    """Write the incident's files with ``scale`` request rows (and error lines in proportion)
    over ``window_s`` seconds under ``root``, one file per format key in ``formats``; time
    each file. A window shorter than one cycle still has one down phase."""
    import duckdb

    root.mkdir(parents=True, exist_ok=True)
    n_err = max(1, round(scale * ERROR_LINES_PER_REQUEST))
    files: dict[str, Path] = {}
    rows: dict[str, int] = {}
    seconds: dict[str, float] = {}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    window_s = max(window_s, CYCLE_S)
    req, err = _request_sql(scale, seed, window_s), _error_sql(n_err, seed, window_s)
    # The rows are computed once, into Parquet (typed); the text formats are written from it.
    req_base, err_base = root / FILE_NAMES["requests/parquet"], root / "_errors.parquet"
    iso = "strftime(time, '%Y-%m-%dT%H:%M:%S.%fZ')"
    base = {"requests": (req, req_base), "errors": (err, err_base)}
    jobs = {
        "requests/jsonl": (
            f"SELECT * REPLACE ({iso} AS time) FROM read_parquet('{req_base}')",
            "FORMAT json",
        ),
        "requests/csv": (
            f"SELECT * REPLACE ({iso} AS time) FROM read_parquet('{req_base}')",
            "FORMAT csv, HEADER true",
        ),
        "errors/jsonl": (
            f"""SELECT {iso} AS time, 'ERROR' AS level,
                       'failed to ' || verb || ' ' || cache || ' cache item' AS msg,
                       'at://did:plc:bench' || (i % 9973) || '/app.bsky.feed.post/' || i AS uri,
                       error, host FROM read_parquet('{err_base}')""",
            "FORMAT json",
        ),
        "errors/logfmt": (
            f"""SELECT 'time=' || {iso}
                       || ' level=error msg="failed to ' || verb || ' ' || cache
                       || ' cache item" error="' || error || '" host=' || host
                FROM read_parquet('{err_base}')""",
            _LINES,
        ),
        "errors/gotext": (
            f"""SELECT strftime(time, '%Y/%m/%d %H:%M:%S') || ' memcache: failed to ' || verb
                       || ' ' || cache || ' cache item: ' || error
                FROM read_parquet('{err_base}')""",
            _LINES,
        ),
    }
    made: set[str] = set()
    for key in formats:
        path = root / FILE_NAMES[key]
        t0 = time.perf_counter()
        family = key.split("/")[0]
        if family in base and family not in made:
            select, target = base[family]
            _copy(con, select, target, "FORMAT parquet, COMPRESSION zstd")
            made.add(family)
        if key == "metrics/prometheus":
            rows[key] = write_prometheus(path, window_s=window_s)
        elif key != "requests/parquet":
            select, options = jobs[key]
            _copy(con, select, path, options)
        if family in base:
            rows[key] = scale if family == "requests" else n_err
        seconds[key] = time.perf_counter() - t0
        files[key] = path
    con.close()
    err_base.unlink(missing_ok=True)
    if "requests/parquet" not in formats:
        req_base.unlink(missing_ok=True)
    return BenchFiles(scale, root, files, rows, seconds)


def window(window_s: int = WINDOW_S) -> tuple[datetime, datetime]:
    """The incident window the generated files cover (UTC, naive)."""
    return WINDOW_START, WINDOW_START + timedelta(seconds=max(window_s, CYCLE_S))
