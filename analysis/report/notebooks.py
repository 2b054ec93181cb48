"""Running the review notebooks for the report: papermill in, one HTML page each out.

Each notebook is executed by papermill in its own kernel, in the notebooks'
directory (so relative paths mean what they mean under nbval), with the
store and data directory injected as parameters; executed copies go to
``<out>/notebooks/`` (never over the stored notebooks). Each is then exported
to HTML by nbconvert with every external script removed: charts are inline
SVG, so the pages need no network.

``run_notebooks`` spreads the notebooks over a few worker processes (two: the
machine this runs on has two cores, and the report page is written at the
same time). A worker imports papermill and nbconvert once and runs notebook
after notebook, each in a fresh kernel, exporting each page itself, so the
process that writes the report page shares no interpreter lock with them.
The kernels leave their charts as Vega-Lite specs and the worker draws them
as SVG (``draw_charts``): one vl-convert engine per worker instead of one per
kernel, and the same SVG the kernel would have drawn.
Notebooks that need no shared result (the chain, the what-ifs) start first,
while those results are computed; within that, the longest (as the last run
in the same output directory recorded them) go first, so that no long
notebook is left running alone at the end.

A successful run is kept in the store's cache (``<db>.cache/notebooks/``)
under a key of everything it reads: the notebook, the store, the data
directory, the analysis package, the committed samples and the installed
packages (``inputs_fingerprint``). A later report with the same key copies the
kept pages instead of executing the notebook again (``postmortem report
--rerun`` executes them all); change any input and the notebook runs afresh.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import types
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from analysis.errors import UserError
from analysis.paths import NOTEBOOKS, SAMPLES
from analysis.progress import progress_line

_EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)
_EXTERNAL_LINK = re.compile(r"<link[^>]*\bhref=\"https?://[^\"]*\"[^>]*>", re.I)
_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


def notebook_dir() -> Path:
    """The stored notebooks of this checkout."""
    return NOTEBOOKS


def notebook_paths(directory: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN-name.ipynb``) in reading order."""
    directory = directory or notebook_dir()
    return sorted(p for p in directory.glob("[0-9][0-9]-*.ipynb"))


def offline_html(html: str) -> str:
    """Remove every script or stylesheet an nbconvert page would fetch from a network."""
    html = _MATHJAX.sub("", html)
    html = _EXTERNAL_SCRIPT.sub("", html)
    return _EXTERNAL_LINK.sub("", html)


@functools.lru_cache(maxsize=1)
def _html_exporter():
    """One nbconvert HTML exporter per process: each new one compiles its templates
    again (about 0.2 s a notebook)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


def export_html(executed: Path, target: Path) -> Path:
    """Export an executed notebook to a self-contained HTML page."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    body, _ = _html_exporter().from_notebook_node(nb)
    target.write_text(offline_html(body), encoding="utf-8")
    return target


def execute(nb: Path, out_dir: Path, params: dict[str, str], *, timeout_s: int = 600) -> Path:
    """Run one notebook with papermill (a fresh kernel) and export it; the HTML path.

    The kernel runs in the notebook's directory (papermill changes this
    process's directory while it runs, so call it from a worker process, as
    ``run_notebooks`` does, or from a single-threaded one).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / nb.name
    try:
        with _charts_as_specs():
            papermill.execute_notebook(
                str(nb), str(executed), parameters=params, cwd=str(nb.parent),
                kernel_name="python3", progress_bar=False, execution_timeout=timeout_s,
                request_save_on_cell_execute=False,
            )
    except PapermillExecutionError as exc:
        tail = "\n".join(str(exc).strip().splitlines()[-15:])
        raise UserError(f"{nb}: the notebook failed under papermill "
                        f"(executed copy: {executed}):\n{tail}") from None
    draw_charts(executed)
    return export_html(executed, executed.with_suffix(".html"))


@contextlib.contextmanager
def _charts_as_specs() -> Iterator[None]:
    """Kernels started inside emit chart specs, not SVG (``charts.SPECS_ENV``)."""
    from analysis.charts import SPECS_ENV

    before = os.environ.get(SPECS_ENV)
    os.environ[SPECS_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SPECS_ENV, None)
        else:
            os.environ[SPECS_ENV] = before


def draw_charts(executed: Path) -> int:
    """Draw as SVG every chart an executed notebook holds as a spec; how many.

    The kernels of ``execute`` leave their charts as Vega-Lite specs; this draws
    them here, in one vl-convert engine per worker, before the page is exported.
    """
    import nbformat

    from analysis.charts import draw_specs

    nb = nbformat.read(executed, as_version=4)
    drawn = 0
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if "data" not in out:
                continue
            try:
                drawn += draw_specs(out["data"])
            except Exception as exc:  # vl-convert's errors name no notebook
                raise UserError(f"{executed}: cell {i}: the chart could not be drawn:"
                                f" {exc}") from None
    if drawn:
        nbformat.write(nb, executed)
    return drawn


def _execute_logged(nb: Path, out_dir: Path, params: dict[str, str]) -> Path:
    """``execute`` in a worker process, its output and its kernel's in ``<stem>.log``.

    The kernel inherits the worker's stdout and stderr: without this its start-up
    warnings would land in the middle of ``postmortem report``'s own output.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(out_dir / f"{nb.stem}.log", "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            return execute(nb, out_dir, params)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def inputs_fingerprint(params: dict[str, str], directory: Path | None = None) -> str:
    """SHA-256 of what every notebook run reads besides its own file.

    The store and the data directory named in ``params`` (by size and
    modification time), the analysis code (``analysis.fingerprint.source_fingerprint``),
    any other file in the notebooks' ``directory`` (a helper module they might import),
    the committed samples a notebook falls back on (``data/samples``), the
    installed distributions and the time zone.
    """
    from analysis.fingerprint import environment_fingerprint, source_fingerprint, tree_fingerprint

    parts: list[str] = [json.dumps(params, sort_keys=True), os.environ.get("TZ", "")]
    for key in ("db", "data_dir"):
        if key in params:
            path = Path(params[key])
            if path.is_file():
                st = path.stat()
                parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
            else:
                parts.append(tree_fingerprint(path, content=False))
    beside = sorted(p for p in (directory or notebook_dir()).iterdir()
                    if p.is_file() and p.suffix != ".ipynb")
    parts += [f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in beside]
    parts += [source_fingerprint(), tree_fingerprint(SAMPLES, content=False),
              environment_fingerprint()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def run_key(nb: Path, inputs: str) -> str:
    """Key of one notebook run: the notebook's bytes and ``inputs_fingerprint``."""
    return hashlib.sha256(nb.read_bytes() + inputs.encode()).hexdigest()[:24]


def _kept_paths(nb: Path, cache: Path, key: str) -> dict[str, Path]:
    return {suffix: cache / f"{nb.stem}-{key}{suffix}" for suffix in (".ipynb", ".html")}


def _out_paths(nb: Path, out_dir: Path) -> dict[str, Path]:
    return {".ipynb": out_dir / nb.name, ".html": out_dir / f"{nb.stem}.html"}


def restore_kept(nb: Path, out_dir: Path, cache: Path, key: str) -> Path | None:
    """Copy the kept run of ``nb`` with this key into ``out_dir``; its page (None: none kept).

    A run that succeeded is kept (executed notebook and page); a later run whose
    notebook and inputs are the same copies it instead of executing again: same
    inputs, same page, as ``make`` reasons about files.
    """
    kept = _kept_paths(nb, cache, key)
    if not all(p.exists() for p in kept.values()):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    here = _out_paths(nb, out_dir)
    for suffix, src in kept.items():
        shutil.copyfile(src, here[suffix])
    (out_dir / f"{nb.stem}.log").write_text(
        f"not executed: same notebook and inputs as the run kept in {kept['.ipynb']}\n")
    return here[".html"]


def _execute_and_keep(nb: Path, out_dir: Path, params: dict[str, str],
                      cache: Path | None, key: str) -> Path:
    """``_execute_logged``, then (with a ``cache``) keep the executed notebook and page
    under ``key``, replacing older runs of the same notebook.

    With a cache, one run per notebook at a time (``notebook-<stem>.lock`` beside
    it): a second ``report`` asking for the same run waits and copies the kept one.
    A run is kept only if the store file is the one it started with
    (``ingest --replace`` may rename a new store into place meanwhile).
    """
    if cache is None:
        return _execute_logged(nb, out_dir, params)
    from analysis.access import identity
    from analysis.filelock import locked, replaced_atomically

    with locked(cache.parent / f"notebook-{nb.stem}"):
        if (page := restore_kept(nb, out_dir, cache, key)) is not None:
            return page
        db = Path(params["db"])
        before = identity(db) if db.is_file() else None
        page = _execute_logged(nb, out_dir, params)
        if before is None or identity(db) != before:
            return page
        kept = _kept_paths(nb, cache, key)
        cache.mkdir(exist_ok=True)
        for suffix, src in _out_paths(nb, out_dir).items():
            with replaced_atomically(kept[suffix]) as tmp:
                shutil.copyfile(src, tmp)
    mine = re.compile(rf"{re.escape(nb.stem)}-[0-9a-f]{{24}}\.(ipynb|html)")
    for old in cache.iterdir():
        if mine.fullmatch(old.name) and old not in kept.values():
            old.unlink(missing_ok=True)
    return page


SHARED_RESULTS = ("root_cause_chain", "whatifs")
"""Cached results (``analysis.report.data``) that a notebook may wait for."""


def needs_shared_results(nb: Path) -> bool:
    """Whether the notebook's code asks for a shared cached result (see ``SHARED_RESULTS``)."""
    cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
    code = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    return any(re.search(rf"\b{name}\(", code) for name in SHARED_RESULTS)


def last_duration(executed: Path) -> float:
    """Seconds the last run of a notebook took (papermill's record; 0 when unknown)."""
    try:
        meta = json.loads(executed.read_text(encoding="utf-8"))["metadata"]["papermill"]
        return float(meta.get("duration") or 0.0)
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def run_order(nbs: list[Path], previous: Path | None = None) -> list[Path]:
    """The order to start notebooks in: those needing no shared result first, then
    the longest first by the last run's times in ``previous`` (reading order on ties)."""
    def key(nb: Path) -> tuple[bool, float]:
        last = last_duration(previous / nb.name) if previous is not None else 0.0
        return needs_shared_results(nb), -last

    return sorted(nbs, key=key)  # stable: reading order among equals


@contextlib.contextmanager
def _caller_script_not_rerun() -> Iterator[None]:
    """Spawned workers would run the caller's ``__main__`` script again (to find
    functions defined there); ours live in this module, so show them none: a
    script calling ``build_report`` without an ``if __name__ == "__main__"``
    guard, or fed on stdin, then works too."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def run_notebooks(
    *,
    db: Path,
    out: Path,
    data_dir: Path | None = None,
    notebook_dir: Path | None = None,
    workers: int = 2,
    reuse: bool = True,
    previous: Path | None = None,
) -> list[Path]:
    """Execute every numbered notebook against ``db``; the HTML pages, in reading order.

    ``reuse``: a notebook whose file and inputs (``inputs_fingerprint``) are those
    of a run kept in the store's cache (``<db>.cache/notebooks/``) is copied
    from it, not executed again. ``previous``: the executed notebooks of the
    last run (default ``out/notebooks``), whose times set the order (``run_order``).
    """
    nbs = notebook_paths(notebook_dir)
    params = {"db": str(Path(db).resolve())}
    if data_dir is not None:
        params["data_dir"] = str(Path(data_dir).resolve())
    target = out / "notebooks"
    cache = Path(f"{params['db']}.cache") / "notebooks" if reuse else None
    inputs = inputs_fingerprint(params, notebook_dir) if reuse else ""
    keys = {nb: run_key(nb, inputs) for nb in nbs}
    pages = {nb: restore_kept(nb, target, cache, keys[nb]) for nb in nbs} if cache else {}
    todo = [nb for nb in run_order(nbs, previous or target) if pages.get(nb) is None]
    if todo:
        # spawn, not fork: the parent holds DuckDB and polars thread pools
        ctx = multiprocessing.get_context("spawn")
        lanes = max(1, min(workers, len(todo)))
        # one notebook per free worker (not all queued at once): a failure starts no other
        waiting = collections.deque(todo)
        running: dict[Future, Path] = {}
        with ProcessPoolExecutor(max_workers=lanes, mp_context=ctx) as pool, \
                progress_line("notebooks", total=len(todo), unit="notebook") as bar:
            def start_next() -> None:
                nb = waiting.popleft()
                with _caller_script_not_rerun():  # a worker may start on submit
                    running[pool.submit(_execute_and_keep, nb, target, params, cache,
                                        keys[nb])] = nb

            for _ in range(lanes):
                start_next()
            while running:
                bar.note(", ".join(n.stem for n in running.values()))  # running now
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for job in done:
                    pages[running.pop(job)] = job.result()
                    bar.advance()
                    if waiting:
                        start_next()
    return [pages[nb] for nb in nbs]


CHECK_TAG = "nbval-check-output"


def strip_unchecked(nb) -> None:
    """Keep outputs only on cells tagged ``nbval-check-output``; drop run metadata.

    Checked cells keep their outputs (the claims nbval compares) and their
    execution count; every other cell is stored empty, so charts and tables
    never bloat the repository or make nbval compare random ids.
    """
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type != "code":
            continue
        if CHECK_TAG not in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)


_VOLATILE = re.compile(r"0x[0-9a-f]{6,}|altair-viz-|\bat 0x|Timestamp\(|\d+\.\d+ ?s elapsed"
                       r"|\bmodel_id\b")  # a widget's (charts' interactive view) random id


def notebook_problems(nb) -> list[str]:
    """What keeps a stored notebook from being a real nbval check (empty list: none).

    A notebook must have one ``parameters`` cell assigning ``db`` and
    ``data_dir``, at least one ``nbval-check-output`` cell, stored outputs on
    every checked cell and on no other cell, and nothing volatile (memory
    addresses, random chart ids) in what it stores.
    """
    problems: list[str] = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        problems.append(f"expected one cell tagged 'parameters', found {len(params)}")
    else:
        for name in ("db", "data_dir"):
            if not re.search(rf"^{name}\s*=", params[0].source, re.M):
                problems.append(f"the parameters cell does not assign {name!r}")
    checked = [c for c in code if CHECK_TAG in c.metadata.get("tags", [])]
    if not checked:
        problems.append(f"no cell tagged {CHECK_TAG!r}: nbval would check nothing")
    for i, c in enumerate(code):
        is_checked = CHECK_TAG in c.metadata.get("tags", [])
        if is_checked and not c.outputs:
            problems.append(f"code cell {i} is checked but has no stored output")
        if not is_checked and c.outputs:
            problems.append(f"code cell {i} is not checked but stores outputs (strip them)")
        for out in c.outputs:
            if out.get("output_type") == "error":
                problems.append(f"code cell {i} stores an error")
            text = str(out.get("text", "")) + str(out.get("data", ""))
            if _VOLATILE.search(text):
                problems.append(f"code cell {i} stores a volatile output")
    return problems


def refresh_stored_outputs(path: Path, *, timeout_s: int = 600) -> None:
    """Run a stored notebook in place (from its own directory, default parameters)
    and store the outputs of its checked cells only: what nbval then holds it to."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    strip_unchecked(nb)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.report.notebooks [NOTEBOOK ...]``: refresh stored outputs."""
    args = argv if argv is not None else sys.argv[1:]
    paths = [Path(a) for a in args] or notebook_paths()
    for p in paths:
        refresh_stored_outputs(p)
        print(f"refreshed {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def strip_on_save(model: dict, **_: object) -> None:
    """A Jupyter server pre-save hook (``scripts/jupyter_server_config.py``, used by
    ``make lab``): a notebook saved from JupyterLab keeps outputs only on its checked
    cells (``strip_unchecked``), so autosave never writes charts into the repository."""
    if model.get("type") != "notebook" or model.get("content", {}).get("nbformat") != 4:
        return
    import nbformat

    nb = nbformat.from_dict(model["content"])
    strip_unchecked(nb)
    model["content"] = nb
