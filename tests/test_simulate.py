"""The simulator: its files load through the ordinary ingest and tell the story.

The story is checked on the loaded store (what an analyst sees), not on the
generator's internals: the culprit's requests/s are tiny while its URIs/s
dominate, TIME_WAIT sits at the port ceiling while its batches run, errors and
user-facing traffic move in cycles, the mitigation ends the errors, and every
rejected line is one the simulator injected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.cli import main
from analysis.ingest import ingest_paths
from analysis.simulate import build_scenario, run_world, simulate
from analysis.simulate.files import inject
from analysis.simulate.truth import ROLES
from analysis.store import connect


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def load(out: Path):
    con = connect(None)
    ingest_paths(con, [out])
    return con


def rejects_by_file(con, out: Path) -> dict[str, int]:
    rows = con.execute("SELECT path, rejected FROM ingest_files WHERE rejected > 0").fetchall()
    return {Path(p).resolve().relative_to(out.resolve()).as_posix(): n for p, n in rows}


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("random") / "r"
    res = simulate("random", out, seed=4)
    return out, res.truth, load(out)


def test_same_seed_gives_identical_files(tmp_path):
    simulate("random", tmp_path / "a", seed=11, scale=0.2)
    simulate("random", tmp_path / "b", seed=11, scale=0.2)
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert a == b
    assert any(k.endswith(".gz") for k in a) and any(k.endswith(".zst") for k in a)


def test_rejects_are_exactly_the_injected_corrupt_lines(random_run):
    out, truth, con = random_run
    assert truth["corrupt_lines_total"] == sum(truth["corrupt_lines"].values()) > 0
    assert rejects_by_file(con, out) == truth["corrupt_lines"]
    loaded = dict(con.execute("SELECT format, sum(loaded) FROM ingest_files GROUP BY 1")
                  .fetchall())
    assert sum(v for k, v in loaded.items() if k.startswith("requests/")) > 10_000


def test_random_scenario_truth_is_ordered_and_matches_the_data(random_run):
    out, truth, con = random_run
    assert truth["incident"] is True
    assert truth["roles"] == list(ROLES)
    times = [truth["onsets"][r] for r in truth["roles"]]
    assert times == sorted(times)
    culprit = truth["culprit"]["caller"]
    top = con.execute("SELECT caller FROM requests GROUP BY 1 ORDER BY sum(uris) DESC LIMIT 1")
    assert top.fetchone()[0] == culprit
    lo, hi = truth["settings"]["port_range"]
    tw = con.execute("SELECT max(value) FROM metrics WHERE metric = 'node_sockstat_TCP_tw'")
    assert tw.fetchone()[0] >= 0.9 * (hi - lo + 1 - truth["settings"]["idle_pool"])
    kinds = {r["kind"] for r in truth["rivals"]}
    assert "daily_curve" in kinds


def test_quiet_scenario_has_rivals_but_no_incident(tmp_path):
    out = tmp_path / "q"
    truth = simulate("quiet", out, seed=3).truth
    assert truth["incident"] is False
    assert truth["culprit"] is None and truth["roles"] == [] and truth["onsets"] == {}
    assert {"packet_loss", "request_rate", "deploy", "daily_curve"} <= {
        r["kind"] for r in truth["rivals"]}
    con = load(out)
    assert rejects_by_file(con, out) == truth["corrupt_lines"]
    n = con.execute("SELECT count(*) FROM log_events WHERE errno_class IN"
                    " ('EADDRINUSE', 'EADDRNOTAVAIL')").fetchone()[0]
    assert n == 0
    assert con.execute("SELECT max(uris) FROM requests").fetchone()[0] <= 50


def test_scale_changes_the_request_rows_not_the_story(tmp_path):
    small = simulate("random", tmp_path / "s", seed=8, scale=0.1)
    big = simulate("random", tmp_path / "b", seed=8, scale=0.3)
    for key in ("incident", "culprit", "roles", "onsets", "settings", "window", "rivals"):
        assert small.truth[key] == big.truth[key]
    assert 2.0 < big.request_rows / small.request_rows < 4.5


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000))
def test_random_scenarios_respect_the_post_mortems_shape(seed):
    sc = build_scenario("random", seed)
    culprit = [c for c in sc.callers if c.name == sc.culprit]
    assert len(culprit) == 1
    c = culprit[0]
    assert c.rate + c.batch_rate < 3.0  # under 3 requests/s
    assert c.batch_lo >= 3000 and c.dcs == (sc.affected_dc,)
    others = [o for o in sc.callers if o is not c]
    assert all(o.uris_hi <= 50 and o.batch_rate == 0 for o in others)
    assert max(o.rate for o in others) > 3 * (c.rate + c.batch_rate)
    assert 3600 <= sc.duration_s <= 7200 and 0 < (sc.onset_s or 0) < sc.duration_s
    assert len(sc.dcs) == 2


def test_most_random_scenarios_break_within_their_short_window():
    """Most drawn scenarios break (an incident to find) within their short window."""
    broke = 0
    for seed in range(3):
        w = run_world(build_scenario("random", seed))
        assert w.n_seconds <= 7200
        broke += int(w.pool["failed_dials"].sum() > 0)
    assert broke >= 2


def test_cli_refuses_a_non_empty_directory_it_did_not_write(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["simulate", "--scenario", "quiet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "truth.json" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_writes_and_rewrites_its_own_output(tmp_path, capsys):
    out = tmp_path / "o"
    (out / "requests").mkdir(parents=True)
    (out / "requests" / "stale.jsonl").write_text("{}\n")
    (out / "truth.json").write_text("{}")  # a previous simulation's output: replaced
    assert main(["simulate", "--scenario", "quiet", "--seed", "2", "--scale", "0.1",
                 "--out", str(out)]) == 0
    assert "incident=false" in capsys.readouterr().out
    assert not (out / "requests" / "stale.jsonl").exists()
    truth = json.loads((out / "truth.json").read_text())
    assert truth["scenario"] == "quiet" and (out / "incident.toml").is_file()


# --- the reference scenario ---------------------------------------------------------


@pytest.fixture(scope="module")
def april(tmp_path_factory):
    out = tmp_path_factory.mktemp("april") / "a"
    truth = simulate("april-2026", out, seed=1, scale=0.5).truth
    return out, truth, load(out)


def per_minute(con, sql: str) -> np.ndarray:
    return np.array([r[1] for r in con.execute(sql).fetchall()], dtype=float)


@pytest.mark.slow
def test_april_loads_with_rejects_equal_to_injected(april):
    out, truth, con = april
    assert rejects_by_file(con, out) == truth["corrupt_lines"]
    facts = dict(con.execute("SELECT key, value FROM incident").fetchall())
    assert facts["ephemeral_port_range"] == "32768-60999"


@pytest.mark.slow
def test_april_culprit_is_tiny_by_requests_and_dominant_by_uris(april):
    _, truth, con = april
    rows = con.execute("""
        SELECT caller, count(*) / 43200.0 AS rps, sum(uris) / 43200.0 AS uris_ps
        FROM requests GROUP BY 1 ORDER BY uris_ps DESC""").fetchall()
    culprit, rps, uris_ps = rows[0]
    assert culprit == truth["culprit"]["caller"] == "feed-indexer"
    assert rps < 3
    assert rps < max(r[1] for r in rows[1:])  # another caller is busier by requests
    assert uris_ps > 0.9 * sum(r[2] for r in rows)
    big = con.execute("SELECT min(uris), max(uris) FROM requests WHERE uris >= 1000").fetchone()
    assert big[0] >= 15_000 and big[1] <= 20_000


@pytest.mark.slow
def test_april_time_wait_sits_at_the_port_ceiling_while_batches_run(april):
    _, truth, con = april
    tw = dict(con.execute("""
        SELECT CASE WHEN time < TIMESTAMP '2026-04-06 13:00:00' THEN 'before'
                    WHEN time < TIMESTAMP '2026-04-06 21:00:00' THEN 'spiral' ELSE 'after' END,
               quantile_cont(value, 0.5)
        FROM metrics WHERE metric = 'node_sockstat_TCP_tw' AND labels LIKE '%us-east%'
        GROUP BY 1""").fetchall())
    ports = 60999 - 32768 + 1
    assert tw["before"] < 0.05 * ports
    assert 0.95 * ports <= tw["spiral"] + truth["settings"]["idle_pool"] <= ports
    assert tw["after"] > ports  # random source addresses: far past the range


@pytest.mark.slow
def test_april_errors_and_user_drops_come_in_cycles(april):
    _, _, con = april
    spiral = "time >= TIMESTAMP '2026-04-06 13:00:00' AND time < TIMESTAMP '2026-04-06 21:00:00'"
    user = per_minute(con, f"""
        SELECT time_bucket(INTERVAL 1 MINUTE, time) t,
               avg(value) FILTER (WHERE labels LIKE '%us-east%')
               / avg(value) FILTER (WHERE labels LIKE '%us-west%')
        FROM metrics WHERE metric = 'appview_requests_per_second' AND {spiral}
        GROUP BY 1 ORDER BY 1""")
    errors = per_minute(con, """
        WITH m AS (SELECT range AS t FROM range(TIMESTAMP '2026-04-06 13:00:00',
                                                TIMESTAMP '2026-04-06 21:00:00', INTERVAL 1 MINUTE))
        SELECT m.t, coalesce(sum(1 / e.sample_rate), 0) FROM m
        LEFT JOIN log_events e ON time_bucket(INTERVAL 1 MINUTE, e.time) = m.t
             AND e.errno_class IS NOT NULL
        GROUP BY 1 ORDER BY 1""")
    # user-facing traffic of the affected DC: down and back up again and again, ~30 min apart
    low = user < 0.5
    dips = np.flatnonzero(low[1:] & ~low[:-1])
    assert len(dips) >= 10
    assert 20 <= np.median(np.diff(dips)) <= 40
    assert (user > 0.9).mean() > 0.25  # it comes back between dips
    # error spikes line up with the dips
    assert np.corrcoef(errors, user)[0, 1] < -0.3


@pytest.mark.slow
def test_april_mitigation_ends_the_address_errors(april):
    _, _, con = april
    by_phase = dict(con.execute("""
        SELECT time >= TIMESTAMP '2026-04-06 21:05:00', count(*) FROM log_events
        WHERE errno_class IN ('EADDRINUSE', 'EADDRNOTAVAIL') GROUP BY 1""").fetchall())
    assert by_phase[False] > 1000
    assert by_phase.get(True, 0) == 0
    kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM events").fetchall()}
    assert {"page", "deploy", "mitigation", "fix", "status", "alert"} <= kinds


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=40),
       st.lists(st.binary(min_size=1, max_size=10).map(lambda b: b"!BAD" + b.replace(b"\n", b"")),
                max_size=5),
       st.integers(0, 2**32 - 1))
def test_injected_lines_keep_the_first_ten_and_every_original_line(lines, bad, seed):
    body = b"".join(line + b"\n" for line in lines)
    out = inject(body, bad, np.random.default_rng(seed)).split(b"\n")
    assert out[-1] == b""
    out = out[:-1]
    assert out[: min(10, len(lines))] == lines[:10]
    assert [x for x in out if not x.startswith(b"!BAD")] == [
        x for x in lines if not x.startswith(b"!BAD")]
    assert len(out) == len(lines) + len(bad)
