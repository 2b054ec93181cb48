"""The connection-pool mechanism: ports, TIME_WAIT, failures, the workaround and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.mechanism import (
    Batches,
    PoolDemand,
    PoolSettings,
    demand_from_requests,
    simulate_pool,
)


@st.composite
def loads(draw, max_seconds: int = 200, max_hosts: int = 3):
    """Steady lookups plus a few huge batches, on a narrow port range."""
    n_t = draw(st.integers(5, max_seconds))
    n_h = draw(st.integers(1, max_hosts))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    steady = rng.integers(0, draw(st.integers(1, 400_000)), size=(n_t, n_h))
    n_b = draw(st.integers(0, 3 * n_t))
    sec = rng.integers(0, n_t, n_b)
    host = rng.integers(0, n_h, n_b)
    uris = rng.integers(1000, draw(st.integers(1001, 20_000)), n_b)
    lookups = steady.copy()
    np.add.at(lookups, (sec, host), uris)
    restarts = rng.random((n_t, n_h)) < draw(st.sampled_from([0.0, 0.01]))
    return PoolDemand(lookups, Batches(sec, host, uris), restarts)


def pool_settings(**kw) -> st.SearchStrategy[PoolSettings]:
    lo = st.integers(1024, 40000)
    return st.builds(
        lambda lo, width, idle, tw: PoolSettings(
            port_range=(lo, lo + width), idle_pool=idle, time_wait_s=tw, **kw
        ),
        lo, st.integers(100, 25000), st.integers(0, 2000), st.integers(1, 90),
    )


@settings(max_examples=40, deadline=None)
@given(loads(), pool_settings(source_addresses="fixed"))
def test_fixed_source_never_holds_more_ports_than_the_range(demand, s):
    out = simulate_pool(demand, s)
    assert (out.time_wait + out.idle <= s.ports).all()
    assert (out.open_conns + out.time_wait - out.closed <= s.ports).all()
    assert (out.failed_dials <= out.dials).all()
    assert (out.failed_lookups <= out.lookups).all()
    assert (out.failed_user_lookups <= out.failed_lookups).all()


@settings(max_examples=40, deadline=None)
@given(loads(), pool_settings(source_addresses="default"))
def test_time_wait_is_exactly_the_closes_of_the_last_time_wait_seconds(demand, s):
    out = simulate_pool(demand, s)
    cum = np.vstack([np.zeros((1, out.closed.shape[1]), np.int64), out.closed.cumsum(axis=0)])
    t = np.arange(out.closed.shape[0])
    expected = cum[t + 1] - cum[np.maximum(t + 1 - s.time_wait_s, 0)]
    np.testing.assert_array_equal(out.time_wait, expected)
    # A connection is closed only after it was opened: closes never exceed dials made
    # plus the idle pool carried in.
    assert out.closed.sum() <= (out.dials - out.failed_dials).sum()


def at_most_three_batches_per_second(demand: PoolDemand) -> PoolDemand:
    """Keep the first three batches of each (second, host): the culprit's < 3 requests/s."""
    b = demand.batches
    seen: dict[tuple[int, int], int] = {}
    keep = np.zeros(b.uris.size, bool)
    for i, key in enumerate(zip(b.second.tolist(), b.host.tolist(), strict=True)):
        seen[key] = seen.get(key, 0) + 1
        keep[i] = seen[key] <= 3
    lookups = np.minimum(demand.lookups, 600_000)  # steady: <= 300 connections
    np.add.at(lookups, (b.second[keep], b.host[keep]), b.uris[keep])
    return PoolDemand(
        lookups, Batches(b.second[keep], b.host[keep], b.uris[keep]), demand.restarts
    )


@settings(max_examples=40, deadline=None)
@given(loads(), st.integers(1024, 40000), st.integers(1000, 20000), st.integers(1, 90))
def test_a_concurrency_limit_of_50_reuses_the_pool_and_never_fails(demand, lo, width, tw):
    """At most 300 steady + 3 x 50 batch connections fit the idle pool of 1000: nothing is
    ever closed, so the ports never run out, whatever the batch sizes (restarts aside)."""
    demand = at_most_three_batches_per_second(demand)
    demand = PoolDemand(demand.lookups, demand.batches, None)
    s = PoolSettings(port_range=(lo, lo + width), time_wait_s=tw, concurrency_limit=50)
    out = simulate_pool(demand, s)
    assert out.concurrency.max() <= 450
    assert out.failed_lookups.sum() == 0
    assert out.failed_dials.sum() == 0
    assert out.time_wait.sum() == 0
    unlimited = simulate_pool(demand, PoolSettings(port_range=s.port_range, time_wait_s=tw))
    assert unlimited.concurrency.sum() >= out.concurrency.sum()


@settings(max_examples=30, deadline=None)
@given(loads(), pool_settings(source_addresses="random"))
def test_random_source_addresses_never_fail_and_time_wait_passes_the_range(demand, s):
    out = simulate_pool(demand, s)
    assert out.failed_dials.sum() == 0
    assert set(out.errno_class) <= {""}


def test_huge_batches_exhaust_ports_and_the_errno_follows_the_source_address():
    n_t = 400
    lookups = np.full((n_t, 1), 20_000)
    sec = np.arange(50, 250)
    uris = np.full(sec.size, 17_000)
    lookups[sec, 0] += uris
    demand = PoolDemand(lookups, Batches(sec, np.zeros_like(sec), uris))
    fixed = simulate_pool(demand, PoolSettings())
    assert fixed.time_wait[:50].max() == 0
    assert fixed.time_wait[60:250].max() + 1000 == PoolSettings().ports  # at the ceiling
    assert fixed.failed_user_lookups[60:250].sum() > 0  # users fail while batches run
    assert fixed.failed_lookups[:50].sum() == 0
    assert fixed.failed_lookups[250:].sum() == 0  # ...and only then
    assert fixed.time_wait[-1] == 0  # drained
    assert set(fixed.errno_class) == {"EADDRINUSE"}
    default = simulate_pool(demand, PoolSettings(source_addresses="default"))
    assert set(default.errno_class) == {"EADDRNOTAVAIL"}
    # The workaround from second 150, the fix from 200: failures stop at each.
    seq = simulate_pool(
        demand,
        PoolSettings(),
        changes=[(150, PoolSettings(source_addresses="random")),
                 (200, PoolSettings(concurrency_limit=50))],
    )
    assert seq.failed_lookups[60:150].sum() > 0
    assert seq.failed_lookups[150:].sum() == 0
    assert seq.time_wait[150:200].max() > PoolSettings().ports
    assert seq.dials[210:].sum() == 0
    # With the limit, batch lookups queue: latency goes up while batches run.
    assert seq.lookup_ms_mean[210, 0] > 5 * seq.lookup_ms_mean[300, 0]


def test_restart_meets_the_old_time_wait_sockets():
    n_t = 200
    lookups = np.full((n_t, 1), 2_000_000)  # 1000 steady connections: all idle pool
    restarts = np.zeros((n_t, 1), bool)
    restarts[100] = True
    s = PoolSettings(port_range=(40000, 41499), idle_pool=1000)
    out = simulate_pool(PoolDemand(lookups, restarts=restarts), s)
    assert out.failed_lookups[:100].sum() == 0
    assert out.time_wait[100, 0] == 1000  # the old process's connections
    assert out.failed_lookups[100, 0] > 0  # only 500 ports left for 1000 connections


def test_max_batch_rejects_big_requests():
    lookups = np.array([[20_000 + 17_000]])
    demand = PoolDemand(lookups, Batches(np.array([0]), np.array([0]), np.array([17_000])))
    out = simulate_pool(demand, PoolSettings(max_batch=5000))
    assert out.rejected_lookups[0, 0] == 17_000
    assert out.lookups[0, 0] == 20_000
    assert out.dials[0, 0] == 10


def test_demand_from_requests_sums_uris_and_keeps_batches():
    d = demand_from_requests(
        second=np.array([0, 0, 1, 1, 5]), host=np.array([0, 1, 1, 1, 0]),
        uris=np.array([10, 20, 15_000, 5, 3]), n_seconds=3, n_hosts=2,
    )
    np.testing.assert_array_equal(d.lookups, [[10, 20], [0, 15_005], [0, 0]])
    assert d.batches.uris.tolist() == [15_000]


def test_simulate_pool_is_pure():
    lookups = np.full((30, 2), 1000)
    demand = PoolDemand(lookups.copy())
    a = simulate_pool(demand, PoolSettings())
    b = simulate_pool(demand, PoolSettings())
    np.testing.assert_array_equal(demand.lookups, lookups)
    np.testing.assert_array_equal(a.time_wait, b.time_wait)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        PoolSettings(port_range=(5000, 100))
    with pytest.raises(ValueError):
        PoolSettings(source_addresses="anywhere")  # type: ignore[arg-type]
