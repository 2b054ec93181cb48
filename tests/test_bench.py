"""Specification of the benchmark harness (``scripts/bench.py``), not of the speed it finds.

The smoke run checks that one ``--quick`` run records every stage, contender and
ratio of issue 7; the unit tests check the measuring itself: each job's peak
memory is its own, a job over its memory or time cap is recorded as "did not
finish", and the ratios and targets read the medians the right way round.
No test asserts on how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402
import bench_data  # noqa: E402

PY = sys.executable


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``--quick`` run at a tiny scale, without the notebook run."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            PY,
            str(ROOT / "scripts" / "bench.py"),
            "--quick",
            "--scales",
            "3000",
            "--no-notebook",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "bench.json").read_text())
    result["_stdout"] = proc.stdout
    result["_out"] = str(out)
    return result


def test_quick_run_records_every_stage_contender_and_ratio(quick_run: dict) -> None:
    [scale] = quick_run["scales"]
    assert scale["scale"] == 3000
    assert list(scale["stages"]) == list(bench.STAGES)
    assert list(scale["contenders"]) == list(bench.CONTENDERS)
    assert set(bench.RATIOS) <= set(scale["ratios"])
    for name, stat in {**scale["stages"], **scale["contenders"]}.items():
        assert {"seconds", "median_s", "runs", "peak_rss_mb", "status"} <= set(stat), name
    assert list(quick_run["notebook"]) == list(bench.NOTEBOOK_STEPS)
    assert quick_run["notebook"]["report"]["status"].startswith("skipped")


def test_quick_run_baselines_finish_and_agree_on_the_groups(quick_run: dict) -> None:
    """The three outside contenders run on the same file and find the same groups."""
    c = quick_run["scales"][0]["contenders"]
    groups = set()
    for name in ("duckdb_floor/jsonl", "duckdb_floor/parquet", "pandas/jsonl", "polars/jsonl"):
        assert c[name]["status"] == "ok", (name, c[name]["status"])
        assert c[name]["runs"] == 1 and c[name]["median_s"] > 0
        assert c[name]["peak_rss_mb"] > 0
        groups.add(c[name]["detail"]["groups"])
    assert len(groups) == 1


def test_every_run_of_a_job_counts_in_its_stages(tmp_path: Path) -> None:
    code = "import json; print(json.dumps({'stages': {'ingest:x': 0.5, 'rollups': 0.25}}))"
    b = _bench(tmp_path)
    whole = b.repeat("job", _py(code), 3, pick="*")
    assert whole.seconds == [0.75, 0.75, 0.75]
    assert len(whole.detail["wall_s"]) == 3
    ingest = bench._sub_stat(whole, "ingest:x")
    assert ingest.seconds == [0.5, 0.5, 0.5] and ingest.status == "ok"
    assert bench._sub_stat(whole, "chain").status.startswith("failed: no stage")


def test_quick_run_prints_the_table_and_deletes_its_data(quick_run: dict) -> None:
    out = Path(quick_run["_out"])
    assert "ratio ours_over_floor/jsonl" in quick_run["_stdout"]
    assert (out / "bench.txt").read_text().strip() == quick_run["_stdout"].strip()
    assert not (out / "data" / "rows-3000").exists()


def test_generated_files_hold_the_rows_asked_for_in_every_format(tmp_path: Path) -> None:
    files = bench_data.generate(500, tmp_path, seed=3)
    assert set(files.files) == set(bench_data.FORMATS)
    con = duckdb.connect()
    counts = {
        key: con.execute(f"SELECT count(*) FROM {reader}('{files.files[key]}')").fetchone()[0]
        for key, reader in (
            ("requests/jsonl", "read_json"),
            ("requests/parquet", "read_parquet"),
            ("requests/csv", "read_csv"),
        )
    }
    assert set(counts.values()) == {500}
    for key in ("errors/jsonl", "errors/logfmt", "errors/gotext"):
        lines = files.files[key].read_text().splitlines()
        assert len(lines) == files.rows[key] == 50
    first = json.loads(files.files["requests/jsonl"].read_text().splitlines()[0])
    assert list(first) == [
        "time",
        "level",
        "msg",
        "method",
        "caller",
        "uris",
        "status",
        "duration_ms",
        "host",
        "dc",
    ]
    assert first["time"].endswith("Z")
    assert files.files["errors/gotext"].read_text().startswith("2026/04/06 ")


def test_generation_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    a = bench_data.generate(300, tmp_path / "a", seed=7, formats=("requests/jsonl",))
    b = bench_data.generate(300, tmp_path / "b", seed=7, formats=("requests/jsonl",))
    c = bench_data.generate(300, tmp_path / "c", seed=8, formats=("requests/jsonl",))
    text = [f.files["requests/jsonl"].read_bytes() for f in (a, b, c)]
    assert text[0] == text[1] != text[2]


def test_culprit_sends_under_three_requests_per_second_with_huge_batches(tmp_path: Path) -> None:
    files = bench_data.generate(200_000, tmp_path, seed=1, formats=("requests/parquet",))
    rate, lo, hi = (
        duckdb.connect()
        .execute(
            f"""SELECT count(*) / {bench_data.WINDOW_S}, min(uris), max(uris)
            FROM read_parquet('{files.files["requests/parquet"]}')
            WHERE caller = 'feed-indexer'"""
        )
        .fetchone()
    )
    assert 1 < rate < 3
    assert lo >= 15_000 and hi <= 20_000


def _bench(out: Path, repeats: int = 3) -> bench.Bench:
    """A benchmark with the defaults of ``make bench`` (3 repeats), writing under ``out``."""
    return bench.Bench(bench.Options(
        out=out, scales=(1,), repeats=repeats, timeout_s=60, mem_cap_mb=10_000,
        notebook=False, keep_data=False, profile=False, quick=False, parallel=1,
        window_s=3600, seed=1))


def _py(code: str) -> list[str]:
    return [PY, "-c", code]


def test_peak_memory_is_the_childs_own() -> None:
    """A child that holds 200 MiB reports at least that, and a small one far less."""
    code = (
        "import json; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]);"
        "print(json.dumps({'stages': {}}))"
    )
    big = bench.run_measured(_py(code), timeout_s=60, rss_cap_mb=10_000)
    small = bench.run_measured(_py("print(1)"), timeout_s=60, rss_cap_mb=10_000)
    assert big.ok and small.ok
    assert big.peak_rss_mb >= 200
    assert small.peak_rss_mb < 100


def test_a_job_over_the_memory_cap_did_not_finish() -> None:
    code = "b = bytearray(2**30); b[::4096] = b'x' * len(b[::4096]); print(len(b))"
    m = bench.run_measured(_py(code), timeout_s=60, rss_cap_mb=150)
    assert m.status == "did not finish: over the 0.1 GiB memory cap"
    assert not m.ok
    assert m.peak_rss_mb > 150  # what it had reached when killed


def test_a_job_over_the_time_cap_did_not_finish() -> None:
    m = bench.run_measured(_py("while True: pass"), timeout_s=0.5, rss_cap_mb=10_000)
    assert m.status.startswith("did not finish: over the")
    assert "time cap" in m.status


def test_a_failing_job_says_why() -> None:
    m = bench.run_measured(
        _py("raise SystemExit('no such file: x.jsonl')"), timeout_s=60, rss_cap_mb=10_000
    )
    assert m.status == "failed: no such file: x.jsonl"


def _stat(*seconds: float, status: str = "ok") -> bench.Stat:
    return bench.Stat(list(seconds), 100.0, status)


def test_ratios_read_medians_the_right_way_round() -> None:
    c = {
        "ours/jsonl": _stat(2, 3, 100),  # median 3: one slow outlier does not count
        "ours/parquet": _stat(1),
        "duckdb_floor/jsonl": _stat(2),
        "duckdb_floor/parquet": _stat(0.5),
        "pandas/jsonl": _stat(status="did not finish: over the 12.0 GiB memory cap"),
        "polars/jsonl": _stat(6),
    }
    r = bench.ratios(c)
    assert r["ours_over_floor/jsonl"] == 1.5
    assert r["ours_over_floor/parquet"] == 2.0
    assert r["polars_over_ours"] == 2.0
    assert r["pandas_over_ours"] is None
    assert r["pandas_status"].startswith("did not finish")


def test_targets_count_pandas_not_finishing_as_a_win_and_flag_a_miss() -> None:
    def js(st: bench.Stat) -> dict:
        return st.as_json()

    contenders = {
        "ours/jsonl": js(_stat(10)),
        "pandas/jsonl": js(_stat(status="did not finish: over the 900 s time cap")),
    }
    scale = {
        "scale": 10_000_000,
        "contenders": contenders,
        "stages": {"detection+chain": js(_stat(7))},
        "ratios": {
            "ours_over_floor/jsonl": 1.2,
            "ours_over_floor/parquet": 3.0,
            "pandas_over_ours": None,
            "polars_over_ours": 1.1,
        },
    }
    got = {t["target"]: t["met"] for t in bench.targets({"scales": [scale]})}
    assert got == {
        "10,000,000 rows: ingest+rollups jsonl <= 1.5x DuckDB floor": True,
        "10,000,000 rows: ingest+rollups parquet <= 1.5x DuckDB floor": False,
        "10,000,000 rows: ahead of polars": True,
        "10,000,000 rows: >= 10x faster than pandas": True,
        "10,000,000 rows: detection+chain < 5 s": False,
    }


def test_the_spark_rollup_is_reported_beside_duckdbs_or_says_why_not() -> None:
    def at_engine_rows(spark: bench.Stat) -> dict:
        stages = {"detection+chain": _stat(1).as_json(), "rollup/duckdb": _stat(4).as_json(),
                  "rollup/spark": spark.as_json()}
        ratios = dict.fromkeys(bench.RATIOS)
        contenders = {k: _stat(9).as_json() for k in bench.CONTENDERS}
        scale = {"scale": bench.ENGINE_ROWS, "contenders": contenders, "stages": stages,
                 "ratios": ratios}
        [got] = [t for t in bench.targets({"scales": [scale]}) if "Spark" in t["target"]]
        return got

    ran = at_engine_rows(_stat(30, 32))
    assert ran["met"] is True and ran["value"] == 31 and "DuckDB's: 4.00 s" in ran["note"]
    missing = at_engine_rows(bench.Stat(status="skipped: spark engine not available"))
    assert missing["met"] is None and missing["note"] == "skipped: spark engine not available"


def test_peak_memory_target_counts_the_parquet_ingest_too() -> None:
    contenders = {k: _stat(9).as_json() for k in bench.CONTENDERS}
    contenders["ours/jsonl"]["peak_rss_mb"] = 2000.0
    contenders["ours/parquet"]["peak_rss_mb"] = 5000.0
    scale = {"scale": 50_000_000, "contenders": contenders,
             "stages": {"detection+chain": _stat(1).as_json()},
             "ratios": dict.fromkeys(bench.RATIOS)}
    [rss] = [t for t in bench.targets({"scales": [scale]}) if "RSS" in t["target"]]
    assert rss["value"] == 5000.0 and rss["met"] is False


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=5))
def test_scales_parse_from_plain_or_scientific_notation(scales: list[int]) -> None:
    plain = ",".join(str(s) for s in scales)
    sci = ",".join(f"{s:.0e}" for s in scales)
    assert bench.parse_scales(plain) == tuple(scales)
    assert bench.parse_scales(sci) == tuple(int(float(f"{s:.0e}")) for s in scales)


@pytest.mark.parametrize("bad", ["", "ten", "1e6,-5", "0"])
def test_bad_scales_are_refused(bad: str) -> None:
    with pytest.raises(Exception, match="--scales"):
        bench.parse_scales(bad)


def test_run_budget_repeats_what_targets_judge_and_trims_the_rest(tmp_path: Path) -> None:
    b = _bench(tmp_path)
    assert b.runs_of("ours/jsonl", 1_000_000) == 3
    assert b.runs_of("ours/jsonl", 10_000_000) == 2
    assert b.runs_of("ours/jsonl", 50_000_000) == 1
    assert b.runs_of("ingest/errors/logfmt", 1_000_000) == 3
    assert b.runs_of("ingest/errors/logfmt", 10_000_000) == 1
    assert b.runs_of("pipeline", 1_000_000) == 3
    assert b.runs_of("pandas/jsonl", 10_000_000) == 2
    assert b.runs_of("pipeline", 10_000_000) == 1
    assert b.runs_of("ours/csv", 1_000_000) == 3
    assert b.runs_of("ours/csv", 10_000_000) == 0
