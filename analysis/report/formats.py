"""The report's other forms: a PDF printed by headless Chromium, and slides for a projector.

Both come from the same ``ReportContent`` as the page, so they can never tell
another story. The PDF is the page printed (its print style keeps every heading
with its chart or table); Chromium runs with no network, a fresh profile and a
time limit, in its own process group, which is killed by its id if the limit
passes. The slides are one self-contained HTML file (the same inline Vega
bundle, no network): one claim per slide, each claim a sentence from the
findings, with its chart or diagram; arrow keys, Page Up/Down and space move
between slides, and printing gives a page per slide.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from analysis.errors import UserError

if TYPE_CHECKING:
    from analysis.report.page import ReportContent

Format = Literal["html", "pdf", "slides"]
FORMATS: tuple[Format, ...] = get_args(Format)
OUTPUT_NAMES: dict[Format, str] = {"html": "report.html", "pdf": "report.pdf",
                                   "slides": "slides.html"}
PDF_TIMEOUT_S = 180
"""Longest a PDF may take to print; Chromium is killed (by process group) past it."""
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--mute-audio",
    # no network at all: every host resolves to nothing, every proxy is unreachable
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=30000", "--run-all-compositor-stages-before-draw",
)
"""Offline, quiet headless Chromium (the browser tests use the same)."""


def parse_formats(values: list[str] | None) -> tuple[Format, ...]:
    """``--format`` values (repeatable, each a comma list) as formats in a fixed order;
    none given: the page only. An unknown name is a ``UserError`` naming the choices."""
    asked = {v.strip() for value in (values or ["html"]) for v in value.split(",") if v.strip()}
    unknown = sorted(asked - set(FORMATS))
    if unknown or not asked:
        raise UserError(f"--format {','.join(unknown) or '(empty)'}: expected one or more of"
                        f" {', '.join(FORMATS)} (repeat the flag or separate with commas)")
    return tuple(f for f in FORMATS if f in asked)


def chromium() -> str:
    """The Chromium executable, or a ``UserError`` saying how to get one."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")
    if found is None:
        raise UserError("--format pdf: no chromium on PATH (as root, scripts/sysdeps.sh"
                        " installs it; or apt-get install chromium)")
    return found


def print_pdf(page: Path, pdf: Path, *, timeout_s: float = PDF_TIMEOUT_S) -> Path:
    """Print ``page`` (a local HTML file) to ``pdf`` with headless Chromium, offline.

    The page's scripts run first (charts drawn inside Chromium's virtual time
    budget), then the print style applies. Chromium gets a throwaway profile
    and its own process group; past ``timeout_s`` the group is killed by its id.
    """
    exe = chromium()
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="postmortem-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
               f"--print-to-pdf={pdf}", page.resolve().as_uri()]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise UserError(f"{pdf}: Chromium did not print {page} within {timeout_s:.0f} s"
                            " (killed)") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode != 0 or not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise UserError(f"{pdf}: Chromium failed to print {page} (exit {proc.returncode}):"
                        f" {' | '.join(tail) or 'no PDF written'}")
    return pdf


def pdf_pages(pdf: Path) -> int:
    """How many pages a PDF (as Chromium writes them: page objects uncompressed) has."""
    import re

    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf.read_bytes()))


# --- slides ------------------------------------------------------------------------------


@dataclass
class Slide:
    """One slide: a ``claim`` (a sentence from the findings) and what shows it: a chart
    (its id), the chain diagram, a short list, a caveat."""

    claim: str
    chart: str = ""
    diagram: bool = False
    items: list[str] = field(default_factory=list)
    note: str = ""
    title: bool = False


def slides(content: ReportContent) -> list[Slide]:
    """The deck, in the order the story is told: verdict, chain, weight, impact,
    the TIME_WAIT headline with its definition, the what-if, the follow-ups."""
    out = [Slide(content.verdict_text or content.verdict, title=True)]
    if content.steps:
        out.append(Slide("The chain: " + " → ".join(s.role for s in content.steps)
                         + " (dashed: weak hops)", diagram=True))
    lead = {b.id: b for b in content.lead}
    if "weight" in lead:
        out.append(Slide(lead["weight"].caption.split(" Totals per caller")[0], "weight"))
    summary = dict(content.summary)
    if "impact" in lead:
        out.append(Slide(summary.get("Impact", lead["impact"].title), "impact"))
    headline = [f for f in content.figures if f.name == "TIME_WAIT peak (headline)"]
    if headline:
        f = headline[0]
        out.append(Slide(f"TIME_WAIT reached {f.value}: {f.definition}.",
                         items=[f"{g.name}: {g.value} ({g.definition})"
                                for g in content.figures if g is not f][:4]))
    if any(b.id == "whatif" for b in content.charts):
        out.append(Slide(summary.get("Fix") or "What if", "whatif",
                         note=content.whatif_caveat))
    if content.actions:
        out.append(Slide("What we change", items=content.actions[:6]))
    return out


def render_slides(content: ReportContent, vega_js: str) -> str:
    """The slides as one self-contained HTML page (``slides.html.j2``)."""
    from markupsafe import Markup

    from analysis.report.page import script_json, template_env

    deck = slides(content)
    used = {s.chart for s in deck if s.chart}
    specs = {b.id: b.spec for b in [*content.lead, *content.charts] if b.id in used}
    return template_env().get_template("slides.html.j2").render(
        c=content, deck=deck, specs_json=Markup(script_json(specs)), vega_js=Markup(vega_js))
