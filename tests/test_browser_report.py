"""The report in a real browser: headless Chromium, networking disabled.

Every chart must draw (Vega's SVG present, with marks), the page must log no
error, nothing may be fetched from a network, and text from the data must stay
text: a store whose heavy caller is named ``<script>alert(1)</script>`` and
whose status-page title carries an ``<img onerror>`` yields a report in which no
alert ever runs. A screenshot is saved under ``build/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_fixture import make_store

from analysis.paths import repo_root
from analysis.report.workspace import open_analysis

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BUILD = repo_root() / "build"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--mute-audio",
    # no network at all: every host resolves to nothing, every proxy is unreachable
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=30000", "--run-all-compositor-stages-before-draw",
]
# Runs before the page's own scripts: records alerts and console errors in the DOM.
HOOK = """<script>
(function () {
  var root = document.documentElement;
  window.alert = window.confirm = window.prompt = function (m) {
    root.setAttribute("data-alerted", String(m));
  };
  var err = console.error;
  console.error = function () {
    root.setAttribute("data-console-error", Array.prototype.join.call(arguments, " "));
    return err.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    root.setAttribute("data-uncaught", String(e.message || e.type));
  }, true);
})();
</script>"""

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/sysdeps.sh installs it as root)"
)


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile and no network."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def load(report: Path, tmp: Path) -> tuple[str, str]:
    """The DOM after the page's scripts ran (hooks injected), and Chromium's log."""
    page = tmp / "page.html"
    page.write_text(report.read_text(encoding="utf-8").replace("<head>", "<head>" + HOOK, 1),
                    encoding="utf-8")
    proc = chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                    tmp / "profile-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def chart_sections(dom: str) -> dict[str, tuple[str, str]]:
    """Each chart container's opening tag and inner markup, by chart id."""
    out = {}
    for m in re.finditer(r'<div[^>]*\bdata-chart="([^"]+)"[^>]*>', dom):
        out[m.group(1)] = (m.group(0), dom[m.end():].split("<h2", 1)[0])
    return out


def assert_report_ok(report: Path, tmp: Path) -> str:
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(https?:)?//", html), \
        "the report references a network resource"
    dom, log = load(report, tmp)
    head = re.search(r"<html[^>]*>", dom).group(0)
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert "data-alerted" not in head, head
    assert "data-console-error" not in head, head
    assert "data-uncaught" not in head, head
    assert 'data-charts-failed="0"' in body, body
    assert 'data-errors="0"' in body, body
    expected = int(re.search(r'data-charts-expected="(\d+)"', body).group(1))
    sections = chart_sections(dom)
    assert expected >= 1 and len(sections) == expected
    for chart_id, (tag, markup) in sections.items():
        assert 'data-rendered="1"' in tag, f"chart {chart_id} did not render"
        svg = re.search(r"<svg.*?</svg>", markup, re.S)
        assert svg is not None, f"chart {chart_id}: no SVG"
        marks = re.findall(r'class="mark-[a-z]+ role-mark', svg.group(0))
        assert marks, f"chart {chart_id}: an SVG without marks"
    console = [ln for ln in log.splitlines() if "CONSOLE" in ln and "Uncaught" in ln]
    assert console == []
    return dom


def screenshot(report: Path, target: Path, tmp: Path) -> Path:
    proc = chromium(["--hide-scrollbars", "--window-size=1280,4200",
                     f"--screenshot={target}", report.as_uri()], tmp / "profile-shot")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return target


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    """A report of a store whose caller and event titles are markup."""
    from analysis.report.page import write_report

    tmp = tmp_path_factory.mktemp("hostile")
    db = make_store(tmp / "s.duckdb", heavy_caller="<script>alert(1)</script>")
    con = open_analysis(db)
    try:
        path, _ = write_report(con, tmp / "out")
    finally:
        con.close()
    return path


@needs_chromium
def test_hostile_names_render_as_text_and_run_nothing(hostile_report, tmp_path) -> None:
    dom = assert_report_ok(hostile_report, tmp_path)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "&lt;img src=x onerror=alert(2)&gt;" in dom
    # the names also reach the charts' legends, as SVG text, never as elements
    assert "<script>alert(1)</script>" not in dom.split("<main>", 1)[1].split("</main>")[0]


@needs_chromium
def test_bundled_report_draws_every_chart_offline(tmp_path) -> None:
    """``build/report.html`` (written first, without notebook pages, if ``make report``
    has not run) opened offline: every chart drawn, no error, a screenshot saved."""
    report = BUILD / "report.html"
    if not report.exists():
        from analysis.report.page import write_report
        from analysis.report.workspace import ensure_store

        con = open_analysis(ensure_store())
        try:
            write_report(con, BUILD)
        finally:
            con.close()
    assert_report_ok(report, tmp_path)
    shot = screenshot(report, BUILD / "report.png", tmp_path)
    assert shot.stat().st_size > 10_000
