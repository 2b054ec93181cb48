"""Lead/lag and coincidence on data with known lags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.correlation import (
    block_products,
    coincidence,
    cross_correlation,
    lead_lag,
    transform,
    window_starts,
)
from analysis.detection import AnomalyWindow

T0 = datetime(2026, 4, 6, 14, 0, 0)


def shifted_pair(k: int, n: int = 3000, noise: float = 1.0, seed: int = 0):
    """A random walk and the same walk ``k`` buckets later, plus noise."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 1, n + 200))
    cause = walk[100 : 100 + n]
    effect = walk[100 - k : 100 - k + n] + rng.normal(0, noise, n)
    return cause, effect


def step_pair(lag: int, n: int = 8000, events: int = 10, seed: int = 0):
    """Cause steps up and down ``events`` times; the effect follows ``lag`` buckets later."""
    rng = np.random.default_rng(seed)
    cause, effect = np.zeros(n), np.zeros(n)
    for s in np.sort(rng.choice(np.arange(200, n - 600, 400), events, replace=False)):
        d = int(rng.integers(30, 200))
        cause[s : s + d] += 100
        effect[s + lag : s + lag + d] += 40
    return cause + rng.normal(0, 3, n), effect + rng.normal(0, 3, n)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(-40, 40), seed=st.integers(0, 1000))
def test_a_series_shifted_by_k_is_found_k_behind_with_k_in_the_interval(k, seed):
    cause, effect = shifted_pair(k, seed=seed)
    r = lead_lag(cause, effect, max_lag=60, n_boot=100, seed=seed)
    assert r.lag_s == k
    assert r.ci_low <= k <= r.ci_high
    assert r.corr > 0.3


def test_onset_driven_steps_are_found_behind_and_sign_is_kept():
    cause, effect = step_pair(42)
    r = lead_lag(cause, effect, max_lag=120)
    assert r.lag_s == 42 and r.ci_low <= 42 <= r.ci_high and r.corr > 0
    inverse = lead_lag(cause, -effect, max_lag=120)  # errors up, user requests down
    assert inverse.lag_s == 42 and inverse.corr < 0


def test_lag_is_in_seconds_of_the_grid_and_negative_when_effect_leads():
    cause, effect = shifted_pair(-5)
    assert lead_lag(cause, effect, max_lag=20, step_s=5).lag_s == -25
    assert lead_lag(effect, cause, max_lag=20).lag_s == 5


def test_deterministic_given_seed_and_tolerates_missing_values():
    cause, effect = step_pair(10, seed=3)
    effect[500:520] = np.nan
    a = lead_lag(cause, pl.Series(effect), max_lag=50, seed=7)
    b = lead_lag(cause, effect, max_lag=50, seed=7)
    assert a == b and a.lag_s == 10


def test_without_bootstrap_the_interval_is_the_estimate():
    cause, effect = shifted_pair(6)
    r = lead_lag(cause, effect, max_lag=20, n_boot=0)
    assert r.lag_s == r.ci_low == r.ci_high == 6


def test_constant_series_has_no_lag_and_lengths_must_match():
    r = lead_lag(np.ones(500), np.arange(500.0), max_lag=10)
    assert np.isnan(r.lag_s) and r.corr == 0.0
    with pytest.raises(ValueError):
        lead_lag(np.ones(5), np.ones(6), max_lag=1)
    with pytest.raises(ValueError):
        transform(np.ones(5), "fourier")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-100, 100), min_size=12, max_size=60),
    st.integers(0, 5),
    st.integers(0, 10_000),
)
def test_cross_correlation_matches_the_definition(values, max_lag, seed):
    a = np.asarray(values)
    b = np.random.default_rng(seed).normal(0, 1, len(a))
    n = len(a)
    got = cross_correlation(a, b, max_lag)
    t = np.arange(max_lag, n - max_lag)
    want = [np.mean(a[t] * b[t + k]) for k in range(-max_lag, max_lag + 1)]
    assert got == pytest.approx(want, abs=1e-9 * (1 + np.abs(a).max()))


@settings(max_examples=30, deadline=None)
@given(st.integers(20, 80), st.integers(0, 6), st.integers(0, 10_000))
def test_one_block_over_the_whole_range_sums_to_the_cross_correlation(n, max_lag, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
    m = n - 2 * max_lag
    products = block_products(a, b, max_lag, m)
    assert products.shape == (1, 2 * max_lag + 1)
    assert products[0] == pytest.approx(cross_correlation(a, b, max_lag) * m, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=50),
    st.sampled_from(["diff", "level", "prewhiten"]),
)
def test_transform_is_standardised(values, how):
    y = transform(np.asarray(values), how)
    assert len(y) == len(values)
    assert abs(y.mean()) < 1e-6
    assert y.std() == pytest.approx(1.0, abs=1e-6) or not y.any()


def test_coincidence_of_following_windows_is_significant():
    rng = np.random.default_rng(0)
    cause = np.sort(rng.uniform(0, 28_800, 16))
    follows = coincidence(cause, cause + rng.uniform(2, 40, 16), max_lag_s=60, span=(0, 28_800))
    assert follows.share == 1.0 and follows.n_followed == 16 and follows.p_value < 0.01
    assert 2 <= follows.median_delay_s <= 40 and follows.null_share < 0.2
    unrelated = coincidence(
        cause, rng.uniform(0, 28_800, 16), max_lag_s=60, span=(0, 28_800), seed=1
    )
    assert unrelated.p_value > 0.05


def test_coincidence_accepts_windows_datetimes_and_frames():
    def win(s: int) -> AnomalyWindow:
        t = T0 + timedelta(seconds=s)
        return AnomalyWindow("x", t, t, t, "up", 1.0, 1.0, 5.0, 0.0, 1.0)

    causes = [win(100), win(2000)]
    effects = pl.DataFrame({"start": [T0 + timedelta(seconds=s) for s in (110, 2005)]})
    span = (T0, T0 + timedelta(hours=1))
    r = coincidence(causes, effects, max_lag_s=30, span=span)
    assert (r.share, r.n_cause, r.median_delay_s) == (1.0, 2, 7.5)
    naive_utc = (T0 - datetime(1970, 1, 1)).total_seconds()
    assert window_starts([(T0, T0)]) == pytest.approx([naive_utc])
    assert window_starts([T0.replace(tzinfo=UTC)]) == pytest.approx([naive_utc])
    # an effect detected one second early counts only with a negative min_lag_s
    early = [T0 + timedelta(seconds=99)]
    assert coincidence([win(100)], early, max_lag_s=30, span=span).share == 0.0
    assert coincidence([win(100)], early, max_lag_s=30, span=span, min_lag_s=-2).share == 1.0


def test_coincidence_with_no_windows():
    assert coincidence([], [1.0], max_lag_s=5, span=(0, 10)).n_cause == 0
    r = coincidence([1.0], [], max_lag_s=5, span=(0, 10))
    assert (r.share, r.p_value) == (0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1000), max_size=20),
    st.lists(st.floats(0, 1000), max_size=20),
    st.floats(0, 200),
)
def test_coincidence_bounds(cause, effect, max_lag):
    r = coincidence(cause, effect, max_lag_s=max_lag, span=(0, 1000), n_shuffle=50)
    assert 0 < r.p_value <= 1
    assert r.n_followed <= r.n_cause == len(cause)
    if cause:
        assert 0 <= r.share <= 1
        brute = sum(any(0 <= e - c <= max_lag for e in effect) for c in cause)
        assert r.n_followed == brute
