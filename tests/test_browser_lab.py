"""The notebooks in a real JupyterLab, driven by headless Chromium, with no network.

A JupyterLab server (``make lab``'s settings: the pre-save hook, no browser) runs on
127.0.0.1 on a free port with a token, serving the stored notebooks. Chromium, its
networking cut off as in ``test_browser_report``, opens notebook 02 over the DevTools
protocol, runs every cell, and hovers the timeline until Vega's tooltip shows a value:
the chart is drawn by JupyterLab itself (Altair's widget, its JavaScript from the kernel),
with nothing fetched from anywhere but the server. A screenshot is saved under ``build/``.

Saving then leaves the notebook as it is in the repository: from JupyterLab's own save
command after the run, and through the contents API (``PUT /api/contents``) with chart
outputs and widget state in it. Each test puts the stored bytes back whatever happens.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import nbformat
import pytest
from test_browser_report import BUILD, CHROMIUM, FLAGS, needs_chromium

from analysis import charts
from analysis.paths import repo_root
from analysis.report.workspace import ensure_store

pytestmark = [pytest.mark.browser, needs_chromium,
              pytest.mark.skipif(not (Path(sys.prefix) / "bin" / "jupyter-lab").exists(),
                                 reason="jupyterlab is not installed (the `lab` extra)")]
pytest.importorskip("websocket", reason="websocket-client drives Chromium (the `test` extra)")
import websocket  # noqa: E402

NOTEBOOKS = repo_root() / "notebooks"
NOTEBOOK = "02-timeline.ipynb"
# Chromium's flags but the one-shot ones (a virtual time budget would end the session),
# with loopback, where the server is, let through: still no name resolves, no proxy works.
LIVE_FLAGS = [
    *(f for f in FLAGS if not f.startswith(("--virtual-time", "--run-all-comp",
                                            "--host-resolver-rules"))),
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-bypass-list=127.0.0.1",
]
SERVE_S = 60  # for a server or a browser to come up
RUN_S = 600  # for the notebook to run: it finds the chain on a cold cache


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(what: str, timeout_s: float, probe):
    """``probe()``'s first true value, polled twice a second; fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


@contextlib.contextmanager
def _stopped_at_exit(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Stop ``proc`` by its PID (and, if it will not go, its process group) on exit."""
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    log: Path

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", trust_env=False, timeout=60,
                             headers={"Authorization": f"token {self.token}"}, **kw)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """A JupyterLab server on the stored notebooks, as ``make lab`` starts it."""
    ensure_store()  # the notebooks' default store, built before the clock starts
    home = tmp_path_factory.mktemp("lab")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": str(repo_root()), "TZ": "UTC",
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "rt"),
           "IPYTHONDIR": str(home / "ipython")}
    cmd = [sys.executable, "-m", "jupyterlab", str(NOTEBOOKS),
           f"--config={repo_root() / 'scripts' / 'jupyter_server_config.py'}",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "--allow-root",
           # for the test only: the page exposes the app (to run all cells), and nothing
           # asks a web site for news or updates
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.workspaces_dir={home / 'ws'}", f"--LabApp.user_settings_dir={home / 'us'}"]
    log = home / "server.log"
    with open(log, "wb") as out, _stopped_at_exit(subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)) as proc:
        server = Lab(f"http://127.0.0.1:{port}", token, log)

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}): {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return server.api("GET", "/api/status").status_code == 200
            return False

        _until("JupyterLab to answer", SERVE_S, up)
        yield server


class Page:
    """One Chromium tab over the DevTools protocol (a websocket, no driver)."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.n = 0
        self.requests: list[str] = []

    def call(self, method: str, **params) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        """The value of a JavaScript expression (promises awaited)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression[:80]}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def hover(self, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)


@pytest.fixture
def page(tmp_path) -> Iterator[Page]:
    """A headless Chromium with no network but loopback, and its one tab."""
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, *LIVE_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
           "--remote-allow-origins=http://127.0.0.1", "--window-size=1400,1000",
           "about:blank"]
    with _stopped_at_exit(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True)):
        active = profile / "DevToolsActivePort"
        port = int(_until("Chromium's DevTools port", SERVE_S,
                          lambda: active.exists() and active.read_text().split("\n")[0]))
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", trust_env=False).json()
        tab = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        try:
            tab.call("Network.enable")
            tab.call("Emulation.setFocusEmulationEnabled", enabled=True)
            yield tab
        finally:
            tab.ws.close()


@contextlib.contextmanager
def _restored(path: Path) -> Iterator[bytes]:
    """The file's bytes now; whatever the test does, they are put back after."""
    before = path.read_bytes()
    try:
        yield before
    finally:
        if path.read_bytes() != before:
            path.write_bytes(before)


# the notebook's panel, found by path: a headless window has no focus, so no "current" one
_NOTEBOOK_PANEL = ("Array.from(window.jupyterapp.shell.widgets('main'))"
                   f".find(w => w.context && w.context.path === '{NOTEBOOK}')")
_RUN_STATE = f"""(() => {{
  const p = {_NOTEBOOK_PANEL};
  if (!p || !p.content || !p.content.model) return null;
  const cells = Array.from(p.content.model.cells).filter(c => c.type === 'code');
  const errors = cells.flatMap(c => c.outputs.toJSON()).filter(o => o.output_type === 'error')
    .map(o => o.ename + ': ' + o.evalue);
  const kernel = p.sessionContext.session && p.sessionContext.session.kernel;
  return {{kernel: kernel ? kernel.status : 'none', errors: errors,
          ran: cells.filter(c => c.executionCount !== null).length, cells: cells.length}};
}})()"""
# vega-tooltip's element, shown (class ``visible``) with the hovered datum's fields
_TOOLTIP = """(() => {
  const t = document.getElementById('vg-tooltip-element');
  return t && t.classList.contains('visible') && t.innerText.trim() ? t.innerText : null;
})()"""
_CHART_BOX = """(() => {
  const c = document.querySelector('.jp-OutputArea-output .vega-embed canvas, '
                                   + '.jp-OutputArea-output .vega-embed svg.marks');
  if (!c) return null;
  c.scrollIntoView({block: 'start'});
  const r = c.getBoundingClientRect();
  return {x: r.left, y: r.top, w: r.width, h: r.height,
          fallback: document.querySelectorAll('.jp-OutputArea-output img, '
                                               + '.jp-RenderedSVG').length};
})()"""


def _run_all(page: Page, lab: Lab) -> dict:
    """Open the notebook, wait for its kernel, run every cell; the final run state."""
    page.call("Page.navigate", url=f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")

    def ready():
        state = page.js(f"window.jupyterapp ? {_RUN_STATE} : null")
        return state if state and state["kernel"] == "idle" else None

    _until("the notebook and its kernel", SERVE_S * 2, ready)
    page.js(f"window.jupyterapp.shell.activateById({_NOTEBOOK_PANEL}.id)")
    # not awaited: the command's promise ends with the last cell, minutes later
    page.js("window.jupyterapp.commands.execute('notebook:run-all-cells'); null")

    def finished():
        state = page.js(_RUN_STATE)
        if state["errors"]:
            return state
        return state if state["kernel"] == "idle" and state["ran"] == state["cells"] else None

    return _until("every cell to run", RUN_S, finished)


def _hover_until_tooltip(page: Page, box: dict) -> str:
    """Move the mouse over a grid on the chart until a tooltip shows; its text."""
    for fy in (0.05, 0.08, 0.12, 0.16, 0.2, 0.3, 0.4, 0.5):
        for i in range(1, 40):
            page.hover(box["x"] + box["w"] * i / 40, box["y"] + box["h"] * fy)
            if text := page.js(_TOOLTIP):
                return text
    pytest.fail("no tooltip appeared anywhere on the chart")


_TIME = re.compile(r"time \(UTC\)\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")
_CHART_END = _CHART_BOX.replace("{block: 'start'}", "{block: 'end'}")


def _time_near(page: Page, x: float, ys: list[float]) -> datetime | None:
    """The time in the tooltip at ``x`` on the first of ``ys`` that shows one."""
    for y in ys:
        page.hover(1, 1)  # off the chart: the tooltip goes
        page.hover(x, y)
        if (tip := page.js(_TOOLTIP)) and (m := _TIME.search(tip)):
            return datetime.fromisoformat(m.group(1))
    return None


def _brush_zooms_the_panels(page: Page) -> tuple[datetime, datetime, datetime]:
    """Drag on the overview (the timeline's bottom row); the brushed span (from the
    overview's own tooltips at both ends) and a time a detail panel then shows."""
    box = page.js(_CHART_END)
    bottom = box["y"] + box["h"]
    over = [bottom - 60 + dy for dy in (0, *range(-24, 25, 3))]  # the 50 px overview row
    x0, x1 = box["x"] + 0.35 * box["w"], box["x"] + 0.45 * box["w"]
    ends = _time_near(page, x0, over), _time_near(page, x1, over)
    assert all(ends), "no tooltip on the overview"

    def mouse(kind: str, x: float, buttons: int) -> None:
        page.call("Input.dispatchMouseEvent", type=kind, x=x, y=over[0], button="left",
                  buttons=buttons, clickCount=0 if kind == "mouseMoved" else 1)

    mouse("mouseMoved", x0, 0)
    mouse("mousePressed", x0, 1)
    for k in range(1, 11):
        mouse("mouseMoved", x0 + (x1 - x0) * k / 10, 1)
    mouse("mouseReleased", x1, 0)
    time.sleep(0.5)
    shown = None
    for i in range(5, 60):  # the detail panels above the overview, left to right
        if shown := _time_near(page, box["x"] + box["w"] * i / 80,
                               [bottom - d for d in (500, 420, 640, 220)]):
            break
    assert shown is not None, "no tooltip on a detail panel after brushing"
    return ends[0], ends[1], shown


def _offsite(requests: list[str], lab: Lab) -> list[str]:
    local = (lab.url, lab.url.replace("http", "ws", 1), "data:", "blob:", "about:")
    return [u for u in requests if not u.startswith(local)]


def test_a_chart_in_jupyterlab_shows_a_tooltip_offline_and_a_save_leaves_it_clean(
        lab, page) -> None:
    path = NOTEBOOKS / NOTEBOOK
    with _restored(path) as stored:
        state = _run_all(page, lab)
        assert state["errors"] == [], state
        box = _until("the chart drawn by JupyterLab", SERVE_S, lambda: page.js(_CHART_BOX))
        assert box["w"] > 500 and box["h"] > 300, box
        assert box["fallback"] == 0, "JupyterLab showed the SVG fallback, not the chart"
        time.sleep(0.5)  # the page scrolled to the chart
        box = page.js(_CHART_BOX)
        tip = _hover_until_tooltip(page, box)
        assert "time (UTC)" in tip, tip
        BUILD.mkdir(exist_ok=True)
        shot = BUILD / "jupyterlab-tooltip.png"
        shot.write_bytes(base64.b64decode(page.call("Page.captureScreenshot")["data"]))
        (BUILD / "jupyterlab-tooltip.txt").write_text(tip + "\n", encoding="utf-8")
        # the caption's promise: drag on the overview to zoom every panel
        start, end, shown = _brush_zooms_the_panels(page)
        slack = timedelta(minutes=10)  # a bucket of the overview either side
        assert start - slack <= shown <= end + slack, (start, shown, end)
        shot.with_name("jupyterlab-brush.png").write_bytes(
            base64.b64decode(page.call("Page.captureScreenshot")["data"]))
        assert _offsite(page.requests, lab) == []

        page.js("window.jupyterapp.commands.execute('docmanager:save')")
        _until("the save", SERVE_S, lambda: not page.js(f"{_NOTEBOOK_PANEL}.context.model.dirty"))
        saved = path.read_bytes()
        assert saved == stored, _first_difference(stored, saved)


def _first_difference(a: bytes, b: bytes) -> str:
    al, bl = a.decode().splitlines(), b.decode().splitlines()
    for i, (x, y) in enumerate(zip(al, bl, strict=False)):
        if x != y:
            return f"line {i + 1}: stored {x!r}, saved {y!r}"
    return f"stored {len(al)} lines, saved {len(bl)}"


def test_a_notebook_put_with_chart_outputs_is_stored_without_them(lab) -> None:
    """What an autosave sends after a run (charts as widget and SVG, widget state in the
    metadata), through the contents API: the file on disk stays as it is in the repo."""
    path = NOTEBOOKS / NOTEBOOK
    with _restored(path) as stored:
        nb = nbformat.reads(stored.decode(), as_version=4)
        ran = copy.deepcopy(nb)
        chart = {charts.WIDGET_MIME: {"version_major": 2, "version_minor": 1,
                                      "model_id": "13b0dde7d9e7477d991f9b937cd4847b"},
                 "image/svg+xml": "<svg>" + "x" * 100_000 + "</svg>", "text/plain": "<chart>"}
        unchecked = [c for c in ran.cells if c.cell_type == "code"
                     and "nbval-check-output" not in c.metadata.get("tags", [])]
        for n, cell in enumerate(unchecked, 1):
            cell.outputs = [nbformat.v4.new_output("display_data", data=chart)]
            cell.execution_count = n
        ran.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
            "13b0dde7d9e7477d991f9b937cd4847b": {"model_name": "AnyModel", "state": {}}}}}
        assert len(nbformat.writes(ran)) > len(stored) + 100_000
        res = lab.api("PUT", f"/api/contents/{NOTEBOOK}",
                      json={"type": "notebook", "format": "json", "content": ran})
        assert res.status_code == 200, res.text
        assert path.read_bytes() == stored
