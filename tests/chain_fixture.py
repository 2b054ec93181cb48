"""A hand-built incident in the canonical tables, with known ground truth.

Small (15 minutes, two hosts) and independent of the simulator: steady callers,
a busy small-batch caller with a request-rate spike (a rival), a culprit whose
batches of 15-20k URIs exhaust ports through ``analysis.mechanism``, address
errors, TIME_WAIT, dials, threads, user traffic, a packet-loss bump and a
deploy long before the outage. ``culprit=False`` gives a quiet twin.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from analysis.mechanism import PoolSettings, demand_from_requests, simulate_pool
from analysis.store import connect

T0 = datetime(2026, 4, 6, 14, 0, 0)
N = 900
HOSTS = ("dp-1", "dp-2")
BURSTS = ((400, 460), (600, 660), (780, 840))


CULPRIT = "feed-indexer"


def _requests(rng: np.random.Generator, culprit: bool, name: str) -> pl.DataFrame:
    rows: list[tuple[int, str, int]] = []
    for s in range(N):
        rows += [(s, "appview", int(u)) for u in rng.integers(1, 51, 20)]
        busy = 40 if 200 <= s < 260 else 4
        rows += [(s, "timeline-cache", int(u)) for u in rng.integers(1, 51, busy)]
        if culprit and any(a <= s < b for a, b in BURSTS) and s % 2 == 0:
            rows.append((s, name, int(rng.integers(15_000, 20_001))))
    sec = np.array([r[0] for r in rows])
    us = (sec * 1_000_000 + rng.integers(0, 1_000_000, sec.size)).astype("timedelta64[us]")
    return pl.DataFrame(
        {
            "s": sec,
            "time": np.datetime64(T0, "us") + us,
            "caller": [r[1] for r in rows],
            "uris": [r[2] for r in rows],
            "host": [HOSTS[i % 2] for i in range(len(rows))],
        }
    )


def build(
    seed: int = 0, *, culprit: bool = True, path: str | None = None, name: str = CULPRIT
) -> duckdb.DuckDBPyConnection:
    """A store (in memory, or at ``path``) holding the incident or, without the culprit,
    its quiet twin. ``name`` is what the culprit calls itself."""
    rng = np.random.default_rng(seed)
    req = _requests(rng, culprit, name)
    h = np.array([HOSTS.index(x) for x in req["host"]])
    settings = PoolSettings(idle_pool=1000, source_addresses="fixed")
    pool = simulate_pool(
        demand_from_requests(req["s"].to_numpy(), h, req["uris"].to_numpy(), N, len(HOSTS)),
        settings,
    )
    con = connect(path)
    con.register("req", req.with_columns(pl.lit("GetPostRecord").alias("method")))
    con.execute(
        "INSERT INTO requests SELECT time, method, caller, uris, 'ok', 1.0, host, 'us-east', 1,"
        " row_number() OVER () FROM req"
    )
    t = [T0 + timedelta(seconds=s) for s in range(N)]
    metrics: list[tuple] = []
    errors = pool.failed_lookups.sum(axis=1)
    threads = 150 + np.minimum(np.convolve(errors, np.ones(30))[:N] / 2000, 1350)
    for i, host in enumerate(HOSTS):
        lab = json.dumps({"instance": host})
        dials = np.cumsum(pool.dials[:, i] - pool.failed_dials[:, i])
        metrics += [(t[s], "node_sockstat_TCP_tw", lab, float(pool.time_wait[s, i]))
                    for s in range(N)]
        metrics += [(t[s], "memcached_connections_total", lab, float(dials[s])) for s in range(N)]
        metrics += [(t[s], "go_threads", lab, float(threads[s]) + rng.normal(0, 2))
                    for s in range(0, N, 5)]
    hurt = threads > 200  # a stalled runtime times user requests out
    users = 2000 - 800 * hurt + rng.normal(0, 20, N)
    metrics += [(t[s], "appview_requests_per_second", '{"dc":"us-east"}', float(users[s]))
                for s in range(N)]
    loss = np.where((np.arange(N) >= 100) & (np.arange(N) < 160), 0.03, 0.001)
    metrics += [(t[s], "transit_packet_loss_ratio", '{"dst":"us-east","src":"cloud"}',
                 float(loss[s] + rng.uniform(0, 0.0005))) for s in range(0, N, 5)]
    con.register("m", pl.DataFrame(metrics, schema=["time", "metric", "labels", "value"],
                                   orient="row"))
    con.execute("INSERT INTO metrics SELECT time, metric, labels, value, 2, 1 FROM m")
    logs = []
    for s in np.flatnonzero(errors):
        for _ in range(max(1, int(errors[s] // 1000))):
            logs.append((t[s] + timedelta(milliseconds=int(rng.integers(0, 1000))),
                         "failed to get post cache item", "EADDRINUSE", 1000 / 1.0))
    for s in range(0, N, 7):  # background noise: timeouts
        logs.append((t[s], "failed to get user cache item", "ETIMEDOUT", 1.0))
    con.register("l", pl.DataFrame(logs, schema=["time", "msg", "errno", "w"], orient="row"))
    con.execute(
        "INSERT INTO log_events SELECT time, 'error', msg, 'dp-1', 'dial tcp ...', 'dial', NULL,"
        " NULL, errno, 'post', 1.0 / w, 3, 1 FROM l"
    )
    con.execute(
        "INSERT INTO events VALUES (?, NULL, 'deploy', 'dataplane v1.2', 'ci', '', 4, 1)",
        [T0 + timedelta(seconds=30)],
    )
    con.executemany(
        "INSERT INTO incident VALUES (?, ?)",
        [("ephemeral_port_range", "32768-60999"), ("time_wait_s", "60"), ("idle_pool", "1000")],
    )
    return con


def truth(con: duckdb.DuckDBPyConnection) -> dict:
    """Ground truth for ``build``: the culprit and when exhaustion first showed."""
    first_err = con.execute(
        "SELECT min(time) FROM log_events WHERE errno_class = 'EADDRINUSE'"
    ).fetchone()[0]
    return {"culprit": CULPRIT, "trigger": T0 + timedelta(seconds=BURSTS[0][0]),
            "port_exhaustion": first_err}
