"""A small synthetic incident store for the report and chart tests (no simulator needed).

40 minutes at one-second resolution: two ordinary callers sending small
batches, and one heavy caller -- named by the test, e.g. ``<script>alert(1)</script>``
-- that sends a few huge batches in three bursts. During each burst TIME_WAIT
climbs to the port range, address errors are logged, threads grow and the
user-facing request rate dips. A transit packet-loss series and human events
(page, mitigation, fix, a status post whose title is markup) complete it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from analysis.report.page import ReportContent, collect
from analysis.report.workspace import open_analysis
from analysis.store import connect

T0 = "2026-04-06 14:00:00"
BURSTS = ((600, 780), (1200, 1380), (1800, 1980))
PORTS = (32768, 60999)


def _in_burst(col: str) -> str:
    return " OR ".join(f"({col} BETWEEN {a} AND {b})" for a, b in BURSTS)


def make_store(path: Path, heavy_caller: str = "feed-indexer", seconds: int = 2400) -> Path:
    """Write the synthetic incident into a new DuckDB store at ``path``."""
    con = connect(path)
    con.execute(
        "INSERT INTO ingest_files VALUES (1, 'synthetic', 'x', 'synthetic', 'test', 0, 0, 0, 0,"
        " now()::TIMESTAMP)"
    )
    con.execute(
        "INSERT INTO incident VALUES ('name', 'synthetic'), ('ephemeral_port_range', ?),"
        " ('time_wait_s', '60'), ('idle_pool', '1000')",
        [f"{PORTS[0]}-{PORTS[1]}"],
    )
    g = f"range(0, {seconds}) s(i)"
    burst = _in_burst("i")
    con.execute(
        f"""INSERT INTO requests
        SELECT TIMESTAMP '{T0}' + to_seconds(i) + to_milliseconds(k * 37), 'GetPostRecord',
               CASE WHEN k % 2 = 0 THEN 'appview' ELSE 'notifications' END,
               1 + ((i * 7 + k) % 40), 'ok', 3.0, 'dp-' || (k % 3), 'us-east', 1, i * 20 + k
        FROM {g}, range(0, 20) r(k)"""
    )
    con.execute(
        f"""INSERT INTO requests
        SELECT TIMESTAMP '{T0}' + to_seconds(i) + to_milliseconds(100), 'GetPostRecord', ?,
               15000 + (i * 131) % 5000, 'ok', 800.0, 'dp-1', 'us-west', 1, 1000000 + i
        FROM {g} WHERE ({burst}) AND i % 2 = 0""",
        [heavy_caller],
    )
    con.execute(
        f"""INSERT INTO log_events
        SELECT TIMESTAMP '{T0}' + to_seconds(i) + to_milliseconds(k * 10), 'error',
               'failed to get post cache item', 'dp-1',
               'dial tcp 127.0.0.1:11211: connect: cannot assign requested address', 'dial',
               NULL, '127.0.0.1:11211', 'EADDRNOTAVAIL', 'post', 1.0, 1, 2000000 + i * 50 + k
        FROM {g}, range(0, 40) r(k) WHERE ({_in_burst("(i - 20)")}) """
    )
    con.execute(
        f"""INSERT INTO metrics
        SELECT TIMESTAMP '{T0}' + to_seconds(i), m.metric, m.labels,
          CASE m.metric
            WHEN 'node_sockstat_TCP_tw' THEN
              CASE WHEN {_in_burst("(i - 15)")} THEN {PORTS[1] - PORTS[0] + 1} ELSE 400 END
            WHEN 'go_threads' THEN CASE WHEN {_in_burst("(i - 40)")} THEN 1500 ELSE 150 END
            WHEN 'appview_requests_per_second' THEN
              CASE WHEN {_in_burst("(i - 60)")} THEN 4000 ELSE 9000 END + (i % 7) * 10
            WHEN 'transit_packet_loss_ratio' THEN CASE WHEN i BETWEEN 300 AND 360
              THEN 0.02 ELSE 0.001 END
          END, 1, 3000000 + i
        FROM {g}, (VALUES ('node_sockstat_TCP_tw', '{{"instance":"dp-1"}}'),
                          ('go_threads', '{{"instance":"dp-1"}}'),
                          ('appview_requests_per_second', '{{"dc":"us-east"}}'),
                          ('transit_packet_loss_ratio', '{{"dst":"dc1","src":"cloud"}}'))
             m(metric, labels)
        WHERE i % 5 = 0"""
    )
    con.execute(
        f"""INSERT INTO events VALUES
        (TIMESTAMP '{T0}' + INTERVAL 11 MINUTE, NULL, 'page', 'data plane errors', 'pager',
         NULL, 1, 1),
        (TIMESTAMP '{T0}' + INTERVAL 25 MINUTE, TIMESTAMP '{T0}' + INTERVAL 28 MINUTE,
         'mitigation', 'random loopback source addresses', 'ops', NULL, 1, 2),
        (TIMESTAMP '{T0}' + INTERVAL 38 MINUTE, NULL, 'fix', 'concurrency limit 50', 'dev',
         NULL, 1, 3),
        (TIMESTAMP '{T0}' + INTERVAL 12 MINUTE, NULL, 'status', ?, 'status page', NULL, 1, 4)""",
        [f"<img src=x onerror=alert(2)> investigating {heavy_caller}"],
    )
    con.close()
    return path


def test_fixture_store_has_every_source(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", heavy_caller="<b>x</b>")
    con = duckdb.connect(str(db), read_only=True)
    counts = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("requests", "log_events", "metrics", "events")
    }
    assert all(n > 0 for n in counts.values()), counts
    assert con.execute(
        "SELECT count(*) FROM requests WHERE caller = '<b>x</b>'"
    ).fetchone()[0] > 0


def collected(db: Path) -> ReportContent:
    """What the report shows for the store at ``db``, read as the report reads it."""
    con = open_analysis(db)
    try:
        return collect(con)
    finally:
        con.close()
