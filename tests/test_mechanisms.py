"""Mechanisms and suspects: each family's incident is found end to end (simulate ->
ingest -> chain), quiet runs claim no mechanism, and the maths behind the ranking and
its scores hold for any input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.chain import find_chain
from analysis.chain.mechanisms.base import at_cap, names
from analysis.chain.settings import NO_CAUSE, ROOT_CAUSE, SUSPECTS_ONLY
from analysis.chain.view import Series, _score, kind_of
from analysis.cli import main
from analysis.errors import UserError
from analysis.evaluate_mechanisms import FamilyOutcome, ac_at, avg5, family_row
from analysis.ingest import ingest_paths
from analysis.ingest.manifest import load_manifest
from analysis.simulate.micro import simulate_family
from analysis.store import connect


def _chain_of(family: str, seed: int, tmp: Path):
    run = simulate_family(family, tmp / family, seed)
    con = connect(None)
    ingest_paths(con, [tmp / family])
    return run.truth, find_chain(con)


# --- end to end, one run per family with its ground truth -------------------------------


@pytest.mark.parametrize("family,seed", [
    ("pool-saturation", 5), ("retry-storm", 5), ("slow-dependency", 5),
    ("resource-saturation", 5), ("bad-deploy", 5),
])
def test_each_mechanism_is_named_with_its_culprit_first(family, seed, tmp_path):
    truth, chain = _chain_of(family, seed, tmp_path)
    cause = truth["causes"][0]
    assert chain.verdict == ROOT_CAUSE
    assert chain.mechanism == cause["mechanism"]
    assert chain.culprit is not None and chain.culprit.caller == cause["entity"]
    assert chain.suspects[0].entity == cause["entity"]
    fit = chain.mechanisms[0]
    assert fit.evidence and fit.rivals_rejected  # the check says why, and what it ruled out
    d = chain.to_dict()
    assert d["mechanism"] == cause["mechanism"] and d["suspects"][0]["entity"] == cause["entity"]


@pytest.mark.parametrize("family,seed,why", [
    ("slow-dependency", 6, "a caller's p99 in seconds, whose median the incident pushes past"
                           " 5 s, is not read as milliseconds (so it follows its callee)"),
    ("slow-dependency", 10, "a routine deploy of the callee 11.5 min before is outside the"
                            " bad deploy's 10-minute window, so it is no rival"),
    ("slow-dependency", 54, "the rate into the callee rose 230 s after its latency (callers'"
                            " retries): an effect, not the load rival"),
    ("resource-saturation", 34, "the rate rose after the CPU reached its limit (retries):"
                                " CPU per request is measured at the rate up to the limit"),
    ("resource-saturation", 4, "a routine deploy 9 min before: the CPU reached its limit"
                               " before the errors stepped, so the errors are not the deploy's"),
])
def test_a_mechanism_is_not_rejected_by_its_own_effects(family, seed, why, tmp_path):
    """Runs that were missed before (their effects were taken for a rival) are named."""
    truth, chain = _chain_of(family, seed, tmp_path)
    cause = truth["causes"][0]
    assert (chain.verdict, chain.mechanism) == (ROOT_CAUSE, cause["mechanism"]), why
    assert chain.culprit is not None and chain.culprit.caller == cause["entity"]


def test_a_load_rise_before_the_latency_is_still_the_load_rival():
    """The slow-dependency check rejects a callee whose request rate rose by half no later
    than its latency (a traffic spike), and accepts one whose rate rose only after."""
    from datetime import datetime, timedelta

    from analysis.chain.mechanisms.slow_dependency import MECHANISM
    from analysis.chain.view import IncidentView

    n, on = 120, 80
    t = [datetime(2026, 1, 1) + timedelta(seconds=10 * i) for i in range(n)]

    def series(entity: str, kind: str, base: float, top: float, at: int | None) -> Series:
        v = np.full(n, base)
        if at is not None:
            v[at:] = top
        return Series(f"{entity}:{kind}", entity, kind, v, base=base, onset=at)

    def view(rate_at: int) -> IncidentView:
        return IncidentView(t, 10.0, [
            series("db", "latency", 0.05, 0.5, on), series("db", "rate", 100, 200, rate_at),
            series("api", "latency", 0.1, 0.8, on + 1)], {("api", "db")}, "manifest", [],
            n_baseline=60)

    assert [f.culprit for f in MECHANISM.check(view(on + 5))] == ["db"]
    assert MECHANISM.check(view(on)) == []
    assert MECHANISM.check(view(on - 3)) == []


def test_two_faults_at_once_are_both_among_the_first_suspects(tmp_path):
    truth, chain = _chain_of("services-mixed", 3, tmp_path)
    true = {c["entity"] for c in truth["causes"]}
    assert len(true) == 2
    assert true <= {s.entity for s in chain.suspects[:3]}


@pytest.mark.parametrize("seed", [0, 1])
def test_quiet_runs_claim_no_mechanism(seed, tmp_path):
    _, chain = _chain_of("services-quiet", seed, tmp_path)
    assert chain.verdict in (SUSPECTS_ONLY, NO_CAUSE)
    assert chain.mechanisms == []


def test_the_family_runs_are_deterministic_and_carry_their_truth(tmp_path):
    def digest(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    a = simulate_family("bad-deploy", tmp_path / "a", 11)
    simulate_family("bad-deploy", tmp_path / "b", 11)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    c = a.truth["causes"][0]
    assert c["mechanism"] == "bad_deploy" and c["entity"] in a.truth["services"]
    assert (tmp_path / "a" / "events" / "events.yaml").read_text(encoding="utf-8").count(
        c["entity"]) >= 1


# --- the manifest's service graph ----------------------------------------------------------


def test_the_manifest_graph_is_kept_exactly_and_a_bad_one_is_one_line(tmp_path):
    p = tmp_path / "incident.toml"
    p.write_text('[graph]\ncalls = [["web", "目录 服务"], ["目录 服务", "db"]]\n',
                 encoding="utf-8")
    import json
    assert json.loads(load_manifest(p).facts["service_graph"]) == [["web", "目录 服务"],
                                                                   ["目录 服务", "db"]]
    p.write_text('[graph]\ncalls = [["web"]]\n', encoding="utf-8")
    with pytest.raises(UserError, match="calls = \\[\\[caller, callee\\]"):
        load_manifest(p)


def test_evaluate_refuses_an_unknown_family(capsys):
    assert main(["evaluate", "--n", "0", "--families", "nope"]) == 2
    assert "--families" in capsys.readouterr().err


def test_evaluate_can_run_the_families_without_port_exhaustion(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    assert main(["evaluate", "--n", "1", "--ports", "0", "--families", "bad-deploy",
                 "--workers", "1", "--log", str(log)]) == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r.get("family"), r["seed"]) for r in rows] == [("bad-deploy", 0)]
    out = capsys.readouterr().out
    assert "bad-deploy" in out and "port_exhaustion" not in out


# --- the maths -----------------------------------------------------------------------------


ents = st.lists(st.text(min_size=1, max_size=6), min_size=0, max_size=8, unique=True)


@given(ranked=ents, truth=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3,
                                   unique=True))
def test_ac_at_k_grows_with_k_and_avg5_lies_between(ranked, truth):
    acs = [ac_at(ranked, truth, k) for k in range(1, 6)]
    assert all(0.0 <= a <= 1.0 for a in acs)
    assert all(a <= b + 1e-12 for a, b in zip(acs, acs[1:], strict=False))
    assert acs[0] - 1e-12 <= avg5(ranked, truth) <= acs[-1] + 1e-12
    if ranked and ranked[0] in truth:
        assert acs[0] == 1.0 or len(truth) > 1


@given(entity=st.text(min_size=1, max_size=12).filter(lambda e: e.strip() == e and e
                                                       and e[0].isalnum() and e[-1].isalnum()),
       tail=st.sampled_from(["x", "7", "-svc", "é"]))
def test_a_deploy_names_an_entity_only_as_a_whole_word(entity, tail):
    assert names(entity, f"deploy {entity} v1.2.3")
    assert names(entity, f"rolled out v2 to {entity}")
    assert not names(entity, f"deploy {entity}{tail} v1.2.3")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(60, 200), at=st.floats(0.3, 0.9), size=st.floats(35, 200),
       seed=st.integers(0, 10_000))
def test_the_onset_of_a_step_is_found_at_the_step(n, at, size, seed):
    """A step of more than six times the scale floor (5 % of the level) is found where it
    starts; noise of +-1 % alone has no onset."""
    rng = np.random.default_rng(seed)
    base = n // 4
    p = max(base, int(at * n))
    v = 100 + rng.uniform(-1, 1, n)
    v[p:] += size
    s = Series("x", "e", "latency", v)
    _score(s, base, False, 10.0)
    assert s.onset == p
    q = Series("y", "e", "latency", 100 + rng.uniform(-1, 1, n))
    _score(q, base, False, 10.0)
    assert q.onset is None


@given(cap=st.floats(1, 1e6), share=st.floats(0.35, 1.0), n=st.integers(10, 200))
def test_a_series_at_its_cap_for_a_share_of_the_time_is_at_cap(cap, share, n):
    k = int(np.ceil(share * n))
    v = np.r_[np.full(k, cap), np.full(n - k, cap * 0.5)]
    assert at_cap(v, cap, share=0.3)
    assert not at_cap(v * 0.8, cap)


def test_kinds_are_told_by_name_settings_before_usage():
    assert kind_of("db_client_connections_max") == "pool_size"
    assert kind_of("db_client_connections_in_use") == "pool_in_use"
    assert kind_of("container_spec_cpu_limit_cores") == "cpu_limit"
    assert kind_of("container_cpu_usage_seconds_total") == "cpu"
    assert kind_of("http_server_duration_p99_seconds") == "latency"
    assert kind_of("http_requests_failed_total") == "errors"
    assert kind_of("http_requests_total") == "rate"


def test_family_rows_score_ours_and_the_baseline_alike():
    outs = [FamilyOutcome("slow-dependency", i, [("db", "slow_dependency")], ROOT_CAUSE,
                          "slow_dependency", "db", [("slow_dependency", "db")], True,
                          ["db", "api"], ["api", "web", "db"], 1.0) for i in range(3)]
    outs.append(FamilyOutcome("slow-dependency", 9, [("db", "slow_dependency")], SUSPECTS_ONLY,
                              None, None, [], None, ["api", "db"], ["web"], 1.0))
    row = family_row("slow-dependency", outs)
    assert row.ac1 == pytest.approx(0.75) and row.ac3 == pytest.approx(1.0)
    assert row.base_ac1 == 0.0 and row.base_ac3 == pytest.approx(0.75)
    assert row.named == pytest.approx(0.75) and row.culprit == 1.0 and row.role_order == 1.0


# --- metrics only: a wide CSV of service x metric columns, a few dozen samples -------------


def test_wide_csv_cases_put_the_root_cause_in_the_top_three_more_than_chance(tmp_path):
    """Shaped like public RCA data (``<service>_<metric>`` columns, no graph, 30 samples),
    generated independently of the queueing model: the true service is among the first
    three suspects far more often than a random ranking puts it there."""
    from analysis.simulate.micro.widecsv import write_wide_case

    hits, chance = [], []
    for seed in range(6):
        truth = write_wide_case(tmp_path / str(seed), seed, n=30)
        con = connect(None)
        ingest_paths(con, [tmp_path / str(seed)])
        chain = find_chain(con)
        hits.append(truth["root"] in [s.entity for s in chain.suspects[:3]])
        chance.append(3 / len(truth["services"]))
    assert np.mean(hits) >= 0.8 > np.mean(chance) + 0.3
