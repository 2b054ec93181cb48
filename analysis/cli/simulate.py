"""``postmortem simulate``: write a simulated incident's raw files and truth.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.cli import echo
from analysis.simulate import SCENARIOS, simulate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated incident's raw files (the formats ingest reads) and truth.json",
    )
    p.add_argument("--scenario", required=True, choices=SCENARIOS,
                   help="april-2026 (the reference outage), random (drawn from the seed),"
                        " quiet (rivals and noise, no incident); microservice families:"
                        " pool-saturation, retry-storm, slow-dependency,"
                        " resource-saturation, bad-deploy, services-quiet, services-mixed")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplies the ordinary callers' request rows, not the story")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = simulate(args.scenario, args.out, seed=args.seed, scale=args.scale)
    t = res.truth
    c = t["culprit"] or {}
    culprit = c.get("caller") or c.get("entity") or "none"
    echo(f"simulated {t['scenario']} seed={t['seed']} into {res.out}: {res.files} files,"
          f" {res.request_rows:,} requests, {res.log_lines:,} log lines,"
          f" {res.metric_samples:,} metric samples, {t['corrupt_lines_total']} corrupt lines")
    echo(f"incident={str(t['incident']).lower()} culprit={culprit}"
          f" world {res.seconds_world:.1f}s files {res.seconds_files:.1f}s"
          f" ({res.rows_per_s:,.0f} request rows/s)")
    return 0
