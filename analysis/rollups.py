"""Rollups: every source on one dense time grid, built in DuckDB SQL.

``build_rollups`` turns the canonical tables (``requests``, ``log_events``,
``metrics``, ``events``) into per-bucket tables and one long-form ``signals``
table in which every series shares the same grid, so that detection and
lead/lag can treat every signal alike.

Rules (the data dictionary of the rollups):

- Buckets are aligned to the Unix epoch: bucket ``t`` holds ``[t, t + grid_s)``.
  The grid spans the data of ``requests``, ``log_events`` and ``metrics``
  (not ``events``: a deploy a week earlier must not stretch it) inside the
  incident window: ``--start/--end``, else the ``incident`` keys
  ``window_start``/``window_end``, else where the rows are dense
  (``analysis.window``). Rows outside it are kept in the store, left out of
  every roll table and counted (``RollupInfo.window.outside``, ``roll_info``).
- The step ``grid_s`` is given (``--grid``) or chosen from the window's length:
  the finest of 1, 5, 10, 30, 60, 300, 900, 3600 s with at most 100,000 buckets.
- ``roll_heavy`` holds, as they were logged, the requests in the grid with more than
  ``HEAVY_URIS`` URIs: the rare batches that can dial past an idle pool.
- Counts (requests, URIs, log lines) are per-second rates: the bucket's count
  divided by ``grid_s``. Log lines weigh ``1/sample_rate`` (NULL or
  non-positive sample_rate = 1). Empty buckets are 0.
- A log line is an error when it has an errno class or a level of
  error/fatal/panic/critical.
- Metrics: counters (names ending ``_total``, ``_count``, ``_sum``,
  ``_bucket`` or in ``KNOWN_COUNTERS``) become per-second rates between
  consecutive samples; a drop is a counter reset, whose increase is the new
  value. The rate of ``(prev, cur]`` is spread over the buckets of that
  interval. Gauges hold their value from a sample until the next one (the last
  sample for the series' median sampling step), at most ``stale_s`` seconds
  (Prometheus' lookback); beyond that, and for metric
  rates with no samples, buckets are NULL. Samples more than ``stale_s`` apart
  give no counter rate. NaN samples are skipped.
- ``metric:<name>`` aggregates over label sets: sum for counters, rates and
  connection counts (``SUM_PATTERN``), max otherwise (TIME_WAIT per host,
  threads per process, GC pause quantiles, loss ratios: the worst instance).
  ``metric:<name>{k=v,...}`` signals exist per label set when a metric has more
  than one label set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from analysis.errors import UserError
from analysis.fingerprint import source_fingerprint
from analysis.progress import progress_line
from analysis.rollup_engines import (
    DuckEngine,
    RollupPlan,
    drop_intermediates,
    output_tables,
    roll_up,
)
from analysis.rollup_sql import (
    DUCKDB,
    HEAVY_URIS,
    RAW_TABLES,
    SUM_PATTERN,
    is_counter_sql,
)
from analysis.signal_id import SignalId
from analysis.window import MAX_BUCKETS, TARGET_BUCKETS, GridSource, Window

ROLLUP_TABLES: tuple[str, ...] = ("signals", "signal_catalog", "roll_callers", "roll_errors",
                                  "roll_metrics", "roll_series", "roll_events", "roll_heavy",
                                  "roll_info")
"""The derived tables ``build_rollups`` makes; ``ingest`` stores them (``ensure_rollups``)."""
#: ``roll_info.origin`` of rollups built from the store's own raw tables; any other value
#: names where ``postmortem rollup`` read the raw rows the store does not hold
STORE_ORIGIN = "store"

__all__ = ["HEAVY_URIS", "MAX_BUCKETS", "RollupInfo", "build_rollups", "ensure_rollups",
           "rollup_info"]


@dataclass(frozen=True)
class RollupInfo:
    """What ``build_rollups`` built: the grid (step, first and last bucket, bucket count),
    how many signals it holds, whether the step was given or chosen (``grid_from``), and
    the incident window with where it came from and the rows left outside it
    (``analysis.window.Window``)."""

    grid_s: int
    start: datetime | None
    end: datetime | None
    n_buckets: int
    n_signals: int
    grid_from: GridSource = "auto"
    window: Window | None = None
    origin: str = STORE_ORIGIN
    """Where the raw rows are: ``STORE_ORIGIN`` (the store's tables), else the sources
    ``postmortem rollup`` read, which the store does not hold (``raw_rows_absent``)."""

    @property
    def raw_in_store(self) -> bool:
        """Whether the store holds the raw rows these rollups were made from."""
        return self.origin == STORE_ORIGIN

    def describe(self) -> str:
        """One line: the grid and the window, and why each was used."""
        why = ("set by --grid" if self.grid_from == "flag" else
               f"chosen for the window's length, at most {TARGET_BUCKETS:,} buckets")
        w = self.window
        span = "no data" if w is None or w.start is None else (
            f"{_iso(w.start)} to {_iso(w.end)} ({w.how()})")
        return f"grid {self.grid_s} s ({why}; {self.n_buckets:,} buckets); window {span}"

    def outside_line(self) -> str | None:
        """"N rows outside the window [start, end] (per table)" (None without data)."""
        if self.window is None or self.window.start is None:
            return None
        return self.window.outside_line()

    def to_dict(self) -> dict:
        """The grid and window as JSON-ready values (``chain --json``)."""
        w = self.window
        return {
            "grid_s": self.grid_s,
            "grid_from": self.grid_from,
            "n_buckets": self.n_buckets,
            "window": None if w is None else {
                "start": None if w.start is None else _iso(w.start),
                "end": None if w.end is None else _iso(w.end),
                "start_from": w.start_from,
                "end_from": w.end_from,
                "outside": dict(w.outside),
                "outside_total": w.n_outside,
            },
        }


def _iso(t: datetime | None) -> str:
    return "none" if t is None else t.isoformat(sep="T") + "Z"


def _origin_index(grid_s: int, start: datetime | None) -> int:
    """Index, counted in buckets from the epoch, of the grid's first bucket (that of
    ``start``): the one origin that roll_metrics' and the signals' indexes share."""
    return 0 if start is None else _epoch_us(start) // (grid_s * 1_000_000)


def _index_sql(col: str, grid_s: int, start: datetime | None) -> str:
    """SQL for the grid index of ``col``'s bucket (0 = the bucket of ``start``)."""
    return f"(epoch_us({col}) // {grid_s * 1_000_000} - {_origin_index(grid_s, start)})"


CATALOG_COLUMNS = ("family, measure, subject, source, metric, labels, caller, errno_class,"
                   " unit, aggregation, kind")
"""``signal_catalog``'s columns after ``signal``: the structured identity (family, measure,
subject, labels as canonical JSON or NULL) and what the signal measures."""


def _catalog_id(family: str, measure: str, subject: str | None, labels: str | None) -> SignalId:
    """The identity of one catalog row (``labels``: canonical JSON, NULL for none)."""
    parsed = json.loads(labels) if labels else {}
    if not isinstance(parsed, dict):
        parsed = {}
    return SignalId(family, measure, subject,  # type: ignore[arg-type]
                    tuple(sorted((str(k), str(v)) for k, v in parsed.items())))


def _store_catalog(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
    """Name every catalog row (``SignalId.key``), and store ``signal_catalog`` ordered by
    name plus the temporary ``_cat`` that numbers the signals (``sid``) in that order."""
    keys = [_catalog_id(f, m, s, lb).key
            for f, m, s, lb in rows.select("family", "measure", "subject", "labels").iter_rows()]
    cat = rows.with_columns(signal=pl.Series(keys, dtype=pl.String)).sort("signal")
    cat = cat.select("signal", *CATALOG_COLUMNS.replace(" ", "").split(","))
    con.register("_cat_view", cat.with_row_index("sid"))
    try:
        con.execute("CREATE OR REPLACE TABLE signal_catalog AS"
                    " SELECT * EXCLUDE (sid) FROM _cat_view ORDER BY sid")
        con.execute("CREATE OR REPLACE TEMP TABLE _cat AS"
                    " SELECT sid::BIGINT AS sid, * EXCLUDE (sid) FROM _cat_view")
    finally:
        con.unregister("_cat_view")


def signal_ids(con: duckdb.DuckDBPyConnection) -> dict[str, SignalId]:
    """Every signal's identity by name, read from ``signal_catalog``'s structured columns."""
    rows = con.execute("SELECT signal, family, measure, subject, labels FROM signal_catalog")
    return {key: _catalog_id(f, m, s, lb) for key, f, m, s, lb in rows.fetchall()}


_EPOCH = datetime(1970, 1, 1)


def _epoch_us(t: datetime) -> int:
    """Microseconds since the epoch of a naive UTC datetime, exactly."""
    return (t - _EPOCH) // timedelta(microseconds=1)


def build_rollups(
    con: duckdb.DuckDBPyConnection,
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    stale_s: int = 300,
) -> RollupInfo:
    """Create or replace ``roll_*``, ``signals``, ``signal_catalog`` and ``roll_info``.

    The incident window is ``start``/``end`` when given, else the manifest's, else
    inferred from where the rows are dense (``analysis.window.resolve_window``); rows
    outside it stay in the store and are counted in ``RollupInfo.window.outside``. The
    grid step is ``grid_s`` when given, else chosen from the window's length
    (``analysis.window.choose_grid``). The roll tables are the steps of
    ``analysis.rollup_sql``, run here on DuckDB over the store (``postmortem rollup``
    runs the same steps on Spark or DuckDB over Parquet); ``signals`` is filled densely
    from their values in numpy (see ``_build_signals``); the module docstring states the
    rules. Its cost grows with the raw rows only in the scans of the raw tables; the
    rest grows with the grid and the number of series. On a terminal a progress line
    counts its steps (``analysis.progress``).
    """
    engine = DuckEngine(con)
    with progress_line("rollups", total=len(output_tables(DUCKDB)) + 1, unit="step") as bar:
        plan = roll_up(engine, grid_s, start, end, con=con, stale_s=stale_s, progress=bar)
        drop_intermediates(engine)
        bar.note("signals")
        info = finish_rollups(con, plan, asked=_manifest_keys(con))
        bar.advance()
    return info


def finish_rollups(
    con: duckdb.DuckDBPyConnection, plan: RollupPlan, *, asked: dict[str, str],
    origin: str = STORE_ORIGIN,
) -> RollupInfo:
    """From the roll tables in ``con`` (made by ``roll_up`` on any engine): build
    ``signal_catalog`` and ``signals`` and write ``roll_info`` (``origin``: where the
    raw rows are, ``STORE_ORIGIN`` for the store's own)."""
    _build_signals(con, plan.grid.g, plan.start, plan.grid.n)
    for tmp in ("_cat", "_msets", "_mk", "_cagg", "_ccat"):
        con.execute(f"DROP TABLE IF EXISTS {tmp}")
    n_signals = con.execute("SELECT count(*) FROM signal_catalog").fetchall()[0][0]
    info = RollupInfo(plan.grid.g, plan.start, plan.end, plan.grid.n, n_signals,
                      plan.grid_from, plan.window)
    _write_info(con, info, rows=plan.rows, asked=asked, origin=origin)
    return info


_INFO_COLUMNS = (
    "grid_s INTEGER, grid_from VARCHAR, first_bucket TIMESTAMP, last_bucket TIMESTAMP,"
    " n_buckets BIGINT, n_signals BIGINT, window_start TIMESTAMP, window_end TIMESTAMP,"
    " start_from VARCHAR, end_from VARCHAR, outside JSON, rows JSON, asked JSON,"
    " origin VARCHAR"
)


def _table_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows per raw table the rollups read (cheap: DuckDB keeps the counts)."""
    q = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in RAW_TABLES)
    return {str(k): int(v) for k, v in con.execute(q).fetchall()}


def _manifest_keys(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {str(k): str(v) for k, v in con.execute(
        "SELECT key, value FROM incident WHERE key IN ('window_start', 'window_end')"
    ).fetchall()}


def _write_info(con: duckdb.DuckDBPyConnection, info: RollupInfo, *, rows: dict[str, int],
                asked: dict[str, str], origin: str) -> None:
    """``roll_info``: one row saying what grid and window the rollups were built on, the raw
    row counts and manifest window they were built from (how ``ensure_rollups`` tells
    stale rollups), the rows left outside the window, and where the raw rows are."""
    w = info.window
    assert w is not None
    con.execute(f"CREATE OR REPLACE TABLE roll_info ({_INFO_COLUMNS})")
    con.execute(
        "INSERT INTO roll_info VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [info.grid_s, info.grid_from, info.start, info.end, info.n_buckets, info.n_signals,
         w.start, w.end, w.start_from, w.end_from, json.dumps(w.outside),
         json.dumps(rows), json.dumps(asked), origin],
    )


def rollup_info(con: duckdb.DuckDBPyConnection) -> RollupInfo | None:
    """What the stored rollups were built on (``roll_info``), None when there is none."""
    if not has_table(con, "roll_info"):
        return None
    # fetchall, not fetchone: a result left unfinished blocks the connection's next
    # ``con.sql`` (DuckDB 2)
    rows = con.execute(
        "SELECT grid_s, grid_from, first_bucket, last_bucket, n_buckets, n_signals,"
        " window_start, window_end, start_from, end_from, outside, origin FROM roll_info"
    ).fetchall()
    if not rows:
        return None
    row = rows[0]
    window = Window(row[6], row[7], row[8], row[9], json.loads(row[10]))
    return RollupInfo(row[0], row[2], row[3], row[4], row[5], row[1], window,
                      row[11] or STORE_ORIGIN)


def _build_signals(
    con: duckdb.DuckDBPyConnection, g: int, start: datetime | None, n: int
) -> None:
    """Build ``signal_catalog`` and the dense long-form ``signals`` from the roll tables.

    The catalog comes from each family's few distinct keys. The values each family
    has, ``(sid, bucket index, value)`` with integer keys only, are scattered into a
    dense numpy array (absent counts 0, others NULL), which DuckDB writes in signal and
    time order: no join of every (signal, bucket) against the values, and no sort.
    """
    us = g * 1_000_000
    # Each family of signals is a catalog query over its few distinct keys, in
    # structured columns (family, measure, subject, labels); the names are made from
    # them in Python (``signal_id``), never by joining strings in SQL.
    # kind: count (0 when absent), rate (metric counter rate, NULL when absent), gauge.
    catalogs: list[str] = []
    caller_sig = [
        ("requests", "sum(requests)", "req/s", "count", "sum over method, dc"),
        ("uris", "sum(uris)", "uris/s", "count", "sum over method, dc"),
        ("max_uris", "max(max_uris)", "uris", "count", "max batch size in bucket (0 if none)"),
        ("errors", "sum(errors)", "req/s", "count", "sum of non-ok requests"),
        ("p99_ms", "max(p99_duration_ms)", "ms", "gauge", "max over method, dc of p99"),
    ]
    for name, _expr, unit, kind, agg in caller_sig:
        catalogs.append(
            f"SELECT 'caller', '{name}', caller, 'requests', NULL, NULL, caller, NULL,"
            f" '{unit}', '{agg}', '{kind}'"
            " FROM (SELECT DISTINCT caller FROM roll_callers WHERE caller IS NOT NULL)"
        )
    # (measure, subject column, condition)
    err_families = [
        ("total", "NULL", "TRUE"),
        ("errno", "errno_class", "errno_class IS NOT NULL"),
        ("cache", "cache", "cache IS NOT NULL"),
        ("op", "op", "op IS NOT NULL"),
    ]
    for measure, subject, cond in err_families:
        errno = subject if measure == "errno" else "NULL"
        catalogs.append(
            f"SELECT DISTINCT 'errors', '{measure}', {subject}, 'logs', NULL, NULL, NULL,"
            f" {errno}, 'lines/s', 'sum of 1/sample_rate over error lines', 'count'"
            f" FROM (SELECT DISTINCT errno_class, cache, op FROM roll_errors"
            f" WHERE is_error AND {cond})"
        )
    is_counter = is_counter_sql(DUCKDB, "metric")
    sums = DUCKDB.rlike("metric", SUM_PATTERN)
    unit = f"""CASE WHEN {is_counter} THEN 'per_s' WHEN metric LIKE '%_seconds' THEN 's'
                    WHEN metric LIKE '%_bytes' THEN 'bytes'
                    WHEN metric LIKE '%_ratio' THEN 'ratio' ELSE '' END"""
    kind = f"CASE WHEN {is_counter} THEN 'rate' ELSE 'gauge' END"
    # series with a value in the grid (as roll_metrics holds them)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _msets AS
        SELECT metric, labels, count(*) OVER (PARTITION BY metric) AS n_sets,
               {sums} AS summed
        FROM (SELECT DISTINCT metric, labels FROM roll_metrics) m
    """)
    catalogs.append(
        f"SELECT DISTINCT 'metric', 'value', metric, 'metrics', metric, NULL, NULL, NULL,"
        f" {unit}, CASE WHEN {sums} THEN 'sum over labels' ELSE 'max over labels' END, {kind}"
        " FROM _msets"
    )
    catalogs.append(
        f"SELECT 'metric', 'value', metric, 'metrics', metric, labels, NULL, NULL,"
        f" {unit}, 'one label set', {kind} FROM _msets WHERE n_sets > 1"
    )
    rows = con.sql(
        " UNION ALL ".join(f"SELECT * FROM ({q}) AS c({CATALOG_COLUMNS})" for q in catalogs)
    ).pl()
    _store_catalog(con, rows)

    # The values, keyed by (sid, bucket index): small joins map each family's keys to sids.
    def idx(col: str) -> str:
        return _index_sql(col, g, start)

    picks = " ".join(f"WHEN '{name}' THEN a.{name}" for name, *_ in caller_sig)
    rm = f"(SELECT metric, labels, {idx('t')} AS i, value FROM roll_metrics)"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cagg AS SELECT t, caller, "
        + ", ".join(f"{expr} AS {name}" for name, expr, *_ in caller_sig)
        + " FROM roll_callers GROUP BY t, caller"
    )
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _ccat AS
        SELECT caller, sid, measure AS name FROM _cat WHERE family = 'caller'
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _mk AS
        SELECT s.metric, s.labels, s.summed, a.sid AS agg_sid, l.sid AS set_sid
        FROM _msets s
        JOIN _cat a ON a.family = 'metric' AND a.labels IS NULL AND a.subject = s.metric
        LEFT JOIN _cat l ON s.n_sets > 1 AND l.family = 'metric' AND l.subject = s.metric
                         AND l.labels = s.labels
    """)
    values = [
        f"SELECT c.sid, {idx('a.t')} AS i, CASE c.name {picks} END AS value"
        " FROM _cagg a JOIN _ccat c USING (caller)",
        *(
            f"SELECT c.sid, {idx('v.t')}, v.value FROM (SELECT t, {subject} AS subject,"
            f" sum(errors) AS value FROM roll_errors WHERE is_error AND {cond} GROUP BY ALL) v"
            f" JOIN _cat c ON c.family = 'errors' AND c.measure = '{measure}'"
            " AND c.subject IS NOT DISTINCT FROM v.subject"
            for measure, subject, cond in err_families
        ),
        "SELECT agg_sid, i, CASE WHEN any_value(summed) THEN sum(value) ELSE max(value) END"
        f" FROM {rm} JOIN _mk USING (metric, labels) GROUP BY agg_sid, i",
        f"SELECT set_sid, i, value FROM {rm} JOIN _mk USING (metric, labels)"
        " WHERE set_sid IS NOT NULL",
    ]
    sparse = con.sql(
        "SELECT * FROM ("
        + " UNION ALL ".join(f"SELECT * FROM ({q}) AS v(sid, i, value)" for q in values)
        + f") WHERE i >= 0 AND i < {n}"
    ).pl()
    cat = con.sql("SELECT signal, kind FROM _cat ORDER BY sid").pl()
    _write_dense(con, cat, sparse, _origin_index(g, start) * us, us, n)


def _write_dense(
    con: duckdb.DuckDBPyConnection,
    cat: pl.DataFrame,
    sparse: pl.DataFrame,
    origin_us: int,
    us: int,
    n: int,
) -> None:
    """Create ``signals``: every catalog signal (``cat``, in sid order) on every one of the
    ``n`` buckets, values from ``sparse`` (sid, i, value), absent ones 0 for counts and
    NULL otherwise; in signal and time order, written in slices of a few million rows."""
    con.execute("CREATE OR REPLACE TABLE signals (t TIMESTAMP, signal VARCHAR, value DOUBLE)")
    n_sig = cat.height
    if n_sig == 0 or n == 0:
        return
    sid = sparse["sid"].cast(pl.Int64).to_numpy()
    idx = sparse["i"].cast(pl.Int64).to_numpy()
    val = sparse["value"].cast(pl.Float64).to_numpy()  # NULL -> NaN
    count = (cat["kind"] == "count").to_numpy()
    names = cat["signal"].to_arrow()
    grid = origin_us + np.arange(n, dtype=np.int64) * us
    per_slice = max(1, 2_000_000 // n)
    for a in range(0, n_sig, per_slice):
        b = min(n_sig, a + per_slice)
        dense = np.full((b - a, n), np.nan)
        mine = slice(None) if b - a == n_sig else (sid >= a) & (sid < b)
        dense[sid[mine] - a, idx[mine]] = val[mine]
        dense[count[a:b]] = np.where(np.isnan(dense[count[a:b]]), 0.0, dense[count[a:b]])
        flat = dense.ravel()
        table = pa.table({
            "t": _arrow(pa.timestamp("us"), np.tile(grid, b - a)),
            "signal": pa.DictionaryArray.from_arrays(
                _arrow(pa.int32(), np.repeat(np.arange(a, b, dtype=np.int32), n)), names
            ),
            "value": _arrow(pa.float64(), flat, valid=~np.isnan(flat)),
        })
        con.register("_dense_view", table)
        con.execute(
            "INSERT INTO signals SELECT t, CAST(signal AS VARCHAR), value FROM _dense_view"
        )
        con.unregister("_dense_view")


def _arrow(kind: pa.DataType, data: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A fixed-width Arrow array over a numpy array's buffer (``valid``: False = NULL).

    Built from buffers, not with ``pa.array``, which imports pandas (0.4 s) on first use.
    """
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    buffer = pa.py_buffer(np.ascontiguousarray(data))
    return pa.Array.from_buffers(kind, len(data), [bitmap, buffer])


def signal_series(con: duckdb.DuckDBPyConnection, signal: str) -> pl.DataFrame:
    """One signal as a frame ``[t, value]`` ordered by time (empty if unknown)."""
    return con.sql("SELECT t, value FROM signals WHERE signal = ? ORDER BY t", params=[signal]).pl()


def _signal_runs(
    con: duckdb.DuckDBPyConnection, signals: Sequence[str] | None
) -> list[tuple[str, int, int]] | None:
    """``(signal, first rowid, rows)`` of each (wanted) signal in storage order, or None
    when some signal's rows are not one contiguous run (a table not written by
    ``build_rollups``, or a view). Rows are contiguous exactly when a signal's row count
    equals the span of its row ids, as row ids are unique. All signals are grouped (a
    filter on the names would cost more than it saves) and the wanted ones kept."""
    try:
        runs = con.execute(
            "SELECT signal, min(rowid), max(rowid), count(*) FROM signals"
            " GROUP BY signal ORDER BY 2"
        ).fetchall()
    except duckdb.BinderException:  # a view, which has no row ids
        return None
    if any(hi - lo + 1 != n for _, lo, hi, n in runs):
        return None
    keep = None if signals is None else set(signals)
    return [(str(s), int(lo), int(n)) for s, lo, _, n in runs if keep is None or s in keep]


def _signal_filter(signals: Sequence[str] | None) -> tuple[str, list]:
    """The WHERE clause (and its parameters) keeping the named signals, all when None.

    ``list_contains`` is a plain filter: unlike ``IN (SELECT unnest(...))``, a semi join,
    it keeps the scan's order and costs a tenth."""
    if signals is None:
        return "", []
    return " WHERE list_contains(?::VARCHAR[], signal)", [list(signals)]


def _rowid_filter(runs: list[tuple[str, int, int]], everything: bool) -> str:
    """The WHERE clause keeping the rows of ``runs`` by row id (a range per run of
    adjacent runs), none when they are the whole table."""
    if everything:
        return ""
    ranges: list[list[int]] = []
    for _, lo, n in runs:  # in storage order: merge runs that touch
        if ranges and ranges[-1][1] == lo:
            ranges[-1][1] = lo + n
        else:
            ranges.append([lo, lo + n])
    return " WHERE " + " OR ".join(f"(rowid >= {a} AND rowid < {b})" for a, b in ranges)


def signal_parts(
    con: duckdb.DuckDBPyConnection, signals: Sequence[str] | None = None
) -> Iterator[tuple[str, pl.DataFrame]]:
    """Each signal (all, or those named) as ``(name, frame[t, value])``, ordered by name and
    time, from one scan: cheaper than one query per signal.

    ``build_rollups`` writes ``signals`` ordered by signal and time, so each signal's rows
    are the contiguous run of row ids it spans: only row ids, ``t`` and ``value`` are read
    (the signal names, strings, would cost five times more). Contiguity and time order
    are checked (cheap); a table that fails the check is read with its names and sorted
    instead.
    """
    runs = _signal_runs(con, signals)
    if not runs:
        if runs is not None:
            return
        yield from _signal_parts_sorted(con, signals)
        return
    where = _rowid_filter(runs, signals is None)
    tv = con.sql(f"SELECT rowid AS _r, t, value FROM signals{where}").pl()
    if not tv["_r"].is_sorted():  # a parallel scan may hand batches back out of order
        tv = tv.sort("_r")
    rowid = tv["_r"].to_numpy()
    starts = np.searchsorted(rowid, [lo for _, lo, _ in runs])
    lengths = np.array([n for _, _, n in runs])
    t = tv["t"].cast(pl.Int64).to_numpy()
    falls = np.flatnonzero(np.diff(t) < 0) + 1  # a fall in time must be a run's first row
    if tv.height != int(lengths.sum()) or not np.isin(falls, starts).all():
        yield from _signal_parts_sorted(con, signals)
        return
    tv = tv.drop("_r")
    for i in sorted(range(len(runs)), key=lambda i: runs[i][0]):
        yield runs[i][0], tv.slice(int(starts[i]), int(lengths[i]))


def _signal_parts_sorted(
    con: duckdb.DuckDBPyConnection, signals: Sequence[str] | None
) -> Iterator[tuple[str, pl.DataFrame]]:
    """``signal_parts`` of a table in any order: names read, rows sorted by signal, time."""
    where, params = _signal_filter(signals)
    long = con.sql(f"SELECT signal, t, value FROM signals{where}", params=params).pl()
    if long.height == 0:
        return
    long = long.sort("signal", "t")
    offset = 0
    for n in long["signal"].unique_counts().to_list():  # one run per signal, in order
        part = long.slice(offset, n)
        offset += n
        yield str(part["signal"][0]), part.select("t", "value")


def signal_frame(con: duckdb.DuckDBPyConnection, signals: Sequence[str]) -> pl.DataFrame:
    """Several signals side by side: ``t`` plus one column per signal, on the dense grid.

    Unknown signals are columns of NULL, so callers can rely on the shape.
    """
    names = list(dict.fromkeys(signals))
    # every signal holds the whole grid, in order: any signal's times are the grid, and
    # each wanted signal's values, ordered by time, are its column
    columns: dict[str, pl.Series] = {}
    grid: pl.DataFrame | None = None
    for name, part in signal_parts(con, names):
        columns[name] = part["value"]
        if grid is None:
            grid = part.select("t")
    if grid is None:
        grid = con.sql(
            "SELECT t FROM signals WHERE signal = (SELECT min(signal) FROM signal_catalog)"
            " ORDER BY t"
        ).pl()
    return grid.with_columns(
        (columns[n] if n in columns else pl.lit(None, dtype=pl.Float64)).alias(n) for n in names
    )


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table (or view) called ``name`` exists."""
    n = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()[0][0]
    return n > 0


def _rollups_stale(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the stored rollups no longer match the raw tables: no ``roll_info`` (or
    no ``signals``), rows added or removed since they were built (files ingested later),
    or a manifest window that changed."""
    if not has_table(con, "signals") or not has_table(con, "roll_info"):
        return True
    try:
        row = next(iter(con.execute("SELECT rows, asked, origin FROM roll_info").fetchall()),
                   None)
    except duckdb.BinderException:  # an older roll_info
        return True
    if row is None:
        return True
    if row[2] != STORE_ORIGIN:  # made by ``postmortem rollup``: the raw rows are not here
        return False
    return json.loads(row[0]) != _table_rows(con) or json.loads(row[1]) != _manifest_keys(con)


def rollups_fingerprint() -> str:
    """Which code rolled up: the analysis code's one fingerprint
    (``analysis.fingerprint.source_fingerprint``), so rollups stored by another
    version of the code are rebuilt, as every cached result is recomputed."""
    return "postmortem rollups " + source_fingerprint()[:16]


def mark_rollups(con: duckdb.DuckDBPyConnection) -> None:
    """Record on ``signals`` (a table comment) that this code built the rollups.

    ``ingest`` marks the rollups it stores, so that readers of the store can tell
    them from those of an older version, which they must not trust.
    """
    con.execute(f"COMMENT ON TABLE signals IS '{rollups_fingerprint()}'")


def _rollups_marked(con: duckdb.DuckDBPyConnection, *, trust_own: bool) -> bool:
    """Whether every rollup table exists and ``signals`` carries this code's mark.

    ``trust_own``: rollups in the connection's own database count as this code's
    even unmarked (a caller of ``build_rollups``); only those of a read-only
    attached store (``analysis.access``), which an older version may have
    made, must carry the mark.
    """
    rows = con.execute(
        "SELECT database_name = current_database(), comment FROM duckdb_tables()"
        " WHERE table_name = 'signals' AND schema_name = 'main'"
    ).fetchall()
    if trust_own and any(own for own, _ in rows):
        return True
    mark = next((c for own, c in rows if own), rows[0][1] if rows else None)  # the one resolved
    return (all(has_table(con, t) for t in ROLLUP_TABLES)
            and mark == rollups_fingerprint())


def rollups_current(con: duckdb.DuckDBPyConnection, *, trust_own: bool = True) -> bool:
    """Whether ``con`` sees rollups it can use: every table present, made by this code
    (``_rollups_marked``), and reaching as far as the data (``_rollups_stale``)."""
    return (has_table(con, "signals") and _rollups_marked(con, trust_own=trust_own)
            and not _rollups_stale(con))


def raw_origin(con: duckdb.DuckDBPyConnection) -> str | None:
    """Where the raw rows are when the store does not hold them: the sources ``postmortem
    rollup`` read (``roll_info.origin``); None when the store's rollups were made from
    its own raw tables (or there are none yet)."""
    if not has_table(con, "roll_info"):
        return None
    try:
        row = next(iter(con.execute("SELECT origin FROM roll_info").fetchall()), None)
    except duckdb.BinderException:  # an older roll_info: made from the store's own rows
        return None
    return None if row is None or row[0] in (None, STORE_ORIGIN) else row[0]


def raw_rows_line(con: duckdb.DuckDBPyConnection, need: str = "the raw request rows"
                  ) -> str | None:
    """The one line a page or notebook shows in place of what needs ``need`` when the
    store holds only rollups (``raw_origin``); None when the raw rows are there."""
    origin = raw_origin(con)
    return None if origin is None else f"needs {need}; this store holds rollups from {origin}"


def raw_absent(con: duckdb.DuckDBPyConnection, need: str, *, rerun: bool = False) -> None:
    """Raise ``UserError`` when the store holds rollups made by ``postmortem rollup`` from
    raw rows it does not hold (``roll_info.origin``): ``need`` (what wanted them, e.g.
    "the what-if replay") cannot be answered from rollups alone."""
    origin = raw_origin(con)
    if origin is not None:
        raise UserError(
            f"{need} needs the raw rows, and this store holds only the rollups `postmortem"
            f" rollup` made from {origin}: ingest those exports into a store"
            " (`postmortem ingest`)" + (", or rerun `postmortem rollup` with the"
            " --grid/--start/--end wanted and load it with `postmortem ingest --rollups`"
            if rerun else "")
        )


def ensure_rollups(
    con: duckdb.DuckDBPyConnection,
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> RollupInfo:
    """The current rollups' ``RollupInfo`` when they match what is asked (a given
    ``grid_s``, ``start`` or ``end``; one not given asks for the default, so rollups an
    earlier run built on its own flags are not taken for it); otherwise (re)build and
    mark them and return the new one. Lets every consumer (chain, what-if, notebooks)
    start from a bare store without rolling up twice. On a reader's connection
    (``analysis.access.open_reader``) they are built in memory, shadowing the store's.
    """
    info = rollup_info(con) if rollups_current(con) else None
    # rollups made elsewhere (``postmortem rollup``) on flags of their own are the store's
    own = info is not None and not info.raw_in_store
    if info is not None and info.window is not None and (
        (info.grid_s == grid_s if grid_s is not None else own or info.grid_from == "auto")
        and (info.window.start == start if start is not None
             else own or info.window.start_from != "flag")
        and (info.window.end == end if end is not None
             else own or info.window.end_from != "flag")
    ):
        return info
    origin = raw_origin(con)
    if origin is not None and not _rollups_marked(con, trust_own=True):
        raise UserError(
            "this store holds only rollups, made by another version of the analysis code"
            f" (`postmortem rollup` from {origin}): rerun `postmortem rollup` and load it"
            " with `postmortem ingest --rollups`")
    raw_absent(con, "rollups on another grid or window", rerun=True)
    info = build_rollups(con, grid_s, start, end)
    mark_rollups(con)
    return info

