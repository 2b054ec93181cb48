"""What-if: the observed request log replayed through the connection mechanism.

Replayed as it was, the replay must match what was observed; changed, it must
move the way the mechanism says (the fix and the workaround end the errors)."""

from __future__ import annotations

import json

import pytest
from chain_fixture import build
from hypothesis import given
from hypothesis import strategies as st

from analysis.cli import main
from analysis.mechanism import PoolSettings
from analysis.rollups import build_rollups
from analysis.whatif import settings_from_text, whatif


@pytest.fixture(scope="module")
def incident():
    con = build(seed=3)
    build_rollups(con)
    return con


def test_unchanged_settings_reproduce_observed_time_wait(incident):
    r = whatif(incident)
    assert r.tw_agreement is not None and r.tw_agreement <= 0.10
    assert r.replay.exhausted and r.observed.exhausted
    assert r.baseline.source_addresses == "fixed"  # EADDRINUSE was logged
    assert r.baseline.idle_pool == 1000 and r.baseline.ports == 28232


def test_concurrency_limit_of_50_predicts_no_exhaustion(incident):
    r = whatif(incident, concurrency_limit=50)
    assert not r.predicted.exhausted
    assert r.predicted.peak_time_wait < r.replay.peak_time_wait / 100


def test_random_source_addresses_end_errors_but_not_time_wait(incident):
    r = whatif(incident, source_addresses="random")
    assert r.predicted.errors == 0
    assert r.predicted.peak_time_wait > r.baseline.ports


@pytest.mark.parametrize(
    "change",
    [{"max_batch": 1000}, {"idle_pool": 40_000}, {"port_range": (1024, 65535)}],
)
def test_other_levers_reduce_errors(incident, change):
    r = whatif(incident, **change)
    assert r.predicted.errors < r.replay.errors


def test_frame_holds_observed_replayed_and_predicted_series(incident):
    r = whatif(incident, concurrency_limit=50)
    for kind in ("observed", "replay", "predicted"):
        for what in ("dials", "time_wait", "errors"):
            assert f"{kind}_{what}" in r.frame.columns
    assert r.frame.height == 900 and r.frame["batches"].sum() > 0


def test_cli_json_and_table(tmp_path, capsys):
    db = tmp_path / "x.duckdb"
    build(seed=3, path=str(db)).close()
    assert main(["whatif", "--db", str(db), "--concurrency-limit", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changed"]["concurrency_limit"] == 50 and not out["predicted"]["exhausted"]
    assert main(["whatif", "--db", str(db), "--source-addresses", "random"]) == 0
    assert "no port exhaustion" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--db", "nowhere.duckdb"], "nowhere.duckdb: no such store"),
        (["--port-range", "9-3"], "expected LO-HI"),
        (["--port-range", "abc"], "expected LO-HI"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path, capsys, args, needle):
    assert main(["whatif", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


BASE = PoolSettings(source_addresses="fixed")


@pytest.mark.parametrize(
    ("title", "field", "value"),
    [
        ("dataplane: bind memcached dials to random 127.a.b.c source addresses",
         "source_addresses", "random"),
        ("dataplane: GetPostRecord concurrency limit 50", "concurrency_limit", 50),
        ("widen the ephemeral port range 1024-65535", "port_range", (1024, 65535)),
        ("memcache client: idle pool of 4000", "idle_pool", 4000),
    ],
)
def test_timeline_titles_become_settings_changes(title, field, value):
    assert getattr(settings_from_text(title, BASE, BASE), field) == value


def test_removing_the_workaround_restores_the_source_policy():
    random_src = settings_from_text("random source addresses", BASE, BASE)
    fixed = settings_from_text("concurrency limit 50; random source removed", random_src, BASE)
    assert fixed.source_addresses == "fixed" and fixed.concurrency_limit == 50


@given(st.text(alphabet="abcdefgh .;-", max_size=40))
def test_unrecognised_titles_change_nothing(title):
    assert settings_from_text(title, BASE, BASE) == BASE
