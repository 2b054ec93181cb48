"""The chain: from the user-facing drop back to the caller whose batches exhausted
the ports, hop by hop, with rivals rejected for a reason; and no chain at all when
nothing supports one."""

from __future__ import annotations

import json

import pytest
from chain_fixture import build, truth

from analysis.chain import (
    KERNEL_PORT_RANGE,
    NO_CAUSE,
    ROOT_CAUSE,
    environment,
    find_chain,
    format_chain,
)
from analysis.cli import main
from analysis.roles import ROLES
from analysis.store import connect


@pytest.fixture(scope="module")
def incident_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("chain") / "incident.duckdb"
    build(seed=1, path=str(db)).close()
    return db


@pytest.fixture(scope="module")
def incident(incident_db):
    con = connect(incident_db)
    yield con, find_chain(con)
    con.close()


def test_names_the_caller_with_huge_batches_as_culprit(incident):
    _, r = incident
    assert r.verdict == ROOT_CAUSE
    assert r.culprit.caller == "feed-indexer" and r.culprit.method == "GetPostRecord"
    assert "URIs" in r.culprit.evidence


def test_roles_come_in_causal_order(incident):
    _, r = incident
    found = r.roles_in_order(tie_s=5)
    assert found[0] == "trigger" and "port_exhaustion" in found and "user_impact" in found
    assert found == sorted(found, key=ROLES.index)
    hops = [(h.cause_role, h.effect_role) for h in r.hops]
    assert all(ROLES.index(a) < ROLES.index(b) for a, b in hops)


def test_port_exhaustion_mechanism_check_passes(incident):
    _, r = incident
    assert r.mechanism_passed is True
    hop = next(h for h in r.hops if h.effect_role == "port_exhaustion")
    assert "TIME_WAIT" in hop.mechanism and "28,232 in 32768-60999" in hop.mechanism


def test_onsets_match_the_ground_truth(incident):
    con, r = incident
    want = truth(con)
    for role in ("trigger", "port_exhaustion"):
        assert abs((r.onsets[role] - want[role]).total_seconds()) <= 10, role


def test_busy_small_batch_caller_is_rejected_as_too_small(incident):
    _, r = incident
    reasons = {x.candidate: x.reason for x in r.rejected}
    assert "effect too small" in reasons["caller:timeline-cache"]


def test_packet_loss_is_rejected_with_a_reason(incident):
    _, r = incident
    loss = [x for x in r.rejected if "packet_loss" in x.candidate]
    assert loss and loss[0].reason.split(":")[0] in ("no coincidence", "wrong order", "no anomaly")


def test_json_contract(incident):
    _, r = incident
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d) == {"verdict", "grid", "outside_window", "culprit", "hops", "rejected",
                      "onsets", "too_short"}
    assert d["too_short"] == []  # every series of the fixture is long enough to judge
    assert set(d["grid"]) == {"grid_s", "grid_from", "n_buckets", "window"}
    assert set(d["culprit"]) == {"caller", "method", "evidence"}
    assert set(d["hops"][0]) == {
        "cause", "effect", "cause_role", "effect_role", "lag_s", "lag_ci_s", "coincidence",
        "p_value", "effect_size", "mechanism",
    }
    lo, hi = d["hops"][0]["lag_ci_s"]
    assert lo <= hi
    assert all(set(x) == {"candidate", "reason", "caller"} for x in d["rejected"])
    assert all(v.endswith("Z") for v in d["onsets"].values())


def test_quiet_twin_has_no_supported_cause():
    r = find_chain(build(seed=1, culprit=False))
    assert r.verdict == NO_CAUSE and r.culprit is None and r.hops == []
    assert "no supported cause" in format_chain(r)


def test_environment_falls_back_to_kernel_defaults():
    env = environment(connect(None))
    assert env.port_range == KERNEL_PORT_RANGE and env.time_wait_s == 60
    assert env.idle_pool is None and env.ports == 28232


def test_cli_tells_the_story_and_prints_json(incident, incident_db, capsys):
    incident[0].close()  # the CLI opens the store itself
    db = incident_db
    assert main(["chain", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "Culprit: feed-indexer" in out and "trigger -> fan_out" in out
    assert main(["chain", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == ROOT_CAUSE


def test_cli_missing_store_is_one_line(tmp_path, capsys):
    assert main(["chain", "--db", str(tmp_path / "none.duckdb")]) == 2
    err = capsys.readouterr().err
    assert "no such store" in err and err.count("\n") == 1


def test_unrecognised_metric_gets_its_role_from_its_data():
    con = build(seed=2)
    con.execute("UPDATE metrics SET metric = 'weird_sockets_gauge'"
                " WHERE metric = 'node_sockstat_TCP_tw'")
    r = find_chain(con)
    assert r.roles["metric:weird_sockets_gauge"].startswith("port_exhaustion")
    assert r.roles["metric:go_threads"] == "runtime_stress"
    assert r.verdict == ROOT_CAUSE


def test_rollups_are_rebuilt_when_data_reach_past_them():
    from datetime import timedelta

    from chain_fixture import T0, N

    from analysis.rollups import _rollups_stale, build_rollups

    con = build(seed=3)
    build_rollups(con)
    assert not _rollups_stale(con)
    con.execute("INSERT INTO metrics VALUES (?, 'go_threads', '{}', 1, 9, 1)",
                [T0 + timedelta(seconds=N + 60)])
    assert _rollups_stale(con)
