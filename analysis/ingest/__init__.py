"""Ingest: read incident exports of every format in docs/formats.md into the store.

Public API:

* ``ingest_paths(con, paths, *, replace=False, progress=False) -> IngestReport``
* ``parse_net_error(text) -> NetError``, ``cache_from_msg(msg)`` (Go error texts)
* ``parse_time`` / ``time_sql`` (every time format, in one place)

Each file is detected (manifest glob, then first lines, a name breaking ties),
loaded in its own transaction, and accounted: lines read = loaded + rejected, always;
every rejected line lands in ``rejects`` with its reason. A file whose content
hash is already in ``ingest_files`` is skipped (``replace`` reloads it, after
deleting its rows from every table); a file at a known path whose content
changed replaces the earlier version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from analysis.errors import UserError
from analysis.ingest.bounds import SCREEN_LENGTH, SCREEN_OPENERS
from analysis.ingest.detect import EXPECTED, Detected, UnknownFormat, detect
from analysis.ingest.lines import MAX_LINE, LineStats, line_stats, sha256_file
from analysis.ingest.load import FastPathMiss, FileProgress, Job, load_file
from analysis.ingest.manifest import (
    MANIFEST_NAMES,
    PULL_MANIFEST_NAME,
    Manifest,
    find_manifest,
    load_manifest,
)
from analysis.ingest.neterr import NetError, cache_from_msg, parse_net_error
from analysis.ingest.timeparse import parse_duration_ms, parse_time, time_sql
from analysis.parts import (
    PARTS_TABLE,
    STORED_SCHEMA,
    Parts,
    adopt_layout,
    database_path,
    parts_root,
    rebuild_views,
)
from analysis.progress import Progress, progress_line
from analysis.store import ensure_schema

__all__ = [
    "FileReport",
    "IngestReport",
    "NetError",
    "cache_from_msg",
    "ingest_paths",
    "parse_duration_ms",
    "parse_net_error",
    "parse_time",
    "time_sql",
]

#: DuckDB's memory cap while ingesting into a file-backed store (peak RSS target: < 4 GB)
INGEST_MEMORY_LIMIT_BYTES = 2560 << 20
DATA_TABLES = ("requests", "log_events", "metrics", "events", "rejects")
#: names never taken for data when walking a directory
IGNORED_NAMES = {"truth.json", ".ds_store", PULL_MANIFEST_NAME, *MANIFEST_NAMES}
IGNORED_SUFFIXES = (".duckdb", ".wal", ".tmp", ".lock", ".pyc")
#: documentation found beside the data: listed as skipped when walking a directory
DOC_SUFFIXES = (".md", ".markdown", ".rst")
#: a store's Parquet parts folder (``<db>.parts``): never taken for data
PARTS_SUFFIX = ".parts"


@dataclass
class FileReport:
    """How one file was read: its format, how that was told, and its accounting."""

    path: str
    format: str
    detected_by: str
    guess: str
    lines_read: int = 0
    loaded: int = 0
    rejected: int = 0
    skipped_duplicate: bool = False
    replaced: bool = False
    bytes: int = 0
    file_id: int | None = None
    note: str = ""
    #: why the file was not loaded at all: its format is unknown (skipped), or its
    #: load failed (its rows rolled back; the other files load)
    skipped: str = ""
    failed: str = ""

    def line(self) -> str:
        """One report line: path, format and the read / loaded / rejected counts."""
        if self.skipped_duplicate:
            return f"{self.path}: already loaded ({self.note}); nothing done"
        if self.skipped:
            return f"{self.path}: skipped: {self.skipped}"
        if self.failed:
            return f"{self.path}: failed, nothing loaded from it: {self.failed}"
        extra = f" [{self.note}]" if self.note else ""
        return (f"{self.path}: {self.format} ({self.detected_by}: {self.guess}):"
                f" read {self.lines_read:,}, loaded {self.loaded:,},"
                f" rejected {self.rejected:,}{extra}")


@dataclass
class IngestReport:
    """Every file's report, and the totals."""

    files: list[FileReport] = field(default_factory=list)
    #: the paths the run was given
    roots: list[str] = field(default_factory=list)

    @property
    def lines_read(self) -> int:
        """Lines read over all files."""
        return sum(f.lines_read for f in self.files)

    @property
    def loaded(self) -> int:
        """Rows loaded over all files."""
        return sum(f.loaded for f in self.files)

    @property
    def rejected(self) -> int:
        """Lines rejected over all files."""
        return sum(f.rejected for f in self.files)

    def summary(self) -> str:
        """The per-file lines and a total line."""
        dup = sum(f.skipped_duplicate for f in self.files)
        unknown = sum(bool(f.skipped) for f in self.files)
        failed = sum(bool(f.failed) for f in self.files)
        parts = [f"{dup} already loaded"] + [f"{unknown} skipped"] * bool(unknown) + [
            f"{failed} failed"] * bool(failed)
        total = (f"total: {len(self.files)} files ({', '.join(parts)}):"
                 f" read {self.lines_read:,}, loaded {self.loaded:,}, rejected {self.rejected:,}")
        return "\n".join([f.line() for f in self.files] + [total])

    def warnings(self) -> list[str]:
        """One line per file that read lines but loaded none, and per failed file."""
        out = [f"{f.path}: loaded none of its {f.lines_read:,} lines (every one rejected;"
               " see the rejects table for why)" for f in self.files
               if f.lines_read and not f.loaded and not f.skipped_duplicate]
        return out + [f.line() for f in self.files if f.failed]

    def nothing_loaded(self) -> str | None:
        """Why the run loaded nothing at all (one line), or None if it loaded rows or
        found every file already loaded."""
        if self.loaded or any(f.skipped_duplicate for f in self.files):
            return None
        if not self.files:
            return f"no data files under {', '.join(self.roots)}; {EXPECTED}"
        bad = [f for f in self.files if f.skipped or f.failed or f.rejected]
        first = (bad[0].line() if bad else f"{self.files[0].path}: empty") + (
            f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        n = len(self.files)
        return f"nothing loaded from {n} file{'s' * (n != 1)}: {first}; {EXPECTED}"


def _ignored(path: Path, root: Path) -> bool:
    rel = path.relative_to(root).parts
    name = path.name.lower()
    return (any(p.startswith(".") for p in rel) or name in IGNORED_NAMES
            or any(p.endswith(PARTS_SUFFIX) for p in rel[:-1])
            or name.endswith(IGNORED_SUFFIXES))


def _documentation(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith("readme") or name.endswith(DOC_SUFFIXES)


def collect_files(paths: list[Path],
                  docs: list[Path] | None = None) -> list[tuple[Path, Manifest | None]]:
    """Every data file under ``paths`` (directories walked, sorted), with its manifest;
    the documentation found beside them (README*, Markdown) is appended to ``docs``.

    A missing or unreadable path is a ``UserError`` naming it.
    """
    out: list[tuple[Path, Manifest | None]] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise UserError(f"{p}: no such file or directory; expected a data file or directory")
        if p.is_dir():
            mpath = find_manifest(p)
            manifest = load_manifest(mpath) if mpath else None
            files = sorted(f for f in p.rglob("*") if f.is_file() and not _ignored(f, p))
            if docs is not None:
                docs += [f for f in files if _documentation(f)]
            out += [(f, manifest) for f in files if not _documentation(f)]
        elif not p.is_file():
            raise UserError(f"{p}: not a regular file; expected a data file or directory")
        else:
            mpath = find_manifest(p.parent)
            out.append((p, load_manifest(mpath) if mpath else None))
    for f, _ in out:
        try:
            with open(f, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise UserError(f"{f}: cannot read ({exc.strerror}); expected a readable file") from exc
    return out


def _store_manifest(con: duckdb.DuckDBPyConnection, manifest: Manifest) -> None:
    facts = dict(manifest.facts)
    if manifest.timezone:
        try:
            con.execute("SELECT timezone(?, TIMESTAMP '2026-01-01')", [manifest.timezone])
        except duckdb.Error as exc:
            raise UserError(f"{manifest.path}: unknown timezone {manifest.timezone!r};"
                            " expected an IANA name like Europe/Berlin") from exc
    for key in ("window_start", "window_end"):
        if key in facts:
            t = parse_time(facts[key], manifest.timezone, con)
            if t is None:
                raise UserError(f"{manifest.path}: window {key[7:]} {facts[key]!r} is not a time;"
                                " expected RFC 3339 like 2026-04-06T12:00:00Z")
            facts[key] = t.isoformat(sep=" ")
    for key, value in facts.items():
        con.execute("INSERT OR REPLACE INTO incident VALUES (?, ?)", [key, value])


def _earlier(con: duckdb.DuckDBPyConnection, path: str, sha: str | None) -> list[tuple]:
    """Earlier loads of the same content or the same path: (file_id, path, sha256)."""
    return con.execute(
        "SELECT file_id, path, sha256 FROM ingest_files WHERE path = ? OR sha256 = ?",
        [path, sha or ""]).fetchall()


def _delete_files(con: duckdb.DuckDBPyConnection, ids: list[int], parts: Parts | None) -> None:
    """Forget the files ``ids``: their rows, rejects and parts (whose Parquet files the
    next ingest's ``collect_garbage`` deletes)."""
    if not ids:
        return
    id_list = ", ".join(str(i) for i in ids)
    for t in DATA_TABLES:
        table = f"{STORED_SCHEMA}.{t}" if parts is not None and t != "rejects" else t
        con.execute(f"DELETE FROM {table} WHERE file_id IN ({id_list})")
    if parts is not None:
        con.execute(f"DELETE FROM {PARTS_TABLE} WHERE file_id IN ({id_list})")
    con.execute(f"DELETE FROM ingest_files WHERE file_id IN ({id_list})")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll the file's transaction back after an error, if it is still open: a failed
    COMMIT (a full disk) has ended it already, and that error is the one to report."""
    with contextlib.suppress(duckdb.TransactionException):
        con.execute("ROLLBACK")


def _ingest_one(con: duckdb.DuckDBPyConnection, path: Path, detected: Detected | None,
                manifest: Manifest | None, replace: bool, bar: Progress | None,
                pool: ThreadPoolExecutor, parts: Parts | None) -> FileReport:
    shown = str(path)
    size = path.stat().st_size
    if detected is None:
        detected = Detected("empty", "empty", "content", "empty file")
    rep = FileReport(shown, detected.format, detected.detected_by, detected.guess, bytes=size)
    earlier = con.execute("SELECT file_id, sha256 FROM ingest_files WHERE path = ? AND bytes = ?",
                          [shown, size]).fetchall()
    # likely a re-run: hash first so that an unchanged file costs one read, not a load
    sha_future = None
    sha = sha256_file(path) if earlier else None
    if sha is None:
        sha_future = pool.submit(sha256_file, path)  # hash while loading
    if sha is not None and not replace and any(e[1] == sha for e in earlier):
        rep.skipped_duplicate, rep.note = True, f"same content hash as file {earlier[0][0]}"
        return rep
    renames = _renames(manifest, path)
    zone = manifest.timezone if manifest else None
    shower = FileProgress(con, bar, path, size) if bar else contextlib.nullcontext()
    with shower as show:
        # JSON lines and CSV first try DuckDB's own reader, exact if it reads one row a line
        fast = detected.fmt == "jsonl" or detected.fmt.startswith("csv")
        # counted while DuckDB reads; JSON lines also screened for the bounds
        screen = (SCREEN_OPENERS, SCREEN_LENGTH) if detected.fmt == "jsonl" else ()
        stats = pool.submit(line_stats, path, *screen) if fast else None

        def lines() -> LineStats | None:
            s = stats.result()
            return s if s is not None and s.longest <= MAX_LINE else None

        expected = lines if fast else None
        while True:
            con.execute("BEGIN TRANSACTION")
            try:
                if sha is not None:
                    before = _earlier(con, shown, sha)
                    _delete_files(con, [b[0] for b in before], parts)
                    rep.replaced = bool(before)
                file_id = con.execute(
                    "SELECT coalesce(max(file_id), 0) + 1 FROM ingest_files").fetchall()[0][0]
                job = Job(path, detected, file_id, zone, renames, show, parts=parts)
                counts = load_file(con, job, expected) if detected.kind != "empty" else None
            except FastPathMiss as miss:
                con.execute("ROLLBACK")
                why = re.sub(r'\s*in file "[^"]*",?', "", str(miss)).strip()
                rep.note = f"read line by line ({why[:120]})"
                expected = None
                continue
            except BaseException:
                _rollback(con)
                raise
            break
        try:
            if sha is None:
                sha = sha_future.result()
                before = [b for b in _earlier(con, shown, sha) if b[0] != file_id]
                if any(b[2] == sha for b in before) and not replace:
                    con.execute("ROLLBACK")
                    dup = next(b for b in before if b[2] == sha)
                    rep.skipped_duplicate = True
                    rep.note = f"same content hash as {dup[1]} (file {dup[0]})"
                    return rep
                _delete_files(con, [b[0] for b in before], parts)
                rep.replaced = rep.replaced or bool(before)
            if counts is not None:
                rep.lines_read, rep.loaded = counts.read, counts.loaded
                rep.rejected = counts.rejected
            con.execute(
                "INSERT INTO ingest_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [file_id, shown, sha, detected.format, detected.detected_by, size,
                 rep.lines_read, rep.loaded, rep.rejected,
                 dt.datetime.now(dt.UTC).replace(tzinfo=None)])
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
    rep.file_id = file_id
    rep.note = "; ".join(filter(None, [*job.notes, rep.note]))
    if rep.replaced:
        rep.note = "; ".join(filter(None, [rep.note, "replaced the earlier load"]))
    return rep


def _renames(manifest: Manifest | None, path: Path) -> dict[str, str]:
    if manifest is None:
        return {}
    rule = manifest.rule_for(path)
    return {**manifest.fields, **(rule.fields if rule else {})}


def ingest_paths(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path] | list[str],
    *,
    replace: bool = False,
    progress: bool = False,
    parts: Parts | None = None,
) -> IngestReport:
    """Load every file under ``paths`` into the store behind ``con``.

    Directories are walked (sub-folders too; hidden files, manifests,
    ``truth.json``, ``pull-manifest.json``, ``*.md`` and DuckDB files skipped); an
    ``incident.toml`` /
    ``.yaml`` at a directory's root (or its nearest ancestor's) is applied to
    its files and stored in the ``incident`` table. Every file's format is told
    before anything loads; a file whose format is unknown is skipped, and a file
    whose load fails is rolled back, each with its reason in its report line, and
    the other files load (``IngestReport.nothing_loaded`` says when nothing did).
    ``progress``: one live line on stderr (a terminal's only, ``analysis.progress``)
    counting the files' bytes on disk, with an ETA.

    A store on disk that is empty (or was made so) keeps the rows of JSON lines and
    CSV as Parquet beside it, and reads Parquet exports in place (``analysis.parts``);
    ``parts`` says where this run writes them, by default a new folder in
    ``<db>.parts`` (``ingest --replace``, writing a copy, names the store's own).
    """
    ensure_schema(con)
    con.execute("SET TimeZone = 'UTC'")
    run = None
    if adopt_layout(con):
        run = parts if parts is not None else Parts(parts_root(database_path(con)))
    docs: list[Path] = []
    files = collect_files([Path(p) for p in paths], docs)
    detected = [(f, _tell(f, m), m) for f, m in files]
    report = IngestReport(roots=[str(p) for p in paths])
    for manifest in {id(m): m for _, m in files if m is not None}.values():
        _store_manifest(con, manifest)
    sizes = {f: f.stat().st_size for f, d, _ in detected if not isinstance(d, FileReport)}
    read = 0
    with _memory_cap(con), _quiet(con), ThreadPoolExecutor(max_workers=2) as pool, (
            progress_line("ingest", total=sum(sizes.values()), unit="B") if progress
            else contextlib.nullcontext()) as bar:
        for path, det, manifest in detected:
            if isinstance(det, FileReport):
                report.files.append(det)
                continue
            if bar is not None:  # files before this one (a skipped duplicate too) are read
                bar.reach(read)
                read += sizes[path]
            try:
                rep = _ingest_one(con, path, det, manifest, replace, bar, pool, run)
            except Exception as exc:  # noqa: BLE001 - one file's failure is its own line
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")  # if its transaction is still open
                rep = _failed(path, det, exc)
            report.files.append(rep)
        if bar is not None:
            bar.reach(read)
    report.files += [FileReport(str(d), "unknown", "name", "documentation",
                                skipped="documentation (README or Markdown), not data")
                     for d in docs]
    if run is not None:
        rebuild_views(con, run.root)
    return report


def _tell(path: Path, manifest: Manifest | None) -> Detected | FileReport | None:
    """The file's format, or its report line when it is skipped (unknown format) or
    cannot even be told (an unexpected failure). A manifest that names the kind but
    not a format it can have stays a ``UserError`` of the run (the user's to fix)."""
    try:
        return detect(path, manifest)
    except UnknownFormat as exc:
        return FileReport(str(path), "unknown", "content", exc.why,
                          skipped=f"unknown format ({exc.why})")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - one file's failure is its own line
        return _failed(path, None, exc)


def _failed(path: Path, det: Detected | None, exc: Exception) -> FileReport:
    """The report line of a file whose load failed: the reason in one line."""
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    text = text.removeprefix(f"{path}: ")
    why = text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}".rstrip(": ")
    return FileReport(str(path), det.format if det else "unknown",
                      det.detected_by if det else "content", det.guess if det else "",
                      failed=why[:300])


@contextlib.contextmanager
def _quiet(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB prints its own progress bar on queries over 2 s, terminal or not; ours
    (stderr, terminals only) reads the same progress, so DuckDB's printing is off."""
    was = con.execute("SELECT current_setting('enable_progress_bar_print')").fetchall()[0][0]
    con.execute("SET enable_progress_bar_print = false")
    try:
        yield
    finally:
        con.execute(f"SET enable_progress_bar_print = {'true' if was else 'false'}")


@contextlib.contextmanager
def _memory_cap(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Cap DuckDB's memory while loading into a file-backed store, so that tens of
    millions of rows stream to disk instead of filling RAM (the default cap is 80 %
    of RAM); the caller's setting is restored afterwards. In-memory stores cannot
    spill their tables, so they keep theirs."""
    on_disk = con.execute(
        "SELECT count(*) FROM duckdb_databases() WHERE database_name = current_database()"
        " AND path IS NOT NULL AND path <> ''").fetchall()[0][0]
    old, old_bytes = con.execute(
        "SELECT current_setting('memory_limit'),"
        " try_cast(regexp_extract(current_setting('memory_limit'), '^[0-9.]+') AS DOUBLE)"
        " * CASE regexp_extract(current_setting('memory_limit'), '[KMGT]i?B') WHEN 'KiB'"
        " THEN 1024 WHEN 'MiB' THEN 1048576 WHEN 'GiB' THEN 1073741824 WHEN 'TiB'"
        " THEN 1099511627776 ELSE 1 END").fetchall()[0]
    capped = bool(on_disk) and (old_bytes or 0) > INGEST_MEMORY_LIMIT_BYTES
    if capped:
        con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT_BYTES // 1048576}MiB'")
    try:
        yield
    finally:
        if capped:
            con.execute(f"SET memory_limit = '{old}'")
