"""``postmortem chain``: the root-cause chain, hop by hop, or as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.cli import echo
from analysis.cli.timeflags import add_time_flags, time_args
from analysis.store import DEFAULT_DB


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chain", help="reconstruct the root-cause chain from the store")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print the chain as one JSON object")
    add_time_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.access import open_reader, store_errors
    from analysis.chain.find import find_chain
    from analysis.chain.text import format_chain

    times = time_args(args)
    con = open_reader(args.db)  # read-only: rollups the store lacks are built in memory
    try:
        with store_errors(args.db, "reading"):
            result = find_chain(con, **times)
    finally:
        con.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        echo(format_chain(result))
    return 0
