"""The review notebooks' setup, one call: ``con = notebook_setup(db, data_dir)``.

Every review notebook starts the same way: charts drawn offline (interactive in
JupyterLab, SVG elsewhere), polars tables wide enough for the store's names,
and the store opened read-only with its derived tables. Kept here, a change to
any of these reaches every notebook at once instead of six copies of one cell.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from analysis import charts
from analysis.report.workspace import ensure_store, open_analysis

TABLE_OPTIONS = {"tbl_rows": 40, "tbl_cols": 12, "tbl_width_chars": 160, "fmt_str_lengths": 90,
                 "tbl_hide_dataframe_shape": True, "tbl_hide_column_data_types": True}
"""How the notebooks print polars frames: 40 rows, names up to 90 characters, no
shape or dtype lines (the checked cells compare this text)."""


def notebook_setup(
    db: str | Path | None = None, data_dir: str | Path | None = None
) -> duckdb.DuckDBPyConnection:
    """Set this kernel up for a review notebook; the store's reader connection.

    ``db`` and ``data_dir`` are the notebook's papermill parameters (``None``: the
    bundled incident, built if missing, see ``report.workspace.ensure_store``). Charts
    use ``charts.enable_offline_renderer`` and frames print with ``TABLE_OPTIONS``
    (both for the whole kernel, as a notebook's display settings are); the
    connection reads the store, derived tables in memory (``open_analysis``).
    """
    charts.enable_offline_renderer()
    pl.Config(**TABLE_OPTIONS)
    return open_analysis(ensure_store(db, data_dir))
