"""The chain reads the requests it needs from the rollups, not from the raw log.

``forced_dials`` counts the lookups each caller's batches want beyond the idle
pool; from ``roll_heavy`` (requests over ``HEAVY_URIS``) it must equal the count
from the raw ``requests`` whenever the pool is at least ``HEAVY_URIS``, and the
caller's main method comes from ``roll_callers``. So a store with many more
ordinary requests gives the chain the same inputs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.chain import Environment, find_chain
from analysis.chain.callers import caller_method, forced_dials
from analysis.rollups import HEAVY_URIS, build_rollups
from analysis.store import connect

T0 = datetime(2026, 4, 6, 14, 0, 0)


def _store(rows):
    """A store of requests ``(second, caller, host, uris, method)``, rolled up."""
    con = connect(None)
    frame = pl.DataFrame(
        {
            "time": [T0 + timedelta(seconds=r[0]) for r in rows],
            "caller": [r[1] for r in rows],
            "host": [r[2] for r in rows],
            "uris": [r[3] for r in rows],
            "method": [r[4] for r in rows],
        },
        schema={"time": pl.Datetime("us"), "caller": pl.String, "host": pl.String,
                "uris": pl.Int32, "method": pl.String},
    )
    con.register("_rows", frame)
    con.execute(
        "INSERT INTO requests (time, method, caller, uris, status, duration_ms, host, dc,"
        " file_id, line) SELECT time, method, caller, uris, 'ok', 1.0, host, 'us-east', 1,"
        " row_number() OVER () FROM _rows"
    )
    con.unregister("_rows")
    build_rollups(con)
    return con


def _both(con, env, n):
    """Forced dials from the rollup, then from the raw rows (the rollup dropped)."""
    fast = forced_dials(con, T0, n, 1.0, env)
    con.execute("DROP TABLE roll_heavy")
    slow = forced_dials(con, T0, n, 1.0, env)
    return fast, slow


def _assert_same(fast, slow):
    assert fast.keys() == slow.keys()
    for caller in fast:
        np.testing.assert_array_equal(fast[caller].series, slow[caller].series)
        assert fast[caller].fill == slow[caller].fill
        assert fast[caller].first == slow[caller].first


request = st.tuples(
    st.floats(0, 119.999),  # second within a two-minute capture
    st.sampled_from(["web", "idx", None]),
    st.sampled_from(["dp-1", "dp-2", None]),
    st.one_of(st.integers(1, 50), st.integers(1, 30_000), st.none()),
    st.sampled_from(["GetPostRecord", "GetUser"]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(request, min_size=1, max_size=60),
    pool=st.one_of(st.none(), st.integers(HEAVY_URIS, 5_000)),
    time_wait=st.integers(1, 90),
)
def test_forced_dials_from_heavy_rollup_equal_those_from_raw_rows(rows, pool, time_wait):
    con = _store(rows)
    n = int(con.execute("SELECT count(*) FROM signals WHERE signal ="
                        " (SELECT min(signal) FROM signal_catalog)").fetchone()[0])
    env = Environment(port_range=(1000, 3999), time_wait_s=time_wait, idle_pool=pool)
    _assert_same(*_both(con, env, n))


def test_a_pool_below_the_heavy_threshold_reads_the_raw_rows():
    # a 10-connection pool: batches of 20 URIs dial, and roll_heavy does not hold them
    con = _store([(0, "web", "dp-1", 20, "GetUser"), (1, "web", "dp-1", 30, "GetUser")])
    env = Environment(port_range=(1000, 1099), time_wait_s=60, idle_pool=10)
    fast = forced_dials(con, T0, 2, 1.0, env)
    assert fast["web"].series.tolist() == [10.0, 20.0]
    _assert_same(*_both(con, env, 2))


def test_main_method_is_the_one_most_uris_went_to():
    con = _store([(0, "idx", "dp-1", 5, "GetUser")] * 3
                 + [(1, "idx", "dp-1", 17_000, "GetPostRecord")])
    assert caller_method(con, "idx") == "GetPostRecord"
    assert caller_method(con, "nobody") is None


def test_more_ordinary_traffic_gives_the_chain_the_same_inputs():
    """Ten times the small requests per second: same grid, signals, heavy rows, forced
    dials and culprit evidence (the chain's inputs do not grow with raw rows)."""
    rng = np.random.default_rng(1)
    heavy = [(s, "idx", f"dp-{s % 2 + 1}", int(rng.integers(15_000, 20_001)), "GetPostRecord")
             for s in range(100, 300, 3)]

    def small(k):
        return [(s + j / k, "web", f"dp-{j % 2 + 1}", int(rng.integers(1, 51)), "GetUser")
                for s in range(600) for j in range(k)]

    stores = [_store(small(k) + heavy) for k in (2, 20)]
    shapes = []
    for con in stores:
        env = Environment(idle_pool=1000)
        forced = forced_dials(con, T0, 600, 1.0, env)
        chain = find_chain(con)
        shapes.append((
            con.execute("SELECT count(*), count(DISTINCT signal) FROM signals").fetchall(),
            con.execute("SELECT signal, kind FROM signal_catalog ORDER BY 1").fetchall(),
            con.execute("SELECT count(*) FROM roll_heavy").fetchall(),
            {c: (f.series.tolist(), f.fill, f.first) for c, f in forced.items()},
            [(s.caller, s.method, s.max_batch, s.forced_dials, s.fill) for s in chain.callers],
        ))
    assert shapes[0] == shapes[1]
    assert shapes[0][2] == [(len(heavy),)]
