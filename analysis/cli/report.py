"""``postmortem report``: run the notebooks and write the report: a self-contained HTML page,
its PDF and slides (``--format``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.cli import echo
from analysis.cli.timeflags import add_time_flags, time_args
from analysis.errors import UserError
from analysis.store import DEFAULT_DB


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="run the notebooks on a store and write OUT/report.html (one self-contained page)",
    )
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default {DEFAULT_DB})")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="the incident's data directory (passed to the notebooks)")
    p.add_argument("--out", type=Path, default=Path("build"),
                   help="output directory (build); written at the end, from a temporary folder"
                        " beside it, so a failed report leaves the previous one")
    p.add_argument("--format", action="append", metavar="html|pdf|slides",
                   help="what to write: html (OUT/report.html, the default), pdf"
                        " (OUT/report.pdf, printed by headless Chromium) and slides"
                        " (OUT/slides.html, one claim per slide); repeat or separate with"
                        " commas")
    p.add_argument("--no-notebooks", action="store_true",
                   help="write only report.html, without running the notebooks")
    p.add_argument("--rerun", action="store_true",
                   help="execute every notebook, even one whose file and inputs (store, data,"
                        " analysis code, installed packages) are those of a kept earlier run")
    add_time_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.access import check_store_file, disk_full, store_errors
    from analysis.report.formats import parse_formats
    from analysis.report.page import build_report

    formats = parse_formats(args.format)
    check_store_file(args.db)
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"{args.data_dir}: no such data directory")
    times = time_args(args)
    with store_errors(args.db, "reading"):  # DuckDB's errors: the store's
        try:
            run_ = build_report(args.db, args.out, data_dir=args.data_dir,
                                notebooks=not args.no_notebooks, reuse_notebooks=not args.rerun,
                                formats=formats, **times)
        except OSError as exc:  # the system's: writing the pages (the file not always named)
            raise disk_full(exc, args.out) or exc from None
    wrote = ", ".join(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in run_.outputs)
    echo(f"wrote {wrote}, verdict {run_.verdict}, and {len(run_.pages)} notebook page(s)"
         f" in {run_.seconds:.0f} s")
    for p in run_.pages:
        echo(f"  {p}")
    echo("  time: " + ", ".join(f"{k} {v:.0f} s" for k, v in run_.phases.items()))
    return 0
