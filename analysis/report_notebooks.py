"""Running the review notebooks for the report: papermill in, one HTML page each out.

Each notebook is executed by papermill in its own kernel, in the notebooks'
directory (so relative paths mean what they mean under nbval), with the
store and data directory injected as parameters; executed copies go to
``<out>/notebooks/`` (never over the stored notebooks). Each is then exported
to HTML by nbconvert with every external script removed: charts are inline
SVG, so the pages need no network.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from analysis.errors import UserError
from analysis.report_store import repo_root

_EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)
_EXTERNAL_LINK = re.compile(r"<link[^>]*\bhref=\"https?://[^\"]*\"[^>]*>", re.I)
_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


def notebook_dir() -> Path:
    """The stored notebooks of this checkout."""
    return repo_root() / "notebooks"


def notebook_paths(directory: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN-name.ipynb``) in reading order."""
    directory = directory or notebook_dir()
    return sorted(p for p in directory.glob("[0-9][0-9]-*.ipynb"))


def offline_html(html: str) -> str:
    """Remove every script or stylesheet an nbconvert page would fetch from a network."""
    html = _MATHJAX.sub("", html)
    html = _EXTERNAL_SCRIPT.sub("", html)
    return _EXTERNAL_LINK.sub("", html)


def export_html(executed: Path, target: Path) -> Path:
    """Export an executed notebook to a self-contained HTML page."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb)
    target.write_text(offline_html(body), encoding="utf-8")
    return target


def execute(nb: Path, out_dir: Path, params: dict[str, str], *, timeout_s: int = 600) -> Path:
    """Run one notebook with papermill (in a subprocess) and export it; the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / nb.name
    cmd = [sys.executable, "-m", "papermill", str(nb), str(executed), "--cwd", str(nb.parent),
           "--no-progress-bar", "--kernel", "python3"]
    for k, v in params.items():
        cmd += ["-p", k, v]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise UserError(f"{nb}: the notebook failed under papermill "
                        f"(executed copy: {executed}):\n{tail}")
    return export_html(executed, executed.with_suffix(".html"))


def run_notebooks(
    *,
    db: Path,
    out: Path,
    data_dir: Path | None = None,
    notebook_dir: Path | None = None,
    workers: int = 2,
) -> list[Path]:
    """Execute every numbered notebook against ``db``; the HTML pages, in reading order."""
    nbs = notebook_paths(notebook_dir)
    params = {"db": str(Path(db).resolve())}
    if data_dir is not None:
        params["data_dir"] = str(Path(data_dir).resolve())
    target = out / "notebooks"
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda nb: execute(nb, target, params), nbs))
