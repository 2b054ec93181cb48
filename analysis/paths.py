"""Where things are: the one module that names the checkout's paths.

Everything else asks here instead of walking up from its own ``__file__``, so
moving a module (``analysis/report/`` was once five top-level files) never
changes what "the repository" or "the default store" means. The names match
the Makefile's defaults (``DATA_DIR``, ``DB``, ``BUILD``). Nothing here imports
the rest of the package: it sits at the bottom of the import graph.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
"""The ``analysis`` package's directory (its sources are what the caches fingerprint)."""

REPO_ROOT = PACKAGE.parent
"""The checkout this package lives in."""

DATA = REPO_ROOT / "data"
"""Stores, generated incidents and committed samples."""

SAMPLES = DATA / "samples"
"""A few committed lines of every input format."""

BUILD = REPO_ROOT / "build"
"""Where ``make report`` writes the report, its PDF and slides."""

NOTEBOOKS = REPO_ROOT / "notebooks"
"""The review notebooks."""

DEFAULT_DB = DATA / "incident.duckdb"
"""The store ``make`` and the notebooks use unless told otherwise."""

BUNDLED_SCENARIO = "april-2026"
BUNDLED_SEED = 1
BUNDLED_DATA = DATA / "generated" / BUNDLED_SCENARIO
"""Where the bundled incident is simulated (``make``'s ``DATA_DIR``)."""


def repo_root() -> Path:
    """The checkout this package lives in (``REPO_ROOT``)."""
    return REPO_ROOT
