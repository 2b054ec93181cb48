"""Replay a lab capture through the analysis: which capture, and a store built from it.

The committed sample (``data/samples/lab-naive``) is the default, so a replay
works in a clean clone without root; any directory written by ``postmortem
lab --out DIR`` works the same way.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import UserError
from analysis.lab.capture import MANIFEST
from analysis.paths import SAMPLES

SAMPLE = SAMPLES / "lab-naive"


@dataclass(frozen=True)
class Capture:
    """A lab capture directory and what its manifest says about the run."""

    path: Path
    facts: dict[str, object]
    note: str | None = None  # why the directory asked for was not used

    @property
    def port_range(self) -> tuple[int, int]:
        """The namespace's ephemeral port range (inclusive)."""
        lo, hi = str(self.facts["ephemeral_port_range"]).split("-")
        return int(lo), int(hi)

    @property
    def n_ports(self) -> int:
        """How many ephemeral ports the namespace had."""
        lo, hi = self.port_range
        return hi - lo + 1


def lab_facts(directory: Path) -> dict[str, object] | None:
    """The manifest of a lab capture in ``directory``, or None when it is not one."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        facts = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return facts if "lab_variant" in facts else None


def find_capture(data_dir: str | Path | None = None) -> Capture:
    """The capture to replay: ``data_dir`` when it is a lab capture, else the sample.

    A ``data_dir`` that is not a lab capture (the suite's notebook runner
    passes the incident's own directory) falls back to the committed sample,
    and ``note`` says so.
    """
    note = None
    if data_dir is not None:
        facts = lab_facts(Path(data_dir))
        if facts is not None:
            return Capture(Path(data_dir), facts)
        note = f"{data_dir} is not a lab capture (no lab_variant in {MANIFEST}); using the sample"
    facts = lab_facts(SAMPLE)
    if facts is None:
        raise UserError(f"{SAMPLE}: the committed lab sample is missing or has no manifest")
    return Capture(SAMPLE, facts, note)


def build_store(capture: Capture, db_path: str | Path | None = None) -> Path:
    """Ingest the capture into a fresh store at ``db_path`` (a temporary file if None).

    Runs ``postmortem ingest`` in a child process, exactly as a user would, so
    that nothing of the caller's process (a Jupyter kernel, say) changes how
    DuckDB behaves while loading.
    """
    from analysis.access import open_reader

    if db_path is None:
        db_path = Path(tempfile.mkdtemp(prefix="postmortem-lab-")) / "lab.duckdb"
    db_path = Path(db_path)
    db_path.unlink(missing_ok=True)
    res = subprocess.run(
        [sys.executable, "-c", "import sys; from analysis.cli import main; sys.exit(main())",
         "ingest", str(capture.path), "--db", str(db_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    if res.returncode != 0:
        raise UserError(f"{capture.path}: ingest failed: {res.stderr.strip()[-500:]}")
    con = open_reader(db_path)
    try:
        rejected = con.execute("SELECT count(*) FROM rejects").fetchall()[0][0]
    finally:
        con.close()
    if rejected:
        raise UserError(f"{capture.path}: {rejected} lines rejected on ingest; expected none")
    return db_path
