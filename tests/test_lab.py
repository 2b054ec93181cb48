"""The real reproduction lab: settings, capture files, and the runs themselves.

The tests marked ``lab`` run the four variants for real (root, network
namespaces, memcached, Go; CI has them) in one session, two at a time, at half
scale (1,500 ports, batches of 1,000 URIs). They assert properties of what was
captured, never timings. Without root or namespaces they skip with the reason.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.cli import main as cli_main
from analysis.errors import UserError
from analysis.ingest.manifest import load_manifest
from analysis.lab import VARIANTS, LabConfig, per_second, run_lab, summarize, unavailable_reason
from analysis.lab import netns as netns_mod
from analysis.lab.capture import Facts, compress, write_manifest
from analysis.lab.replay import SAMPLE, build_store, find_capture
from analysis.store import connect

NAIVE_ERROR = "dial tcp 127.0.0.1:11211: connect: cannot assign requested address"
FIXED_ERROR = "dial tcp 127.32.0.1:0->127.0.0.1:11211: bind: address already in use"
QUICK = {"naive": 60, "fixed-source": 30, "random-source": 30, "bounded": 30}
SCALE = 0.5

# ---- settings and capture files (no root needed) ------------------------------------


@given(st.floats(0.1, 5), st.integers(30, 600))
def test_scale_moves_port_range_and_batch_together(scale, seconds):
    c = LabConfig("naive", Path("x"), seconds=seconds, scale=scale)
    lo, hi = c.port_range
    n_ports = hi - lo + 1
    assert 1024 <= lo < hi <= 65535
    # the ratio that matters for exhaustion stays what it is at scale 1 (2,000 / 3,000)
    if n_ports > 200 and c.batch_size > 100:
        assert abs(c.batch_size / n_ports - 2 / 3) < 0.01
    assert 5 <= c.baseline_s <= 60
    assert c.hard_limit_s > seconds


@pytest.mark.parametrize(
    "kwargs",
    [{"variant": "sloppy"}, {"seconds": 10}, {"scale": 0.01}, {"scale": 50}],
)
def test_bad_settings_are_user_errors(kwargs):
    c = LabConfig(**{"variant": "naive", "out": Path("x"), **kwargs})
    with pytest.raises(UserError, match=r"lab: --\w+"):
        c.check()


def test_only_bounded_gets_a_concurrency_limit():
    for v in VARIANTS:
        args = LabConfig(v, Path("o")).dataplane_args(Path("o"))
        limit = next(a for a in args if a.startswith("-limit="))
        assert (limit == "-limit=50") == (v == "bounded"), (v, limit)


def _facts(variant="naive") -> Facts:
    return Facts(variant, (40000, 42999), 100, None, "default", "feed-indexer", 2000, 4, 200,
                 1.0, 1)


def test_manifest_is_read_by_ingest_with_the_environment_facts(tmp_path):
    start = dt.datetime(2026, 4, 6, 14, 0, tzinfo=dt.UTC)
    path = write_manifest(tmp_path, _facts(), start, start + dt.timedelta(minutes=1))
    raw = tomllib.loads(path.read_text())
    assert raw["ephemeral_port_range"] == "40000-42999"
    m = load_manifest(path)
    assert m.facts["ephemeral_port_range"] == "40000-42999"
    assert m.facts["time_wait_s"] == "60"
    assert m.facts["idle_pool"] == "100"
    assert m.facts["window_start"] == "2026-04-06T14:00:00Z"
    kinds = {r.glob: r.kind for r in m.files}
    assert kinds == {"requests.jsonl*": "requests", "dataplane-errors.jsonl*": "errors",
                     "metrics.csv*": "metrics", "events.csv*": "events"}


def test_compression_is_deterministic(tmp_path):
    blobs = []
    for i in range(2):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "metrics.csv").write_text("time,metric,value,instance\n")
        [gz] = compress(d)
        assert not (d / "metrics.csv").exists()
        blobs.append(gz.read_bytes())
    assert blobs[0] == blobs[1]
    assert gzip.decompress(blobs[0]) == b"time,metric,value,instance\n"


def _write_capture(d: Path, users: list[tuple[int, str]], errors: list[tuple[int, str]],
                   t0: dt.datetime) -> None:
    """A tiny hand-made capture: user requests and error lines at given seconds."""
    def iso(s: float) -> str:
        return (t0 + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    req = [json.dumps({"time": iso(s + 0.5), "caller": "appview", "status": st_,
                       "duration_ms": 2.0, "uris": 3}) for s, st_ in users]
    req.append(json.dumps({"time": iso(10.1), "caller": "feed-indexer", "status": "error",
                           "duration_ms": 800.0, "uris": 1000}))
    (d / "requests.jsonl").write_text("\n".join(req) + "\n")
    (d / "dataplane-errors.jsonl").write_text(
        "".join(json.dumps({"time": iso(s + 0.25), "error": e}) + "\n" for s, e in errors))
    rows = ["time,metric,value,instance"]
    rows += [f"{iso(s + 1)},node_sockstat_TCP_tw,{s * 10},lab-dp" for s in range(20)]
    (d / "metrics.csv").write_text("\n".join(rows) + "\n")


@settings(max_examples=10, deadline=None)
@given(
    users=st.lists(st.tuples(st.integers(0, 19), st.sampled_from(["ok", "error"])), max_size=40),
    errors=st.lists(st.tuples(st.integers(0, 19), st.sampled_from([NAIVE_ERROR, FIXED_ERROR,
                    "read tcp 127.0.0.1:40001->127.0.0.1:11211: i/o timeout"])), max_size=40),
)
def test_per_second_accounts_for_every_line(tmp_path_factory, users, errors):
    d = tmp_path_factory.mktemp("cap")
    t0 = dt.datetime(2026, 4, 6, 14, 0, 0)
    _write_capture(d, users, errors, t0)
    table = per_second(d)
    assert table["user_ok"].sum() == sum(s == "ok" for _, s in users)
    assert table["user_failed"].sum() == sum(s != "ok" for _, s in users)
    assert table["batch_requests"].sum() == 1
    assert table["EADDRNOTAVAIL"].sum() == sum(e == NAIVE_ERROR for _, e in errors)
    assert table["EADDRINUSE"].sum() == sum(e == FIXED_ERROR for _, e in errors)
    assert table["other_errors"].sum() == sum("timeout" in e for _, e in errors)
    # a metric sampled at the end of second s sits on row s
    tw = dict(zip(table["t"], table["time_wait"], strict=True))
    assert tw[t0 + dt.timedelta(seconds=3)] == 30
    summary = summarize(d)
    # the batch ran from 10.1 s to 10.9 s: failures at 9..11 s overlap it (1 s slack)
    outside = sum(1 for s, status in users if status != "ok" and not 9 <= s <= 11)
    assert summary.user_failures_outside_batches == outside


def test_without_root_the_cli_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(netns_mod.os, "geteuid", lambda: 1000)
    assert "root" in unavailable_reason()
    code = cli_main(["lab", "--variant", "naive", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("postmortem: ") and "root" in err[-1]
    assert not any("Traceback" in line for line in err)


# ---- the committed capture (data/samples/lab-naive): replayed without root ----------------

ROLES_IN_ORDER = ["trigger", "fan_out", "port_exhaustion", "cache_errors", "user_impact"]


def _chain_roles(result: dict) -> list[str]:
    """The roles of a chain's hops, in hop order, restricted to the issue's five."""
    hops = result["hops"]
    roles = [hops[0]["cause_role"]] + [h["effect_role"] for h in hops] if hops else []
    return [r for r in roles if r in ROLES_IN_ORDER]


def test_the_committed_capture_is_small_and_a_naive_run():
    cap = find_capture(None)
    assert cap.path == SAMPLE and cap.note is None
    assert sum(f.stat().st_size for f in SAMPLE.iterdir()) < 2_000_000
    assert cap.facts["lab_variant"] == "naive" and cap.n_ports == 1500


def test_a_directory_that_is_not_a_capture_falls_back_to_the_sample(tmp_path):
    cap = find_capture(tmp_path)
    assert cap.path == SAMPLE and "not a lab capture" in cap.note


def test_the_committed_capture_shows_exhaustion_while_the_batches_run():
    s = summarize(SAMPLE)
    assert s.exhaustion_share >= 0.8 and max(s.by_errno, key=s.by_errno.get) == "EADDRNOTAVAIL"
    assert 1500 - 100 - 50 <= s.time_wait_plateau <= 1500
    assert s.user_failures > 0 and s.user_failures_outside_batches == 0
    table = per_second(SAMPLE)
    # TIME_WAIT drains: the last seconds, more than 60 s after the batches, hold almost none
    assert table["time_wait"].drop_nulls()[-1] < 50


def test_the_committed_capture_replays_to_the_batch_caller(tmp_path):
    from analysis.chain import find_chain

    con = connect(build_store(find_capture(None), tmp_path / "lab.duckdb"))
    result = find_chain(con).to_dict()
    assert result["verdict"] == "root_cause_found", result["rejected"]
    assert result["culprit"]["caller"] == "feed-indexer"
    assert _chain_roles(result) == ROLES_IN_ORDER, result["hops"]


# ---- the real runs ------------------------------------------------------------------------


def _require_lab() -> None:
    reason = unavailable_reason(("memcached", "go"))
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_runs(tmp_path_factory):
    """Every variant, run once per session, two at a time (about 75 s in all)."""
    _require_lab()
    base = tmp_path_factory.mktemp("lab")

    def one(variant):
        return run_lab(LabConfig(variant, base / variant, seconds=QUICK[variant], scale=SCALE))

    results = {}
    with ThreadPoolExecutor(2) as pool:
        for pair in (("naive", "bounded"), ("fixed-source", "random-source")):
            for v, r in zip(pair, pool.map(one, pair), strict=True):
                results[v] = r
    return results


@pytest.fixture(scope="session")
def summaries(lab_runs):
    return {v: summarize(r.out) for v, r in lab_runs.items()}


@pytest.mark.lab
def test_naive_exhausts_ports_with_go_s_own_error(lab_runs, summaries):
    s = summaries["naive"]
    lo, hi = lab_runs["naive"].config.port_range
    n_ports = hi - lo + 1
    # mostly EADDRNOTAVAIL; an overloaded moment may add connect timeouts, as in production
    assert s.exhaustion_share >= 0.8, s
    assert max(s.by_errno, key=s.by_errno.get) == "EADDRNOTAVAIL", s
    assert s.by_errno["EADDRNOTAVAIL"] >= 1000, s
    assert s.example_error == NAIVE_ERROR, s
    # TIME_WAIT plateaus at the range size, less the connections kept open
    idle = lab_runs["naive"].config.idle_pool
    assert n_ports - idle - 50 <= s.time_wait_plateau <= n_ports, s
    assert s.time_wait_max <= n_ports


@pytest.mark.lab
def test_user_errors_only_while_batches_run(lab_runs, summaries):
    s = summaries["naive"]
    assert s.user_failures > 0
    assert s.user_failures_outside_batches == 0
    assert s.first_user_failure > s.first_batch_start
    table = per_second(lab_runs["naive"].out)
    before = table.filter(table["t"] < s.first_batch_start.replace(microsecond=0))
    assert before.height >= 5 and before["user_failed"].sum() == 0
    assert (before["EADDRNOTAVAIL"] + before["other_errors"]).sum() == 0


@pytest.mark.lab
def test_fixed_source_fails_in_bind_as_in_the_real_log_line(summaries):
    s = summaries["fixed-source"]
    assert s.exhaustion_share >= 0.8, s.by_errno
    assert s.example_error == FIXED_ERROR


@pytest.mark.lab
def test_random_source_workaround_has_no_exhaustion(lab_runs, summaries):
    s = summaries["random-source"]
    lo, hi = lab_runs["random-source"].config.port_range
    assert s.by_errno.get("EADDRNOTAVAIL", 0) + s.by_errno.get("EADDRINUSE", 0) == 0
    assert s.user_failures == 0
    assert s.time_wait_max > hi - lo + 1  # far past what one source address could hold


@pytest.mark.lab
def test_bounded_fix_has_no_errors_and_no_time_wait(lab_runs, summaries):
    s = summaries["bounded"]
    assert s.error_lines == 0 and s.user_failures == 0
    assert s.batch_requests == lab_runs["bounded"].config.batches
    assert s.time_wait_max <= 10


@pytest.mark.lab
def test_every_process_ended_and_namespace_gone(lab_runs):
    for r in lab_runs.values():
        assert len(r.pids) >= 4  # holder, memcached (and its timeout), data plane
        assert not [pid for pid in r.pids if _alive_not_zombie(pid)]


@pytest.mark.lab
def test_capture_ingests_cleanly_with_its_environment(lab_runs, tmp_path):
    from analysis.ingest import ingest_paths

    con = connect(tmp_path / "lab.duckdb")
    report = ingest_paths(con, [lab_runs["naive"].out])
    assert sum(f.rejected for f in report.files) == 0
    facts = dict(con.execute("SELECT key, value FROM incident").fetchall())
    assert facts["ephemeral_port_range"] == "40000-41499"
    assert facts["idle_pool"] == "100"
    n_err = con.execute(
        "SELECT count(*) FROM log_events WHERE errno_class = 'EADDRNOTAVAIL'").fetchall()[0][0]
    assert n_err >= 1000
    callers = {c for (c,) in con.execute("SELECT DISTINCT caller FROM requests").fetchall()}
    assert callers == {"appview", "notifications", "feed-indexer"}


@pytest.mark.lab
def test_chain_names_the_batch_caller_from_the_capture(lab_runs, tmp_path):
    from analysis.ingest import ingest_paths

    chain = pytest.importorskip("analysis.chain")
    con = connect(tmp_path / "lab.duckdb")
    ingest_paths(con, [lab_runs["naive"].out])
    result = chain.find_chain(con).to_dict()
    assert result["verdict"] == "root_cause_found", result
    assert result["culprit"]["caller"] == "feed-indexer"
    # The mechanism's four roles, in causal order. A live 60 s run's user-facing drop
    # lasts a few seconds, mostly just under the threshold (once broken by a recovered
    # second): the detector missed it in 3 of 6 runs before it weighed the evidence of
    # such seconds and bridged single recovered ones (analysis.detection.windows), and
    # found it in every one of 12 runs since; still optional here until more runs
    # confirm. When the chain finds it, it comes last. (The committed capture's chain
    # reaches user_impact every time: see above.)
    roles = _chain_roles(result)
    assert roles in (ROLES_IN_ORDER, ROLES_IN_ORDER[:-1]), result["hops"]


@pytest.mark.lab
def test_ctrl_c_ends_every_process(tmp_path):
    """SIGINT mid-run: exit 130, and nothing the run started is left alive."""
    _require_lab()
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from analysis.cli import main; sys.exit(main())",
         "lab", "--variant", "naive", "--seconds", "30",
         "--scale", "0.2", "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        started = _wait_for(lambda: (out / "requests.jsonl").exists() and _descendants(proc.pid),
                            proc, timeout_s=120)
        assert started, "the run never started"
        pids = _descendants(proc.pid)
        assert len(pids) >= 3
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert not [p for p in pids if _alive_not_zombie(p)]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = netns_mod._children(p)
        out += kids
        todo += kids
    return out


def _alive_not_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(cond, proc, timeout_s: float) -> bool:
    """Poll ``cond`` until true, the process ends, or ``timeout_s`` passes."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_the_go_source_is_packaged_with_the_module():
    src = Path(netns_mod.__file__).with_name("dataplane.go")
    text = src.read_text()
    assert "package main" in text
    # faithful pool semantics: dial when no idle connection is free, close beyond the cap
    assert "len(c.idle) >= c.maxIdle" in text and "d.Dial(" in text
    assert os.access(src, os.R_OK)
