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
from analysis.signal_id import printable

SUBCOMMANDS = ("pull", "ingest", "convert", "rollup", "simulate", "chain", "whatif", "evaluate",
               "report",
               "lab", "schema")


def echo(text: str = "", **kwargs) -> None:
    """Print human-readable output. Names, paths and titles in it come from the data, so
    each line is shown with its control characters escaped (``signal_id.printable``): a
    caller called ``\x1b[2J`` cannot clear the terminal, nor a newline forge a line."""
    print("\n".join(printable(line) for line in text.split("\n")), **kwargs)


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
        print(f"postmortem: {printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, wherever it is met, is one line too
        from analysis.access import disk_full

        if (full := disk_full(exc)) is None:
            raise
        print(f"postmortem: {full}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("postmortem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
