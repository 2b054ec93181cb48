"""``postmortem evaluate``: the chain on simulated incidents with known ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.cli import echo
from analysis.simulate.micro import FAMILIES


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score the chain on random incidents and quiet scenarios")
    p.add_argument("--n", type=_count, default=20, help="random incidents (default 20)")
    p.add_argument("--ports", type=_count, default=None, metavar="N",
                   help="random port-exhaustion incidents (default: --n; 0 to run the"
                        " microservice families only)")
    p.add_argument("--quiet", type=_count, default=None, metavar="N",
                   help="quiet port-exhaustion scenarios (default: a quarter of --ports)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    p.add_argument("--workers", type=int, choices=(1, 2), default=2, help="processes (1 or 2)")
    p.add_argument("--scale", type=float, default=0.1,
                   help="request-log volume of ordinary callers (default 0.1)")
    p.add_argument("--families", default=",".join(FAMILIES), metavar="LIST",
                   help="microservice families to run, n runs each, comma-separated (default:"
                        " all; 'none' for port exhaustion only)")
    p.add_argument("--json", action="store_true", help="print the summary and outcomes as JSON")
    p.add_argument("--log", type=Path, metavar="FILE",
                   help="write each scenario's outcome to FILE as a JSON line as it finishes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.errors import UserError
    from analysis.evaluate import dumps, evaluate
    from analysis.progress import progress_line

    if args.scale <= 0:
        raise UserError(f"--scale must be positive, got {args.scale}")

    fams = () if args.families.strip() == "none" else tuple(
        f.strip() for f in args.families.split(",") if f.strip())
    unknown = [f for f in fams if f not in FAMILIES]
    if unknown:
        raise UserError(f"--families: unknown {', '.join(unknown)}; expected some of"
                        f" {', '.join(FAMILIES)} or none")
    with progress_line("evaluate", unit="scenario") as bar:
        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.reach(done)

        res = evaluate(args.n if args.ports is None else args.ports, args.seed,
                       n_quiet=args.quiet, workers=args.workers, scale=args.scale,
                       progress=progress, log=args.log, families=fams, n_families=args.n)
    if args.json:
        print(dumps(res))
    else:
        echo(res.table())
    return 0
