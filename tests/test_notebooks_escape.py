"""A notebook run on a store whose culprit's name is markup shows it as text.

Notebook 04 (verdict, culprit, chain) runs under papermill against the
hostile synthetic store and is exported to HTML as ``postmortem report``
does; the caller ``<script>alert(1)</script>`` must appear escaped in the
page and never as an element.
"""

from __future__ import annotations

import re

from test_report_fixture import make_store

from analysis.report.notebooks import execute, notebook_paths

HOSTILE = "<script>alert(1)</script>"


def test_culprit_named_like_markup_is_text_in_the_notebook_page(tmp_path) -> None:
    db = make_store(tmp_path / "s.duckdb", heavy_caller=HOSTILE)
    (nb,) = [p for p in notebook_paths() if p.name.startswith("04-")]
    page = execute(nb, tmp_path / "out", {"db": str(db)}).read_text(encoding="utf-8")
    assert "culprit: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE not in page
    assert not re.search(r"<script[^>]+src=\"https?://", page)
