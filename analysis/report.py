"""The self-contained HTML report of an incident.

``collect`` computes everything the report says from a store (chain, events,
rollups, what-ifs: nothing about the incident is written here), ``render_html``
lays it out as one page with every script and style inline (Vega, Vega-Lite
and vega-embed come from vl-convert's bundle; nothing is fetched from a
network), and ``build_report`` does both and, on request, runs the notebooks
into one HTML page each (``analysis.report_notebooks``).

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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import jinja2
import polars as pl
from markupsafe import Markup

from analysis import charts
from analysis import report_data as rd
from analysis.chain.result import ChainResult, iso
from analysis.errors import UserError
from analysis.report_cache import cached
from analysis.rollups import ensure_rollups, raw_absent

TEMPLATE = Path(__file__).with_name("report_template.html.j2")
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
class ReportContent:
    """Everything the report page shows, computed from one store."""

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


@dataclass
class ReportRun:
    """What ``build_report`` wrote, with sizes and the time it took."""

    report: Path
    bytes: int
    pages: list[Path]
    seconds: float
    verdict: str
    phases: dict[str, float] = field(default_factory=dict)


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
    try:
        rows = con.execute("SELECT value FROM incident WHERE key = 'name'").fetchall()
    except duckdb.Error:
        rows = []
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
    if cul:
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
    # the page's coverage, impact and what-if tables read the raw rows
    raw_absent(con, "the report (its coverage, impact and what-if tables)")
    chain = rd.root_cause_chain(con, **times)
    if any(v is not None for v in times.values()):
        ensure_rollups(con, grid_s, start, end)  # the charts and impact read these rollups
    env = chain.environment
    imp = rd.impact(con, chain)
    td = rd.timeline_data(con, onsets=chain.onsets, port_range=env.port_range)
    wi = rd.whatifs(con, **times) if whatif and chain.culprit is not None else None
    blocks: list[ChartBlock] = []
    if td.panels:
        blocks.append(ChartBlock(
            "timeline", "The timeline",
            "Every panel shares the UTC time axis; human events are rules (points) and"
            " bands (intervals), dashed black rules are detected onsets. Drag on the"
            " overview at the bottom to zoom all panels.",
            charts.timeline(td.panels, events=td.events, onsets=td.onsets,
                            side_by_side=td.callers, max_rows=TIMELINE_ROWS).to_dict(),
        ))
    nodes, edges = rd.chain_graph(chain)
    if nodes.height:
        blocks.append(ChartBlock("chain", "The root-cause chain",
                                 "Each arrow is a hop: lag of the effect behind the cause and"
                                 " the p-value of their coincidence.",
                                 charts.chain_diagram(nodes, edges).to_dict()))
    lags = rd.lags_frame(chain)
    if lags.height:
        blocks.append(ChartBlock("lags", "Who leads whom",
                                 "Lag of each hop with its bootstrap interval.",
                                 charts.lag_chart(lags).to_dict()))
    if wi is not None and wi.long.height:
        blocks.append(ChartBlock("whatif", "What if",
                                 "Observed against the replay as it was and the predictions"
                                 " under each change (10 s buckets).",
                                 charts.whatif_chart(wi.long).to_dict()))
    blocks.append(ChartBlock("coverage", "Data coverage", "What data exists for which hosts"
                             " and times.", charts.coverage_chart(rd.coverage(con)).to_dict()))
    facts = [
        ("ephemeral port range", f"{env.port_range[0]}-{env.port_range[1]}"
         f" ({env.port_range[1] - env.port_range[0] + 1:,} ports)"),
        ("TIME_WAIT", f"{env.time_wait_s} s"),
        ("idle pool", "unknown" if env.idle_pool is None else f"{env.idle_pool:,}"),
        ("from the manifest", ", ".join(env.from_manifest) or "none (kernel defaults)"),
    ]
    info = chain.rollup
    if info is not None:
        facts += [("grid and window", info.describe()),
                  ("outside the window", info.outside_line() or "no data")]
    return ReportContent(
        title=f"Post-mortem: {_incident_name(con)}",
        verdict=chain.verdict,
        summary=summary_items(chain, imp, td.events, wi),
        timeline=Table.of(rd.timeline_rows(con, chain)),
        charts=blocks,
        hops=Table.of(rd.hops_frame(chain)),
        rivals=Table.of(rd.rivals_frame(chain)),
        callers=Table.of(rd.callers_frame(chain)),
        whatif=Table.of(wi.summary) if wi is not None else Table([], []),
        actions=follow_ups(chain, imp, wi),
        facts=facts,
        notes=list(chain.notes),
    )


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


def render_html(content: ReportContent, vega_js: str | None = None) -> str:
    """The report as one HTML page with every script and style inline.

    ``vega_js``: the Vega bundle to inline (default: ``vega_bundle()``).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    specs = {b.id: b.spec for b in content.charts}
    return env.get_template(TEMPLATE.name).render(
        c=content,
        specs_json=Markup(script_json(specs)),
        vega_js=Markup(vega_js if vega_js is not None else vega_bundle()),
    )


def write_report(con: duckdb.DuckDBPyConnection, out: Path,
                 notebooks: list[tuple[str, str]] | None = None,
                 **times) -> tuple[Path, str]:
    """Collect and render the report of ``con``'s store into ``out/report.html``
    (``times``: ``grid_s``, ``start``, ``end`` for ``collect``)."""
    content = collect(con, **times)
    content.notebooks = notebooks or []
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(render_html(content, vega_bundle_cached(con)), encoding="utf-8")
    return path, content.verdict


def build_report(
    db: Path, out: Path, *, data_dir: Path | None = None, notebooks: bool = True,
    notebook_dir: Path | None = None, reuse_notebooks: bool = True,
    grid_s: int | None = None, start: datetime | None = None, end: datetime | None = None,
) -> ReportRun:
    """``postmortem report``: run the notebooks (optional) and write the report page.

    Everything is written into a temporary folder beside ``out`` and moved into
    ``out`` at the end (``staged``): a report that fails leaves the previous
    one, or nothing. The store is only read, like any reader's; if ``ingest
    --replace`` renames a new store into place meanwhile, the report (whose
    page and notebooks might then tell of two stores) fails and says so.
    ``reuse_notebooks``: copy a notebook's page from an earlier run with the same
    notebook and inputs (see ``analysis.report_notebooks.run_notebooks``). ``grid_s``,
    ``start``, ``end`` override the grid and window of the page's analysis (the
    notebooks read the store's rollups).
    """
    from analysis.access import check_store_file, identity
    from analysis.report_notebooks import notebook_paths, run_notebooks
    from analysis.report_store import open_analysis

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
                path, verdict = write_report(con, stage, links, grid_s=grid_s, start=start,
                                             end=end)
            finally:
                con.close()
            phases["report page"] = time.monotonic() - t
            pages = job.result() if job is not None else []
        phases["notebooks (parallel with the page)"] = time.monotonic() - t
        if identity(db) != before:
            raise UserError(f"{db}: the store was replaced while the report was written"
                            " (by `postmortem ingest`); run `postmortem report` again")
    final = out / path.relative_to(stage)
    return ReportRun(final, final.stat().st_size, [out / p.relative_to(stage) for p in pages],
                     time.monotonic() - began, verdict, phases)


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
