"""``postmortem schema``: print the data dictionary of the store."""

from __future__ import annotations

import argparse

from analysis.store import data_dictionary_markdown


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the data dictionary of the canonical tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(data_dictionary_markdown())
    return 0
