"""Rollups: every source on one dense grid, on small hand-made stores."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.errors import UserError
from analysis.rollups import (
    build_rollups,
    signal_frame,
    signal_ids,
    signal_parts,
    signal_series,
)
from analysis.signal_id import SignalId
from analysis.store import connect

T0 = datetime(2026, 4, 6, 14, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def add_requests(con, rows):
    """rows: (seconds, caller, uris, status[, duration_ms])."""
    con.executemany(
        "INSERT INTO requests (time, method, caller, uris, status, duration_ms, host, dc,"
        " file_id, line) VALUES (?, 'GetPostRecord', ?, ?, ?, ?, 'dp-1', 'us-east', 1, ?)",
        [(at(r[0]), r[1], r[2], r[3], r[4] if len(r) > 4 else 1.0, i) for i, r in enumerate(rows)],
    )


def add_logs(con, rows):
    """rows: (seconds, level, errno_class, cache, op, sample_rate)."""
    con.executemany(
        "INSERT INTO log_events (time, level, msg, errno_class, cache, op, sample_rate,"
        " file_id, line) VALUES (?, ?, 'm', ?, ?, ?, ?, 2, ?)",
        [(at(r[0]), *r[1:], i) for i, r in enumerate(rows)],
    )


def add_metric(con, metric, points, labels="{}"):
    con.executemany(
        "INSERT INTO metrics VALUES (?, ?, ?, ?, 3, ?)",
        [(at(s), metric, labels, float(v), i) for i, (s, v) in enumerate(points)],
    )


def values(con, signal):
    return signal_series(con, signal)["value"].to_list()


def test_dense_grid_fills_empty_buckets_of_counts_with_zero():
    con = connect(None)
    add_requests(
        con,
        [
            (0, "web", 10, "ok"),
            (4.2, "web", 30, "ok"),
            (4.5, "web", 10, "ok"),
            (4.9, "idx", 17000, "ok"),
        ],
    )
    info = build_rollups(con)
    assert (info.grid_s, info.start, info.end, info.n_buckets) == (1, at(0), at(4), 5)
    assert values(con, "caller:web:requests") == [1, 0, 0, 0, 2]
    assert values(con, "caller:web:uris") == [10, 0, 0, 0, 40]
    assert values(con, "caller:idx:max_uris") == [0, 0, 0, 0, 17000]
    # every signal has exactly one row per bucket
    counts = con.execute("SELECT DISTINCT count(*) FROM signals GROUP BY signal").fetchall()
    assert counts == [(5,)]
    assert info.n_signals == con.execute("SELECT count(*) FROM signal_catalog").fetchall()[0][0]


def test_per_caller_weight_view_and_batch_quantiles():
    con = connect(None)
    add_requests(
        con,
        [(0.1, "web", n, "ok") for n in (1, 2, 3, 4, 50)] + [(0.5, "idx", 20000, "UNAVAILABLE")],
    )
    build_rollups(con)
    rows = con.execute(
        "SELECT caller, requests, uris, p50_uris, max_uris, errors FROM roll_callers ORDER BY 1"
    ).fetchall()
    assert rows == [("idx", 1, 20000, 20000, 20000, 1), ("web", 5, 60, 3, 50, 0)]
    # the culprit's request rate is lower but its URI rate dwarfs the others
    assert values(con, "caller:idx:requests") < values(con, "caller:web:requests")
    assert values(con, "caller:idx:uris") > values(con, "caller:web:uris")


def test_coarser_grid_gives_per_second_rates():
    con = connect(None)
    add_requests(con, [(s, "web", 2, "ok") for s in range(10)])
    info = build_rollups(con, grid_s=5)
    assert info.n_buckets == 2
    assert values(con, "caller:web:requests") == [1.0, 1.0]
    assert values(con, "caller:web:uris") == [2.0, 2.0]


def test_log_lines_weighted_by_inverse_sample_rate():
    con = connect(None)
    add_logs(
        con,
        [
            (1.0, "error", "EADDRINUSE", "post", "bind", 0.5),
            (1.2, "error", "EADDRINUSE", "user", "bind", None),
            (1.4, "error", "EADDRNOTAVAIL", "post", "connect", 0.1),
            (2.0, "info", None, None, None, None),  # not an error: no error signal
        ],
    )
    build_rollups(con)
    assert values(con, "errors:total") == [3 + 10, 0]
    assert values(con, "errors:EADDRINUSE") == [3, 0]
    assert values(con, "errors:EADDRNOTAVAIL") == [10, 0]
    assert values(con, "errors:cache:post") == [12, 0]
    assert values(con, "errors:op:bind") == [3, 0]
    info_lines = con.execute("SELECT sum(errors) FROM roll_errors WHERE level = 'info'")
    assert info_lines.fetchall() == [(1.0,)]


def test_counter_becomes_rate_with_reset_handled():
    con = connect(None)
    add_metric(con, "memcached_connections_total", enumerate([0, 10, 20, 5, 15]))
    build_rollups(con)
    # (prev, cur] rates sit in the buckets of that interval; a reset counts from 0
    assert values(con, "metric:memcached_connections_total") == [10, 10, 5, 10, None]
    cat = con.execute(
        "SELECT source, unit, kind FROM signal_catalog WHERE signal LIKE 'metric:%'"
    ).fetchall()
    assert cat == [("metrics", "per_s", "rate")]


def test_sparse_counter_rate_spreads_over_its_interval():
    con = connect(None)
    add_metric(con, "kube_pod_container_status_restarts_total", [(0, 0), (15, 30), (30, 30)])
    build_rollups(con)
    v = values(con, "metric:kube_pod_container_status_restarts_total")
    assert v[:15] == [2.0] * 15 and v[15:30] == [0.0] * 15


def test_gauge_holds_until_next_sample_and_goes_null_when_stale():
    con = connect(None)
    add_metric(con, "go_threads", [(0, 150), (3, 1500), (400, 150)])
    build_rollups(con, stale_s=60)
    v = values(con, "metric:go_threads")
    assert v[:4] == [150, 150, 150, 1500]
    assert v[62] == 1500 and v[63] is None and v[399] is None and v[400] == 150


def test_gauges_aggregate_by_max_rates_by_sum_and_label_sets_kept():
    con = connect(None)
    add_metric(con, "node_sockstat_TCP_tw", [(0, 100), (1, 28000)], '{"instance":"dp-1"}')
    add_metric(con, "node_sockstat_TCP_tw", [(0, 300), (1, 200)], '{"instance":"dp-2"}')
    add_metric(con, "appview_requests_per_second", [(0, 10), (1, 4)], '{"dc":"a"}')
    add_metric(con, "appview_requests_per_second", [(0, 20), (1, 6)], '{"dc":"b"}')
    build_rollups(con)
    assert values(con, "metric:node_sockstat_TCP_tw") == [300, 28000]
    assert values(con, "metric:node_sockstat_TCP_tw{instance=dp-1}") == [100, 28000]
    assert values(con, "metric:appview_requests_per_second") == [30, 10]
    assert values(con, "metric:appview_requests_per_second{dc=b}") == [20, 6]


def test_single_label_set_gives_no_duplicate_signal_and_nan_is_skipped():
    con = connect(None)
    add_metric(con, "go_goroutines", [(0, 5), (1, float("nan")), (2, 7)], '{"pod":"p"}')
    build_rollups(con)
    names = [r[0] for r in con.execute("SELECT signal FROM signal_catalog").fetchall()]
    assert names == ["metric:go_goroutines"]
    assert values(con, "metric:go_goroutines") == [5, 5, 7]


def test_events_become_intervals_and_do_not_stretch_the_grid():
    con = connect(None)
    add_requests(con, [(0, "web", 1, "ok"), (9, "web", 1, "ok")])
    con.execute(
        "INSERT INTO events (time, end_time, kind, title, file_id, line) VALUES"
        " (?, NULL, 'deploy', 'new indexer', 4, 1), (?, ?, 'mitigation', 'random src', 4, 2)",
        [at(-7 * 86400), at(3), at(8)],
    )
    info = build_rollups(con)
    assert info.n_buckets == 10
    rows = con.execute('SELECT start, "end", kind FROM roll_events').fetchall()
    assert rows == [(at(-7 * 86400), at(-7 * 86400), "deploy"), (at(3), at(8), "mitigation")]


def test_incident_window_clips_the_grid():
    con = connect(None)
    add_requests(con, [(s, "web", 1, "ok") for s in range(20)])
    con.execute(
        "INSERT INTO incident VALUES ('window_start', ?), ('window_end', '2026-04-06T14:00:14Z')",
        [str(at(5))],
    )
    info = build_rollups(con)
    assert (info.start, info.end) == (at(5), at(14))
    assert values(con, "caller:web:requests") == [1] * 10


def test_empty_store_builds_empty_tables_and_bad_grid_is_a_user_error():
    con = connect(None)
    info = build_rollups(con)
    assert info.n_buckets == 0 and info.n_signals == 0 and info.start is None
    assert signal_series(con, "errors:total").height == 0
    with pytest.raises(UserError):
        build_rollups(con, grid_s=0)


def test_signal_frame_is_wide_with_null_columns_for_unknown_signals():
    con = connect(None)
    add_requests(con, [(0, "web", 1, "ok"), (2, "idx", 9, "ok")])
    build_rollups(con)
    frame = signal_frame(con, ["caller:idx:uris", "nope"])
    assert frame.columns == ["t", "caller:idx:uris", "nope"]
    assert frame["caller:idx:uris"].to_list() == [0, 0, 9]
    assert frame["nope"].null_count() == 3


def test_signal_parts_come_ordered_whatever_the_stored_order():
    con = connect(None)
    add_requests(con, [(0, "web", 1, "ok"), (3, "idx", 9, "ok")])
    build_rollups(con)
    con.execute("CREATE OR REPLACE TABLE signals AS SELECT * FROM signals ORDER BY random()")
    parts = list(signal_parts(con))
    assert [name for name, _ in parts] == sorted(name for name, _ in parts)
    assert all(p["t"].is_sorted() for _, p in parts)
    assert dict(parts)["caller:idx:uris"]["value"].to_list() == [0, 0, 0, 9]
    assert signal_frame(con, ["caller:idx:uris"])["caller:idx:uris"].to_list() == [0, 0, 0, 9]


HOSTILE = ["host:8080", "a,b=c}", 'q"\\', "feed:indexer\n\x1b[31m", "\u202eevil", "🔥"]


@pytest.mark.parametrize("name", HOSTILE)
def test_any_name_gets_its_own_signals_with_its_structure(name):
    con = connect(None)
    add_requests(con, [(0, name, 10, "ok"), (1, "web", 3, "ok"), (2, name, 5, "ok")])
    add_logs(con, [(0, "error", name, name, name, 1.0)])
    add_metric(con, name, [(0, 1), (1, 2)], labels=json.dumps({"dc": name, "host": "a"}))
    add_metric(con, name, [(0, 5), (1, 6)], labels=json.dumps({"dc": "b", "host": name}))
    build_rollups(con)
    ids = signal_ids(con)
    assert set(ids) == {sid.key for sid in ids.values()}
    by_caller = {sid.measure: key for key, sid in ids.items() if sid.caller == name}
    assert values(con, by_caller["uris"]) == [10, 0, 5]
    errors = {sid.measure: key for key, sid in ids.items()
              if sid.family == "errors" and sid.subject == name}
    assert set(errors) == {"errno", "cache", "op"}
    sets = {sid.labels for sid in ids.values() if sid.metric == name and sid.labels}
    assert sets == {(("dc", "b"), ("host", name)), (("dc", name), ("host", "a"))}
    assert values(con, SignalId.for_metric(name, {"dc": name, "host": "a"}).key) == [1, 2, None]


@settings(max_examples=10, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 59.999), st.sampled_from(["a", "b"]), st.integers(1, 20000)),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([1, 2, 7, 60]),
)
def test_rollup_conserves_requests_and_uris(rows, grid_s):
    con = connect(None)
    add_requests(con, [(s, c, n, "ok") for s, c, n in rows])
    build_rollups(con, grid_s=grid_s)
    for caller in ("a", "b"):
        mine = [r for r in rows if r[1] == caller]
        reqs = signal_series(con, f"caller:{caller}:requests")["value"]
        uris = signal_series(con, f"caller:{caller}:uris")["value"]
        if mine:
            assert reqs.sum() * grid_s == pytest.approx(len(mine))
            assert uris.sum() * grid_s == pytest.approx(sum(r[2] for r in mine))
        else:
            assert reqs.len() == 0


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=3, max_size=30))
def test_counter_rate_integrates_to_increase_counting_resets(increments):
    """Integrating the rate gives the counter's total increase, resets included."""
    con = connect(None)
    value, points = 0, []
    for i, inc in enumerate(increments):
        value = inc if inc < 100 else value + inc  # small draws reset the counter
        points.append((i, value))
    add_metric(con, "x_total", points)
    build_rollups(con)
    expected = sum(
        (v - p) if v >= p else v for (_, p), (_, v) in zip(points, points[1:], strict=False)
    )
    got = signal_series(con, "metric:x_total")["value"].drop_nulls().sum()
    assert got == pytest.approx(expected)
