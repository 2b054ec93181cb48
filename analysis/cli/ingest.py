"""``postmortem ingest DIR... [--db FILE] [--replace]``: load incident exports into the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.errors import UserError
from analysis.ingest import ingest_paths
from analysis.store import DEFAULT_DB, connect


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="load request logs, error logs, metrics and events into the DuckDB store",
        description="Load every file under the given directories (or the given files) into"
        " the store, telling each file's format from a manifest or its first lines (a name"
        " breaks ties). Prints read / loaded / rejected per file and in total; files of"
        " unknown format are listed as skipped. Exits 2 when nothing at all was loaded.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="data directories (walked, sub-folders too) or single files")
    p.add_argument("--db", type=Path, default=DEFAULT_DB,
                   help=f"the DuckDB store (default {DEFAULT_DB})")
    p.add_argument("--replace", action="store_true",
                   help="reload files already loaded (their rows are deleted first)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    con = connect(args.db)
    try:
        report = ingest_paths(con, args.paths, replace=args.replace,
                              progress=sys.stderr.isatty())
    finally:
        con.close()
    print(report.summary())
    for warning in report.warnings():
        print(f"postmortem: warning: {warning}", file=sys.stderr)
    if (why := report.nothing_loaded()) is not None:
        raise UserError(why)
    return 0
