"""The report and the notebooks on a store of rollups only (``postmortem rollup`` then
``ingest --rollups``): every section the roll tables answer reads them, and what needs
the raw rows (the what-if replay, ingest's accounting of files, queries of the request
log) says so in one line in its place; the verdict and culprit are the full store's.

The incident is generated (``postmortem simulate``, random scenario, small), ingested
into a full store, converted to Parquet (``postmortem convert``) and rolled up there
with the DuckDB engine, as a user would on a cluster's exports (Spark's rollups are
checked equal to DuckDB's in ``test_rollup_engines``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from polars.testing import assert_frame_equal

from analysis.cli import main
from analysis.report import data as rd
from analysis.report.notebooks import notebook_dir, run_notebooks
from analysis.report.page import NO_CULPRIT, collect
from analysis.report.workspace import open_analysis

SEED = "7"
SCALE = "0.02"
NEEDS_RAW = "needs the raw request rows; this store holds rollups from --requests"


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """The full store and the store of rollups made from the same exports as Parquet."""
    root = tmp_path_factory.mktemp("rollonly")
    raw, pq, roll = root / "raw", root / "parquet", root / "roll"
    full, only = root / "full.duckdb", root / "rollups.duckdb"
    assert main(["simulate", "--scenario", "random", "--seed", SEED, "--scale", SCALE,
                 "--out", str(raw)]) == 0
    assert main(["ingest", str(raw), "--db", str(full)]) == 0
    assert main(["convert", str(raw), "--out", str(pq)]) == 0
    globs = {flag: str(pq / table / "**" / "*.parquet") for flag, table in (
        ("--requests", "requests"), ("--errors", "log_events"), ("--metrics", "metrics"),
        ("--events", "events"))}
    assert main(["rollup", *[a for kv in globs.items() for a in kv], "--engine", "duckdb",
                 "--manifest", str(raw / "incident.toml"), "--out", str(roll)]) == 0
    assert main(["ingest", "--rollups", str(roll), "--db", str(only)]) == 0
    return {"root": root, "full": full, "only": only}


@pytest.fixture(scope="module")
def contents(stores):
    """What the report shows of each store (``collect``), with the chain behind it."""
    out = {}
    for name in ("full", "only"):
        con = open_analysis(stores[name])
        try:
            out[name] = (collect(con), rd.root_cause_chain(con))
        finally:
            con.close()
    return out


def test_the_report_of_rollups_only_has_the_full_stores_verdict_and_culprit(contents):
    (full, full_chain), (only, only_chain) = contents["full"], contents["only"]
    assert only.verdict == full.verdict == full_chain.verdict == only_chain.verdict
    assert full_chain.culprit is not None, "the random scenario at this seed has a culprit"
    assert only_chain.culprit is not None
    assert only_chain.culprit.caller == full_chain.culprit.caller
    assert dict(only.summary)["Root cause"] == dict(full.summary)["Root cause"]


def test_the_what_if_section_says_it_needs_the_raw_rows(contents):
    (full, _), (only, _) = contents["full"], contents["only"]
    assert only.whatif.rows == [] and only.whatif_caveat == ""
    assert only.whatif_absent.startswith("The what-if replay " + NEEDS_RAW)
    assert "\n" not in only.whatif_absent
    assert full.whatif.rows and full.whatif_absent == NO_CULPRIT
    assert not any(b.id == "whatif" for b in only.charts)


def test_caller_weights_and_coverage_come_from_the_roll_tables(stores, contents):
    """The weight chart and the coverage are there; the heaviest caller and its largest
    batch are the full store's, the requests those the rollups counted."""
    (full, _), (only, _) = contents["full"], contents["only"]
    assert {b.id for b in only.lead} == {b.id for b in full.lead}
    assert any(b.id == "coverage" for b in only.charts)
    cons = {n: open_analysis(stores[n]) for n in ("full", "only")}
    try:
        weights = {n: rd.caller_weights(c) for n, c in cons.items()}
        sources = set(rd.coverage(cons["only"])["source"])
        counted = cons["only"].execute(
            "SELECT round(sum(requests) * any_value(grid_s)) FROM roll_callers, roll_info"
        ).fetchall()[0][0]
    finally:
        for c in cons.values():
            c.close()
    top = {n: w.row(0, named=True) for n, w in weights.items()}
    assert top["only"]["caller"] == top["full"]["caller"]
    assert top["only"]["max_batch"] == top["full"]["max_batch"]
    assert weights["only"]["requests"].sum() == counted > 0
    assert weights["only"]["median_batch"].null_count() == weights["only"].height
    assert {"requests", "logs", "events"} <= sources
    assert any(s.startswith("metric ") for s in sources)


def test_the_page_renders_with_the_line_in_place_of_the_what_if(stores, capsys):
    out = stores["root"] / "report"
    assert main(["report", "--db", str(stores["only"]), "--out", str(out),
                 "--no-notebooks", "--format", "html", "--format", "slides"]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "The what-if replay " + NEEDS_RAW in page
    assert 'id="weight"' in page and "Data coverage" in page
    assert (out / "slides.html").stat().st_size > 0


def test_events_read_from_roll_events_equal_the_raw_events(stores):
    """The report's events now come from ``roll_events``: on a full store they are the
    rows the ``events`` table gives."""
    con = open_analysis(stores["full"])
    try:
        ours = rd.events(con)
        raw = con.sql("""SELECT time AS start, coalesce(end_time, time) AS "end", kind,
                                    title, source, detail
                         FROM events ORDER BY time, kind, title""").pl()
        assert raw.height > 0
        assert_frame_equal(ours, raw)
    finally:
        con.close()


def test_the_notebooks_run_and_say_what_needs_the_raw_rows(stores, tmp_path):
    """Notebooks 01-06 run against the store of rollups; the cells needing the raw rows
    print the one line, the others answer."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for nb in sorted(notebook_dir().glob("0[1-6]-*.ipynb")):
        shutil.copy(nb, nbs / nb.name)
    pages = run_notebooks(db=stores["only"], out=tmp_path / "out", notebook_dir=nbs,
                          reuse=False)
    assert len(pages) == 6
    printed = {}
    for nb in sorted((tmp_path / "out" / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        outs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert not [o for o in outs if o["output_type"] == "error"], nb.name
        printed[nb.stem] = "".join("".join(o.get("text", "")) for o in outs)
    assert "the what-if replay " + NEEDS_RAW in printed["05-what-if"]
    assert "needs the raw rows (ingest's accounting of each file)" in printed[
        "01-loading-and-coverage"]
    assert NEEDS_RAW in printed["06-exploration"]
    assert "verdict: root_cause_found" in printed["04-root-cause-chain"]


def test_the_full_store_has_no_raw_rows_line(stores):
    con = duckdb.connect(str(stores["full"]), read_only=True)
    try:
        assert rd.raw_rows_line(con) is None
        assert rd.raw_origin(con) is None
    finally:
        con.close()


def test_rollups_of_another_code_version_say_to_roll_up_again(stores, tmp_path, capsys):
    """Rollups whose mark is not this code's cannot be rebuilt without the raw rows: one
    line saying to rerun ``postmortem rollup``, not one about grids or windows."""
    old = tmp_path / "old.duckdb"
    shutil.copy(stores["only"], old)
    con = duckdb.connect(str(old))
    con.execute("COMMENT ON TABLE signals IS 'postmortem rollups 0000000000000000'")
    con.close()
    capsys.readouterr()
    assert main(["chain", "--db", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "made by another version of the analysis code" in err
    assert "rerun `postmortem rollup`" in err
