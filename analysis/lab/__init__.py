"""The real reproduction lab: the outage, for real, in a private network namespace.

``run_lab(LabConfig(variant, out, seconds, scale))`` starts memcached and a
Go data plane (one goroutine per URI, capped idle pool) inside an anonymous
network namespace with a narrowed ephemeral port range and
``tcp_tw_reuse=0``, drives user-like and batch callers through it, and
leaves in ``out`` the request log, error log, metrics, events and an
``incident.toml`` manifest that ``postmortem ingest`` reads. Variants:
``naive`` (exhaustion, EADDRNOTAVAIL), ``fixed-source`` (every dial bound to
127.32.0.1: EADDRINUSE in bind), ``random-source`` (the workaround) and
``bounded`` (the fix: 50 concurrent lookups per request).
``per_second(out)`` reads a capture back as one row per second.
"""

from analysis.lab.capture import LabSummary, per_second, summarize
from analysis.lab.netns import unavailable_reason
from analysis.lab.runner import (
    BATCH_CALLER,
    VARIANTS,
    LabConfig,
    LabResult,
    LabUnavailable,
    run_lab,
)

__all__ = [
    "BATCH_CALLER",
    "VARIANTS",
    "LabConfig",
    "LabResult",
    "LabSummary",
    "LabUnavailable",
    "per_second",
    "run_lab",
    "summarize",
    "unavailable_reason",
]
