"""The stored notebooks are real nbval checks, not smoke tests.

nbval (``pytest notebooks --nbval-lax``) compares the outputs of cells tagged
``nbval-check-output`` with a fresh run. That only means something if every
notebook has such cells, stores their outputs, stores nothing else (no charts,
no random ids) and can be parameterised for another incident.
"""

from __future__ import annotations

import copy

import nbformat
import pytest

from analysis.report.notebooks import (
    CHECK_TAG,
    notebook_paths,
    notebook_problems,
    strip_unchecked,
)

NOTEBOOKS = notebook_paths()


def test_the_six_review_notebooks_exist_numbered_in_reading_order() -> None:
    numbers = [p.name[:2] for p in NOTEBOOKS if p.name != "07-lab-replay.ipynb"]
    assert numbers == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_is_parameterised_checked_and_stripped(path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert notebook_problems(nb) == []


def _good_notebook():
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("data_dir = None\ndb = None")
    params.metadata["tags"] = ["parameters"]
    claim = nbformat.v4.new_code_cell("print(42)")
    claim.metadata["tags"] = [CHECK_TAG]
    claim.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    chart = nbformat.v4.new_code_cell("chart")
    nb.cells = [params, claim, chart]
    return nb


def test_a_good_notebook_has_no_problems() -> None:
    assert notebook_problems(_good_notebook()) == []


def test_missing_parameters_cell_is_flagged() -> None:
    nb = _good_notebook()
    nb.cells[0].metadata["tags"] = []
    assert any("parameters" in p for p in notebook_problems(nb))


def test_parameters_cell_must_name_db_and_data_dir() -> None:
    nb = _good_notebook()
    nb.cells[0].source = "data_dir = None"
    assert notebook_problems(nb) == ["the parameters cell does not assign 'db'"]


def test_no_checked_cell_is_flagged() -> None:
    nb = _good_notebook()
    nb.cells[1].metadata["tags"] = []
    nb.cells[1].outputs = []
    assert any("nbval would check nothing" in p for p in notebook_problems(nb))


def test_checked_cell_without_stored_output_is_flagged() -> None:
    nb = _good_notebook()
    nb.cells[1].outputs = []
    assert notebook_problems(nb) == ["code cell 1 is checked but has no stored output"]


def test_unstripped_output_on_unchecked_cell_is_flagged() -> None:
    nb = _good_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "x"})]
    assert notebook_problems(nb) == [
        "code cell 2 is not checked but stores outputs (strip them)"
    ]


def test_volatile_output_is_flagged() -> None:
    nb = _good_notebook()
    nb.cells[1].outputs[0]["text"] = "<duckdb.DuckDBPyConnection object at 0x7f3a2c1b9e70>"
    assert notebook_problems(nb) == ["code cell 1 stores a volatile output"]


def test_strip_unchecked_keeps_claims_and_drops_the_rest() -> None:
    nb = _good_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "x"})]
    nb.cells[2].execution_count = 7
    nb.cells[1].execution_count = 3
    stripped = copy.deepcopy(nb)
    strip_unchecked(stripped)
    assert stripped.cells[1].outputs == nb.cells[1].outputs
    assert stripped.cells[1].execution_count == 3
    assert stripped.cells[2].outputs == [] and stripped.cells[2].execution_count is None
    assert notebook_problems(stripped) == []


def test_a_save_from_jupyterlab_strips_all_but_the_checked_outputs() -> None:
    from analysis.report.notebooks import strip_on_save

    nb = _good_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg/>"})]
    nb.cells[2].execution_count = 9
    model = {"type": "notebook", "content": nbformat.from_dict(copy.deepcopy(nb))}
    strip_on_save(model=model, path="x.ipynb", contents_manager=None)
    saved = model["content"]
    assert saved.cells[1].outputs == nb.cells[1].outputs
    assert saved.cells[2].outputs == [] and saved.cells[2].execution_count is None
    assert notebook_problems(saved) == []
    text = {"type": "file", "content": "print(1)"}
    strip_on_save(model=text)
    assert text == {"type": "file", "content": "print(1)"}


def _chart_output() -> dict:
    """What a chart cell holds after a run in JupyterLab: the widget and the SVG."""
    from analysis import charts

    return nbformat.v4.new_output("display_data", data={
        charts.WIDGET_MIME: {"version_major": 2, "version_minor": 1,
                             "model_id": "13b0dde7d9e7477d991f9b937cd4847b"},
        "image/svg+xml": "<svg/>", "text/plain": "<chart>"})


def test_an_interactive_chart_is_volatile_in_a_checked_cell_and_stripped_elsewhere() -> None:
    """A widget's model id is random: stored in a checked cell it would fail every nbval
    run; in an unchecked cell a save strips it (and the widgets' state) with the chart."""
    nb = _good_notebook()
    nb.cells[1].outputs.append(_chart_output())
    assert notebook_problems(nb) == ["code cell 1 stores a volatile output"]
    nb = _good_notebook()
    nb.cells[2].outputs = [_chart_output()]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    strip_unchecked(nb)
    assert nb.cells[2].outputs == [] and "widgets" not in nb.metadata
    assert notebook_problems(nb) == []


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name != "07-lab-replay.ipynb"],
                         ids=lambda p: p.name)
def test_a_review_notebook_sets_itself_up_with_one_call(path) -> None:
    """The setup (charts, tables, the store) is ``notebook_setup``, not a copied cell."""
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup = code[1]  # the cell after the parameters
    assert "con = notebook_setup(db, data_dir)" in setup
    assert not any(s in "\n".join(code) for s in ("pl.Config(", "enable_offline_renderer(",
                                                  "open_analysis(", "ensure_store("))


def test_notebook_setup_opens_the_store_and_sets_charts_and_tables(tmp_path) -> None:
    import altair as alt
    import polars as pl
    from test_report_fixture import make_store

    from analysis.notebook import TABLE_OPTIONS, notebook_setup

    db = make_store(tmp_path / "s.duckdb")
    with pl.Config():  # put the kernel-wide settings back after the test
        con = notebook_setup(db)
        try:
            assert con.execute("SELECT count(*) FROM requests").fetchone()[0] > 0
            assert alt.renderers.active == "postmortem-offline"
            assert pl.Config.state()["POLARS_FMT_MAX_ROWS"] == str(TABLE_OPTIONS["tbl_rows"])
        finally:
            con.close()
            alt.renderers.enable("default")
