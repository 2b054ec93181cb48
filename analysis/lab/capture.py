"""The files a lab run leaves, in the formats of docs/formats.md, and a per-second view.

The data plane writes four files while it runs (see ``dataplane.go``):

- ``requests.jsonl``: the access log, slog-style JSON lines (caller, uris,
  status, duration_ms, host, dc), one line per GetPostRecord request, written
  when it ends and stamped with its arrival;
- ``dataplane-errors.jsonl``: the service's own error log, one line per failed
  cache operation with Go's own error text;
- ``metrics.csv``: CSV long form ``time,metric,value,instance``, one sample
  per metric per second, stamped on whole seconds: from a separate sampler
  process (so the data plane's load cannot starve it) ``node_sockstat_TCP_tw``
  and ``node_sockstat_TCP_inuse`` from the namespace's ``/proc/net/sockstat``,
  memcached's ``curr_connections`` and ``total_connections`` as
  ``memcached_current_connections`` and ``memcached_connections_total``, and
  the data plane's OS threads as ``go_threads``; from the data plane itself
  ``go_goroutines`` and ``memcache_client_dials_total`` (every dial attempted,
  failed ones included: a counter); and, counted from the request log after the run, the
  user-facing ``appview_requests_per_second`` (successes) and
  ``appview_request_errors_per_second``;
- ``events.csv``: the run's timeline (variant, batch caller's start and end).

After the run they are gzip-compressed (deterministic headers) and an
``incident.toml`` manifest is written beside them with the window, the
environment facts the analysis reads (``ephemeral_port_range``,
``time_wait_s``, ``idle_pool``) and the kind of each file.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from analysis.ingest.neterr import errno_class

RAW_FILES = {
    "requests.jsonl": ("requests", "jsonl"),
    "dataplane-errors.jsonl": ("errors", "jsonl"),
    "metrics.csv": ("metrics", "csv-long"),
    "events.csv": ("events", "csv"),
}
MANIFEST = "incident.toml"


@dataclass(frozen=True)
class Facts:
    """What the manifest records about a run: environment and load."""

    variant: str
    port_range: tuple[int, int]
    idle_pool: int
    concurrency_limit: int | None
    source_addresses: str
    batch_caller: str
    batch_size: int
    batches: int
    user_lookups_per_s: int
    scale: float
    seed: int
    time_wait_s: int = 60


PARTIAL_METRICS = ("sampler-metrics.csv", "runtime-metrics.csv")
USER_METRICS = ("appview_requests_per_second", "appview_request_errors_per_second")


def finish_metrics(out: Path, batch_caller: str) -> Path:
    """Merge the run's metric files into ``metrics.csv``, adding the user-facing rates.

    The sampler process and the data plane each wrote their own samples; the
    user-facing successes and failures per second (every caller but the batch
    caller) are counted from the request log, second by second, and stamped
    at the end of their second like the other samples. Samples outside the
    request log's seconds (the sampler starts a little before the load and
    stops a little after) are dropped, so every series covers the same span.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    parts = [str(out / n) for n in PARTIAL_METRICS if (out / n).exists()]
    target = out / "metrics.csv"
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    con.execute(
        f"""
        COPY (
          WITH req AS (
            SELECT date_trunc('second', CAST(time AS TIMESTAMP)) AS s, status
            FROM read_json(?, format='newline_delimited',
                           columns={{'time': 'VARCHAR', 'caller': 'VARCHAR', 'status': 'VARCHAR'}})
            WHERE caller <> ?),
          grid AS (SELECT unnest(generate_series(min(s), max(s), INTERVAL 1 SECOND)) AS s FROM req),
          per_s AS (
            SELECT grid.s, count(req.status) FILTER (WHERE req.status = 'ok') AS ok,
                   count(req.status) FILTER (WHERE req.status <> 'ok') AS failed
            FROM grid LEFT JOIN req USING (s) GROUP BY grid.s)
          SELECT time, metric, value, instance FROM read_csv(?, header=true, columns={{
            'time': 'VARCHAR', 'metric': 'VARCHAR', 'value': 'DOUBLE', 'instance': 'VARCHAR'}})
          WHERE CAST(time AS TIMESTAMP) BETWEEN (SELECT min(s) + INTERVAL 1 SECOND FROM per_s)
                                            AND (SELECT max(s) + INTERVAL 1500 MILLISECOND
                                                 FROM per_s)
          UNION ALL
          SELECT strftime(s + INTERVAL 1 SECOND, '{fmt}'), '{USER_METRICS[0]}', ok, 'lab-dp'
          FROM per_s
          UNION ALL
          SELECT strftime(s + INTERVAL 1 SECOND, '{fmt}'), '{USER_METRICS[1]}', failed, 'lab-dp'
          FROM per_s
          ORDER BY 1, 2
        ) TO '{target}' (HEADER, DELIMITER ',')
        """,
        [str(out / "requests.jsonl"), batch_caller, parts],
    )
    for n in PARTIAL_METRICS:
        (out / n).unlink(missing_ok=True)
    return target


def compress(out: Path) -> list[Path]:
    """Gzip each raw capture file in ``out`` (mtime 0, no name: same bytes, same file)."""
    done = []
    for name in RAW_FILES:
        src = out / name
        if not src.exists():
            continue
        dst = out / f"{name}.gz"
        with src.open("rb") as fin, dst.open("wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
        ) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        src.unlink()
        done.append(dst)
    return done


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_manifest(out: Path, facts: Facts, start: dt.datetime, end: dt.datetime) -> Path:
    """Write ``incident.toml``: window, environment facts, and each file's kind."""
    lo, hi = facts.port_range
    top = {
        "name": f"lab-{facts.variant}",
        "description": (
            f"real reproduction in a private network namespace: variant {facts.variant},"
            f" memcached on loopback, {facts.batch_caller} sends {facts.batches} batches of"
            f" {facts.batch_size} URIs"
        ),
        "timezone": "UTC",
        "ephemeral_port_range": f"{lo}-{hi}",
        "time_wait_s": facts.time_wait_s,
        "idle_pool": facts.idle_pool,
        "tcp_tw_reuse": 0,
        "source_addresses": facts.source_addresses,
        "lab_variant": facts.variant,
        "lab_batch_caller": facts.batch_caller,
        "lab_batch_size": facts.batch_size,
        "lab_batches": facts.batches,
        "lab_user_lookups_per_s": facts.user_lookups_per_s,
        "lab_scale": facts.scale,
        "lab_seed": facts.seed,
    }
    if facts.concurrency_limit is not None:
        top["concurrency_limit"] = facts.concurrency_limit
    iso = "%Y-%m-%dT%H:%M:%SZ"
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    lines += ["", "[window]", f'start = "{start.strftime(iso)}"', f'end = "{end.strftime(iso)}"']
    for name, (kind, fmt) in RAW_FILES.items():
        lines += ["", "[[files]]", f'glob = "{name}*"', f'kind = "{kind}"', f'format = "{fmt}"']
    path = out / MANIFEST
    path.write_text("\n".join(lines) + "\n")
    return path


def _capture_file(out: Path, name: str) -> str:
    for candidate in (out / name, out / f"{name}.gz"):
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(f"{out}: no {name}[.gz]: not a lab capture")


def per_second(out: Path, batch_caller: str = "feed-indexer") -> pl.DataFrame:
    """One row per second of a lab capture, read straight from its files.

    Columns: ``t``; user-facing requests ok / failed (every caller but the
    batch caller); batch requests and their URIs (each request on the second
    it arrived: the log stamps arrivals); error lines by errno class
    (``EADDRNOTAVAIL``, ``EADDRINUSE``, ``other_errors``); ``time_wait``;
    memcached's current connections and new connections per second
    (``dials``); ``goroutines``; ``threads``. Independent of ``ingest``, so
    a run can be checked on its own. A metric sample taken at the end of a
    second (the data plane samples on whole seconds) is shown on that second's
    row, beside the requests and errors logged during it.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE req AS SELECT date_trunc('second', CAST(time AS TIMESTAMP)) AS t, caller,"
        " status, uris FROM read_json(?, format='newline_delimited', columns={'time': 'VARCHAR',"
        " 'caller': 'VARCHAR', 'status': 'VARCHAR', 'uris': 'BIGINT'})",
        [_capture_file(out, "requests.jsonl")],
    )
    con.execute(
        "CREATE TABLE err AS SELECT date_trunc('second', CAST(time AS TIMESTAMP)) AS t, error"
        " FROM read_json(?, format='newline_delimited',"
        " columns={'time': 'VARCHAR', 'error': 'VARCHAR'})",
        [_capture_file(out, "dataplane-errors.jsonl")],
    )
    texts = [r[0] for r in con.execute("SELECT DISTINCT error FROM err").fetchall()]
    classes = pl.DataFrame(
        {"error": texts, "errno": [errno_class(t or "") for t in texts]},
        schema={"error": pl.String, "errno": pl.String},
    )
    con.register("classes", classes)
    con.execute(
        "CREATE TABLE met AS SELECT"
        " date_trunc('second', CAST(time AS TIMESTAMP) - INTERVAL 500 MILLISECOND) AS t, metric,"
        " value FROM read_csv(?, header=true, columns={'time': 'VARCHAR', 'metric': 'VARCHAR',"
        " 'value': 'DOUBLE', 'instance': 'VARCHAR'})",
        [_capture_file(out, "metrics.csv")],
    )
    return con.sql(
        """
        WITH span AS (
          SELECT min(t) AS lo, max(t) AS hi FROM (
            SELECT t FROM met UNION ALL SELECT t FROM req UNION ALL SELECT t FROM err)),
        grid AS (SELECT unnest(generate_series(lo, hi, INTERVAL 1 SECOND)) AS t FROM span),
        r AS (
          SELECT t,
            count(*) FILTER (WHERE caller <> $bc AND status = 'ok') AS user_ok,
            count(*) FILTER (WHERE caller <> $bc AND status <> 'ok') AS user_failed,
            count(*) FILTER (WHERE caller = $bc) AS batch_requests,
            coalesce(sum(uris) FILTER (WHERE caller = $bc), 0) AS batch_uris
          FROM req GROUP BY t),
        e AS (
          SELECT t,
            count(*) FILTER (WHERE errno = 'EADDRNOTAVAIL') AS EADDRNOTAVAIL,
            count(*) FILTER (WHERE errno = 'EADDRINUSE') AS EADDRINUSE,
            count(*) FILTER (WHERE errno NOT IN ('EADDRNOTAVAIL', 'EADDRINUSE')) AS other_errors
          FROM err JOIN classes USING (error) GROUP BY t),
        m AS (
          SELECT t,
            max(value) FILTER (WHERE metric = 'node_sockstat_TCP_tw') AS time_wait,
            max(value) FILTER (WHERE metric = 'memcached_current_connections') AS mc_conns,
            max(value) FILTER (WHERE metric = 'memcached_connections_total') AS mc_total,
            max(value) FILTER (WHERE metric = 'go_goroutines') AS goroutines,
            max(value) FILTER (WHERE metric = 'go_threads') AS threads
          FROM met GROUP BY t)
        SELECT grid.t,
          coalesce(r.user_ok, 0) AS user_ok, coalesce(r.user_failed, 0) AS user_failed,
          coalesce(r.batch_requests, 0) AS batch_requests,
          coalesce(r.batch_uris, 0) AS batch_uris,
          coalesce(e.EADDRNOTAVAIL, 0) AS EADDRNOTAVAIL, coalesce(e.EADDRINUSE, 0) AS EADDRINUSE,
          coalesce(e.other_errors, 0) AS other_errors,
          m.time_wait, m.mc_conns,
          m.mc_total - lag(m.mc_total) OVER (ORDER BY grid.t) AS dials,
          m.goroutines, m.threads
        FROM grid LEFT JOIN r USING (t) LEFT JOIN e USING (t) LEFT JOIN m USING (t)
        ORDER BY grid.t
        """,
        params={"bc": batch_caller},
    ).pl()


@dataclass(frozen=True)
class LabSummary:
    """The claims a lab run supports, computed from its capture.

    ``exhaustion_share`` is the share of error lines that are EADDRNOTAVAIL or
    EADDRINUSE; ``user_failures_outside_batches`` counts failed user requests
    that overlap no batch request (widened by ``slack_s``): the lab's claim is
    that it is zero.
    """

    seconds: int
    error_lines: int
    by_errno: dict[str, int]
    exhaustion_share: float
    example_error: str | None
    time_wait_max: float
    time_wait_plateau: float
    user_requests: int
    user_failures: int
    user_failures_outside_batches: int
    batch_requests: int
    first_batch_start: dt.datetime | None
    first_user_failure: dt.datetime | None


def summarize(out: Path, batch_caller: str = "feed-indexer", slack_s: float = 1.0) -> LabSummary:
    """Summarise a lab capture (see ``LabSummary``)."""
    table = per_second(out, batch_caller)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE req AS SELECT CAST(time AS TIMESTAMP) AS t_start,"
        " CAST(time AS TIMESTAMP) + to_microseconds(CAST(duration_ms * 1000 AS BIGINT)) AS t_end,"
        " caller, status FROM read_json(?, format='newline_delimited', columns={'time': 'VARCHAR',"
        " 'caller': 'VARCHAR', 'status': 'VARCHAR', 'duration_ms': 'DOUBLE'})",
        [_capture_file(out, "requests.jsonl")],
    )
    row = con.sql(
        """
        WITH b AS (SELECT t_start, t_end FROM req WHERE caller = $bc),
        u AS (SELECT * FROM req WHERE caller <> $bc)
        SELECT
          (SELECT count(*) FROM u),
          (SELECT count(*) FROM u WHERE status <> 'ok'),
          (SELECT count(*) FROM u WHERE status <> 'ok' AND NOT EXISTS (
             SELECT 1 FROM b WHERE u.t_start <= b.t_end + to_microseconds($slack)
                              AND u.t_end >= b.t_start - to_microseconds($slack))),
          (SELECT count(*) FROM b),
          (SELECT min(t_start) FROM b),
          (SELECT min(t_start) FROM u WHERE status <> 'ok')
        """,
        params={"bc": batch_caller, "slack": int(slack_s * 1e6)},
    ).fetchall()[0]
    err = con.sql(
        "SELECT error, count(*) FROM read_json(?, format='newline_delimited',"
        " columns={'error': 'VARCHAR'}) GROUP BY error ORDER BY count(*) DESC",
        params=[_capture_file(out, "dataplane-errors.jsonl")],
    ).fetchall()
    by_errno: dict[str, int] = {}
    for text, n in err:
        cls = errno_class(text or "")
        by_errno[cls] = by_errno.get(cls, 0) + n
    total = sum(by_errno.values())
    exhaustion = by_errno.get("EADDRNOTAVAIL", 0) + by_errno.get("EADDRINUSE", 0)
    tw = table["time_wait"].drop_nulls()
    return LabSummary(
        seconds=table.height,
        error_lines=total,
        by_errno=by_errno,
        exhaustion_share=exhaustion / total if total else 0.0,
        example_error=err[0][0] if err else None,
        time_wait_max=float(tw.max()) if tw.len() else 0.0,
        time_wait_plateau=float(tw.quantile(0.9)) if tw.len() else 0.0,
        user_requests=row[0],
        user_failures=row[1],
        user_failures_outside_batches=row[2],
        batch_requests=row[3],
        first_batch_start=row[4],
        first_user_failure=row[5],
    )
