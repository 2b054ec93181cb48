"""JupyterLab settings of ``make lab`` (passed with ``--config``).

A save from JupyterLab (autosave too) strips every output but those of the cells
nbval checks, so exploring a notebook never leaves charts in the repository; and
the server never opens a browser (it may run on a remote or headless machine).
"""

c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)
c.FileContentsManager.pre_save_hook = "analysis.report.notebooks.strip_on_save"
c.ServerApp.open_browser = False
