"""Content outranks names: a file is told by its columns and lines first, a name pattern
only breaks ties; a wide metrics CSV keeps repeated series apart and reads pandas'
multi-level headers as labels."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analysis.ingest as ingest_module
from analysis.ingest import ingest_paths
from analysis.ingest.csvhead import parse_rows, read_header, wide_series
from analysis.ingest.detect import UnknownFormat, detect
from analysis.store import connect

T0 = "2026-04-06T12:00:00Z"


def _load(*paths, line_by_line: bool = False):
    con = connect(None)
    with pytest.MonkeyPatch.context() as mp:
        if line_by_line:  # no line statistics: the fast paths are not tried
            mp.setattr(ingest_module, "line_stats", lambda *_: None)
        report = ingest_paths(con, list(paths))
    return con, report


def _series(con) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for metric, labels, value in con.execute(
            "SELECT metric, labels, value FROM metrics ORDER BY line, metric, labels").fetchall():
        out.setdefault((metric, labels), []).append(value)
    return out


@pytest.mark.parametrize("line_by_line", [False, True])
@pytest.mark.parametrize("name", ["ec2_request_latency.csv", "ec2_request_latency.csv.gz"])
def test_a_time_value_csv_named_like_a_request_log_is_a_metric_series(tmp_path, name,
                                                                       line_by_line):
    body = "timestamp,value\n" + "".join(f"2026-04-06 12:0{i}:00,{i}.5\n" for i in range(5))
    p = tmp_path / name
    p.write_bytes(gzip.compress(body.encode()) if name.endswith(".gz") else body.encode())
    con, report = _load(p, line_by_line=line_by_line)
    f = report.files[0]
    assert (f.format, f.detected_by) == ("metrics/csv-wide", "content")
    assert "the name says requests, the content outranks it" in f.guess
    assert (f.lines_read, f.loaded, f.rejected) == (5, 5, 0)
    assert _series(con) == {("ec2_request_latency", "{}"): [0.5, 1.5, 2.5, 3.5, 4.5]}
    assert con.execute("SELECT count(*) FROM requests").fetchall() == [(0,)]
    assert "'value' is the series 'ec2_request_latency'" in f.line()


@pytest.mark.parametrize("line_by_line", [False, True])
def test_repeated_wide_columns_are_kept_apart_and_said(tmp_path, line_by_line):
    p = tmp_path / "metrics-board.csv"
    p.write_text(f"time,cpu,cpu,mem,cpu\n{T0},1,2,3,4\n{T0},5,6,7,8\n")
    con, report = _load(p, line_by_line=line_by_line)
    assert _series(con) == {
        ("cpu", '{"column":"2"}'): [1, 5], ("cpu", '{"column":"3"}'): [2, 6],
        ("cpu", '{"column":"5"}'): [4, 8], ("mem", "{}"): [3, 7]}
    assert ("3 columns repeat a series name ('cpu'): kept apart by a label column=N,"
            " their position (columns 2, 3, 5)") in report.files[0].line()


FRAME_COLUMNS = [("cartservice", "cpu", "mean"), ("cartservice", "latency", "p99"),
                 ("frontend", "latency", "p99")]


def multi_level_csv(columns: list[tuple[str, ...]], level_names: list[str | None],
                    index_name: str | None, rows: list[list[float]]) -> str:
    """What pandas' ``DataFrame.to_csv`` writes for a frame whose columns are a
    ``MultiIndex`` (pandas 2, checked by hand; see ``PANDAS_WROTE``): one line per
    level, its name first (or nothing), then the index's name if it has one, then the
    data, quoted as the csv module quotes."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for j, level in enumerate(level_names):
        w.writerow([level or ""] + [c[j] for c in columns])
    if index_name:
        w.writerow([index_name] + [""] * len(columns))
    for i, row in enumerate(rows):
        w.writerow([f"2026-04-06 12:0{i}:00", *row])
    return out.getvalue()


#: pandas 2.2: pd.DataFrame([[1, 2, 3], [4, 5, 6]], index=pd.DatetimeIndex([...], name="time"),
#: columns=pd.MultiIndex.from_tuples(FRAME_COLUMNS, names=["entity", "metric", "statistic"]))
#: .to_csv()
PANDAS_WROTE = """entity,cartservice,cartservice,frontend
metric,cpu,latency,latency
statistic,mean,p99,p99
time,,,
2026-04-06 12:00:00,1,2,3
2026-04-06 12:01:00,4,5,6
"""


def _frame(level_names, index_name) -> str:
    return multi_level_csv(FRAME_COLUMNS, level_names, index_name,
                           [[i + 0.25, 10.0 * i, 100.0 + i] for i in range(4)])


def test_the_writer_here_writes_what_pandas_wrote():
    assert multi_level_csv(FRAME_COLUMNS, ["entity", "metric", "statistic"], "time",
                           [[1, 2, 3], [4, 5, 6]]) == PANDAS_WROTE


@pytest.mark.parametrize("line_by_line", [False, True])
@pytest.mark.parametrize("index_name", ["time", None])
def test_a_pandas_multi_level_header_is_read_as_labels(tmp_path, line_by_line, index_name):
    p = tmp_path / "services.csv"
    p.write_text(_frame(["entity", "metric", "statistic"], index_name))
    with open(p, "a") as f:
        f.write("2026-04-06 12:09:00,oops,1,2\n")  # a bad cell: rejected by its line number
    con, report = _load(p, line_by_line=line_by_line)
    f = report.files[0]
    assert f.format == "metrics/csv-wide" and "3-level header" in f.guess
    header = 4 if index_name else 3
    assert (f.lines_read, f.loaded, f.rejected) == (5, 4, 1)
    assert con.execute("SELECT line FROM rejects").fetchall() == [(header + 5,)]
    assert _series(con) == {
        ("cpu", '{"entity":"cartservice","statistic":"mean"}'): [0.25, 1.25, 2.25, 3.25],
        ("latency", '{"entity":"cartservice","statistic":"p99"}'): [0.0, 10.0, 20.0, 30.0],
        ("latency", '{"entity":"frontend","statistic":"p99"}'): [100.0, 101.0, 102.0, 103.0]}
    lines = [r[0] for r in con.execute("SELECT DISTINCT line FROM metrics ORDER BY 1").fetchall()]
    assert lines == [header + 1, header + 2, header + 3, header + 4]


def test_unnamed_levels_join_into_the_metric_name_and_each_is_a_label(tmp_path):
    p = tmp_path / "services.csv"
    p.write_text(_frame([None, None, None], "time"))
    con, report = _load(p)
    assert sorted(_series(con)) == [
        ("cartservice_cpu_mean", '{"level_1":"cartservice","level_2":"cpu","level_3":"mean"}'),
        ("cartservice_latency_p99",
         '{"level_1":"cartservice","level_2":"latency","level_3":"p99"}'),
        ("frontend_latency_p99", '{"level_1":"frontend","level_2":"latency","level_3":"p99"}')]
    assert "no level named metric" in report.files[0].line()


# --- properties ----------------------------------------------------------------------

# names without newlines (a CSV header cell is one line here), not empty
name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
               min_size=1, max_size=12).filter(lambda s: s.strip() == s)


@given(st.lists(st.tuples(name, name), min_size=1, max_size=6), st.booleans())
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_column_of_a_multi_level_csv_is_its_own_series(tmp_path_factory, columns,
                                                             line_by_line):
    values = [[float(i * 10 + j) for j in range(len(columns))] for i in range(3)]
    p = tmp_path_factory.mktemp("m") / "frame.csv"
    p.write_text(multi_level_csv(columns, ["host", "metric"], "time", values), encoding="utf-8")
    con, report = _load(p, line_by_line=line_by_line)
    f = report.files[0]
    assert (f.lines_read, f.loaded, f.rejected) == (3, 3, 0), f.line()
    got = _series(con)
    assert len(got) == len(columns)  # none merged
    assert sorted(v for vals in got.values() for v in vals) == sorted(
        v for row in values for v in row)
    for host, metric in set(columns):
        assert any(m == metric and json.loads(lb).get("host") == host for m, lb in got)


@given(st.lists(st.text(max_size=40), max_size=14), st.text(max_size=10))
@settings(max_examples=200, deadline=None)
def test_any_header_lines_are_read_without_raising(lines, stem):
    rows = parse_rows([ln.replace("\n", " ").replace("\r", " ") for ln in lines])
    header = read_header(rows)
    assert 1 <= header.rows <= max(1, len(rows))
    series, _ = wide_series(header, stem or "x")
    keys = [(m, json.dumps(lb, sort_keys=True)) for m, lb in series]
    assert len(set(keys)) == len(keys) == max(0, len(header.columns) - 1)


@given(st.binary(max_size=400), st.sampled_from(["x.csv", "requests.jsonl", "data.json", "a"]))
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_detecting_any_bytes_tells_a_format_or_says_unknown(tmp_path_factory, data, fname):
    p = tmp_path_factory.mktemp("d") / fname
    p.write_bytes(data)
    try:
        got = detect(p)
    except UnknownFormat as exc:
        assert str(p) in str(exc) and "\n" not in exc.why
    else:
        assert got is None or (got.kind, got.detected_by) != ("", "")


def test_the_header_pandas_wrote_is_four_lines_of_three_named_levels():
    header = read_header(parse_rows(PANDAS_WROTE.splitlines()))
    assert header.rows == 4 and [n for n, _ in header.levels] == ["entity", "metric", "statistic"]


@given(st.lists(st.text(max_size=40).map(lambda s: s.replace("\n", " ").replace("\r", " ")),
                min_size=1, max_size=10))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_lines_under_a_multi_level_header_are_accounted_exactly(tmp_path_factory, lines):
    p = tmp_path_factory.mktemp("l") / "frame.csv"
    # one data line tells the header's end; then anything
    lines = ["2026-04-06 12:00:00,1,2,3", *lines]
    head = multi_level_csv(FRAME_COLUMNS, ["entity", "metric", "statistic"], "time", [])
    p.write_text(head + "".join(line + "\n" for line in lines), encoding="utf-8")
    seen = []
    for line_by_line in (False, True):
        con, report = _load(p, line_by_line=line_by_line)
        f = report.files[0]
        assert not f.failed and f.format == "metrics/csv-wide", f.line()
        assert f.lines_read == len(lines) == f.loaded + f.rejected
        seen.append((con.execute("SELECT line, reason FROM rejects ORDER BY line").fetchall(),
                     _series(con)))
    assert seen[0] == seen[1]
    assert all(line > 4 for line, _ in seen[0][0])
