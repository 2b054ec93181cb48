"""``--grid``, ``--start`` and ``--end``: the time flags ``chain``, ``whatif``, ``report``
(and, for the window only, ``ingest``) share."""

from __future__ import annotations

import argparse
from datetime import datetime

from analysis.ingest.timeparse import parse_flag_time


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (``--grid``, ``whatif``'s counts)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def add_time_flags(p: argparse.ArgumentParser, *, grid: bool = True) -> None:
    """Add ``--start``/``--end`` (and ``--grid`` unless ``grid`` is False) to ``p``."""
    if grid:
        p.add_argument("--grid", type=positive, metavar="SECONDS", default=None,
                       help="bucket width of the time grid (default: chosen from the window's"
                            " length, 1 s for hours, coarser for weeks and months)")
    p.add_argument("--start", metavar="TIME", default=None,
                   help="start of the incident window, e.g. 2026-04-06T12:00:00Z (default:"
                        " the manifest's [window], else inferred from where the data are dense)")
    p.add_argument("--end", metavar="TIME", default=None,
                   help="end of the incident window (same defaults as --start)")


def time_args(args: argparse.Namespace) -> dict[str, int | datetime | None]:
    """``grid_s``, ``start`` and ``end`` for ``ensure_rollups`` from the parsed flags (a time
    that does not parse is a UserError naming its flag)."""
    return {
        "grid_s": getattr(args, "grid", None),
        "start": None if args.start is None else parse_flag_time(args.start, "--start"),
        "end": None if args.end is None else parse_flag_time(args.end, "--end"),
    }
