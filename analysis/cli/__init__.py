"""The ``postmortem`` command. Each sub-command lives in its own module here.

A sub-command module defines ``register(subparsers)``, which adds its parser
and sets ``func`` to a callable taking the parsed namespace and returning the
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from analysis.errors import UserError

SUBCOMMANDS = ("pull", "ingest", "simulate", "chain", "whatif", "evaluate", "report", "lab",
               "schema")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command that is installed."""
    parser = argparse.ArgumentParser(
        prog="postmortem", description="Incident post-mortem analysis suite."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"analysis.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"analysis.cli.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"postmortem: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("postmortem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
