"""The incident window and the grid: stray rows far from the data are counted, never
fatal and never in the analysis; long data get a coarser grid, chosen and named; the
flags ``--grid`` and ``--start/--end`` set them, and a too-fine grid's error names them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from chain_fixture import T0, build
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.chain import ROOT_CAUSE, find_chain, format_chain
from analysis.cli import main
from analysis.rollups import build_rollups
from analysis.store import connect
from analysis.whatif import whatif
from analysis.window import GRID_STEPS, TARGET_BUCKETS, choose_grid, infer_window, n_buckets

STRAYS = (datetime(1970, 1, 1, 0, 0, 1), datetime(9999, 12, 31, 23, 59, 59))


def _add_strays(con) -> None:
    """One request dated 1970 and one error line dated 9999, copies of real rows."""
    con.execute("INSERT INTO requests SELECT ?, * EXCLUDE (time) FROM requests LIMIT 1",
                [STRAYS[0]])
    con.execute("INSERT INTO log_events SELECT ?, * EXCLUDE (time) FROM log_events LIMIT 1",
                [STRAYS[1]])


def test_two_stray_rows_change_nothing_and_are_counted():
    clean = find_chain(build(seed=0))
    con = build(seed=0)
    _add_strays(con)
    r = find_chain(con)
    assert r.verdict == clean.verdict == ROOT_CAUSE
    assert r.culprit == clean.culprit
    assert r.onsets == clean.onsets
    w = r.rollup.window
    assert w.outside == {"requests": 1, "log_events": 1, "metrics": 0}
    assert w.start_from == w.end_from == "inferred"
    assert w.start >= T0 and w.end < T0 + timedelta(hours=1)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["grid"]["window"]["outside_total"] == 2
    assert d["outside_window"].startswith("2 rows outside the window [")
    assert "2 rows outside the window" in format_chain(r)
    # the rows stay in the store
    assert con.execute("SELECT count(*) FROM requests WHERE time = ?", [STRAYS[0]]).fetchone()[0]
    # the what-if replays the window's requests, not 8,000 years of seconds
    w, w_clean = whatif(con, concurrency_limit=50), whatif(build(seed=0), concurrency_limit=50)
    assert (w.replay, w.predicted) == (w_clean.replay, w_clean.predicted)
    assert w.window.outside == {"requests": 1, "log_events": 1, "metrics": 0}


def _store_with_times(times_by_table: dict[str, list[datetime]]):
    """A store holding a request or a metric sample at each given time."""
    con = connect(None)
    for table, times in times_by_table.items():
        con.register("_t", pl.DataFrame({"time": times}, schema={"time": pl.Datetime("us")}))
        if table == "requests":
            con.execute("INSERT INTO requests (time, caller, uris, file_id, line)"
                        " SELECT time, 'c', 1, 1, 1 FROM _t")
        else:
            con.execute("INSERT INTO metrics SELECT time, 'm', NULL, 1.0, 1, 1 FROM _t")
        con.unregister("_t")
    return con


@settings(max_examples=60, deadline=None)
@given(
    span_s=st.integers(600, 90 * 86400),
    n_req=st.integers(0, 300),
    n_met=st.integers(30, 300),
    seed=st.integers(0, 2**32 - 1),
    strays=st.lists(
        st.one_of(
            st.datetimes(datetime(1970, 1, 1), datetime(1999, 12, 31)),
            st.datetimes(datetime(2100, 1, 1), datetime(9999, 12, 31)),
        ),
        max_size=5,
    ),
)
def test_random_stray_rows_never_move_the_inferred_window_off_the_dense_mass(
    span_s, n_req, n_met, seed, strays
):
    """The mass: rows spread over the span (a 10-minute to 90-day incident; metrics every
    step with up to a quarter step of jitter, requests anywhere in it). Up to five stray
    rows in any year before 2000 or after 2100, in either table, leave the window the
    mass' extent."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 4, 6, 12)
    step = span_s / (n_met - 1)
    offsets = np.arange(n_met) * step + rng.uniform(-0.25, 0.25, n_met) * step
    offsets = np.clip(offsets, 0, span_s)
    met = [t0 + timedelta(seconds=float(x)) for x in offsets]
    req = [t0 + timedelta(seconds=float(x)) for x in rng.uniform(0, span_s, n_req)]
    mass = met + req
    con = _store_with_times({"requests": req + strays[::2], "metrics": met + strays[1::2]})
    assert infer_window(con) == (min(mass), max(mass))


@given(first=st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1)),
       span_s=st.integers(0, 20 * 365 * 86400))
def test_the_automatic_grid_is_the_finest_step_within_the_bucket_target(first, span_s):
    last = first + timedelta(seconds=span_s)
    g, how = choose_grid(first, last)
    assert how == "auto" and n_buckets(first, last, g) <= TARGET_BUCKETS
    finer = [s for s in GRID_STEPS if s < g]
    assert not finer or n_buckets(first, last, finer[-1]) > TARGET_BUCKETS


def test_a_real_twelve_hour_incident_with_a_quiet_tail_is_kept_whole():
    """Dense requests for one hour, metrics every 15 s over twelve, two stray requests: the
    window is the twelve hours, all of them."""
    t0 = datetime(2026, 4, 6, 12)
    req = [t0 + timedelta(hours=5, seconds=s) for s in range(0, 3600, 2)]
    met = [t0 + timedelta(seconds=s) for s in range(0, 12 * 3600 + 1, 15)]
    con = _store_with_times({"requests": [*req, *STRAYS], "metrics": met})
    assert infer_window(con) == (t0, t0 + timedelta(hours=12))


def _months_of_a_sparse_series(days: int = 120):
    """An hourly gauge over ``days`` days with one day-long bump in the middle."""
    con = connect(None)
    t0 = datetime(2026, 1, 1)
    rng = np.random.default_rng(0)
    rows = []
    for h in range(days * 24):
        bump = 50.0 if days * 12 <= h < days * 12 + 24 else 0.0
        rows.append([t0 + timedelta(hours=h), 100.0 + bump + float(rng.normal(0, 1)), h])
    con.executemany("INSERT INTO metrics VALUES (?, 'queue_depth', NULL, ?, 1, ?)", rows)
    return con


def test_months_of_sparse_data_get_a_coarser_grid_chosen_and_named():
    con = _months_of_a_sparse_series(120)
    info = build_rollups(con)
    assert (info.grid_s, info.grid_from) == (300, "auto")  # 60 s would be 172,800 buckets
    assert info.n_buckets == 120 * 24 * 12 - 11
    assert "grid 300 s (chosen for the window's length" in info.describe()
    r = find_chain(con)
    assert r.rollup.grid_s == 300 and r.to_dict()["grid"]["grid_from"] == "auto"
    assert "Data: grid 300 s" in format_chain(r)


def test_a_months_long_window_runs_the_chain_end_to_end_at_a_coarse_grid():
    """The hand-built incident inside a 90-day window (an hourly gauge fills it): the chain
    still blames the culprit at the automatic 300 s grid; the what-if replays it."""
    con = build(seed=0)
    con.execute(
        "INSERT INTO metrics SELECT ?::TIMESTAMP - INTERVAL 45 DAY + i * INTERVAL 1 HOUR,"
        " 'disk_used_bytes', '{}', 1e9 + 1e6 * i, 9, i FROM range(0, 24 * 90) t(i)", [T0])
    lo, hi = T0 - timedelta(days=45), T0 + timedelta(days=45)
    r = find_chain(con, start=lo, end=hi)
    assert (r.rollup.grid_s, r.rollup.grid_from) == (300, "auto")
    assert (r.rollup.window.start_from, r.rollup.window.end_from) == ("flag", "flag")
    assert r.verdict == ROOT_CAUSE and r.culprit.caller == "feed-indexer"
    # at a 60 s grid every role shows, and the port arithmetic still holds
    r60 = find_chain(con, start=lo, end=hi, grid_s=60)
    assert r60.culprit.caller == "feed-indexer" and r60.mechanism_passed
    assert len(r60.hops) == 5
    w = whatif(con, concurrency_limit=50, start=lo, end=hi)
    assert w.rollup.grid_s == 300 and w.replay.exhausted and not w.predicted.exhausted


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "fixture.duckdb"
    build(seed=0, path=str(path)).close()
    return path


def test_grid_and_window_flags_set_them(store, capsys):
    start, end = "2026-04-06T14:00:00Z", "2026-04-06T14:10:00Z"
    assert main(["chain", "--db", str(store), "--grid", "5", "--start", start, "--end", end,
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["grid"]["grid_s"], d["grid"]["grid_from"]) == (5, "flag")
    w = d["grid"]["window"]
    assert (w["start"], w["end"], w["start_from"], w["end_from"]) == (
        start, end, "flag", "flag")
    assert w["outside"]["metrics"] > 0  # the five minutes after 14:10 are left out
    assert main(["whatif", "--db", str(store), "--grid", "10"]) == 0
    assert "Data: grid 10 s (set by --grid" in capsys.readouterr().out


def test_a_too_fine_grid_names_the_flags_that_fix_it(store, capsys):
    con = connect(store)  # a gauge every 12 h through 2026: 31 million seconds of data
    con.execute("INSERT INTO metrics SELECT TIMESTAMP '2026-01-01' + i * INTERVAL 12 HOUR,"
                " 'disk_used_bytes', '{}', 1.0, 9, i FROM range(0, 730) t(i)")
    con.close()
    code = main(["chain", "--db", str(store), "--grid", "1", "--start", "2026-01-01T00:00:00Z",
                 "--end", "2026-12-31T00:00:00Z"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--grid" in err and "--start/--end" in err and "buckets" in err
    assert main(["chain", "--db", str(store), "--start", "yesterday"]) == 2
    assert "--start 'yesterday'" in capsys.readouterr().err


def test_ingest_start_end_record_the_window(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"time": f"2026-04-06T14:{m:02d}:00Z", "caller": "web", "method": "Get",
             "uris": 1} for m in range(10)]
    rows.append({"time": "1970-01-01T00:00:00Z", "caller": "web", "method": "Get", "uris": 1})
    (data / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "s.duckdb"
    assert main(["ingest", str(data), "--db", str(db), "--start", "2026-04-06T14:02:00Z",
                 "--end", "2026-04-06T14:05:00Z"]) == 0
    con = connect(db)
    keys = dict(con.execute("SELECT key, value FROM incident").fetchall())
    assert keys["window_start"] == "2026-04-06 14:02:00"
    assert keys["window_end"] == "2026-04-06 14:05:00"
    info = build_rollups(con)
    assert (info.window.start_from, info.window.end_from) == ("manifest", "manifest")
    assert info.window.outside == {"requests": 7, "log_events": 0, "metrics": 0}
    con.close()


def test_report_says_the_grid_and_window_and_takes_the_flags(store, tmp_path, capsys):
    con = connect(store)
    _add_strays(con)
    con.close()
    out = tmp_path / "build"
    assert main(["report", "--db", str(store), "--out", str(out), "--no-notebooks",
                 "--grid", "5", "--start", "2026-04-06T14:00:00Z"]) == 0
    page = (out / "report.html").read_text()
    assert "grid 5 s (set by --grid" in page
    assert "start set by --start/--end, end inferred from where the rows are dense" in page
    assert "2 rows outside the window [2026-04-06T14:00:00Z," in page


def test_a_window_with_no_row_inside_says_so():
    con = build(seed=0)
    r = find_chain(con, start=datetime(2020, 1, 1), end=datetime(2020, 1, 2))
    assert r.verdict != ROOT_CAUSE and r.rollup.n_buckets == 0
    assert "no row inside the window" in r.notes[0]
    total = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
             for t in ("requests", "log_events", "metrics")}
    assert r.rollup.window.outside == total
