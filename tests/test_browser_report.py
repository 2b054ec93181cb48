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


# --- the first screen, the width, the PDF and the slides of the bundled incident -----------


@pytest.fixture(scope="module")
def bundled_outputs(tmp_path_factory) -> Path:
    """``report.html``, ``report.pdf`` and ``slides.html`` of the bundled incident, written
    by one ``write_report`` (the store built first if missing)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/sysdeps.sh installs it as root)")
    from analysis.report.page import write_report
    from analysis.report.workspace import ensure_store

    out = tmp_path_factory.mktemp("bundled")
    con = open_analysis(ensure_store())
    try:
        write_report(con, out, formats=("html", "pdf", "slides"))
    finally:
        con.close()
    return out


def dom_at(page: Path, width: int, height: int, tmp: Path) -> str:
    """The DOM of ``page`` after its scripts ran in a ``width`` x ``height`` window."""
    proc = chromium([f"--window-size={width},{height}", "--hide-scrollbars", "--dump-dom",
                     page.as_uri()], tmp / f"profile-{width}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def box(dom: str, element_id: str) -> tuple[int, int, int, int]:
    """``left, top, right, bottom`` (px) of the element, as the page measured it."""
    tag = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', dom)
    assert tag is not None, f"no element #{element_id}"
    found = re.search(r'data-box="(-?\d+),(-?\d+),(-?\d+),(-?\d+)"', tag.group(0))
    assert found is not None, f"#{element_id} was not measured: {tag.group(0)}"
    return tuple(int(v) for v in found.groups())


@needs_chromium
def test_the_first_screen_at_1280x800_tells_the_story(bundled_outputs, tmp_path) -> None:
    """Verdict, chain diagram, the weight chart and the impact timeline all end above
    800 px in a 1280 x 800 window; a screenshot of that screen is saved."""
    page = bundled_outputs / "report.html"
    dom = dom_at(page, 1280, 800, tmp_path)
    assert 'data-viewport="1280x' in dom  # the width decides the layout (--dump-dom's
    # window is shorter than the screenshot's: boxes are measured from the page's top)
    for element in ("verdict", "chain-diagram", "chart-weight", "chart-impact"):
        left, top, right, bottom = box(dom, element)
        assert 0 <= top < bottom <= 800 and right <= 1280, (element, top, bottom, right)
    assert "weak" in re.search(r'id="verdict".*?</div>', dom, re.S).group(0)
    shot = chromium(["--hide-scrollbars", "--window-size=1280,800",
                     f"--screenshot={BUILD / 'report-1280x800.png'}", page.as_uri()],
                    tmp_path / "profile-shot")
    assert shot.returncode == 0 and (BUILD / "report-1280x800.png").stat().st_size > 10_000


@needs_chromium
def test_at_1024_px_nothing_is_wider_than_the_screen(bundled_outputs, tmp_path) -> None:
    page = bundled_outputs / "report.html"
    dom = dom_at(page, 1024, 800, tmp_path)
    width = int(re.search(r'data-scroll-width="(\d+)"', dom).group(1))
    assert width <= 1024
    left, top, right, bottom = box(dom, "verdict")
    assert right <= 1024 and bottom <= 800
    for element in ("chart-weight", "chart-impact"):
        assert box(dom, element)[2] <= 1024, element
    shot = chromium(["--hide-scrollbars", "--window-size=1024,800",
                     f"--screenshot={BUILD / 'report-1024.png'}", page.as_uri()],
                    tmp_path / "profile-shot")
    assert shot.returncode == 0 and (BUILD / "report-1024.png").stat().st_size > 10_000


@needs_chromium
def test_the_pdf_is_the_page_printed_with_headings_kept_with_their_charts(
        bundled_outputs) -> None:
    from analysis.report.formats import pdf_pages

    pdf = bundled_outputs / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf_pages(pdf) >= 2
    html = (bundled_outputs / "report.html").read_text(encoding="utf-8")
    printing = html.split("@media print", 1)[1]
    assert re.search(r"h2, h3 \{ break-after: avoid", printing)
    assert re.search(r"section\.block[^{]*\{ break-inside: avoid", printing)
    # every chart and table of the details sits in a block that is never split
    details = html.split("<nav>", 1)[1]
    assert details.count('<section class="block">') >= 8


@needs_chromium
def test_the_slides_are_offline_one_claim_each(bundled_outputs, tmp_path) -> None:
    deck = bundled_outputs / "slides.html"
    dom = assert_report_ok(deck, tmp_path)
    n = len(re.findall(r'<section class="slide[^"]*"', dom))
    assert n >= 6
    assert f'data-slides="{n}"' in dom
    main = dom.split('<main class="deck">', 1)[1].split("</main>", 1)[0]
    assert len(re.findall(r"<h2>", main)) == n  # one claim per slide
    shot = chromium(["--hide-scrollbars", "--window-size=1280,800",
                     f"--screenshot={BUILD / 'slides-1280x800.png'}", deck.as_uri()],
                    tmp_path / "profile-shot")
    assert shot.returncode == 0
