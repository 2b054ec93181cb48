"""``postmortem lab``: reproduce the outage for real and capture it for the analysis."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.lab import VARIANTS, LabConfig, per_second, run_lab


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="reproduce the outage in a private network namespace (root, memcached, Go)",
        description=(
            "Run memcached and a Go data plane (one goroutine per URI, capped idle pool) in a"
            " private network namespace with a narrow ephemeral port range and tcp_tw_reuse=0;"
            " drive user and batch callers through it; capture request log, error log, metrics,"
            " events and an incident.toml manifest into --out for `postmortem ingest`."
        ),
    )
    p.add_argument("--variant", choices=VARIANTS, default="naive",
                   help="naive (exhaustion), fixed-source (bind to 127.32.0.1), random-source"
                   " (the workaround) or bounded (the fix: 50 concurrent lookups)")
    p.add_argument("--seconds", type=int, default=60,
                   help="length of the run (default 60; ~140 shows TIME_WAIT draining)")
    p.add_argument("--scale", type=float, default=0.5,
                   help="scales the port range (3,000) and batch size (2,000) together"
                   " (default 0.5: 1,500 ports, batches of 1,000; 1 saturates 2 cores)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the callers")
    p.add_argument("--out", type=Path, required=True, help="capture directory")
    p.add_argument("--quiet", action="store_true", help="do not print the per-second table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = LabConfig(args.variant, args.out, seconds=args.seconds, scale=args.scale,
                       seed=args.seed)
    config.check()
    lo, hi = config.port_range
    print(f"lab: variant {config.variant}, {config.seconds} s, ports {lo}-{hi},"
          f" batches of {config.batch_size} URIs", file=sys.stderr)
    result = run_lab(config)
    if not args.quiet:
        table = per_second(result.out)
        print(table.write_csv(separator="\t", datetime_format="%H:%M:%S"), end="")
    print(f"lab: capture in {result.out} ({len(result.files)} files);"
          f" next: postmortem ingest {result.out}", file=sys.stderr)
    return 0
