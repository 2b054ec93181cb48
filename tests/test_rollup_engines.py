"""One rollup definition, two engines: Spark's rollup tables equal DuckDB's, and a store
loaded from them (``ingest --rollups``) reaches the chain the raw store reaches.

The incident is generated (``postmortem simulate``, small), ingested into a store the
usual way, and its raw tables written as Parquet: what ``postmortem rollup`` reads. The
Spark runs are ``local[2]`` (marked ``spark``); they skip only where no Java runtime is
installed (``scripts/sysdeps.sh`` installs one as root).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from analysis.cli import main
from analysis.errors import UserError
from analysis.rollup_files import load_rollups, rollup_to_files
from analysis.rollup_sql import DUCKDB, SPARK, Grid, rollup_steps
from analysis.rollups import ROLLUP_TABLES, build_rollups
from tests.rollup_compare import differences

SCALE = "0.02"
#: a 10 s grid: a tenth of the 1 s grid's rows to compare, every construct still exercised
GRID = 10
SOURCES = ("requests", "log_events", "metrics", "events")


def _java() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


NO_JAVA = "no Java runtime (scripts/sysdeps.sh installs openjdk-17-jre-headless as root)"


@pytest.fixture(scope="module")
def incident(tmp_path_factory) -> dict[str, Path]:
    """A generated incident: its raw files, its store, and its raw tables as Parquet."""
    root = tmp_path_factory.mktemp("engines")
    raw, db, pq = root / "raw", root / "full.duckdb", root / "parquet"
    assert main(["simulate", "--scenario", "april-2026", "--seed", "3", "--scale", SCALE,
                 "--out", str(raw)]) == 0
    assert main(["ingest", str(raw), "--db", str(db)]) == 0
    pq.mkdir()
    con = duckdb.connect(str(db), read_only=True)
    for t in SOURCES:  # two files per table: the rollup reads a glob
        con.execute(f"COPY (SELECT * FROM {t} WHERE line % 2 = 0) TO '{pq / t}-a.parquet'")
        con.execute(f"COPY (SELECT * FROM {t} WHERE line % 2 = 1) TO '{pq / t}-b.parquet'")
    con.close()
    return {"root": root, "raw": raw, "db": db, "pq": pq}


def _sources(pq: Path) -> dict[str, list[str]]:
    return {t: [str(pq / f"{t}-*.parquet")] for t in SOURCES}


@pytest.fixture(scope="module")
def duck_out(incident) -> Path:
    out = incident["root"] / "roll-duckdb"
    rollup_to_files(_sources(incident["pq"]), out, engine="duckdb", grid_s=GRID,
                    manifest=incident["raw"] / "incident.toml")
    return out


@pytest.fixture(scope="module")
def spark_out(incident) -> Path:
    out = incident["root"] / "roll-spark"
    rollup_to_files(_sources(incident["pq"]), out, engine="spark", master="local[2]",
                    grid_s=GRID, manifest=incident["raw"] / "incident.toml", timeout_s=600)
    return out


def _chain(db: Path, capsys, *flags: str) -> dict:
    capsys.readouterr()
    assert main(["chain", "--db", str(db), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_steps_use_exact_quantiles_only():
    """Every quantile is DuckDB's quantile_cont or Spark's percentile: exact and
    interpolating; never an approximate one, never one of an integer column (DuckDB's
    quantile_cont of an INTEGER rounds)."""
    grid = Grid(us=1_000_000, lo_us=0, hi_us=10_000_000, n=10, stale_us=300_000_000)
    for dialect, exact, banned in ((DUCKDB, "quantile_cont(cast(", ("approx", "percentile")),
                                   (SPARK, "percentile(cast(", ("approx", "quantile_cont"))):
        sql = " ".join(s.sql for s in rollup_steps(dialect, grid)).lower()
        assert sql.count(exact) >= 3  # p50/p99 URIs, p99 latency, a series' usual step
        for word in banned:
            assert word not in sql, f"{dialect.name} steps use {word}"


def test_duckdb_over_parquet_equals_the_store(incident, duck_out, tmp_path):
    """The rollup command on DuckDB over Parquet makes the tables ingest stores: the same
    rollups (grid, window, every value), whichever way the raw rows were read."""
    store = tmp_path / "store"
    store.mkdir()
    shutil.copyfile(incident["db"], tmp_path / "copy.duckdb")
    con = duckdb.connect(str(tmp_path / "copy.duckdb"))
    build_rollups(con, grid_s=GRID)
    for t in ROLLUP_TABLES:
        con.execute(f"COPY {t} TO '{store / t}.parquet'")
    con.close()
    assert differences(store, duck_out, tol=1e-9) == []


@pytest.mark.spark
@pytest.mark.skipif(not _java(), reason=NO_JAVA)
def test_spark_rollups_equal_duckdb(duck_out, spark_out):
    """Every rollup table from Spark equals DuckDB's: row counts exactly, floats within
    1e-9, everything else (times, names, counts) exactly."""
    assert differences(duck_out, spark_out, tol=1e-9) == []


@pytest.mark.spark
@pytest.mark.skipif(not _java(), reason=NO_JAVA)
def test_spark_rollups_give_the_chain_of_the_raw_store(incident, spark_out, tmp_path, capsys):
    """``rollup --engine spark`` then ``ingest --rollups``: the chain's verdict, culprit and
    onsets are those of the store that holds the raw rows; drill-down that needs the raw
    rows says so in one line."""
    db = tmp_path / "rollups.duckdb"
    assert main(["ingest", "--rollups", str(spark_out), "--db", str(db)]) == 0
    ours, theirs = _chain(db, capsys), _chain(incident["db"], capsys, "--grid", str(GRID))
    assert ours["verdict"] == theirs["verdict"] == "root_cause_found"
    assert ours["culprit"] == theirs["culprit"]
    assert ours["onsets"] == theirs["onsets"]
    assert ours["hops"] == theirs["hops"]
    assert main(["whatif", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs the raw rows" in err


def test_rollups_load_only_into_a_store_without_raw_rows(incident, duck_out, tmp_path):
    """Loading rollups into a store that holds raw rows would leave two truths: refused."""
    db = tmp_path / "full.duckdb"
    shutil.copyfile(incident["db"], db)
    with pytest.raises(UserError, match="raw rows"):
        load_rollups(db, duck_out)


def test_rollup_names_a_glob_that_matches_nothing(tmp_path):
    with pytest.raises(UserError, match="--requests .*no Parquet file matches"):
        rollup_to_files({"requests": [str(tmp_path / "none-*.parquet")]}, tmp_path / "out")


def test_rollup_without_a_manifest_infers_the_window(incident, tmp_path):
    """No manifest and no --start/--end: the window is inferred on the engine from where
    the rows are dense, as the store infers it (``analysis.window``)."""
    run = rollup_to_files({"requests": [str(incident["pq"] / "requests-*.parquet")],
                           "log_events": [str(incident["pq"] / "log_events-*.parquet")]},
                          tmp_path / "out", grid_s=GRID)
    assert run.info.window.start_from == run.info.window.end_from == "inferred"
    con = duckdb.connect(str(incident["db"]), read_only=True)
    lo, hi = con.execute("SELECT min(time), max(time) FROM (SELECT time FROM requests"
                         " UNION ALL SELECT time FROM log_events)").fetchall()[0]
    con.close()
    assert lo <= run.info.window.start <= run.info.window.end <= hi
    assert (tmp_path / "out" / "incident.parquet").is_file()
