"""Ingest rate per file: ``python -m analysis.ingest.rate FILE...``.

Loads each file alone into a fresh on-disk store and prints its format, size,
rows, wall time, rows/s and CPU seconds (DuckDB's threads included). CPU time
says more than wall time on a shared machine. The whole-suite benchmark is
``make bench``; this is the ingest's own yardstick.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.ingest import ingest_paths
from analysis.store import connect


@dataclass(frozen=True)
class Rate:
    """One file's ingest measurement."""

    path: Path
    format: str
    bytes: int
    rows: int
    rejected: int
    wall_s: float
    cpu_s: float

    def line(self) -> str:
        """A table row."""
        return (f"{self.path.name:32s} {self.format:20s} {self.bytes / 1e6:9.1f} MB"
                f" {self.rows:>12,} rows {self.wall_s:8.2f} s {self.rows / self.wall_s:>11,.0f}"
                f" rows/s  cpu {self.cpu_s:7.2f} s  rejected {self.rejected:,}")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(path: Path) -> Rate:
    """Ingest ``path`` alone into a fresh store in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(Path(tmp) / "rate.duckdb")
        c0, t0 = _cpu(), time.perf_counter()
        report = ingest_paths(con, [path])
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        con.close()
    f = report.files[0]
    return Rate(path, f.format, f.bytes, f.loaded, f.rejected, wall, cpu)


def main(argv: list[str]) -> int:
    """Measure every file named on the command line."""
    for name in argv:
        print(measure(Path(name)).line(), flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
