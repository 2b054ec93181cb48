"""``postmortem convert PATH... --out DIR``: raw exports to partitioned Parquet.

The first step of the distributed path: the formats users have, read by ingest's own
parsers and accounted as ingest accounts them (``analysis.ingest.convert``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.cli import echo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="write raw exports (JSON lines, CSV, logfmt, Go text, ...) as partitioned Parquet",
        description="Read every file under the given directories (or the given files) as"
        " `ingest` does -- same formats, checks, line numbers and rejects -- and write the"
        " rows as Parquet under DIR: one folder per table (requests, log_events, metrics,"
        " events) partitioned by day and hour, plus rejects.parquet and"
        " ingest_files.parquet (read = loaded + rejected per file). DIR must be new or"
        " empty; it appears only when complete. Exits 2 when nothing at all was loaded.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="exports: data directories (walked, sub-folders too) or single files")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the output folder (new or empty)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.ingest.convert import convert

    result = convert(args.paths, args.out, progress=sys.stderr.isatty())
    echo(result.summary())
    for warning in result.ingest.warnings():
        echo(f"postmortem: warning: {warning}", file=sys.stderr)
    return 0
