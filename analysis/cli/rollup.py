"""``postmortem rollup``: the rollups of raw Parquet records, on DuckDB or Spark, as Parquet.

For logs too large to copy into one store: roll them up where they are (``--engine spark
--master yarn`` reading ``s3a://`` or ``hdfs://``), then ``postmortem ingest --rollups OUT``
loads the small tables into a store the chain, the notebooks and the report read.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from analysis.cli import echo
from analysis.cli.timeflags import add_time_flags, positive, time_args


def _jvm_size(text: str) -> str:
    """A JVM memory size as Spark takes it: a whole number and a unit, 512m or 4g."""
    if not re.fullmatch(r"[1-9][0-9]*[kmgt]", text.strip().lower()):
        raise argparse.ArgumentTypeError(f"expected a size such as 512m or 4g, got {text!r}")
    return text.strip().lower()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollup",
        help="roll up request and error records from Parquet (DuckDB or Spark) into Parquet"
             " rollup tables for `ingest --rollups`",
        description="Read request and error records (and, when given, metric samples and"
        " events) from Parquet paths or globs, with the store's column names, run the rollups"
        " on DuckDB or Apache Spark, and write every rollup table as OUT/<table>.parquet."
        " `postmortem ingest --rollups OUT --db FILE` loads them into a store.",
    )
    p.add_argument("--requests", nargs="+", default=[], metavar="PATH",
                   help="request records: Parquet files, directories or globs (local, or any"
                        " URI the engine reads, e.g. s3a://bucket/requests/*.parquet)")
    p.add_argument("--errors", nargs="+", default=[], metavar="PATH",
                   help="error (log) records, as the store's log_events")
    p.add_argument("--metrics", nargs="+", default=[], metavar="PATH",
                   help="metric samples in long form (time, metric, labels, value)")
    p.add_argument("--events", nargs="+", default=[], metavar="PATH",
                   help="the humans' timeline (time, end_time, kind, title, source, detail)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="directory to write the rollup tables into (replaced when an earlier"
                        " rollup wrote it)")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="where the rollups run (default duckdb; spark needs the [spark] extra"
                        " and Java 17+)")
    p.add_argument("--master", default="local[*]",
                   help="Spark master: local[N] (default local[*]), spark://HOST:PORT, yarn, or"
                        " sc://HOST:PORT for Spark Connect")
    p.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                   help="an incident.toml whose [window] sets the window (below --start/--end)")
    p.add_argument("--timeout", type=positive, default=3600, metavar="SECONDS",
                   help="cancel a Spark run still going after this long (default 3600)")
    p.add_argument("--driver-memory", type=_jvm_size, default="2g", metavar="SIZE",
                   help="the Spark driver's JVM heap, as Spark writes it (default 2g); on a"
                        " local master every task runs in it")
    add_time_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.rollup_files import rollup_to_files

    times = time_args(args)
    sources = {"requests": args.requests, "log_events": args.errors, "metrics": args.metrics,
               "events": args.events}
    result = rollup_to_files(sources, args.out, engine=args.engine, master=args.master,
                             grid_s=times["grid_s"], start=times["start"], end=times["end"],
                             manifest=args.manifest, timeout_s=float(args.timeout),
                             driver_memory=args.driver_memory)
    echo(result.summary())
    return 0
