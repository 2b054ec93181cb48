"""Roles: well-known names and errno classes map to the chain's vocabulary; unknown
series get a role from their data, or none."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.roles import (
    ROLES,
    plateau_matches_range,
    role_by_data,
    role_of_errno,
    role_of_signal,
    role_order,
)
from analysis.signal_id import SignalId


@pytest.mark.parametrize(
    ("signal", "role"),
    [
        ("caller:feed-indexer:uris", "trigger"),
        ("caller:feed-indexer:max_uris", "trigger"),
        ("metric:memcached_connections_total", "fan_out"),
        ("metric:memcached_current_connections", "fan_out"),
        ("metric:go_goroutines", "fan_out"),
        ("metric:node_sockstat_TCP_tw", "port_exhaustion"),
        ("metric:node_sockstat_TCP_tw{instance=dp-1}", "port_exhaustion"),
        ("errors:EADDRINUSE", "port_exhaustion"),
        ("errors:EADDRNOTAVAIL", "port_exhaustion"),
        ("errors:ETIMEDOUT", "cache_errors"),
        ("errors:total", "cache_errors"),
        ("errors:cache:post", "cache_errors"),
        ("metric:go_threads", "runtime_stress"),
        ("metric:go_gc_duration_seconds", "runtime_stress"),
        ("metric:kube_pod_container_status_restarts_total", "runtime_stress"),
        ("metric:appview_requests_per_second{dc=us-east}", "user_impact"),
        ("metric:appview_http_requests_total", "user_impact"),
    ],
)
def test_well_known_names_get_their_role(signal, role):
    m = role_of_signal(SignalId.parse(signal))
    assert m is not None and m.role == role and m.how == "name"


def test_user_traffic_is_active_when_it_drops():
    assert role_of_signal(SignalId.parse("metric:appview_requests_per_second")).direction == "down"
    assert role_of_signal(SignalId.parse("metric:go_threads")).direction == "up"


def test_request_rate_and_packet_loss_are_rivals_not_roles():
    rate = role_of_signal(SignalId.parse("caller:busy-timeline:requests"))
    loss = role_of_signal(SignalId.parse("metric:transit_packet_loss_ratio{dst=dc1,src=cloud}"))
    assert rate.role is None and rate.rival == "request_rate"
    assert loss.role is None and loss.rival == "packet_loss"


def test_unknown_names_have_no_role_by_name():
    assert role_of_signal(SignalId.parse("metric:fancy_widget_level")) is None


@given(st.text(min_size=1))
def test_a_caller_called_anything_keeps_its_roles(caller):
    weight = role_of_signal(SignalId.for_caller(caller, "uris"))
    rate = role_of_signal(SignalId.for_caller(caller, "requests"))
    assert weight.role == "trigger" and weight.signal == SignalId.for_caller(caller, "uris").key
    assert rate.rival == "request_rate"


@given(st.sampled_from(["EADDRINUSE", "eaddrnotavail", "ECONNRESET", "EOF", "other"]))
def test_only_address_errors_mean_exhaustion(errno):
    expected = "port_exhaustion" if errno.upper().startswith("EADDR") else "cache_errors"
    assert role_of_errno(errno) == expected


def test_roles_are_in_causal_order():
    assert [role_order(r) for r in ROLES] == list(range(6))
    assert ROLES[0] == "trigger" and ROLES[-1] == "user_impact"


def test_a_plateau_at_the_port_range_is_time_wait_like():
    v = np.concatenate([np.full(50, 20.0), np.linspace(20, 3000, 20), np.full(30, 3000.0)])
    assert plateau_matches_range(v, 3000)
    assert not plateau_matches_range(v, 28232)
    assert role_by_data(v, {}, port_range=3000)[0] == "port_exhaustion"


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_role_by_data_follows_the_strongest_reference(seed):
    rng = np.random.default_rng(seed)
    errors = np.concatenate([np.zeros(100), np.full(30, 500.0), np.zeros(70)])
    errors = errors + rng.uniform(0, 1, errors.size)
    traffic = 1000 - errors + rng.normal(0, 5, errors.size)
    noise = rng.normal(0, 1, errors.size)
    assert role_by_data(traffic, {"cache_errors": errors})[:2] == ("user_impact", "down")
    assert role_by_data(errors * 3 + 7, {"cache_errors": errors})[0] == "cache_errors"
    assert role_by_data(noise, {"cache_errors": errors}) is None
