"""The rollup queries, defined once, rendered for DuckDB or Spark SQL.

Each rollup table is one named SQL step (``Step``: the table it makes and the query
that makes it, reading the raw tables ``requests``, ``log_events``, ``metrics``,
``events`` and earlier steps by name), in the style of splink's SQL pipelines.
``analysis.rollup_engines`` runs the steps on an engine: DuckDB over the store or over
Parquet, or Spark over Parquet on any URI it reads.

Why a portable subset, not SQLGlot: the queries are written in the SQL both engines
share (CASE, FILTER, window functions, ``bool_or``, ``least``/``greatest``, integer
and float arithmetic) and the few places the dialects differ are the methods of
``Dialect`` below, each one line per engine, reviewed once and checked by the
differential test (``tests/test_rollup_engines.py``). A transpiler would translate
constructs we never see, and gets the one that matters wrong by default: SQLGlot turns
``quantile_cont``/``PERCENTILE_CONT`` into Spark's ``percentile_approx``. Here every
quantile is ``Dialect.quantiles``: DuckDB's ``quantile_cont`` and Spark's ``percentile``,
both exact and both interpolating between the two nearest ranks, over DOUBLE (DuckDB's
``quantile_cont`` of an integer column rounds to an integer; Spark's does not).

Times are compared and bucketed as integer microseconds since the epoch
(``Dialect.epoch_us``), so a grid boundary is the same integer on both engines, and
turned back into ``TIMESTAMP`` (without zone, UTC) only in the output columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

EngineName = Literal["duckdb", "spark"]

COUNTER_PATTERN = r"(_total|_count|_sum|_bucket)$"
KNOWN_COUNTERS: tuple[str, ...] = (
    "node_netstat_Tcp_ActiveOpens",
    "node_netstat_Tcp_PassiveOpens",
    "node_netstat_TcpExt_ListenOverflows",
    "node_netstat_TcpExt_ListenDrops",
    "memcached_commands",
)
SUM_PATTERN = r"(_total|_count|_sum|_bucket|per_second|_rate|_rps|_qps|connections|requests)$"
ERROR_LEVELS: tuple[str, ...] = ("error", "fatal", "panic", "critical")
#: ``roll_heavy`` keeps every request of more URIs than this: far below any idle pool
#: (hundreds to thousands of connections) and above every ordinary batch (1-50 URIs), so
#: the few heavy requests, not the raw log, answer what batches force past a pool.
HEAVY_URIS = 64
#: the raw tables the rollups read, and those whose rows set the window and the grid
RAW_TABLES: tuple[str, ...] = ("requests", "log_events", "metrics", "events")
WINDOW_TABLES: tuple[str, ...] = ("requests", "log_events", "metrics")
#: the tables ``rollup_steps`` makes (the rest of the rollups are built from them)
STEP_OUTPUTS: tuple[str, ...] = ("roll_callers", "roll_heavy", "roll_errors", "roll_metrics",
                                 "roll_series", "roll_events")


@dataclass(frozen=True)
class Dialect:
    """The few functions DuckDB and Spark SQL spell differently; everything else in the
    steps is SQL both read alike."""

    name: EngineName

    def epoch_us(self, col: str) -> str:
        """Microseconds since the epoch of a timestamp column (UTC)."""
        if self.name == "spark":  # a zone-less TIMESTAMP_NTZ is read in the session's UTC
            return f"unix_micros(CAST({col} AS TIMESTAMP))"
        return f"epoch_us({col})"

    def ts(self, us: str) -> str:
        """A zone-less timestamp from microseconds since the epoch."""
        if self.name == "spark":
            return f"CAST(timestamp_micros({us}) AS TIMESTAMP_NTZ)"
        return f"make_timestamp({us})"

    def idiv(self, a: str, b: int) -> str:
        """Integer division truncating toward zero (both engines' integer division)."""
        return f"(({a}) div {b})" if self.name == "spark" else f"(({a}) // {b})"

    def quantiles(self, x: str, ps: Sequence[float]) -> str:
        """Exact, interpolating quantiles of ``x`` as DOUBLE: one value, or a list for
        several ``ps`` (read with ``item``)."""
        arg = (f"{ps[0]!r}" if len(ps) == 1 else
               ("array(" if self.name == "spark" else "[") + ", ".join(map(repr, ps))
               + (")" if self.name == "spark" else "]"))
        fn = "percentile" if self.name == "spark" else "quantile_cont"
        return f"{fn}(CAST({x} AS DOUBLE), {arg})"

    def item(self, xs: str, i: int) -> str:
        """The ``i``-th (1-based) element of a list."""
        return f"element_at({xs}, {i})" if self.name == "spark" else f"{xs}[{i}]"

    def rlike(self, col: str, pattern: str) -> str:
        """Whether ``col`` matches the regular expression ``pattern`` anywhere."""
        if self.name == "spark":
            return f"({col} RLIKE '{pattern}')"
        return f"regexp_matches({col}, '{pattern}')"

    def explode_range(self, lo: str, hi: str) -> str:
        """One row per integer from ``lo`` to ``hi`` inclusive (in a SELECT list)."""
        if self.name == "spark":
            return f"explode(sequence({lo}, {hi}))"
        return f"unnest(generate_series({lo}, {hi}))"

    def quote(self, name: str) -> str:
        """A column name that is a keyword (``end``)."""
        return f"`{name}`" if self.name == "spark" else f'"{name}"'


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")


@dataclass(frozen=True)
class Grid:
    """The grid the steps bucket on, as integers: step ``us`` (microseconds), first
    bucket start ``lo_us`` and end of the last bucket ``hi_us`` (exclusive), ``n``
    buckets (``lo_us = hi_us``, ``n = 0``: no data, nothing is inside), and ``stale_us``,
    how long a gauge holds at most (Prometheus' lookback)."""

    us: int
    lo_us: int
    hi_us: int
    n: int
    stale_us: int

    @property
    def g(self) -> int:
        """The step in seconds."""
        return self.us // 1_000_000

    @property
    def origin(self) -> int:
        """The first bucket's index counted from the epoch."""
        return self.lo_us // self.us


@dataclass(frozen=True)
class Step:
    """One named step: ``CREATE name AS sql``. ``output``: a rollup table (kept and
    written), else an intermediate the later steps read."""

    name: str
    sql: str
    output: bool = True


def is_counter_sql(d: Dialect, col: str = "metric") -> str:
    """Whether a metric name is a counter (its rate, not its value, is the signal)."""
    known = ", ".join(f"'{m}'" for m in KNOWN_COUNTERS)
    return f"({d.rlike(col, COUNTER_PATTERN)} OR {col} IN ({known}))"


def table_stats_sql(d: Dialect, table: str, ws_us: int | None, we_us: int | None) -> str:
    """One pass over a raw table's times: its rows, first and last time, and rows inside
    the window ``[ws_us, we_us]`` (none without a window)."""
    t = d.epoch_us("time")
    inside = ("0" if ws_us is None or we_us is None else
              f"count(*) FILTER (WHERE {t} >= {ws_us} AND {t} <= {we_us})")
    if table == "events":
        return f"SELECT '{table}' AS tbl, count(*) AS n, NULL AS lo, NULL AS hi, 0 AS inside" \
               f" FROM {table}"
    return (f"SELECT '{table}' AS tbl, count(*) AS n, min({t}) AS lo, max({t}) AS hi,"
            f" {inside} AS inside FROM {table}")


def quartiles_sql(d: Dialect, tables: Sequence[str]) -> str:
    """Rows and time quartiles (microseconds, exact) per table, and over all of them
    together (``tbl`` NULL): what the window's inference needs (``analysis.window``)."""
    union = " UNION ALL ".join(f"SELECT '{t}' AS tbl, {d.epoch_us('time')} AS us FROM {t}"
                               for t in tables)
    q = d.quantiles("us", (0.25, 0.75))
    return (f"WITH r AS ({union}), per AS (SELECT tbl, count(*) AS n, {q} AS q FROM r"
            f" GROUP BY tbl) SELECT tbl, n, {d.item('q', 1)}, {d.item('q', 2)} FROM per")


def whole_quartiles_sql(d: Dialect, tables: Sequence[str]) -> str:
    """The time quartiles of all rows of ``tables`` together."""
    union = " UNION ALL ".join(f"SELECT {d.epoch_us('time')} AS us FROM {t}" for t in tables)
    q = d.quantiles("us", (0.25, 0.75))
    return f"SELECT {d.item('q', 1)}, {d.item('q', 2)} FROM (SELECT {q} AS q FROM ({union}) r)"


def fenced_span_sql(d: Dialect, tables: Sequence[str],
                    fences: Sequence[tuple[float, float]]) -> str:
    """First and last time (microseconds) of the rows inside any of ``fences``."""
    t = d.epoch_us("time")
    inside = " OR ".join(f"({t} >= {lo!r} AND {t} <= {hi!r})" for lo, hi in fences) or "FALSE"
    union = " UNION ALL ".join(f"SELECT min({t}) AS lo, max({t}) AS hi FROM {tb} WHERE {inside}"
                               for tb in tables)
    return f"SELECT min(lo), max(hi) FROM ({union}) s"


def outside_sql(d: Dialect, tables: Sequence[str], grid: Grid | None) -> str:
    """Rows of each table outside the grid's buckets (every row without a grid)."""
    t = d.epoch_us("time")
    cond = "" if grid is None or grid.n == 0 else \
        f" WHERE {t} < {grid.lo_us} OR {t} >= {grid.hi_us}"
    return " UNION ALL ".join(f"SELECT '{tb}', count(*) FROM {tb}{cond}" for tb in tables)


def rollup_steps(d: Dialect, grid: Grid) -> list[Step]:
    """Every rollup step in order: ``roll_callers``, ``roll_heavy``, ``roll_errors``, the
    metric steps (``_mser``, ``_msamples``, ``_rm``, then ``roll_metrics``,
    ``roll_series``) and ``roll_events``. The rules are ``analysis.rollups``' docstring."""
    return [_callers(d, grid), _heavy(d, grid), _errors(d, grid), *_metric_steps(d, grid),
            _events(d)]


def _in_grid(d: Dialect, grid: Grid) -> str:
    t = d.epoch_us("time")
    return f"{t} >= {grid.lo_us} AND {t} < {grid.hi_us}"


def _bucket_us(d: Dialect, grid: Grid, us: str) -> str:
    return f"{d.idiv(us, grid.us)} * {grid.us}"


def _callers(d: Dialect, grid: Grid) -> Step:
    # both URI quantiles from one list-valued quantile: one pass over each group's values
    # instead of two (the holistic aggregates are most of this step's cost)
    b = _bucket_us(d, grid, d.epoch_us("time"))
    g = grid.g
    return Step("roll_callers", f"""
        SELECT {d.ts("b")} AS t, caller, method, dc, requests, uris,
               {d.item("q", 1)} AS p50_uris, {d.item("q", 2)} AS p99_uris,
               max_uris, errors, p99_duration_ms
        FROM (
            SELECT {b} AS b, coalesce(caller, 'unknown') AS caller, method, dc,
                   count(*) / {g} AS requests,
                   coalesce(sum(uris), 0) / {g} AS uris,
                   {d.quantiles("uris", (0.5, 0.99))} AS q,
                   max(uris) AS max_uris,
                   count(*) FILTER (WHERE status IS NOT NULL AND lower(status) <> 'ok') / {g}
                     AS errors,
                   {d.quantiles("duration_ms", (0.99,))} AS p99_duration_ms
            FROM requests WHERE {_in_grid(d, grid)}
            GROUP BY {b}, coalesce(caller, 'unknown'), method, dc
        ) a
    """)


def _heavy(d: Dialect, grid: Grid) -> Step:
    return Step("roll_heavy", f"""
        SELECT {d.ts(d.epoch_us("time"))} AS time, caller, method, host, dc, uris
        FROM requests WHERE {_in_grid(d, grid)} AND uris > {HEAVY_URIS}
        ORDER BY time
    """)


def _errors(d: Dialect, grid: Grid) -> Step:
    b = _bucket_us(d, grid, d.epoch_us("time"))
    levels = ", ".join(f"'{lv}'" for lv in ERROR_LEVELS)
    return Step("roll_errors", f"""
        SELECT {d.ts(b)} AS t, errno_class, op, cache, host, lower(level) AS level,
               sum(CASE WHEN sample_rate > 0 THEN 1 / sample_rate ELSE 1 END) / {grid.g}
                 AS errors,
               bool_or(errno_class IS NOT NULL OR lower(level) IN ({levels})) AS is_error
        FROM log_events WHERE {_in_grid(d, grid)}
        GROUP BY {b}, errno_class, op, cache, host, lower(level)
    """)


def _metric_steps(d: Dialect, grid: Grid) -> list[Step]:
    """Series ids, samples with their neighbours, values per (series, bucket), and the
    two metric tables. Every series (metric, label set) gets a small integer id ``k``:
    the windows partition by it and the per-bucket rows group by (k, bucket index)."""
    t = d.epoch_us("time")
    stale = grid.stale_us
    in_range = (f"value IS NOT NULL AND NOT isnan(value)"
                f" AND {t} >= {grid.lo_us - stale} AND {t} < {grid.hi_us + stale}")

    def ix(us: str) -> str:  # grid index of the bucket holding ``us`` (0 = the first)
        return f"({d.idiv(us, grid.us)} - {grid.origin})"

    w = "OVER (PARTITION BY k ORDER BY time_us)"
    # a gauge holds until its next sample (the last one for its usual step), at most stale_s
    held = f"least(coalesce(next_us, time_us + coalesce(step_us, 0)), time_us + {stale})"
    # A bucket takes the mean of the samples whose interval touches it. A series' sample
    # intervals do not overlap (a gauge's [time, held until) ends by its next sample, a
    # counter's (prev, time] starts at the previous one), so a bucket strictly inside one
    # interval belongs to that sample alone: only the first and last bucket of each
    # interval can be shared, and only those are averaged.
    return [
        Step("_mser", f"""
            SELECT row_number() OVER (ORDER BY metric, labels) - 1 AS k, metric, labels,
                   {is_counter_sql(d)} AS is_counter
            FROM (SELECT DISTINCT metric, coalesce(labels, '{{}}') AS labels
                  FROM metrics WHERE {in_range}) m
        """, output=False),
        Step("_msamples", f"""
            WITH s AS (
                SELECT k, bool_or(is_counter) AS is_counter, {t} AS time_us,
                       max(value) AS value
                FROM metrics m
                JOIN _mser ON m.metric = _mser.metric
                          AND coalesce(m.labels, '{{}}') = _mser.labels
                WHERE {in_range}
                GROUP BY k, {t}
            ), l AS (
                SELECT k, time_us, value, is_counter,
                       lag(time_us) {w} AS prev_us, lag(value) {w} AS prev_v,
                       lead(time_us) {w} AS next_us
                FROM s
            )
            SELECT k, time_us, value, is_counter, prev_us, prev_v, next_us,
                   CAST(round({d.quantiles("time_us - prev_us", (0.5,))}
                              OVER (PARTITION BY k)) AS BIGINT) AS step_us
            FROM l
        """, output=False),
        Step("_rm", f"""
            WITH c AS (
                SELECT k,
                       CASE WHEN is_counter
                            THEN (CASE WHEN value >= prev_v THEN value - prev_v ELSE value END)
                                 / ((time_us - prev_us) / 1e6)
                            ELSE value END AS v,
                       CASE WHEN is_counter THEN {ix("prev_us")} ELSE {ix("time_us")} END AS lo,
                       CASE WHEN is_counter THEN greatest({ix("prev_us")}, {ix("time_us - 1")})
                            ELSE greatest({ix("time_us")}, {ix(f"{held} - 1")}) END AS hi
                FROM _msamples
                WHERE NOT is_counter OR (prev_us IS NOT NULL AND time_us - prev_us <= {stale})
            ), inner_buckets AS (
                SELECT k, v, {d.explode_range("lo + 1", "hi - 1")} AS i FROM c WHERE hi > lo + 1
            ), end_buckets AS (
                SELECT k, v, lo AS i FROM c UNION ALL SELECT k, v, hi AS i FROM c WHERE hi > lo
            )
            SELECT k, i, v AS value FROM inner_buckets WHERE i >= 0 AND i < {grid.n}
            UNION ALL
            SELECT k, i, avg(v) AS value FROM end_buckets WHERE i >= 0 AND i < {grid.n}
            GROUP BY k, i
        """, output=False),
        Step("roll_metrics", f"""
            SELECT {d.ts(f"{grid.lo_us} + i * {grid.us}")} AS t, metric, labels, value
            FROM _rm JOIN _mser ON _rm.k = _mser.k
        """),
        # raw samples per series inside the grid: what detection calls too short to judge
        Step("roll_series", f"""
            SELECT metric, coalesce(labels, '{{}}') AS labels, count(*) AS samples
            FROM metrics
            WHERE value IS NOT NULL AND NOT isnan(value) AND {_in_grid(d, grid)}
            GROUP BY metric, coalesce(labels, '{{}}')
        """),
    ]


def _events(d: Dialect) -> Step:
    t = d.epoch_us("time")
    end = d.epoch_us("coalesce(end_time, time)")
    return Step("roll_events", f"""
        SELECT {d.ts(t)} AS start, {d.ts(end)} AS {d.quote("end")}, kind, title, source, detail
        FROM events ORDER BY start
    """)
