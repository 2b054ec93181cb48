"""A disk cache for the expensive results the notebooks and the report share.

The chain takes seconds and each what-if replay tens of seconds on the bundled
incident; six notebooks and the report would otherwise compute them again and
again. Results are cached next to the store (``<db>.cache/``) under a key made
of the identity of the store file the reader opened (device, inode, size and
modification time: ``analysis.access.identity``), the source of the analysis
modules (``analysis/*.py``: rollups, detection, correlation, roles, chain,
mechanism, what-if ...; not the sub-packages that only make stores) and the
call's parameters. So a re-ingested store or any edit of the analysis code (a
changed constant included) computes afresh, and nbval still fails when the
maths changes. Older entries of the same result are removed when a new one is
written.

``postmortem report`` runs the notebooks while it writes the page, so several
processes may ask for the same missing result at once: the first computes it
under a lock (``<name>.lock`` in the cache directory), the others wait for it
and read it, instead of each computing it again on the same two cores.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from analysis.access import identity, reader_identity
from analysis.filelock import locked, replaced_atomically

T = TypeVar("T")
PACKAGE = Path(__file__).resolve().parent


def source_fingerprint(package: Path = PACKAGE) -> str:
    """SHA-256 over the package's modules, subpackages' too (the analysis), by relative
    path: a change inside ``analysis/chain/`` is a change of the code."""
    h = hashlib.sha256()
    for p in sorted(package.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(package).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def tree_fingerprint(root: Path, *, content: bool = True) -> str:
    """SHA-256 over every file under ``root`` (``__pycache__`` left out), by relative path.

    ``content``: hash the bytes (for code: a touched file is the same file);
    otherwise sizes and modification times (for data, which can be large).
    A missing ``root`` has a fingerprint too (that of nothing).
    """
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        if content:
            h.update(p.read_bytes())
        else:
            st = p.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def environment_fingerprint() -> str:
    """SHA-256 of the Python version and every installed distribution's name and version."""
    from importlib import metadata

    dists = sorted({(d.metadata["Name"] or "", d.version) for d in metadata.distributions()})
    return hashlib.sha256(json.dumps([sys.version, dists]).encode()).hexdigest()


def store_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file behind the connection's store (the attached ``store``, else the main one)."""
    rows = con.execute(
        "SELECT database_name, path FROM duckdb_databases() WHERE path IS NOT NULL"
    ).fetchall()
    paths = dict(rows)
    path = paths.get("store") or next(iter(paths.values()), None)
    return Path(path) if path else None


def cache_key(db: Path, name: str, params: dict, store: str | None = None) -> str:
    """Key of one cached result: store identity, analysis source, name and parameters.

    ``store``: the identity of the file the reader attached (``analysis.access.identity``;
    default: the file at ``db`` now). A reader keeps the store it opened after
    ``ingest --replace`` renames a new one into place: its results must not be
    filed under the new file's key.
    """
    raw = json.dumps(
        [str(db.resolve()), store or identity(db), source_fingerprint(), name, params],
        sort_keys=True, default=str,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def cached(con: duckdb.DuckDBPyConnection, name: str, params: dict,
           compute: Callable[[], T]) -> T:
    """``compute()``'s result, from the cache when the same store and code made it before.

    In-memory stores (no file) are never cached. Writes are atomic (rename), so
    concurrent readers see a whole file or none; concurrent writers of a
    missing result take turns, and all but the first find it computed.
    """
    db = store_path(con)
    if db is None or not db.exists():
        return compute()
    directory = db.with_name(db.name + ".cache")
    target = directory / f"{name}-{cache_key(db, name, params, reader_identity(con))}.pickle"
    if (found := _load(target)) is not _MISSING:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    with locked(directory / name):
        if (found := _load(target)) is not _MISSING:  # computed while we waited
            return found
        value = compute()
        with replaced_atomically(target) as tmp:
            tmp.write_bytes(pickle.dumps(value))
    for old in directory.glob(f"{name}-*.pickle"):
        if old != target:
            old.unlink(missing_ok=True)
    return value


_MISSING = object()


def _load(path: Path):
    """The value pickled at ``path``; ``_MISSING`` if there is none (or another reader of
    another store version pruned it just now)."""
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        return _MISSING
