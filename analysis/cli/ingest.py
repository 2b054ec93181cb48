"""``postmortem ingest DIR... [--db FILE] [--replace] [--wait]``: load exports into the store.

The store's only writer (``analysis.write``): it also stores the rollups the readers use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.cli import echo
from analysis.cli.timeflags import add_time_flags, time_args
from analysis.store import DEFAULT_DB


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="load request logs, error logs, metrics and events into the DuckDB store",
        description="Load every file under the given directories (or the given files) into"
        " the store, telling each file's format from a manifest or its first lines (a name"
        " breaks ties). Prints read / loaded / rejected per file and in total; files of"
        " unknown format are listed as skipped. Exits 2 when nothing at all was loaded.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="data directories (walked, sub-folders too) or single files")
    p.add_argument("--rollups", type=Path, default=None, metavar="DIR",
                   help="instead of raw files, load the rollup tables `postmortem rollup` wrote"
                        " to DIR into a store of their own (no raw rows)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB,
                   help=f"the DuckDB store (default {DEFAULT_DB})")
    p.add_argument("--replace", action="store_true",
                   help="reload files already loaded (their rows are deleted first); the new"
                        " store is written beside the old one and renamed into place at the end,"
                        " so readers (notebooks, report) keep working meanwhile")
    p.add_argument("--wait", action="store_true",
                   help="when another ingest is writing the store (or, without --replace,"
                        " readers hold it), wait for it instead of failing with 'store busy'")
    add_time_flags(p, grid=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rollups is not None:
        return _run_rollups(args)
    if not args.paths:
        from analysis.errors import UserError

        raise UserError("ingest: give the exports to load (PATH...) or --rollups DIR")
    from analysis.write import write_store

    times = time_args(args)
    result = write_store(args.db, args.paths, replace=args.replace, wait=args.wait,
                         progress=sys.stderr.isatty(), start=times["start"], end=times["end"])
    echo(result.summary())
    for warning in result.ingest.warnings():
        echo(f"postmortem: warning: {warning}", file=sys.stderr)
    return 0


def _run_rollups(args: argparse.Namespace) -> int:
    """``ingest --rollups DIR``: the small tables of ``postmortem rollup`` into the store."""
    from analysis.errors import UserError
    from analysis.rollup_files import load_rollups

    if args.paths or args.replace or args.start or args.end:
        raise UserError("ingest --rollups DIR takes no PATH, --replace, --start or --end: the"
                        " rollups' window and grid were set by `postmortem rollup`")
    echo(load_rollups(args.db, args.rollups, wait=args.wait))
    return 0
