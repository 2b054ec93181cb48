"""Any store gets a verdict: an empty store, one with only metrics, only requests,
only logs, or one caller, never raises; without evidence for a chain the verdict
is ``no_supported_cause`` and says why."""

from __future__ import annotations

import json
import shutil
from itertools import combinations

import pytest
from chain_fixture import build

from analysis.chain import NO_CAUSE, ROOT_CAUSE, find_chain, format_chain
from analysis.cli import main
from analysis.store import connect

TABLES = ("requests", "log_events", "metrics", "events")

# name -> SQL deleting everything the degenerate store must not hold
DEGENERATE = {
    "metrics only, no TIME_WAIT": [f"DELETE FROM {t}" for t in TABLES if t != "metrics"]
    + ["DELETE FROM metrics WHERE metric = 'node_sockstat_TCP_tw'"],
    "one small-batch caller only": ["DELETE FROM requests WHERE caller <> 'appview'"],
    "no address errors, no TIME_WAIT": [
        "DELETE FROM log_events WHERE errno_class = 'EADDRINUSE'",
        "DELETE FROM metrics WHERE metric = 'node_sockstat_TCP_tw'",
    ],
}


@pytest.fixture(scope="module")
def base_db(tmp_path_factory):
    """The hand-built incident, built once; each test degrades its own copy."""
    path = tmp_path_factory.mktemp("degenerate") / "base.duckdb"
    build(seed=1, path=str(path)).close()
    return path


@pytest.fixture
def store(base_db, tmp_path):
    """A fresh copy of the incident's store, open."""
    path = tmp_path / "store.duckdb"
    shutil.copyfile(base_db, path)
    con = connect(path)
    yield con
    con.close()


def _assert_readable(r) -> None:
    """The verdict renders as text and as JSON, with a reason when no cause is found."""
    text = format_chain(r)
    assert json.loads(json.dumps(r.to_dict()))["verdict"] == r.verdict
    if r.verdict == NO_CAUSE:
        assert r.culprit is None and r.hops == []
        assert r.notes and all(r.notes), "a no-cause verdict names its reason"
        assert "no supported cause" in text and r.notes[0] in text


def test_an_empty_store_has_no_supported_cause():
    r = find_chain(connect(None))
    assert r.verdict == NO_CAUSE
    _assert_readable(r)


@pytest.mark.parametrize(
    "kept", [k for n in range(len(TABLES)) for k in combinations(TABLES, n)], ids=str
)
def test_any_subset_of_the_tables_gets_a_verdict(kept, store):
    """Metrics only, requests only, logs only, ...: a chain needs the requests (a caller
    to blame) and some exhaustion evidence; anything less is a reasoned no."""
    con = store
    for t in set(TABLES) - set(kept):
        con.execute(f"DELETE FROM {t}")
    r = find_chain(con)
    _assert_readable(r)
    if "requests" not in kept or not {"metrics", "log_events"} & set(kept):
        assert r.verdict == NO_CAUSE, kept


@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_a_degenerate_store_gets_a_reasoned_verdict(name, store):
    con = store
    for sql in DEGENERATE[name]:
        con.execute(sql)
    r = find_chain(con)
    assert r.verdict == NO_CAUSE, (name, r.culprit)
    _assert_readable(r)


def test_without_requests_no_caller_can_be_blamed(store):
    con = store
    con.execute("DELETE FROM requests")
    r = find_chain(con)
    assert r.verdict == NO_CAUSE and "caller" in r.notes[0]


def test_requests_alone_show_no_exhaustion(store):
    con = store
    for t in ("log_events", "metrics", "events"):
        con.execute(f"DELETE FROM {t}")
    r = find_chain(con)
    assert "no port-exhaustion evidence" in r.notes[0]


def test_the_culprit_alone_is_still_found(store):
    con = store
    con.execute("DELETE FROM requests WHERE caller <> 'feed-indexer'")
    r = find_chain(con)
    assert r.verdict == ROOT_CAUSE and r.culprit.caller == "feed-indexer"
    _assert_readable(r)


def test_cli_on_a_metrics_only_store_prints_the_reason(base_db, tmp_path, capsys):
    db = tmp_path / "m.duckdb"
    shutil.copyfile(base_db, db)
    con = connect(db)
    for sql in DEGENERATE["metrics only, no TIME_WAIT"]:
        con.execute(sql)
    con.close()
    assert main(["chain", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == NO_CAUSE
    assert main(["chain", "--db", str(db)]) == 0
    assert "Verdict: no supported cause." in capsys.readouterr().out
