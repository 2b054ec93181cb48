"""``postmortem whatif``: replay the request log under changed connection settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.cli import echo
from analysis.cli.timeflags import add_time_flags, positive, time_args
from analysis.errors import UserError
from analysis.store import DEFAULT_DB


def port_range(text: str) -> tuple[int, int]:
    """Parse ``LO-HI`` (inclusive) into a pair; anything else is a UserError."""
    lo, sep, hi = text.partition("-")
    try:
        pair = (int(lo), int(hi))
    except ValueError:
        pair = None
    if not sep or pair is None or not 0 < pair[0] <= pair[1] <= 65535:
        raise UserError(f"--port-range {text!r}: expected LO-HI with 0 < LO <= HI <= 65535")
    return pair


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("whatif", help="replay the request log under changed settings")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default {DEFAULT_DB})")
    p.add_argument("--concurrency-limit", type=positive, metavar="N",
                   help="cap one request's concurrent lookups (the fix: 50)")
    p.add_argument("--max-batch", type=positive, metavar="N",
                   help="reject requests with more URIs than N")
    p.add_argument("--source-addresses", choices=("fixed", "random", "default"),
                   help="source address policy (random = the 127.a.b.c workaround)")
    p.add_argument("--port-range", metavar="LO-HI", help="ephemeral port range")
    p.add_argument("--idle-pool", type=int, metavar="N", help="idle connections kept")
    p.add_argument("--json", action="store_true", help="print settings, summaries and series")
    add_time_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.access import open_reader, store_errors
    from analysis.whatif import whatif

    ports = port_range(args.port_range) if args.port_range else None
    if args.idle_pool is not None and args.idle_pool < 0:
        raise UserError(f"--idle-pool {args.idle_pool}: expected 0 or more")
    times = time_args(args)
    con = open_reader(args.db)  # read-only: rollups the store lacks are built in memory
    try:
        with store_errors(args.db, "reading"):
            res = whatif(con, concurrency_limit=args.concurrency_limit,
                         max_batch=args.max_batch, source_addresses=args.source_addresses,
                         port_range=ports, idle_pool=args.idle_pool, **times)
    finally:
        con.close()
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    changed = {k: v for k, v in vars(res.changed).items() if getattr(res.baseline, k) != v}
    echo("What-if: " + (", ".join(f"{k}={v}" for k, v in changed.items()) or "no change"))
    if res.rollup is not None:
        echo(f"Data: {res.rollup.describe()}")
    if res.window is not None and res.window.start is not None:
        echo(f"Outside the window: {res.window.outside_line()}")
    echo(f"{'':<22}{'dials':>14}{'peak dials/s':>14}{'peak TIME_WAIT':>16}{'errors':>14}"
          f"{'s with errors':>15}")
    for name, s in (("observed", res.observed), ("replay (as was)", res.replay),
                    ("predicted (what-if)", res.predicted)):
        echo(f"{name:<22}{s.dials:>14,.0f}{s.peak_dials_per_s:>14,.0f}{s.peak_time_wait:>16,.0f}"
              f"{s.errors:>14,.0f}{s.seconds_with_errors:>15,}")
    for sec, _st, title in res.changes:
        echo(f"replay applies the timeline's change at +{sec:,} s: {title}")
    echo("errors: the replay counts failed lookups of logged requests only; observed errors"
          " are every logged address error (weighted by sampling): compare timing, not level")
    if res.tw_agreement is not None:
        echo(f"replay vs observed TIME_WAIT while batches run: {res.tw_agreement:.1%} apart")
    verdict = "port exhaustion" if res.predicted.exhausted else "no port exhaustion"
    echo(f"Prediction: {verdict}.")
    return 0
