"""Fingerprints: what a cached or stored result was made from.

One fingerprint of the analysis code (``source_fingerprint``: every ``.py``,
``.sql`` and ``.j2`` file of the ``analysis`` package, sub-packages included)
keys every result kept across runs: the report's cache (``analysis.report.cache``),
the notebook runs it keeps, and the mark ``ingest`` puts on stored rollups
(``analysis.rollups.mark_rollups``). A change anywhere in the code the results
could depend on computes afresh; a data file beside the code does not count.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from analysis.paths import PACKAGE

SOURCE_SUFFIXES = (".py", ".sql", ".j2")
"""The files of the package that decide what it computes (code, queries, templates)."""


def _files(root: Path, suffixes: tuple[str, ...] | None) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts
                  and (suffixes is None or p.suffix in suffixes))


def tree_fingerprint(root: Path, *, content: bool = True,
                     suffixes: tuple[str, ...] | None = None) -> str:
    """SHA-256 over the files under ``root`` (``__pycache__`` left out), by relative path.

    ``content``: hash the bytes (for code: a touched file is the same file);
    otherwise sizes and modification times (for data, which can be large).
    ``suffixes``: only files ending so (default: every file). A missing ``root``
    has a fingerprint too (that of nothing).
    """
    h = hashlib.sha256()
    for p in _files(root, suffixes):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        if content:
            h.update(p.read_bytes())
        else:
            st = p.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def source_fingerprint(package: Path = PACKAGE) -> str:
    """SHA-256 of the analysis code: every ``SOURCE_SUFFIXES`` file of ``package``,
    sub-packages included, by relative path and content."""
    return tree_fingerprint(package, suffixes=SOURCE_SUFFIXES)


def environment_fingerprint() -> str:
    """SHA-256 of the Python version and every installed distribution's name and version."""
    from importlib import metadata

    dists = sorted({(d.metadata["Name"] or "", d.version) for d in metadata.distributions()})
    return hashlib.sha256(json.dumps([sys.version, dists]).encode()).hexdigest()
