"""The report of an incident, and the notebooks' side of the analysis.

- ``page``: the self-contained HTML page (``collect``, ``render_html``,
  ``build_report``), and its PDF and slides (``formats``);
- ``data``: what the notebooks and the page show, computed from a store;
- ``notebooks``: running the review notebooks (papermill) into HTML pages,
  and stripping their outputs on save (``python -m analysis.report.notebooks``
  refreshes the checked outputs);
- ``workspace``: finding, building if missing, and opening the store they read;
- ``cache``: the disk cache of results they share (keyed by
  ``analysis.fingerprint.source_fingerprint``);
- ``template.html.j2``: the page's layout.

Importing the package imports none of them, so ``analysis.report.cache`` costs
no charting library.
"""
