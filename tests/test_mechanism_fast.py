"""The fast ``simulate_pool`` gives exactly what stepping ``PoolState`` second by
second gives (the reference, kept here for this comparison only)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analysis.mechanism import (
    POOL_KEYS,
    Batches,
    PoolDemand,
    PoolSeries,
    PoolSettings,
    PoolState,
    pool_series,
    prepare_demand,
    simulate_pool,
)


def reference_simulate_pool(
    demand: PoolDemand, settings: PoolSettings, changes=()
) -> PoolSeries:
    """The original per-second loop: ``PoolState.step`` for every second in order."""
    prep = prepare_demand(demand, settings, changes)
    n_t, n_h = prep.steady.shape
    state = PoolState(n_t, n_h)
    out = {k: np.zeros((n_t, n_h)) for k in POOL_KEYS}
    for t in range(n_t):
        st_ = prep.segments[prep.seg_of[t]][2]
        res = state.step(t, st_, prep.steady[t], prep.batch_lookups[t], prep.batch_conc[t],
                         prep.batch_wait[t], prep.restarts[t])
        for k in POOL_KEYS:
            out[k][t] = res[k]
    return pool_series(prep, out)


def assert_same(a: PoolSeries, b: PoolSeries) -> None:
    for name in PoolSeries.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


pool_settings = st.builds(
    PoolSettings,
    idle_pool=st.integers(0, 300),
    port_range=st.integers(1, 400).map(lambda w: (40000, 40000 + w - 1)),
    time_wait_s=st.integers(1, 20),
    source_addresses=st.sampled_from(["fixed", "random", "default"]),
    concurrency_limit=st.none() | st.integers(1, 100),
    max_batch=st.none() | st.integers(1, 2000),
    max_tw_buckets=st.integers(1, 1000),
)


@st.composite
def demands(draw) -> PoolDemand:
    n_t = draw(st.integers(1, 80))
    n_h = draw(st.integers(1, 4))
    lookups = draw(hnp.arrays(np.int64, (n_t, n_h), elements=st.integers(0, 3_000_000)))
    n_b = draw(st.integers(0, 30))
    sec = draw(hnp.arrays(np.int64, n_b, elements=st.integers(-2, n_t + 1)))
    host = draw(hnp.arrays(np.int64, n_b, elements=st.integers(0, n_h - 1)))
    uris = draw(hnp.arrays(np.int64, n_b, elements=st.integers(1, 3000)))
    restarts = draw(st.none() | hnp.arrays(np.bool_, (n_t, n_h)))
    return PoolDemand(lookups, Batches(sec, host, uris), restarts)


@settings(max_examples=int(os.environ.get("FAST_POOL_EXAMPLES", "150")), deadline=None)
@given(demands(), pool_settings, st.lists(st.tuples(st.integers(-5, 90), pool_settings),
                                          max_size=3))
def test_fast_simulate_pool_equals_stepping_every_second(demand, s, changes):
    assert_same(simulate_pool(demand, s, changes), reference_simulate_pool(demand, s, changes))


def test_fast_path_equals_reference_on_an_incident_shaped_day():
    """Hours of small load, bursts of 15-20k-URI batches, a restart, the workaround then the fix."""
    rng = np.random.default_rng(7)
    n_t, n_h = 3000, 3
    lookups = rng.poisson(400_000, (n_t, n_h))
    n_b = 900
    sec = np.sort(rng.integers(200, 2400, n_b))
    host = rng.integers(0, n_h, n_b)
    uris = rng.integers(15_000, 20_001, n_b)
    np.add.at(lookups, (sec, host), uris)
    restarts = np.zeros((n_t, n_h), bool)
    restarts[900, 1] = True
    demand = PoolDemand(lookups, Batches(sec, host, uris), restarts)
    base = PoolSettings()
    changes = [(1500, PoolSettings(source_addresses="random")),
               (2000, PoolSettings(concurrency_limit=50))]
    fast = simulate_pool(demand, base, changes)
    assert fast.failed_lookups.sum() > 0  # the ports did run out: the comparison means something
    assert_same(fast, reference_simulate_pool(demand, base, changes))


def test_changes_at_the_same_second_apply_in_order_the_last_wins():
    demand = PoolDemand(np.zeros((5, 1), np.int64), Batches(np.array([3]), np.array([0]),
                                                            np.array([5000])))
    out = simulate_pool(demand, PoolSettings(), [(2, PoolSettings(concurrency_limit=10)),
                                                 (2, PoolSettings(concurrency_limit=50))])
    assert out.concurrency[3, 0] == 50
