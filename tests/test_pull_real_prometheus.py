"""The round trip through a real Prometheus (Debian's ``prometheus`` and ``promtool``):
a generated incident's metrics are backfilled into a fresh TSDB, a Prometheus of our
own serves them on 127.0.0.1, ``postmortem pull prometheus`` fetches the incident
window, and the chain read from the pulled files must be the chain read from the
original ones: the same verdict, culprit and onsets.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from analysis.cli import main
from analysis.simulate import simulate
from analysis.store import connect

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("prometheus") and shutil.which("promtool")),
                       reason="needs Debian's prometheus package (prometheus and promtool);"
                              " `make sysdeps` installs it as root"),
]

START, END = "2026-04-06T12:00:00Z", "2026-04-07T00:00:00Z"  # the simulated incident's window


def _cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args)) == 0
    return out.getvalue()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_openmetrics(db: Path, path: Path) -> int:
    """Every sample ingest loaded from the generated metric files (Prometheus JSON and
    CSV alike) as OpenMetrics text, one family after another, times ascending."""
    con = connect(db, read_only=True)
    rows = con.execute("SELECT metric, labels, epoch(time), value FROM metrics"
                       " ORDER BY metric, labels, time").fetchall()
    con.close()
    with open(path, "w", encoding="utf-8") as f:
        for metric, labels, t, v in rows:
            lab = ",".join(f'{k}="{_escape(x)}"' for k, x in json.loads(labels).items())
            f.write(f"{metric}{{{lab}}} {'NaN' if v != v else repr(v)} {t:.3f}\n")
        f.write("# EOF\n")
    return len(rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def prometheus_serving(tsdb: Path, workdir: Path, ready_s: float = 60.0):
    """Our own Prometheus on 127.0.0.1 over ``tsdb``, ended by its PID on the way out."""
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")  # nothing to scrape
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(workdir / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
             f"--web.listen-address=127.0.0.1:{port}",
             "--storage.tsdb.retention.time=100y"],  # the incident is older than any default
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError("prometheus exited: "
                                   + (workdir / "prometheus.log").read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready within {ready_s:.0f} s")
            time.sleep(0.2)  # polling a starting server, not standing in for work
        yield url
    finally:
        proc.terminate()  # by its PID, ours alone
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _chain(db: Path) -> dict:
    return json.loads(_cli("chain", "--db", str(db), "--json"))


def test_pull_from_a_real_prometheus_gives_the_same_chain(tmp_path):
    sim = tmp_path / "incident"
    simulate("april-2026", sim, seed=1, scale=0.05)
    original_db = tmp_path / "original.duckdb"
    _cli("ingest", str(sim), "--db", str(original_db))
    want = _chain(original_db)
    assert want["verdict"] == "root_cause_found"

    om = tmp_path / "metrics.om"
    n = write_openmetrics(original_db, om)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om),
                    str(tmp_path / "tsdb")], check=True, capture_output=True)

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    for part in ("requests", "logs", "events", "incident.toml"):  # all but the metric files
        src = sim / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, pulled / part)
    with prometheus_serving(tmp_path / "tsdb", tmp_path) as url:
        said = _cli("pull", "prometheus", "--url", url, "--start", START, "--end", END,
                    "--step", "15s", "--out", str(pulled / "metrics"))
    assert "pulled 10 of 10 chunks" in said

    manifest = json.loads((pulled / "metrics" / "pull-manifest.json").read_text())
    assert manifest["failed"] == 0 and {c["status"] for c in manifest["chunks"]} == {"ok"}
    pulled_db = tmp_path / "pulled.duckdb"
    _cli("ingest", str(pulled), "--db", str(pulled_db))

    con = connect(pulled_db, read_only=True)
    con.execute(f"ATTACH '{original_db}' AS o (READ_ONLY)")
    changed = con.execute(
        "SELECT count(*) FROM o.metrics a JOIN metrics b USING (metric, labels, time)"
        " WHERE NOT (a.value = b.value OR (isnan(a.value) AND isnan(b.value)))").fetchall()[0][0]
    lost = con.execute("SELECT count(*) FROM o.metrics a ANTI JOIN metrics b"
                       " USING (metric, labels, time)").fetchall()[0][0]
    con.close()
    assert (lost, changed) == (0, 0), f"of {n} samples, {lost} not pulled, {changed} changed"

    got = _chain(pulled_db)
    assert got["verdict"] == want["verdict"]
    assert got["culprit"]["caller"] == want["culprit"]["caller"]
    assert got["culprit"]["method"] == want["culprit"]["method"]
    assert got["onsets"] == want["onsets"]
    assert [(h["cause"], h["effect"]) for h in got["hops"]] == \
        [(h["cause"], h["effect"]) for h in want["hops"]]
