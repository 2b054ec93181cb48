"""Evaluation: a chain is scored against truth.json the way the brief defines it, and the
whole path (simulate -> ingest -> chain) finds the culprit of generated incidents."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.chain import NO_CAUSE, ROOT_CAUSE, ChainResult, Culprit, Environment
from analysis.cli import main
from analysis.evaluate import EvaluationResult, run_scenario, scenario_seeds, score
from analysis.roles import ROLES

T0 = datetime(2026, 4, 6, 13, 0, 0)


def _truth(offsets: dict[str, int]) -> dict:
    iso = {r: (T0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")
           for r, s in offsets.items()}
    return {"incident": True, "culprit": {"caller": "feed-indexer", "method": "GetPostRecord"},
            "roles": [r for r in ROLES if r in offsets], "onsets": iso}


def _result(offsets: dict[str, float], caller: str = "feed-indexer") -> ChainResult:
    return ChainResult(ROOT_CAUSE, Culprit(caller, "GetPostRecord", ""), [], [],
                       {r: T0 + timedelta(seconds=s) for r, s in offsets.items()},
                       Environment())


TRUE = {"trigger": 0, "fan_out": 0, "port_exhaustion": 2, "cache_errors": 2,
        "runtime_stress": 150, "user_impact": 900}


def test_a_right_chain_scores_right():
    o = score("random", 1, _truth(TRUE), _result({**TRUE, "runtime_stress": 160}), tie_s=2,
              seconds=1.0, seconds_chain=0.5)
    assert o.culprit_ok and o.order_ok
    assert o.onset_error_s["runtime_stress"] == 10 and o.onset_error_s["trigger"] == 0


def test_wrong_culprit_and_wrong_order_are_counted():
    swapped = {**TRUE, "fan_out": -30}  # fan-out well before the trigger
    o = score("random", 1, _truth(TRUE), _result(swapped, "search-indexer"), tie_s=2,
              seconds=1.0, seconds_chain=0.5)
    assert o.culprit_ok is False and o.order_ok is False


@given(st.floats(min_value=0, max_value=1.9))
def test_onsets_closer_than_the_tie_keep_causal_order(gap):
    # fan-out measured a little before the trigger: within the tie, still in order
    o = score("random", 1, _truth(TRUE), _result({**TRUE, "fan_out": -gap}), tie_s=2,
              seconds=1.0, seconds_chain=0.5)
    assert o.order_ok


def test_false_alarm_rate_counts_quiet_root_causes():
    res = EvaluationResult(0, 4, 0, 2.0)
    quiet = {"incident": False, "culprit": None, "roles": [], "onsets": {}}
    for i, verdict in enumerate([ROOT_CAUSE, NO_CAUSE, NO_CAUSE, NO_CAUSE]):
        r = _result({}) if verdict == ROOT_CAUSE else ChainResult(
            NO_CAUSE, None, [], [], {}, Environment())
        res.outcomes.append(score("quiet", i, quiet, r, tie_s=2, seconds=1, seconds_chain=1))
    assert res.false_alarm_rate == 0.25
    assert res.to_dict()["n_quiet"] == 4


def test_scenario_seeds_are_deterministic_and_distinct():
    a, b = scenario_seeds(5, 3, seed=7), scenario_seeds(5, 3, seed=7)
    assert a == b and len(set(a)) == 8 and scenario_seeds(5, 3, seed=8) != a


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "seed"), [("random", 11), ("quiet", 11)])
def test_end_to_end_on_generated_incidents(tmp_path, kind, seed):
    o = run_scenario(kind, seed, scale=0.05, workdir=tmp_path)
    assert o.error is None
    if kind == "quiet":
        assert o.verdict == NO_CAUSE
    else:
        assert o.incident and o.culprit_ok and o.order_ok
        assert all(abs(e) <= 60 for e in o.onset_error_s.values()), o.onset_error_s


def test_cli_rejects_a_bad_scale(capsys):
    assert main(["evaluate", "--n", "1", "--scale", "0"]) == 2
    assert "--scale must be positive" in capsys.readouterr().err


def test_a_log_rebuilds_the_evaluation(tmp_path):
    import json
    from dataclasses import asdict

    from analysis.evaluate import from_log

    o = score("random", 3, _truth(TRUE), _result(TRUE), tie_s=2, seconds=1, seconds_chain=1)
    log = tmp_path / "run.jsonl"
    log.write_text(json.dumps(asdict(o)) + "\n")
    res = from_log(log)
    assert res.n == 1 and res.culprit_accuracy == 1.0 and res.order_share == 1.0


def test_cli_with_nothing_to_run_prints_an_empty_summary(capsys):
    assert main(["evaluate", "--n", "0", "--quiet", "0", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "culprit accuracy at rank 1" in out and "0 random" in out
