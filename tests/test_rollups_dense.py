"""The dense ``signals`` table: what it holds, and the order the fast reader relies on.

``build_rollups`` fills ``signals`` from integer-keyed values in numpy. The
reference here is the plain SQL meaning: every catalog signal on every bucket,
its family's aggregate of the roll table where there is one, else 0 for counts
and NULL for rates and gauges. ``signal_parts`` reads the table as contiguous
runs of row ids; it must give what a sorted read of the names gives.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.rollups import _signal_parts_sorted, _signal_runs, build_rollups, signal_parts
from analysis.store import connect

T0 = datetime(2026, 4, 6, 14, 0, 0)

# the meaning of each family, by signal name: (SQL of (t, signal, value) rows)
REFERENCE = """
SELECT t, 'caller:' || caller || ':requests', sum(requests) FROM roll_callers GROUP BY ALL
UNION ALL SELECT t, 'caller:' || caller || ':uris', sum(uris) FROM roll_callers GROUP BY ALL
UNION ALL SELECT t, 'caller:' || caller || ':max_uris', max(max_uris) FROM roll_callers
  GROUP BY ALL
UNION ALL SELECT t, 'caller:' || caller || ':errors', sum(errors) FROM roll_callers GROUP BY ALL
UNION ALL SELECT t, 'caller:' || caller || ':p99_ms', max(p99_duration_ms) FROM roll_callers
  GROUP BY ALL
UNION ALL SELECT t, 'errors:total', sum(errors) FROM roll_errors WHERE is_error GROUP BY ALL
UNION ALL SELECT t, 'errors:' || errno_class, sum(errors) FROM roll_errors
  WHERE is_error AND errno_class IS NOT NULL GROUP BY ALL
UNION ALL SELECT t, 'errors:cache:' || cache, sum(errors) FROM roll_errors
  WHERE is_error AND cache IS NOT NULL GROUP BY ALL
UNION ALL SELECT t, 'errors:op:' || op, sum(errors) FROM roll_errors
  WHERE is_error AND op IS NOT NULL GROUP BY ALL
UNION ALL SELECT t, 'metric:' || metric,
  CASE WHEN regexp_matches(metric, '(_total|_count|_sum|_bucket|per_second|_rate|_rps|_qps'
    || '|connections|requests)$') THEN sum(value) ELSE max(value) END
  FROM roll_metrics GROUP BY t, metric
"""


def _reference(con) -> pl.DataFrame:
    """The dense table as the plain SQL meaning gives it (label-set signals added from
    ``roll_metrics`` for metrics with several label sets)."""
    per_set = con.sql("""
        SELECT t, metric, labels, value FROM roll_metrics
        WHERE metric IN (SELECT metric FROM roll_metrics GROUP BY metric
                         HAVING count(DISTINCT labels) > 1)""").pl()
    per_set = per_set.with_columns(
        signal=pl.concat_str(
            pl.lit("metric:"), "metric",
            pl.col("labels").map_elements(
                lambda s: "{" + ",".join(f"{k}={v}" for k, v in sorted(json.loads(s).items()))
                + "}", return_dtype=pl.String),
        )
    ).select("t", "signal", "value")
    con.register("_per_set", per_set)
    ref = con.sql(f"""
        WITH v(t, signal, value) AS ({REFERENCE} UNION ALL SELECT t, signal, value FROM _per_set),
             grid AS (SELECT DISTINCT t FROM signals)
        SELECT g.t, c.signal,
               CASE WHEN c.kind = 'count' THEN coalesce(v.value, 0) ELSE v.value END AS value
        FROM signal_catalog c CROSS JOIN grid g
        LEFT JOIN v ON v.signal = c.signal AND v.t = g.t
        ORDER BY c.signal, g.t""").pl()
    con.unregister("_per_set")
    return ref


request = st.tuples(
    st.floats(0, 29.999),
    st.sampled_from(["web", "idx"]),
    st.one_of(st.integers(1, 20_000), st.none()),
    st.sampled_from(["ok", "error", "Unavailable"]),
    st.one_of(st.floats(0.1, 500), st.none()),
)
log_line = st.tuples(
    st.floats(0, 29.999),
    st.sampled_from(["error", "info"]),
    st.sampled_from(["EADDRINUSE", "ETIMEDOUT", None]),
    st.sampled_from(["post", None]),
    st.sampled_from(["dial", None]),
    st.sampled_from([1.0, 0.5, None]),
)
sample = st.tuples(
    st.sampled_from(["node_sockstat_TCP_tw", "memcached_connections_total", "go_threads"]),
    # (a metric with both an empty and a named label set would name one signal twice)
    st.sampled_from(['{"host":"a"}', '{"host":"b"}']),
    st.floats(-20, 50),  # seconds: samples before the grid hold into it
    st.floats(0, 1000),
)


def _store(requests, logs, samples):
    con = connect(None)
    inserts = [
        ("INSERT INTO requests (time, method, caller, uris, status, duration_ms, host, dc,"
         " file_id, line) VALUES (?, 'GetPostRecord', ?, ?, ?, ?, 'dp-1', 'us-east', 1, ?)",
         [(T0 + timedelta(seconds=r[0]), *r[1:], i) for i, r in enumerate(requests)]),
        ("INSERT INTO log_events (time, level, msg, errno_class, cache, op, sample_rate,"
         " file_id, line) VALUES (?, ?, 'm', ?, ?, ?, ?, 2, ?)",
         [(T0 + timedelta(seconds=r[0]), *r[1:], i) for i, r in enumerate(logs)]),
        ("INSERT INTO metrics VALUES (?, ?, ?, ?, 3, ?)",
         [(T0 + timedelta(seconds=s), m, lab, v, i) for i, (m, lab, s, v) in enumerate(samples)]),
    ]
    for sql, rows in inserts:
        if rows:
            con.executemany(sql, rows)
    return con


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(request, min_size=1, max_size=30),
    logs=st.lists(log_line, max_size=20),
    samples=st.lists(sample, max_size=30),
    grid_s=st.sampled_from([1, 3]),
)
def test_dense_signals_hold_each_familys_aggregate_else_zero_or_null(
    requests, logs, samples, grid_s
):
    con = _store(requests, logs, samples)
    build_rollups(con, grid_s=grid_s)
    got = con.sql("SELECT t, signal, value FROM signals").pl()
    want = _reference(con)
    assert got.schema == want.schema
    assert got.select("t", "signal").equals(want.select("t", "signal"))  # and in this order
    assert got["value"].is_null().to_list() == want["value"].is_null().to_list()
    diff = (got["value"] - want["value"]).abs() / (want["value"].abs() + 1.0)
    assert (diff.fill_null(0.0) <= 1e-12).all()


def test_signals_are_stored_as_one_time_ordered_run_per_signal():
    con = _store([(s / 3, "web", 5, "ok", 1.0) for s in range(60)],
                 [(1.5, "error", "EADDRINUSE", "post", "dial", 1.0)],
                 [("go_threads", '{"host":"a"}', s, s) for s in range(0, 25, 5)])
    build_rollups(con)
    runs = _signal_runs(con, None)
    assert runs is not None and [r[0] for r in runs] == sorted(r[0] for r in runs)
    fast = list(signal_parts(con))
    slow = list(_signal_parts_sorted(con, None))
    assert [n for n, _ in fast] == [n for n, _ in slow]
    assert all(a.equals(b) for (_, a), (_, b) in zip(fast, slow, strict=True))
    wanted = ["go_threads", "caller:web:uris", "metric:go_threads"]
    assert [n for n, _ in signal_parts(con, wanted)] == ["caller:web:uris", "metric:go_threads"]


def test_a_signals_view_is_read_by_name():
    """A view has no row ids: the reader falls back to reading names and sorting."""
    con = _store([(0, "web", 1, "ok", 1.0), (3, "idx", 9, "ok", 1.0)], [], [])
    build_rollups(con)
    con.execute("ALTER TABLE signals RENAME TO signals_stored")
    con.execute("CREATE VIEW signals AS SELECT * FROM signals_stored ORDER BY random()")
    assert _signal_runs(con, None) is None
    assert dict(signal_parts(con))["caller:idx:uris"]["value"].to_list() == [0, 0, 0, 9]


def _metrics_reference(con, start: datetime, n: int, stale_s: int = 300) -> pl.DataFrame:
    """``roll_metrics`` by the rules stated plainly: every bucket each sample's interval
    touches, then the mean per (series, bucket) (no integer keys, no shortcuts)."""
    lo, hi = f"TIMESTAMP '{start}'", f"TIMESTAMP '{start + timedelta(seconds=n)}'"
    stale = f"to_seconds({stale_s})"
    counter = "(regexp_matches(metric, '(_total|_count|_sum|_bucket)$'))"
    b = "time_bucket(INTERVAL 1 SECOND, {})"
    held = f"least(coalesce(next_t, time + coalesce(step, INTERVAL 0 SECOND)), time + {stale})"
    return con.sql(f"""
        WITH s AS (
            SELECT metric, coalesce(labels, '{{}}') AS labels, time, max(value) AS value
            FROM metrics WHERE value IS NOT NULL AND NOT isnan(value)
              AND time >= {lo} - {stale} AND time < {hi} + {stale} GROUP BY ALL
        ), l AS (
            SELECT *, {counter} AS is_counter, lag(time) OVER w AS prev_t,
                   lag(value) OVER w AS prev_v, lead(time) OVER w AS next_t
            FROM s WINDOW w AS (PARTITION BY metric, labels ORDER BY time)
        ), m AS (
            SELECT *, median(time - prev_t) OVER (PARTITION BY metric, labels) AS step FROM l
        ), c AS (
            SELECT metric, labels,
                   CASE WHEN is_counter
                        THEN (CASE WHEN value >= prev_v THEN value - prev_v ELSE value END)
                             / ((epoch_us(time) - epoch_us(prev_t)) / 1e6)
                        ELSE value END AS v,
                   CASE WHEN is_counter THEN {b.format("prev_t")} ELSE {b.format("time")} END
                     AS a,
                   CASE WHEN is_counter
                        THEN greatest({b.format("prev_t")},
                                      {b.format("time - INTERVAL 1 MICROSECOND")})
                        ELSE greatest({b.format("time")},
                                      {b.format(held + " - INTERVAL 1 MICROSECOND")}) END AS z
            FROM m WHERE NOT is_counter OR (prev_t IS NOT NULL AND time - prev_t <= {stale})
        ), e AS (
            SELECT metric, labels, v, unnest(generate_series(a, z, INTERVAL 1 SECOND)) AS t
            FROM c
        )
        SELECT t, metric, labels, avg(v) AS value FROM e WHERE t >= {lo} AND t < {hi}
        GROUP BY ALL ORDER BY metric, labels, t""").pl()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples=st.lists(
    st.tuples(
        st.sampled_from(["node_sockstat_TCP_tw", "memcached_connections_total"]),
        st.sampled_from(['{"host":"a"}', '{"host":"b"}']),
        st.floats(-400, 100).map(lambda s: round(s, 1)),  # off the grid, often in one bucket
        st.floats(0, 1000),
    ),
    min_size=1, max_size=40,
))
def test_metric_buckets_are_the_mean_of_every_sample_touching_them(samples):
    con = _store([(0, "web", 1, "ok", 1.0), (59.5, "web", 1, "ok", 1.0)], [], samples)
    info = build_rollups(con)
    got = con.sql("SELECT * FROM roll_metrics ORDER BY metric, labels, t").pl()
    want = _metrics_reference(con, info.start, info.n_buckets)
    assert got.select("t", "metric", "labels").equals(want.select("t", "metric", "labels"))
    assert ((got["value"] - want["value"]).abs() <= 1e-9 * (want["value"].abs() + 1)).all()
