"""Roles of signals in the port-exhaustion failure chain.

A signal (one series of the ``signals`` table: a caller's weight, an errno
class's error rate, a metric) gets a *role* from a fixed vocabulary, in causal
order::

    trigger -> fan_out -> port_exhaustion -> cache_errors -> runtime_stress -> user_impact

Roles are given first by recognising well-known names (what real exporters
and loggers call things: ``node_sockstat_TCP_tw``, ``go_threads``, errno
``EADDRNOTAVAIL`` ...), and for names nobody recognises, by the data: a series
whose plateau sits at the size of the ephemeral port range is TIME_WAIT-like,
a series that moves with (or against) a known role's series takes that role.
Some signals are *rivals* instead: explanations people reach for first
(packet loss on transit, request-rate spikes, deploys) that the chain must
test and reject with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from analysis.signal_id import SignalId

ROLES: tuple[str, ...] = (
    "trigger",
    "fan_out",
    "port_exhaustion",
    "cache_errors",
    "runtime_stress",
    "user_impact",
)
"""The role vocabulary, in causal order."""

RIVALS: tuple[str, ...] = ("packet_loss", "request_rate", "deploy", "daily_curve")
"""Kinds of rival explanation the chain tests."""

PORT_EXHAUSTION_ERRNOS = frozenset({"EADDRINUSE", "EADDRNOTAVAIL"})


@dataclass(frozen=True)
class RoleMatch:
    """The role (or rival kind) of one signal and how it was told.

    ``direction`` is the way the signal moves when the role is active: ``up``
    for counts, rates and gauges that grow, ``down`` for user-facing traffic
    that drops. ``how`` is ``name`` (recognised name) or ``data``.
    """

    signal: str
    role: str | None
    rival: str | None
    direction: str
    how: str
    why: str


# Patterns over lower-cased metric names, first match wins. Order matters:
# specific names before generic ones.
_METRIC_PATTERNS: tuple[tuple[str, str | None, str | None, str, str], ...] = (
    # (regex, role, rival, direction, why)
    (r"packet_loss|loss_ratio|packets_dropped|retransmit", None, "packet_loss", "up",
     "network loss metric"),
    (r"sockstat_tcp_tw|time_?wait|tcp_tw\b|_tw$|tw_count", "port_exhaustion", None, "up",
     "TIME_WAIT socket count"),
    (r"ephemeral_port|ports_in_use|port_exhaust", "port_exhaustion", None, "up",
     "ephemeral port usage"),
    (r"memcache.*connections_total|connections_opened|dials?_total|new_conn",
     "fan_out", None, "up", "connection dials (counter)"),
    (r"memcache.*current_connections|open_connections|conns_open|goroutines",
     "fan_out", None, "up", "concurrent connections / goroutines"),
    (r"cache.*(error|fail)|memcache.*(error|fail)", "cache_errors", None, "up",
     "cache error counter"),
    (r"go_threads|os_threads|threads$|gc_duration|gc_pause|restarts_total|oom|"
     r"resident_memory|memory_working_set|memstats_heap", "runtime_stress", None, "up",
     "Go runtime / pod stress"),
    (r"requests_per_second|http_requests_total|request_rate|requests_total|qps|"
     r"availability|success_rate", "user_impact", None, "down",
     "user-facing request rate"),
)



def role_of_metric(metric: str) -> tuple[str | None, str | None, str, str] | None:
    """(role, rival, direction, why) for a metric name recognised by pattern, else None."""
    name = metric.lower()
    for pattern, role, rival, direction, why in _METRIC_PATTERNS:
        if re.search(pattern, name):
            return role, rival, direction, why
    return None


def role_of_errno(errno_class: str) -> str:
    """Role of an error class: bind/connect address errors are port exhaustion itself."""
    return "port_exhaustion" if errno_class.upper() in PORT_EXHAUSTION_ERRNOS else "cache_errors"


def role_of_signal(sid: SignalId) -> RoleMatch | None:
    """The role of a signal by its identity alone (``RoleMatch.signal`` is its name).

    A caller's ``uris`` and ``max_uris`` are its *weight* (trigger candidates); its
    ``requests`` is its request rate, the view that hid the culprit, so it counts as
    a rival (``request_rate``). Only the structured fields are read: a caller or
    metric may be called anything.
    """
    key = sid.key
    if sid.family == "caller":
        if sid.measure == "requests":
            return RoleMatch(key, None, "request_rate", "up", "name", "caller request rate")
        if sid.measure in ("uris", "max_uris"):
            return RoleMatch(key, "trigger", None, "up", "name", "caller weight (URIs)")
        return None
    if sid.family == "errors":
        if sid.measure == "total":
            return RoleMatch(key, "cache_errors", None, "up", "name", "all error lines")
        if sid.measure in ("cache", "op"):
            return RoleMatch(key, "cache_errors", None, "up", "name", "errors of one cache")
        errno = sid.subject or ""
        role = role_of_errno(errno)
        why = "address errors (ports exhausted)" if role == "port_exhaustion" else "cache errors"
        return RoleMatch(key, role, None, "up", "name", f"{errno}: {why}")
    hit = role_of_metric(sid.subject or "")
    if hit:
        role, rival, direction, why = hit
        return RoleMatch(key, role, rival, direction, "name", why)
    return None


def plateau_matches_range(values: np.ndarray, port_range: int, *, tol: float = 0.1) -> bool:
    """True when a gauge's high plateau sits at the port-range size (TIME_WAIT-like).

    The plateau is the 99th percentile of the finite values; it must be within
    ``tol`` of ``port_range`` and held for at least 5 samples.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 5 or port_range <= 0:
        return False
    top = float(np.quantile(v, 0.99))
    near = np.abs(v - port_range) <= tol * port_range
    return abs(top - port_range) <= tol * port_range and int(near.sum()) >= 5


def role_by_data(
    values: np.ndarray,
    references: dict[str, np.ndarray],
    *,
    port_range: int | None = None,
    min_corr: float = 0.8,
) -> tuple[str, str, str] | None:
    """Guess the role of an unrecognised series from its data.

    ``references`` maps role -> a representative series of that role on the same
    grid. Returns (role, direction, why) or None when nothing is convincing:
    first the TIME_WAIT plateau test, then the reference whose (Spearman-free,
    plain Pearson) correlation is strongest, if ``|r| >= min_corr``; a negative
    correlation with ``cache_errors`` means the series drops when errors rise,
    which is what user traffic does.
    """
    v = np.asarray(values, dtype=float)
    if port_range and plateau_matches_range(v, port_range):
        return "port_exhaustion", "up", f"plateau at the port range ({port_range})"
    best: tuple[float, str] | None = None
    for role, ref in references.items():
        r = _corr(v, np.asarray(ref, dtype=float))
        if r is not None and (best is None or abs(r) > abs(best[0])):
            best = (r, role)
    if best is None or abs(best[0]) < min_corr:
        return None
    r, role = best
    if r < 0 and role in ("cache_errors", "port_exhaustion", "fan_out"):
        return "user_impact", "down", f"moves against {role} (r={r:.2f})"
    if r < 0:
        return None
    return role, "up", f"moves with {role} (r={r:.2f})"


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation over the samples finite in both, or None if undefined."""
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10:
        return None
    a, b = a[ok], b[ok]
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def role_order(role: str) -> int:
    """Position of a role in the causal order (trigger = 0)."""
    return ROLES.index(role)
