"""Top-3 hit rate of the suspects on metrics-only wide-CSV cases, beside the z-score
baseline and a random ranking.

The cases are shaped like public microservice RCA data (``<service>_<metric>`` columns,
no call graph; ``analysis.simulate.micro.widecsv``). No such public sample is stored
offline, so they are generated, apart from the queueing model the families use.

    PYTHONPATH=$PWD python scripts/wide_csv_eval.py --samples 240 --cases 60
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _one(args: tuple[int, int]) -> tuple[dict, list[str], list[str]]:
    from analysis.chain import find_chain
    from analysis.chain.mechanisms import build_view
    from analysis.chain.suspects import baseline_suspects
    from analysis.ingest import ingest_paths
    from analysis.simulate.micro.widecsv import write_wide_case
    from analysis.store import connect

    seed, n = args
    tmp = Path(tempfile.mkdtemp(prefix="widecsv-"))
    try:
        truth = write_wide_case(tmp, seed, n)
        con = connect(None)
        con.execute("SET threads = 1")
        ingest_paths(con, [tmp])
        ours = [s.entity for s in find_chain(con).suspects]
        base = [s.entity for s in baseline_suspects(build_view(con))]
        return truth, ours, base
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=240, help="samples per series (1 s apart)")
    p.add_argument("--cases", type=int, default=60)
    a = p.parse_args()
    with ProcessPoolExecutor(2) as ex:
        res = list(ex.map(_one, [(s, a.samples) for s in range(a.cases)]))
    top = {name: np.mean([t["root"] in r[:3] for t, *rs in res for r in [rs[i]]])
           for i, name in enumerate(("ours", "baseline"))}
    top1 = np.mean([o[:1] == [t["root"]] for t, o, _ in res])
    rnd = np.mean([min(1.0, 3 / len(t["services"])) for t, _, _ in res])
    print(f"{a.cases} cases, {a.samples} samples: top-3 ours {top['ours']:.2f}"
          f" (top-1 {top1:.2f}), z-score baseline {top['baseline']:.2f}, random {rnd:.2f}")


if __name__ == "__main__":
    main()
