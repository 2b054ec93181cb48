"""A store of series too short for a baseline: detection refuses them (no anomaly flagged)
and the chain says so, by name, in its result, its text and its JSON.

Five samples a minute apart fill 241 one-second buckets (a gauge holds its value), which
is plenty of buckets but only five samples: too few for a baseline, so a jump in the last
two samples is not called an anomaly.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl

from analysis.chain import NO_CAUSE, find_chain, format_chain
from analysis.chain.series import detect_up
from analysis.chain.settings import ChainSettings
from analysis.detection import MIN_SAMPLES, detect_all
from analysis.rollups import signal_frame
from analysis.store import connect

T0 = datetime(2026, 4, 6, 12)
# one metric per role the chain looks for by name, each jumping for its last two samples
FIVE = {
    "memcached_connections_total": [100, 110, 100, 90_000, 91_000],
    "node_sockstat_TCP_tw": [50, 55, 50, 28_000, 28_100],
    "go_threads": [40, 41, 40, 400, 410],
    "appview_requests_per_second": [100, 90, 120, 5, 6],
    "transit_packet_loss_ratio": [0.001, 0.002, 0.001, 0.3, 0.31],
}


def _five_sample_store():
    con = connect(None)
    con.executemany(
        "INSERT INTO metrics VALUES (?, ?, NULL, ?, 1, ?)",
        [[T0 + timedelta(minutes=i), m, v, n * 5 + i]
         for n, (m, vals) in enumerate(FIVE.items()) for i, v in enumerate(vals)],
    )
    return con


def test_the_held_buckets_alone_would_look_anomalous():
    """Without the raw sample count, 241 buckets pass for a series long enough to judge
    and the last sample's jump is flagged: the refusal below is what prevents it."""
    con = _five_sample_store()
    result = find_chain(con)  # builds the rollups
    assert result.rollup is not None and result.rollup.n_buckets == 241
    name = "metric:go_threads"
    frame = signal_frame(con, [name])
    values = frame[name].cast(pl.Float64).to_numpy()
    bucketed = detect_up(frame["t"], values, name, ChainSettings(), counts=False)
    assert bucketed.windows, "the held buckets alone look like a series long enough to judge"
    refused = detect_up(frame["t"], values, name, ChainSettings(), counts=False, samples=5)
    assert refused.too_short and refused.windows == []


def test_five_sample_series_flag_no_anomaly_and_the_chain_says_why():
    con = _five_sample_store()
    result = find_chain(con)
    assert result.verdict == NO_CAUSE
    assert result.onsets == {} and result.hops == []
    refused = {s.signal: (s.samples, s.needed) for s in result.too_short}
    for metric in FIVE:
        assert refused[f"metric:{metric}"] == (5, MIN_SAMPLES), metric
    # packet loss, a rival, is not judged either, and the reason says why
    loss = next(r for r in result.rejected if r.candidate == "metric:transit_packet_loss_ratio")
    assert loss.reason.startswith("not judged: 5 samples")

    text = format_chain(result)
    line = next(x for x in text.splitlines() if x.startswith("Too short for a baseline"))
    assert f"{len(FIVE)} signals" in line and "metric:go_threads (5 samples, needs 10)" in line
    assert "no error or user-impact anomaly" in text

    out = json.loads(json.dumps(result.to_dict()))
    assert {d["signal"] for d in out["too_short"]} == {f"metric:{m}" for m in FIVE}
    assert all(d["samples"] == 5 and d["needed"] == MIN_SAMPLES for d in out["too_short"])

    # detection over the whole store agrees: no anomalies, every series listed as too short
    assert detect_all(con).height == 0
    assert con.execute("SELECT count(*) FROM too_short").fetchone()[0] == len(FIVE)


def test_a_store_long_enough_lists_nothing_too_short():
    con = connect(None)
    con.executemany(
        "INSERT INTO metrics VALUES (?, 'go_threads', NULL, ?, 1, ?)",
        [[T0 + timedelta(seconds=10 * i), 40.0 + (i % 3), i] for i in range(120)],
    )
    result = find_chain(con)
    assert result.too_short == []
    assert not any(x.startswith("Too short") for x in format_chain(result).splitlines())
