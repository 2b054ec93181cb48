"""Times, durations, format detection and the manifest: the pieces the loader is built of."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.errors import UserError
from analysis.ingest import parse_duration_ms, parse_time, time_sql
from analysis.ingest.csvhead import parse_series_name
from analysis.ingest.detect import detect
from analysis.ingest.manifest import load_manifest
from analysis.ingest.sql import canonical_labels, labels_json

UTC = dt.UTC
instants = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timedelta(minutes=m))


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    yield c
    c.close()


def _sql_time(con, value, zone=None, sql_type="VARCHAR"):
    return con.execute(f"SELECT {time_sql('$v', zone, sql_type)}", {"v": value}).fetchall()[0][0]


@settings(max_examples=60, deadline=None)
@given(t=instants, off=offsets, digits=st.integers(0, 9), z=st.booleans())
def test_rfc3339_with_offset_is_stored_in_utc(con, t, off, digits, z):
    local = t + off
    frac = f"{local.microsecond:06d}{'123'}"[:digits]
    sign = "+" if off >= dt.timedelta(0) else "-"
    mins = abs(int(off.total_seconds())) // 60
    zone = "Z" if z and off == dt.timedelta(0) else f"{sign}{mins // 60:02d}:{mins % 60:02d}"
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + zone
    got = _sql_time(con, text)
    kept_us = int((f"{local.microsecond:06d}123"[:digits] + "000000")[:6]) if digits else 0
    assert got == (local - off).replace(microsecond=kept_us)


@settings(max_examples=60, deadline=None)
@given(t=instants)
def test_unix_seconds_and_milliseconds(con, t):
    t = t.replace(microsecond=t.microsecond // 1000 * 1000)
    secs = t.replace(tzinfo=UTC).timestamp()
    assert _sql_time(con, round(secs * 1000), sql_type="BIGINT") == t
    assert abs(_sql_time(con, secs, sql_type="DOUBLE") - t) < dt.timedelta(microseconds=2)
    assert _sql_time(con, str(int(secs))) == t.replace(microsecond=0)


def test_go_log_time_in_the_manifest_zone():
    assert parse_time("2026/04/06 14:02:03") == dt.datetime(2026, 4, 6, 14, 2, 3)
    assert parse_time("2026/04/06 14:02:03", "America/New_York") == dt.datetime(
        2026, 4, 6, 18, 2, 3)
    assert parse_time("2026/04/06 14:02:03.250000", "Europe/Berlin") == dt.datetime(
        2026, 4, 6, 12, 2, 3, 250000)
    # an explicit offset wins over the manifest's zone
    assert parse_time("2026-04-06T14:02:03Z", "America/New_York") == dt.datetime(
        2026, 4, 6, 14, 2, 3)


@pytest.mark.parametrize(
    "bad", ["nope", "", "2026-13-01T00:00:00Z", "14:02:03", "2026/04/06 25:00:00"])
def test_unreadable_times_are_null(bad):
    assert parse_time(bad) is None


@given(ms=st.floats(0, 1e7, allow_nan=False).map(lambda x: round(x, 1)))
@settings(max_examples=40, deadline=None)
def test_go_durations(ms):
    assert parse_duration_ms(f"{ms}ms") == pytest.approx(ms)
    assert parse_duration_ms(f"{ms / 1000}s") == pytest.approx(ms)
    assert parse_duration_ms(ms) == pytest.approx(ms)


@pytest.mark.parametrize(("text", "ms"), [("812.4ms", 812.4), ("1.2s", 1200), ("350µs", 0.35),
                                          ("350us", 0.35), ("1m2.5s", 62500), ("2h", 7.2e6),
                                          ("100ns", 1e-4), ("12", 12)])
def test_duration_examples(text, ms):
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("bad", ["fast", "12 parsecs", "ms", "1.2.3s"])
def test_bad_durations_are_null(bad):
    assert parse_duration_ms(bad) is None


def test_slog_duration_numbers_are_nanoseconds():
    assert parse_duration_ms(812_400_000, number_unit_ms=1e-6) == pytest.approx(812.4)


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
                       st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                               max_size=8),
                       max_size=4))
@settings(max_examples=40, deadline=None)
def test_labels_json_in_sql_equals_python(con, labels):
    pairs = [(k, "'" + v.replace("'", "''") + "'") for k, v in labels.items()]
    got = con.execute(f"SELECT {labels_json(pairs)}").fetchall()[0][0]
    assert got == canonical_labels(labels)
    assert list(json.loads(got)) == sorted(k for k, v in labels.items() if v)


def test_wide_column_names_carry_labels():
    assert parse_series_name('go_threads{instance="dp-3:9100", job="node"}') == (
        "go_threads", {"instance": "dp-3:9100", "job": "node"})
    assert parse_series_name("appview_requests_per_second") == ("appview_requests_per_second", {})


# --- detection -----------------------------------------------------------------

SLOG_REQ = '{"time":"2026-04-06T14:02:03Z","msg":"rpc","caller":"x","uris":3}\n'
SLOG_ERR = '{"time":"2026-04-06T14:02:03Z","level":"ERROR","msg":"m","error":"EOF"}\n'


@pytest.mark.parametrize(
    ("name", "text", "fmt", "by"),
    [
        ("requests.jsonl", SLOG_REQ, "requests/jsonl", "name"),
        ("dump-0001.jsonl", SLOG_REQ, "requests/jsonl", "content"),
        ("dump-0002.ndjson", SLOG_ERR, "errors/jsonl", "content"),
        ("errors.log", "2026/04/06 14:02:03 memcache: x\n", "errors/gotext", "name"),
        ("dp3.log", "time=2026-04-06T14:02:03Z level=info msg=x\n", "errors/logfmt", "content"),
        ("x.json", '{"status":"success","data":{"resultType":"matrix","result":[]}}',
         "metrics/prometheus", "content"),
        ("board.csv", "time,metric,value,pod\n", "metrics/csv-long", "content"),
        ("board2.csv", "time,go_threads,tw\n2026-04-06T14:00:00Z,1,2\n", "metrics/csv-wide",
         "content"),
        ("events.yaml", "- time: 2026-04-06T14:00:00Z\n  kind: page\n", "events/yaml", "name"),
        ("tl.csv", "time,kind,title\n", "events/csv", "content"),
        ("calls.csv", "ts,client,batch_size\n", "requests/csv", "content"),
        # content outranks names (issue 11):
        # the content contradicts the name, and fits one kind: the content wins
        ("errors.jsonl", '{"time":"2026-04-06T12:00:00Z","caller":"x","uris":3}\n',
         "requests/jsonl", "content"),
        ("requests.log", "time=2026-04-06T12:00:00Z level=error msg=x\n", "errors/logfmt",
         "content"),
        ("request-rates.csv", "time,metric,value\n", "metrics/csv-long", "content"),
        # the lines fit two kinds (request keys but no batch size, and log keys): the name
        # picks (the lab's error log names the caller)
        ("dataplane-errors.jsonl", '{"time":"2026-04-06T12:00:00Z","level":"ERROR","msg":"m",'
         '"error":"EOF","caller":"feed-indexer"}\n', "errors/jsonl", "name"),
        ("dataplane.jsonl", '{"time":"2026-04-06T12:00:00Z","level":"ERROR","msg":"m",'
         '"method":"GetPost"}\n', "errors/jsonl", "name"),
        ("calls.jsonl", '{"time":"2026-04-06T12:00:00Z","level":"ERROR","msg":"m",'
         '"method":"GetPost"}\n', "requests/jsonl", "content"),
        # a weak fit (these columns need not be series): the name breaks the tie
        ("events.csv", "time,what,by\n2026-04-06T12:00:00Z,deploy v2,ops\n", "events/csv",
         "name"),
        ("board.csv", "time,what,by\n2026-04-06T12:00:00Z,1,2\n", "metrics/csv-wide", "content"),
        # a CSV header with a = in a column name is no logfmt line
        ("board3.csv", 'time,go_threads{job=dp}\n2026-04-06T14:00:00Z,1\n', "metrics/csv-wide",
         "content"),
        # the lines fit nothing: the name tells
        ("requests.jsonl", "{broken\n", "requests/jsonl", "name"),
    ],
)
def test_detection_says_how(tmp_path, name, text, fmt, by):
    p = tmp_path / name
    p.write_text(text)
    got = detect(p)
    assert (got.format, got.detected_by) == (fmt, by), got.guess
    assert got.guess


def test_detection_sees_through_compression(tmp_path):
    p = tmp_path / "x.jsonl.gz"
    p.write_bytes(gzip.compress(SLOG_ERR.encode()))
    assert detect(p).format == "errors/jsonl"


def test_unknown_format_is_a_user_error_naming_the_file(tmp_path):
    p = tmp_path / "notes.bin"
    p.write_bytes(b"\x00\x01\x02 hello\n")
    with pytest.raises(UserError, match=r"notes.bin: unknown format \(binary content\); expected"):
        detect(p)


def test_manifest_glob_decides(tmp_path):
    (tmp_path / "incident.toml").write_text(
        'name = "x"\ntimezone = "Europe/Berlin"\nidle_pool = 1000\n'
        '[window]\nstart = "2026-04-06T12:00:00Z"\n'
        '[[files]]\nglob = "raw/*.txt"\nkind = "logs"\nformat = "gotext"\n'
        '[files.fields]\nwhen = "time"\n')
    (tmp_path / "raw").mkdir()
    p = tmp_path / "raw" / "a.txt"
    p.write_text("2026/04/06 14:02:03 x\n")
    m = load_manifest(tmp_path / "incident.toml")
    got = detect(p, m)
    assert (got.format, got.detected_by) == ("errors/gotext", "manifest")
    assert m.timezone == "Europe/Berlin"
    assert m.facts["idle_pool"] == "1000" and m.facts["window_start"] == "2026-04-06T12:00:00Z"
    assert m.rule_for(p).fields == {"when": "time"}


@pytest.mark.parametrize("body", ['[[files]]\nglob = "*"\nkind = "nonsense"\n',
                                  "not toml = = =", '[[files]]\nkind = "errors"\n'])
def test_bad_manifest_is_a_user_error(tmp_path, body):
    (tmp_path / "incident.toml").write_text(body)
    with pytest.raises(UserError, match="incident.toml"):
        load_manifest(tmp_path / "incident.toml")


def test_manifest_zone_applies_to_zone_less_logs_end_to_end(tmp_path):
    from analysis.ingest import ingest_paths
    from analysis.store import connect

    (tmp_path / "incident.toml").write_text('timezone = "America/New_York"\n')
    (tmp_path / "errors.log").write_text("2026/04/06 10:02:03 memcache: failed to get post"
                                         " cache item: EOF\n")
    (tmp_path / "errors.jsonl").write_text('{"time":"2026-04-06T10:02:03-04:00","msg":"x"}\n')
    con = connect(None)
    ingest_paths(con, [tmp_path])
    times = {r[0] for r in con.execute("SELECT time FROM log_events").fetchall()}
    assert times == {dt.datetime(2026, 4, 6, 14, 2, 3)}
    assert con.execute("SELECT value FROM incident WHERE key = 'timezone'").fetchall() == [
        ("America/New_York",)]


def test_yaml_manifest_says_the_same_as_toml(tmp_path):
    (tmp_path / "incident.yaml").write_text(
        "name: x\ntimezone: Europe/Berlin\nwindow: {start: '2026-04-06T12:00:00Z'}\n"
        "files:\n  - {glob: 'raw/*.txt', kind: errors, format: gotext, fields: {when: time}}\n")
    m = load_manifest(tmp_path / "incident.yaml")
    assert (m.timezone, m.facts["name"], m.facts["window_start"]) == (
        "Europe/Berlin", "x", "2026-04-06T12:00:00Z")
    assert (m.files[0].kind, m.files[0].fmt, m.files[0].fields) == (
        "errors", "gotext", {"when": "time"})
