"""``postmortem pull prometheus`` against a fake Prometheus API (httpx.MockTransport or
a local HTTP server): slicing, the built-in metric list, retries, API errors,
authentication, the manifest, and what ingest makes of the files.

The round trip through a real Prometheus is ``test_pull_real_prometheus.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from http_fixture import LocalServer
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.cli import main
from analysis.errors import UserError
from analysis.ingest import ingest_paths
from analysis.pull import Auth, PromPull, Retry, Window, pull_prometheus
from analysis.pull.common import iso_ms, parse_duration_ms, parse_time_ms
from analysis.pull.prometheus import MAX_POINTS, chain_metric, time_slices
from analysis.roles import role_of_metric
from analysis.store import connect

T0 = parse_time_ms("2026-04-06T12:00:00Z", "t")


# --- slicing -------------------------------------------------------------------------


@settings(deadline=None)
@given(points=st.integers(1, 100_000), step=st.integers(1, 10**6), rest=st.floats(0, 1,
       exclude_max=True), cap=st.integers(20, 20_000))
def test_slices_cover_every_point_once_within_the_cap(points, step, rest, cap):
    span = points * step + int(rest * step)
    w = Window(T0, T0 + span)
    slices = time_slices(w, step, cap)
    n = span // step + 1
    assert sum((b - a) // step + 1 for a, b in slices) == n
    assert all(a <= b and (b - a) // step + 1 <= cap and (b - a) % step == 0 for a, b in slices)
    assert slices[0][0] == w.start_ms and slices[-1][1] <= w.end_ms < slices[-1][1] + step
    assert all(nxt[0] == prev[1] + step for prev, nxt in zip(slices, slices[1:], strict=False))


@given(ms=st.integers(0, 4_102_444_800_000))
def test_times_read_back_as_written(ms):
    assert parse_time_ms(iso_ms(ms), "t") == ms
    assert parse_time_ms(f"{ms / 1000:.3f}", "t") == ms


@pytest.mark.parametrize("text,ms", [("1s", 1000), ("15s", 15000), ("1m", 60000), ("500ms", 500),
                                     ("2h", 7_200_000), ("0.5", 500), ("1.5s", 1500)])
def test_steps_in_prometheus_durations(text, ms):
    assert parse_duration_ms(text, "--step") == ms


def test_eight_hours_at_one_second_is_three_requests_per_query():
    slices = time_slices(Window(T0, T0 + 8 * 3600_000), 1000)
    assert [(b - a) // 1000 + 1 for a, b in slices] == [11_000, 11_000, 6_801]


# --- the built-in list -----------------------------------------------------------------

SIMULATED = ["node_sockstat_TCP_tw", "go_threads", "go_goroutines", "go_gc_duration_seconds",
             "memcached_current_connections", "memcached_connections_total",
             "kube_pod_container_status_restarts_total", "appview_requests_per_second",
             "process_resident_memory_bytes", "transit_packet_loss_ratio"]
OTHERS = ["memcached_get_hits_total", "memcached_evictions_total", "app_dials_total",
          "envoy_http_requests_total", "node_netstat_Tcp_RetransSegs", "process_threads"]


@pytest.mark.parametrize("name", SIMULATED + OTHERS)
def test_builtin_list_takes_what_the_chain_reads(name):
    assert chain_metric(name)


@pytest.mark.parametrize("name", SIMULATED)
def test_every_simulated_metric_has_a_role_and_is_pulled(name):
    assert role_of_metric(name) is not None and chain_metric(name)


@pytest.mark.parametrize("name", ["node_cpu_seconds_total", "up", "scrape_duration_seconds",
                                  "node_filesystem_avail_bytes", "prometheus_tsdb_head_series"])
def test_builtin_list_leaves_the_rest(name):
    assert not chain_metric(name)


# --- a fake Prometheus -------------------------------------------------------------------


class FakeProm:
    """Serves /api/v1/label/__name__/values and /api/v1/query_range from series held in
    memory (one sample every 15 s), with scripted failures per query."""

    def __init__(self, series: dict[str, list[dict[str, str]]], *, fail: dict | None = None,
                 user: str | None = None, password: str | None = None,
                 token: str | None = None) -> None:
        self.series = series
        self.fail = fail or {}  # query -> list of (status, body) served before success
        self.warn: dict[str, str] = {}  # metric -> a warning its responses carry
        self.requests: list[httpx.Request] = []
        self.user, self.password, self.token = user, password, token

    def _authorised(self, request: httpx.Request) -> bool:
        got = request.headers.get("authorization", "")
        if self.token:
            return got == f"Bearer {self.token}"
        if self.user:
            want = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return got == f"Basic {want}"
        return True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self._authorised(request):
            return httpx.Response(401, text="Unauthorized")
        if request.url.path.endswith("/label/__name__/values"):
            match = request.url.params.get("match[]")
            names = [n for n in self.series if match is None or n in match]
            return httpx.Response(200, json={"status": "success", "data": names})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        q = form["query"]
        script = self.fail.get(q)
        if script:
            status, body = script.pop(0)
            return httpx.Response(status, json=body) if isinstance(body, dict) \
                else httpx.Response(status, text=body)
        start, end, step = (float(form[k]) for k in ("start", "end", "step"))
        assert (end - start) / step + 1 <= MAX_POINTS, "asked for more than 11,000 points"
        name = q.removeprefix('{__name__="').removesuffix('"}')
        result = []
        for labels in self.series.get(name, []):
            ts = [start + i * step for i in range(int((end - start) // step) + 1)]
            result.append({"metric": {"__name__": name, **labels} if "(" not in q else labels,
                           "values": [[t, str(int(t) % 97)] for t in ts]})
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        if name in self.warn:
            body["warnings"] = [self.warn[name]]
        return httpx.Response(200, json=body)


class Sleeps(list):
    def __call__(self, s: float) -> None:
        self.append(s)


def _req(**kw) -> PromPull:
    kw.setdefault("retry", Retry(attempts=3, base_s=0.5, sleep=Sleeps()))
    return PromPull(url="http://prom.test:9090", window=kw.pop("window",
                    Window(T0, T0 + 3600_000)), **kw)


SERIES = {"node_sockstat_TCP_tw": [{"instance": "dp-1"}, {"instance": "dp-ü/2"}],
          "go_threads": [{"instance": "dp-1"}],
          "node_cpu_seconds_total": [{"cpu": "0"}]}


def test_pull_writes_each_slice_as_ingest_reads_it(tmp_path):
    fake = FakeProm(SERIES)
    w = Window(T0, T0 + 8 * 3600_000)
    m = pull_prometheus(_req(window=w, step_ms=1000), tmp_path / "out", httpx.MockTransport(fake))
    assert m.queries == ['{__name__="go_threads"}', '{__name__="node_sockstat_TCP_tw"}']
    assert [c.status for c in m.chunks] == ["ok"] * 6 and not m.failed
    assert [(c.start, c.end) for c in m.chunks[:3]] == [
        (iso_ms(T0), "2026-04-06T15:03:19Z"), ("2026-04-06T15:03:20Z", "2026-04-06T18:06:39Z"),
        ("2026-04-06T18:06:40Z", "2026-04-06T20:00:00Z")]
    doc = json.loads((tmp_path / "out" / "pull-manifest.json").read_text())
    assert doc["ok"] == 6 and doc["failed"] == 0 and len(doc["chunks"]) == 6
    con = connect(None)
    report = ingest_paths(con, [tmp_path / "out"])
    assert all(f.format == "metrics/prometheus" and f.rejected == 0 for f in report.files)
    assert len(report.files) == 6  # the manifest is skipped, not loaded or failed
    rows = con.execute("SELECT metric, labels, count(*), count(DISTINCT time) FROM metrics"
                       " GROUP BY ALL ORDER BY ALL").fetchall()
    n = 8 * 3600 + 1  # every point once: slices share none
    assert rows == [("go_threads", '{"instance":"dp-1"}', n, n),
                    ("node_sockstat_TCP_tw", '{"instance":"dp-1"}', n, n),
                    ("node_sockstat_TCP_tw", '{"instance":"dp-ü/2"}', n, n)]


def test_match_selectors_are_pulled_and_not_twice(tmp_path):
    fake = FakeProm(SERIES)
    m = pull_prometheus(_req(matches=('{__name__="go_threads"}',), queries=("rate(x[1m])",)),
                        tmp_path / "out", httpx.MockTransport(fake))
    assert m.queries == ['{__name__="go_threads"}', "rate(x[1m])",
                         '{__name__="node_sockstat_TCP_tw"}']
    m2 = pull_prometheus(_req(matches=("{job='x'}",), builtin=False), tmp_path / "o2",
                         httpx.MockTransport(fake))
    assert m2.queries == ["{job='x'}"]


def test_an_unnamed_result_is_named_by_its_query(tmp_path):
    fake = FakeProm({"rate(go_threads[1m])": [{"instance": "dp-1"}]})
    pull_prometheus(_req(queries=("rate(go_threads[1m])",), builtin=False), tmp_path / "o",
                    httpx.MockTransport(fake))
    con = connect(None)
    ingest_paths(con, [tmp_path / "o"])
    assert con.execute("SELECT DISTINCT metric FROM metrics").fetchall() == [
        ("rate(go_threads[1m])",)]


def test_429_5xx_and_connection_errors_are_retried_with_back_off(tmp_path):
    q = '{__name__="go_threads"}'
    fake = FakeProm({"go_threads": SERIES["go_threads"]},
                    fail={q: [(429, "slow down"), (503, "unavailable")]})
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] == 2:  # the first query_range: the connection drops
            raise httpx.ConnectError("connection refused", request=request)
        return fake(request)

    sleeps = Sleeps()
    m = pull_prometheus(_req(retry=Retry(attempts=4, base_s=0.5, sleep=sleeps)),
                        tmp_path / "o", httpx.MockTransport(flaky))
    assert [c.status for c in m.chunks] == ["ok"] and m.chunks[0].attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_chunk_failing_after_its_retries_is_recorded_and_fails_the_pull(tmp_path):
    q = '{__name__="go_threads"}'
    fake = FakeProm(SERIES, fail={q: [(503, "down")] * 3})
    sleeps = Sleeps()
    m = pull_prometheus(_req(retry=Retry(attempts=3, sleep=sleeps)), tmp_path / "o",
                        httpx.MockTransport(fake))
    assert [(c.query, c.status) for c in m.chunks] == [(q, "failed"),
                                                       ('{__name__="node_sockstat_TCP_tw"}', "ok")]
    assert "HTTP 503" in m.chunks[0].error and "after 3 tries" in m.chunks[0].error
    assert len(sleeps) == 2
    with pytest.raises(UserError) as exc:
        m.check(tmp_path / "o")
    text = str(exc.value)
    assert "\n" not in text and q in text and "2026-04-06T12:00:00Z..2026-04-06T13:00:00Z" in text
    doc = json.loads((tmp_path / "o" / "pull-manifest.json").read_text())
    assert doc["failed"] == 1 and doc["chunks"][0]["file"] is None


def test_an_api_error_body_is_one_line_without_retries(tmp_path):
    q = "rate(x["
    body = {"status": "error", "errorType": "bad_data",
            "error": "1:8: parse error:\n unexpected end of input"}
    fake = FakeProm({}, fail={q: [(400, body)]})
    sleeps = Sleeps()
    m = pull_prometheus(_req(queries=(q,), builtin=False, retry=Retry(sleep=sleeps)),
                        tmp_path / "o", httpx.MockTransport(fake))
    assert m.chunks[0].error == "bad_data: 1:8: parse error: unexpected end of input"
    assert sleeps == []


@pytest.mark.parametrize("auth,server", [
    (Auth(user="sre", password="pä ss"), {"user": "sre", "password": "pä ss"}),
    (Auth(token="tok.en"), {"token": "tok.en"}),
])
def test_auth_is_sent_and_never_written(tmp_path, auth, server):
    fake = FakeProm(SERIES, **server)
    m = pull_prometheus(_req(auth=auth), tmp_path / "o", httpx.MockTransport(fake))
    assert not m.failed and len(fake.requests) > 1
    text = (tmp_path / "o" / "pull-manifest.json").read_text()
    assert "pä ss" not in text and "tok.en" not in text


def test_a_second_pull_into_the_same_directory_is_refused(tmp_path):
    fake = FakeProm(SERIES)
    pull_prometheus(_req(), tmp_path / "o", httpx.MockTransport(fake))
    with pytest.raises(UserError, match="already holds a pull"):
        pull_prometheus(_req(), tmp_path / "o", httpx.MockTransport(fake))


# --- the command, against a local HTTP server ---------------------------------------------


def _cli(url: str, out: Path, *extra: str) -> list[str]:
    return ["pull", "prometheus", "--url", url, "--start", "2026-04-06T12:00:00Z",
            "--end", "2026-04-06T13:00:00Z", "--out", str(out), *extra]


def test_cli_pulls_with_a_password_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROM_PW", "s3cret")
    with LocalServer(FakeProm(SERIES, user="sre", password="s3cret")) as srv:
        code = main(_cli(srv.url, tmp_path / "o", "--basic-auth-user", "sre",
                         "--password-env", "PROM_PW", "--step", "1m"))
    assert code == 0
    assert "pulled 2 of 2 chunks" in capsys.readouterr().out


def test_cli_says_when_the_server_warned(tmp_path, capsys):
    fake = FakeProm(SERIES)
    fake.warn["go_threads"] = "partial response:\n store 3 unreachable"
    with LocalServer(fake) as srv:
        assert main(_cli(srv.url, tmp_path / "o", "--step", "1m")) == 0
    assert "1 chunks came with warnings" in capsys.readouterr().out
    doc = json.loads((tmp_path / "o" / "pull-manifest.json").read_text())
    assert doc["chunks"][0]["warnings"] == ["partial response: store 3 unreachable"]


def test_cli_token_file_and_failures_are_one_line(tmp_path, capsys):
    (tmp_path / "token").write_text("abc\n")
    q = '{__name__="go_threads"}'
    with LocalServer(FakeProm(SERIES, token="abc", fail={q: [(502, "bad gateway")]})) as srv:
        code = main(_cli(srv.url, tmp_path / "o", "--bearer-token-file",
                         str(tmp_path / "token"), "--retries", "1"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert q in err and "2026-04-06T12:00:00Z..2026-04-06T13:00:00Z" in err and "502" in err


@pytest.mark.parametrize("extra,expected", [
    (["--basic-auth-user", "sre"], "needs --password-env"),
    (["--bearer-token-env", "NO_SUCH_VAR_PULL"], "NO_SUCH_VAR_PULL is not set"),
    (["--step", "0s"], "must be positive"),
    (["--start", "yesterday"], "is not a time"),
])
def test_cli_mistakes_are_one_line(tmp_path, capsys, extra, expected):
    args = _cli("http://127.0.0.1:9", tmp_path / "o")
    if extra[0] == "--start":
        args[args.index("--start") + 1] = extra[1]
        extra = []
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_cli_unreachable_server_is_one_line(tmp_path, capsys):
    with LocalServer(FakeProm(SERIES)) as srv:
        url = srv.url
    assert main(_cli(url, tmp_path / "o", "--retries", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot list the metric names" in err


def test_a_full_disk_fails_the_chunks_it_hits_not_the_accounting(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    m = pull_prometheus(_req(), tmp_path / "o", httpx.MockTransport(FakeProm(SERIES)))
    assert [c.status for c in m.chunks] == ["failed", "failed"]
    assert "No space left on device" in m.chunks[0].error
    doc = json.loads((tmp_path / "o" / "pull-manifest.json").read_text())
    assert doc["failed"] == 2
