"""``postmortem convert``: raw exports to partitioned Parquet, accounted as ingest accounts.

Convert runs ingest's own parsers, so for the same inputs its Parquet holds exactly
the rows, line numbers, rejects and per-file accounting a store holds.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.cli import main
from analysis.errors import UserError
from analysis.ingest import ingest_paths
from analysis.ingest.convert import convert
from analysis.parts import VIEW_TABLES
from analysis.paths import repo_root
from analysis.store import connect

SAMPLES = repo_root() / "data" / "samples"
_CASES = itertools.count()
LOGFMT_GOOD = 'time=2026-04-06T14:{m:02d}:{s:02d}Z level=error msg="cache miss" host=dp-{h}'
GOTEXT_GOOD = "2026/04/06 14:{m:02d}:{s:02d} [ERROR] memcache: failed to get item: dial tcp" \
              " 127.32.0.1:0->127.0.0.1:11211: bind: address already in use"
JSON_GOOD = ('{{"time":"2026-04-06T1{h}:{m:02d}:{s:02d}Z","method":"GetFeed","caller":"c{h}",'
             '"uris":{s},"status":"ok","duration_ms":1.5,"host":"dp-1","dc":"us-east"}}')
BAD_LINES = ["not a line of anything", "", '{"time":"yesterday"}', "time=never level=error",
             "2026/99/99 99:99:99 [ERROR] broken clock", "\u00e9t\u00e9 \U0001f600 ünïcode"]


def _comparable(rows: list[tuple]) -> list[tuple]:
    """Rows with NaN (a metric's value as exported) made equal to itself."""
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r)
            for r in rows]


def _store_view(paths: list[Path]) -> dict[str, list]:
    con = connect(None)
    ingest_paths(con, paths)
    out = {t: _comparable(con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall())
           for t in VIEW_TABLES}
    out["rejects"] = con.execute("SELECT * FROM rejects ORDER BY ALL").fetchall()
    out["files"] = con.execute("SELECT file_id, path, format, lines_read, loaded, rejected"
                               " FROM ingest_files ORDER BY file_id").fetchall()
    con.close()
    return out


def _converted(out: Path) -> dict[str, list]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = {}
    for t in VIEW_TABLES:
        if (out / t).is_dir():
            got[t] = _comparable(con.execute(
                f"SELECT * EXCLUDE (day, hour) FROM read_parquet('{out / t}/**/*.parquet',"
                " hive_partitioning = true) ORDER BY ALL").fetchall())
        else:
            got[t] = []
    got["rejects"] = con.execute(f"SELECT * FROM '{out}/rejects.parquet' ORDER BY ALL").fetchall()
    got["files"] = con.execute(
        f"SELECT file_id, path, format, lines_read, loaded, rejected FROM"
        f" '{out}/ingest_files.parquet' ORDER BY file_id").fetchall()
    return got


def _lines(template: str, n: int, bad: dict[int, str]) -> str:
    return "\n".join(bad.get(i, template.format(h=i % 3, m=i // 60 % 60, s=i % 60))
                     for i in range(n)) + "\n"


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 80),
       bad=st.lists(st.tuples(st.integers(0, 79), st.sampled_from(BAD_LINES)), max_size=5))
def test_convert_accounts_every_line_as_ingest_does(tmp_path, n, bad) -> None:
    d = tmp_path / f"case-{next(_CASES)}"
    (d / "in").mkdir(parents=True)
    bad_at = {i: line for i, line in bad if i < n}
    (d / "in" / "requests.jsonl").write_text(_lines(JSON_GOOD, n, bad_at), encoding="utf-8")
    (d / "in" / "errors.logfmt").write_text(_lines(LOGFMT_GOOD, n, bad_at), encoding="utf-8")
    (d / "in" / "errors.log").write_text(_lines(GOTEXT_GOOD, n, bad_at), encoding="utf-8")
    inputs = [d / "in" / name for name in ("requests.jsonl", "errors.logfmt", "errors.log")]
    try:
        result = convert(inputs, d / "out")
    except UserError as exc:  # exactly when ingest too loads nothing; and no output
        assert "nothing loaded" in str(exc) and not (d / "out").exists()
        assert ingest_paths(connect(None), inputs).nothing_loaded() is not None
        return
    assert _converted(d / "out") == _store_view(inputs)
    for f in result.ingest.files:  # a file skipped (same bytes as another, unknown format)
        assert f.skipped_duplicate or f.skipped or f.lines_read == f.loaded + f.rejected == n


def test_convert_of_the_samples_holds_what_ingest_loads(tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(SAMPLES), "--out", str(out)]) == 0
    assert _converted(out) == _store_view([SAMPLES])
    hours = sorted(p.name for p in (out / "requests").glob("day=*/hour=*"))
    assert hours and all(len(h) == len("hour=14") for h in hours)


def test_convert_refuses_an_output_folder_that_holds_files(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        convert([SAMPLES / "requests.jsonl"], out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_convert_that_loads_nothing_leaves_no_output(tmp_path, capsys) -> None:
    bad = tmp_path / "requests.jsonl"
    bad.write_text("not json\n")
    assert main(["convert", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "nothing loaded" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requests.jsonl"]
