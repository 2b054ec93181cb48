"""Running the notebooks for the report: the order they start in, and reusing kept runs.

A notebook that needs no shared result (the chain, the what-ifs) starts while
those are computed; among equals the longest of the last run starts first. A
run whose notebook and inputs are unchanged is copied, not executed again,
and any changed input (here: the store) executes it afresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from analysis.errors import UserError
from analysis.report.notebooks import needs_shared_results, run_notebooks, run_order


def _notebook(path: Path, *code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("db = None\ndata_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def _ran_before(executed: Path, seconds: float) -> None:
    executed.parent.mkdir(parents=True, exist_ok=True)
    executed.write_text(json.dumps({"metadata": {"papermill": {"duration": seconds}}}))


def test_notebooks_needing_no_shared_result_start_first_then_the_longest(tmp_path) -> None:
    a = _notebook(tmp_path / "01-a.ipynb", "chain = rd.root_cause_chain(con)")
    b = _notebook(tmp_path / "02-b.ipynb", "print(1)")
    c = _notebook(tmp_path / "03-c.ipynb", "wi = rd.whatifs(con)")
    d = _notebook(tmp_path / "04-d.ipynb", "# whatifs are explained in 05\nprint(2)")
    assert [needs_shared_results(p) for p in (a, b, c, d)] == [True, False, True, False]
    assert run_order([a, b, c, d]) == [b, d, a, c]  # reading order without a last run
    previous = tmp_path / "out"
    _ran_before(previous / a.name, 3.0)
    _ran_before(previous / c.name, 9.0)
    _ran_before(previous / d.name, 5.0)
    assert run_order([a, b, c, d], previous) == [d, b, c, a]


def test_an_unchanged_run_is_reused_and_a_changed_store_runs_again(tmp_path) -> None:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01-only.ipynb", "print('ran with', db is not None)")
    db = tmp_path / "s.duckdb"
    db.write_bytes(b"a store")
    out = tmp_path / "out"
    log = out / "notebooks" / "01-only.log"

    def run() -> str:
        (page,) = run_notebooks(db=db, out=out, notebook_dir=nbs, workers=1)
        assert "ran with True" in page.read_text(encoding="utf-8")
        return log.read_text()

    assert "not executed" not in run()
    first = (out / "notebooks" / "01-only.ipynb").read_bytes()
    assert "not executed" in run()
    assert (out / "notebooks" / "01-only.ipynb").read_bytes() == first
    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert "not executed" not in run()
    kept = sorted(p.name for p in (tmp_path / "s.duckdb.cache" / "notebooks").iterdir())
    assert len(kept) == 2 and kept[0].endswith(".html") and kept[1].endswith(".ipynb")


def test_a_failing_notebook_is_named_and_no_further_one_starts(tmp_path) -> None:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01-bad.ipynb", "raise ValueError('no such signal')")
    _notebook(nbs / "02-next.ipynb", "print('ran')")
    db = tmp_path / "s.duckdb"
    db.write_bytes(b"a store")
    with pytest.raises(UserError, match=r"01-bad\.ipynb.*\n(.*\n)*.*no such signal"):
        run_notebooks(db=db, out=tmp_path / "out", notebook_dir=nbs, workers=1)
    assert not (tmp_path / "out" / "notebooks" / "02-next.ipynb").exists()
    assert not (tmp_path / "s.duckdb.cache" / "notebooks").exists()  # failures are not kept


def test_two_reports_at_once_execute_a_notebook_once(tmp_path) -> None:
    """Two ``report`` processes on one store: one executes the notebook, the other waits
    for it and copies its kept run."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    runs = tmp_path / "runs.txt"
    _notebook(nbs / "01-only.ipynb", f"open({str(runs)!r}, 'a').write('ran\\n')")
    db = tmp_path / "s.duckdb"
    db.write_bytes(b"a store")
    code = ("import sys; from pathlib import Path; from analysis.report.notebooks import"
            " run_notebooks; (p,) = run_notebooks(db=Path(sys.argv[1]), out=Path(sys.argv[2]),"
            " notebook_dir=Path(sys.argv[3]), workers=1); print(p)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(tmp_path / f"out{i}"),
                               str(nbs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in (1, 2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert runs.read_text() == "ran\n"
    assert all(Path(out.strip()).exists() for out, _, _ in results)
