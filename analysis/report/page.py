"""The self-contained HTML report of an incident.

``collect`` computes everything the report says from a store (chain, events,
rollups, what-ifs: nothing about the incident is written here), ``render_html``
lays it out as one page with every script and style inline (Vega, Vega-Lite
and vega-embed come from vl-convert's bundle; nothing is fetched from a
network), and ``build_report`` does both and, on request, runs the notebooks
into one HTML page each (``analysis.report.notebooks``).

Text from the data (callers, hosts, titles, log text) is escaped by Jinja's
autoescape in the page and by ``\\u003c`` escapes inside the chart specs, so a
caller named ``<script>alert(1)</script>`` shows as that text and runs nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import duckdb
import jinja2
import polars as pl
from markupsafe import Markup

from analysis import charts
from analysis.chain.result import ChainResult, iso
from analysis.errors import UserError
from analysis.report import data as rd
from analysis.report import story
from analysis.report.cache import cached
from analysis.report.formats import OUTPUT_NAMES, Format, print_pdf, render_slides
from analysis.rollups import ensure_rollups, has_table, raw_rows_line

TEMPLATE = Path(__file__).with_name("template.html.j2")
TIMELINE_ROWS = 3000
"""Points per timeline panel in the page: enough detail to zoom with the brush."""


@dataclass
class ChartBlock:
    """One chart of the report: an anchor id, a heading, a caption and its Vega-Lite spec."""

    id: str
    title: str
    caption: str
    spec: dict


@dataclass
class Table:
    """A table ready to render: column names and rows of display strings."""

    columns: list[str]
    rows: list[list[str]]

    @classmethod
    def of(cls, df: pl.DataFrame, limit: int = 200) -> Table:
        """Format a frame's cells for display (floats to 4 significant digits)."""
        return cls(list(df.columns), [[_cell(v) for v in row] for row in df.head(limit).rows()])


@dataclass
class ChainStep:
    """One box of the chain diagram and the arrow into it (none for the first):
    the role, its signal and onset, and the hop's lag, p-value and grade."""

    role: str
    signal: str
    onset: str
    lag: str = ""
    p_value: str = ""
    grade: str = ""
    reasons: str = ""


NO_CULPRIT = "No what-if: without a culprit there is nothing to replay."


@dataclass
class ReportContent:
    """Everything the report page shows, computed from one store.

    ``lead``: the charts of the first screen (the weight, the timeline with the
    impact shaded); ``charts``: those of the details. ``verdict_text``: the verdict
    with the grade of every hop; ``figures``: the numbers with what each is.
    """

    title: str
    verdict: str
    summary: list[tuple[str, str]]
    timeline: Table
    charts: list[ChartBlock]
    hops: Table
    rivals: Table
    callers: Table
    whatif: Table
    actions: list[str]
    facts: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)
    notebooks: list[tuple[str, str]] = field(default_factory=list)
    verdict_text: str = ""
    lead: list[ChartBlock] = field(default_factory=list)
    steps: list[ChainStep] = field(default_factory=list)
    figures: list[story.Figure] = field(default_factory=list)
    whatif_caveat: str = ""
    grades: dict[str, int] = field(default_factory=dict)
    whatif_absent: str = NO_CULPRIT
    """What the what-if section says in place of the table when there is none: no culprit
    to replay, or the one line saying the replay needs raw rows (a store of rollups)."""


@dataclass
class ReportRun:
    """What ``build_report`` wrote, with sizes and the time it took."""

    report: Path
    bytes: int
    pages: list[Path]
    seconds: float
    verdict: str
    phases: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    """Every file written for the asked formats (``report.html``, ``report.pdf``,
    ``slides.html``), in that order."""


def _cell(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, datetime):
        return rd.fmt_time(v)
    return str(v)


def _incident_name(con: duckdb.DuckDBPyConnection) -> str:
    rows = (con.execute("SELECT value FROM incident WHERE key = 'name'").fetchall()
            if has_table(con, "incident") else [])
    return rows[0][0] if rows and rows[0][0] else "incident"


# --- the executive summary and follow-ups: derived from the findings -----------------


def summary_items(chain: ChainResult, imp: rd.Impact, events: pl.DataFrame, wi: rd.WhatIfs | None):
    """The executive summary as (label, sentence) pairs, every number from the data."""
    items: list[tuple[str, str]] = []
    if imp.signal and imp.baseline is not None:
        items.append(("Impact", impact_sentence(imp)))
    else:
        items.append(("Impact", "no user-facing signal in the store: impact not measured."))
    if imp.start is not None:
        degraded = ("" if imp.minutes_degraded is None else
                    f"; user-facing traffic under {rd.DEGRADED_BELOW:.0%} of its baseline for"
                    f" {rd.fmt_duration(imp.minutes_degraded)} in all")
        items.append(("Duration", (
            f"{rd.fmt_time(imp.start)} to {rd.fmt_time(imp.end)}"
            f" ({rd.fmt_duration(imp.end - imp.start)}){degraded}."
        )))
    else:
        items.append(("Duration", "no error or user-facing anomaly detected."))
    cul = chain.culprit
    if cul and chain.mechanism not in (None, "port_exhaustion"):
        items.append(("Root cause", f"{chain.mechanism} in {cul.caller}; verdict"
                                    f" {chain.verdict}: {cul.evidence}"))
    elif cul:
        trig = chain.onsets.get("trigger")
        first = "—" if trig is None else iso(trig).replace("T", " ").replace("Z", " UTC")
        items.append(("Trigger", (
            f"caller {cul.caller} on {cul.method or 'its method'} (first heavy batch"
            f" {first}): {cul.evidence}"
        )))
        chain_txt = " → ".join(chain.roles_in_order())
        items.append(("Root cause", f"{chain_txt}; verdict {chain.verdict}."))
    else:
        items.append(("Trigger", "no caller's batches explain the failure."))
        items.append(("Root cause", f"verdict {chain.verdict}: " + "; ".join(chain.notes)))
    if chain.suspects:
        items.append(("Suspects", "; ".join(
            f"{i}. {s.entity} ({rd.fmt_time(s.onset)})" for i, s in enumerate(chain.suspects[:3], 1)
        ) + "."))
    for kind, label in (("mitigation", "Mitigation"), ("fix", "Fix")):
        rows = events.filter(pl.col("kind") == kind)
        if rows.height:
            text = "; ".join(
                f"{t} at {rd.fmt_time(s)}" for t, s in zip(rows["title"], rows["start"],
                                                         strict=True)
            )
        else:
            text = f"no {kind} event recorded in the timeline."
        if wi is not None and kind == "fix":
            fix = _scenario(wi, "fix")
            if fix is not None:
                text += (f" Replay under the fix predicts {fix['failed_lookups']:,} failed"
                         f" lookups (peak TIME_WAIT {fix['peak_time_wait']:,}).")
        items.append((label, text))
    return items


def impact_sentence(imp: rd.Impact) -> str:
    """The impact headline: a fall only when the one-minute low is measurably (at least
    0.5 %, so it rounds to 1 % or more) below the median, never "a drop of 0 %"."""
    name = imp.label or "user-facing traffic"
    level = f"a median of {imp.baseline:,.4g}, one-minute low {imp.trough:,.4g}"
    if imp.drop_pct is None:
        return f"{name}: {level}; no change can be measured against a baseline of 0."
    if round(imp.drop_pct) <= 0:
        return f"{name} did not fall measurably ({level})."
    return (f"{name} fell from a median of {imp.baseline:,.0f} to {imp.trough:,.0f}"
            f" (one-minute low), a drop of {imp.drop_pct:.0f} %.")


def _scenario(wi: rd.WhatIfs, prefix: str) -> dict | None:
    rows = wi.summary.filter(pl.col("scenario").str.starts_with(prefix)).to_dicts()
    return rows[0] if rows else None


def follow_ups(chain: ChainResult, imp: rd.Impact, wi: rd.WhatIfs | None) -> list[str]:
    """Follow-up actions, each derived from a finding of this store's analysis."""
    out: list[str] = []
    cul = chain.culprit
    scores = {c.caller: c for c in chain.callers}
    if cul:
        s = scores.get(cul.caller)
        weight = (f" (at most {s.peak_rps:,.1f} requests/s but batches of up to"
                  f" {s.max_batch:,.0f} URIs)") if s else ""
        out.append(f"Add per-caller metrics of URIs/s and batch size to "
                   f"{cul.method or 'the service'}: {cul.caller} was invisible in"
                   f" request-rate views{weight}.")
        out.append(f"Bound the fan-out of {cul.method or 'the handler'}: one lookup per URI"
                   " with no concurrency limit dialled past the idle pool.")
    if wi is not None:
        for prefix, what in (("fix", "Keep the concurrency limit"),
                             ("batch cap", "Consider a batch cap at the API edge")):
            row = _scenario(wi, prefix)
            obs = _scenario(wi, "observed")
            if row is not None and obs is not None:
                out.append(f"{what}: the replay predicts {row['failed_lookups']:,} failed"
                           f" lookups against {obs['failed_lookups']:,} observed"
                           f" ({row['scenario']}).")
    if "port_exhaustion" in chain.onsets:
        lo, hi = chain.environment.port_range
        out.append(f"Alert on TIME_WAIT sockets above 80 % of the ephemeral port range"
                   f" ({hi - lo + 1:,} ports, {lo}-{hi}) and on EADDRINUSE/EADDRNOTAVAIL.")
    if "runtime_stress" in chain.onsets:
        out.append("Sample or rate-limit cache error logging: error logs grew the runtime's"
                   " threads and GC pauses after the errors began.")
    for r in chain.rejected:
        if r.caller is None:
            out.append(f"Record in the post-mortem why {r.candidate} was ruled out:"
                       f" {r.reason}")
    if not cul:
        out.append("Collect per-caller request logs with batch sizes: without them no caller"
                   " can be tied to the failure.")
    if imp.signal is None:
        out.append("Export a user-facing request rate with the incident data.")
    return out


# --- collecting and rendering ------------------------------------------------------------


def collect(
    con: duckdb.DuckDBPyConnection,
    *,
    whatif: bool = True,
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> ReportContent:
    """Run the analysis on the store behind ``con`` and gather what the report shows;
    ``grid_s``, ``start``, ``end`` override the grid and window (``find_chain``)."""
    times = {"grid_s": grid_s, "start": start, "end": end}
    # on a store of rollups only (`ingest --rollups`) the what-if replay, which reads the
    # request log, says so in its place; every other section reads the roll tables
    no_raw = raw_rows_line(con)
    chain = rd.root_cause_chain(con, **times)
    if any(v is not None for v in times.values()):
        ensure_rollups(con, grid_s, start, end)  # the charts and impact read these rollups
    imp = rd.impact(con, chain)
    td = rd.timeline_data(con, onsets=chain.onsets, port_range=chain.environment.port_range)
    wi = (rd.whatifs(con, **times)
          if whatif and chain.culprit is not None and no_raw is None else None)
    grades = story.grade_hops(chain)
    culprit = chain.culprit.caller if chain.culprit is not None else None
    return ReportContent(
        title=f"Post-mortem: {_incident_name(con)}",
        verdict=chain.verdict,
        summary=summary_items(chain, imp, td.events, wi),
        timeline=Table.of(story.collapse_events(td.events, chain.onsets)),
        charts=_detail_blocks(con, chain, td, wi, story.impact_span(imp)),
        hops=Table.of(_graded_hops(chain, grades)),
        rivals=Table.of(rd.rivals_frame(chain)),
        callers=Table.of(rd.callers_frame(chain)),
        whatif=Table.of(story.whatif_levels(wi)) if wi is not None else Table([], []),
        actions=follow_ups(chain, imp, wi),
        facts=_facts(chain),
        notes=list(chain.notes),
        verdict_text=story.verdict_line(chain, grades),
        lead=_lead_blocks(con, td, imp, culprit),
        steps=chain_steps(chain, grades),
        figures=story.time_wait_figures(con, chain, td.events, wi),
        whatif_caveat=story.WHATIF_CAVEAT if wi is not None else "",
        grades={g: sum(1 for h in grades if h.grade == g) for g in story.GRADES},
        whatif_absent=f"The what-if replay {no_raw}." if no_raw and chain.culprit else NO_CULPRIT,
    )


def _lead_blocks(con: duckdb.DuckDBPyConnection, td: rd.TimelineData, imp: rd.Impact,
                 culprit: str | None) -> list[ChartBlock]:
    """The first screen's charts: the weight against the request rate, the timeline."""
    blocks = []
    weights = story.caller_weights(con, culprit)
    if weights.height:
        blocks.append(ChartBlock(
            "weight", "Who carried the load",
            story.weight_claim(weights) + " Totals per caller over the whole store; both"
            " axes linear from zero, so bar length is proportional to the number.",
            story.weight_chart(weights).to_dict()))
    span = story.impact_span(imp)
    tl = story.impact_timeline(td, span)
    if tl is not None:
        blocks.append(ChartBlock(
            "impact", "What happened when",
            f"Shaded: the {span.label if span else 'impact (not measured)'} (the error rate's"
            " anomaly windows); rules: deploys, mitigation and fix. Time in UTC.",
            tl.to_dict()))
    return blocks


def _detail_blocks(con: duckdb.DuckDBPyConnection, chain: ChainResult, td: rd.TimelineData,
                   wi: rd.WhatIfs | None, span: story.ImpactSpan | None) -> list[ChartBlock]:
    """The charts of the details: the full timeline (callers on its shared axis), the
    lags, the what-ifs and the coverage of the incident window."""
    blocks: list[ChartBlock] = []
    panels = [replace(p, title=f"{p.title}, symlog axis") if p.log else p for p in td.panels]
    if td.callers is not None:  # stacked on the shared axis, the weight on a linear one
        rps, uris = td.callers
        panels += [rps, replace(uris, log=False, title=f"{uris.title}, linear axis")]
    if panels:
        events = td.events
        if span is not None:
            events = pl.concat([events, pl.DataFrame(
                {"start": [span.start], "end": [span.end], "kind": ["impact"],
                 "title": [span.label], "source": ["report"], "detail": [None]},
                schema=events.schema)])
        blocks.append(ChartBlock(
            "timeline", "The timeline",
            "Every panel shares the UTC time axis; human events are rules (points) and"
            " bands (intervals; 'impact' is the incident's span), dashed black rules are"
            " detected onsets. Drag on the overview at the bottom to zoom all panels.",
            charts.timeline(panels, events=events, onsets=td.onsets,
                            max_rows=TIMELINE_ROWS).to_dict(),
        ))
    lags = rd.lags_frame(chain)
    if lags.height:
        blocks.append(ChartBlock("lags", "Who leads whom",
                                 "Lag of each hop (the effect behind its cause, seconds) with"
                                 " its bootstrap interval; an interval across zero leaves the"
                                 " order unsettled.",
                                 charts.lag_chart(lags).to_dict()))
    if wi is not None and wi.long.height:
        blocks.append(ChartBlock("whatif", "What if",
                                 "Observed against the replay as it was and the predictions"
                                 " under each change (10 s buckets). TIME_WAIT here is summed"
                                 " over the hosts. " + story.WHATIF_CAVEAT,
                                 charts.whatif_chart(wi.long).to_dict()))
    info = chain.rollup
    w = info.window if info is not None else None
    cov = story.window_coverage(rd.coverage(con), w.start if w else None, w.end if w else None)
    blocks.append(ChartBlock("coverage", "Data coverage",
                             "What data exists for which hosts inside the incident window"
                             " (rows: the whole store).", charts.coverage_chart(cov).to_dict()))
    return blocks


def _graded_hops(chain: ChainResult, grades: list[story.HopGrade]) -> pl.DataFrame:
    """The evidence table with each hop's grade and the reasons for it."""
    return rd.hops_frame(chain).with_columns(
        pl.Series("grade", [g.grade for g in grades], dtype=pl.String),
        pl.Series("why not strong", ["; ".join(g.reasons) for g in grades], dtype=pl.String),
    ).select("hop", "grade", "why not strong", pl.exclude("hop", "grade", "why not strong"))


def chain_steps(chain: ChainResult, grades: list[story.HopGrade]) -> list[ChainStep]:
    """The chain diagram's boxes in causal order, each with the graded hop into it."""
    if not chain.onsets:
        return []
    sig = {h.cause_role: h.cause for h in chain.hops} | {h.effect_role: h.effect
                                                         for h in chain.hops}
    into = {h.effect_role: (h, g) for h, g in zip(chain.hops, grades, strict=True)}
    steps = []
    for role in chain.roles_in_order():
        onset = chain.onsets.get(role)
        step = ChainStep(role, sig.get(role, ""), onset.strftime("%H:%M:%S") if onset else "")
        if role in into:
            h, g = into[role]
            step.lag = f"{h.lag_s:+.0f} s"
            step.p_value = f"p = {h.p_value:.2g}"
            step.grade = g.grade
            step.reasons = "; ".join(g.reasons)
        steps.append(step)
    return steps


def _facts(chain: ChainResult) -> list[tuple[str, str]]:
    """The settings the mechanism check used, and the grid and window the analysis ran
    on, with the rows left outside it."""
    env = chain.environment
    facts = [("idle pool", "unknown" if env.idle_pool is None else f"{env.idle_pool:,}"
              " idle connections per host: batches beyond it dial anew"),
             ("from the manifest", ", ".join(env.from_manifest) or "none (kernel defaults)")]
    info = chain.rollup
    if info is not None:
        facts += [("grid and window", info.describe()),
                  ("outside the window", info.outside_line() or "no data")]
    return facts


def script_json(obj: object) -> str:
    """JSON safe to place inside a ``<script>`` element: no ``<``, ``>`` or ``&`` survive."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one inline script (from vl-convert, no network)."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    js = vlc.javascript_bundle(vl_version=vl_version_for_vl_convert())
    return js.replace("</script", "<\\/script")


def vega_bundle_cached(con: duckdb.DuckDBPyConnection) -> str:
    """``vega_bundle``, kept in the store's cache: vl-convert takes seconds to bundle it.

    Keyed by vl-convert's and Vega-Lite's versions (and, as every cached result,
    by the store and the analysis source).
    """
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    versions = {"vl_convert": getattr(vlc, "__version__", ""),
                "vega_lite": vl_version_for_vl_convert()}
    return cached(con, "vega-bundle", versions, vega_bundle)


def template_env() -> jinja2.Environment:
    """The templates of the page and the slides (autoescaped, strict about names)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render_html(content: ReportContent, vega_js: str | None = None) -> str:
    """The report as one HTML page with every script and style inline.

    ``vega_js``: the Vega bundle to inline (default: ``vega_bundle()``).
    """
    specs = {b.id: b.spec for b in [*content.lead, *content.charts]}
    return template_env().get_template(TEMPLATE.name).render(
        c=content,
        specs_json=Markup(script_json(specs)),
        vega_js=Markup(vega_js if vega_js is not None else vega_bundle()),
    )


def write_report(con: duckdb.DuckDBPyConnection, out: Path,
                 notebooks: list[tuple[str, str]] | None = None,
                 formats: tuple[Format, ...] = ("html",),
                 **times) -> tuple[Path, str]:
    """Collect the report of ``con``'s store and write it into ``out`` in each of
    ``formats`` (``report.html``, ``report.pdf``, ``slides.html``); the first written
    and the verdict. ``times``: ``grid_s``, ``start``, ``end`` for ``collect``.

    The PDF is the page printed (``formats.print_pdf``): without ``html`` among
    the formats the page is written only for that, and removed after.
    """
    content = collect(con, **times)
    content.notebooks = notebooks or []
    out.mkdir(parents=True, exist_ok=True)
    vega_js = vega_bundle_cached(con)
    written: list[Path] = []
    page = out / OUTPUT_NAMES["html"]
    if "html" in formats or "pdf" in formats:
        page.write_text(render_html(content, vega_js), encoding="utf-8")
        if "html" in formats:
            written.append(page)
    if "pdf" in formats:
        written.append(print_pdf(page, out / OUTPUT_NAMES["pdf"]))
        if "html" not in formats:
            page.unlink()
    if "slides" in formats:
        deck = out / OUTPUT_NAMES["slides"]
        deck.write_text(render_slides(content, vega_js), encoding="utf-8")
        written.append(deck)
    return written[0], content.verdict


def build_report(
    db: Path, out: Path, *, data_dir: Path | None = None, notebooks: bool = True,
    notebook_dir: Path | None = None, reuse_notebooks: bool = True,
    formats: tuple[Format, ...] = ("html",),
    grid_s: int | None = None, start: datetime | None = None, end: datetime | None = None,
) -> ReportRun:
    """``postmortem report``: run the notebooks (optional) and write the report page.

    Everything is written into a temporary folder beside ``out`` and moved into
    ``out`` at the end (``staged``): a report that fails leaves the previous
    one, or nothing. The store is only read, like any reader's; if ``ingest
    --replace`` renames a new store into place meanwhile, the report (whose
    page and notebooks might then tell of two stores) fails and says so.
    ``reuse_notebooks``: copy a notebook's page from an earlier run with the same
    notebook and inputs (see ``analysis.report.notebooks.run_notebooks``). ``grid_s``,
    ``start``, ``end`` override the grid and window of the page's analysis (the
    notebooks read the store's rollups).
    """
    from analysis.access import check_store_file, identity
    from analysis.report.notebooks import notebook_paths, run_notebooks
    from analysis.report.workspace import open_analysis

    began = time.monotonic()
    before = identity(check_store_file(db))
    with staged(out) as stage:
        con = open_analysis(db)  # rollups the store lacks are built in memory here
        t = time.monotonic()
        phases = {"rollups and opening": t - began}
        planned = [stage / "notebooks" / f"{p.stem}.html" for p in notebook_paths(notebook_dir)]
        links = [(p.stem, p.relative_to(stage).as_posix()) for p in planned] if notebooks else []
        # The notebooks run in worker processes while this one writes the page. The
        # chain and the what-ifs are computed once, by whichever asks first (the page,
        # usually: notebooks that need them start last); the others wait and read them.
        with ThreadPoolExecutor(max_workers=1) as bg:
            job = bg.submit(run_notebooks, db=db, data_dir=data_dir, out=stage,
                            notebook_dir=notebook_dir, reuse=reuse_notebooks,
                            previous=out / "notebooks") if notebooks else None
            try:
                path, verdict = write_report(con, stage, links, formats, grid_s=grid_s,
                                             start=start, end=end)
            finally:
                con.close()
            phases["report page"] = time.monotonic() - t
            pages = job.result() if job is not None else []
        phases["notebooks (parallel with the page)"] = time.monotonic() - t
        if identity(db) != before:
            raise UserError(f"{db}: the store was replaced while the report was written"
                            " (by `postmortem ingest`); run `postmortem report` again")
    final = out / path.relative_to(stage)
    outputs = [out / OUTPUT_NAMES[f] for f in formats]
    return ReportRun(final, final.stat().st_size, [out / p.relative_to(stage) for p in pages],
                     time.monotonic() - began, verdict, phases, outputs)


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A new temporary folder beside ``out`` to write into, moved into ``out`` at the end.

    On success each entry of the folder (``notebooks/``, then ``report.html``)
    replaces the one of that name in ``out`` by a rename, and the folder goes;
    other files in ``out`` are left alone. On failure ``out`` is untouched and
    the folder is kept as ``.<out>.failed`` beside it (the notebooks' logs and
    executed copies are there), replacing an earlier failed run's.
    """
    out = Path(out)
    base = out.absolute()  # `--out .` has a name, and a parent, only so
    base.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{base.name}.partial-", dir=base.parent))
    try:
        yield stage
    except BaseException as exc:
        failed = base.with_name(f".{base.name}.failed")
        shutil.rmtree(failed, ignore_errors=True)
        try:
            stage.rename(failed)
        except OSError:  # another failed run took the name meanwhile: keep ours as it is
            failed = stage
        if isinstance(exc, UserError):
            raise UserError(f"{str(exc).replace(str(stage), str(failed))}\n(this run's"
                            f" output is in {failed}; {out} is unchanged)") from None
        raise
    try:
        out.mkdir(parents=True, exist_ok=True)
        entries = sorted(stage.iterdir(), key=lambda p: p.is_file())  # folders first
        for entry in entries:
            target = out / entry.name
            if entry.is_dir() and target.is_dir():
                target.rename(stage / f".old-{entry.name}")  # removed with the stage
            os.replace(entry, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
