"""``postmortem chain``: the root-cause chain, hop by hop, or as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb

from analysis.cli.timeflags import add_time_flags, time_args
from analysis.errors import UserError
from analysis.store import DEFAULT_DB, connect


def open_store(path: Path) -> duckdb.DuckDBPyConnection:
    """Open an existing store read-write (rollups may be built); a missing one is a UserError."""
    if not Path(path).is_file():
        raise UserError(
            f"{path}: no such store; expected a DuckDB file made by `postmortem ingest DIR --db"
            f" {path}`"
        )
    try:
        return connect(path)
    except duckdb.Error as exc:
        raise UserError(f"{path}: cannot open as a DuckDB store ({exc})") from exc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chain", help="reconstruct the root-cause chain from the store")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print the chain as one JSON object")
    add_time_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.chain import find_chain, format_chain

    times = time_args(args)
    con = open_store(args.db)
    try:
        result = find_chain(con, **times)
    finally:
        con.close()
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_chain(result))
    return 0
