"""A report is written beside ``--out`` and moved in at the end: a failed one changes nothing.

The failing run reports on another store (so its page would differ) and runs a
notebook that raises: the previous report, its notebook pages and any other
file in ``--out`` must be as they were, and the failed run's logs must be kept
where the error says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_fixture import make_store

from analysis.errors import UserError
from analysis.report.page import build_report


def _notebook(directory: Path, name: str, code: str) -> Path:
    """A minimal numbered notebook (a parameters cell and ``code``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cells = [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "db = None\n"
         "data_dir = None\n", "outputs": [], "execution_count": None},
        {"cell_type": "code", "metadata": {}, "source": code, "outputs": [],
         "execution_count": None},
    ]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "py",
                                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = directory / name
    path.write_text(json.dumps(nb))
    return path


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_a_failed_report_leaves_the_previous_one_in_place(tmp_path) -> None:
    good_nb, bad_nb = tmp_path / "good", tmp_path / "bad"
    _notebook(good_nb, "01-fine.ipynb", "print('fine')\n")
    _notebook(bad_nb, "01-boom.ipynb", "raise RuntimeError('boom')\n")
    out = tmp_path / "build"
    (out / "bench").mkdir(parents=True)
    (out / "bench" / "keep.txt").write_text("not the report's")  # other files stay
    first = build_report(make_store(tmp_path / "a.duckdb", heavy_caller="first-caller"), out,
                         notebook_dir=good_nb)
    assert first.report == out / "report.html"
    assert first.pages == [out / "notebooks" / "01-fine.html"] and first.pages[0].exists()
    assert "first-caller" in first.report.read_text(encoding="utf-8")
    before = _tree(out)

    other = make_store(tmp_path / "b.duckdb", heavy_caller="second-caller")
    with pytest.raises(UserError, match="01-boom") as failed:
        build_report(other, out, notebook_dir=bad_nb)
    assert _tree(out) == before
    kept = tmp_path / ".build.failed"
    assert str(kept) in str(failed.value) and (kept / "notebooks" / "01-boom.log").exists()
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_a_failed_first_report_leaves_nothing(tmp_path) -> None:
    bad_nb = tmp_path / "bad"
    _notebook(bad_nb, "01-boom.ipynb", "raise RuntimeError('boom')\n")
    out = tmp_path / "build"
    with pytest.raises(UserError, match="01-boom"):
        build_report(make_store(tmp_path / "a.duckdb"), out, notebook_dir=bad_nb)
    assert not (out / "report.html").exists()
