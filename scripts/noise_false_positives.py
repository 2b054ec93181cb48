"""False positives of the robust detector on pure noise, with fixed seeds.

One hour a series (3600 one-second buckets), ``--seeds`` series of each kind: Gaussian and
Student-t(3) gauges, Poisson counts at 20 and 2 a second. Prints windows found, series
flagged and seconds flagged per kind; ``--bridge`` sets ``DetectorSettings.bridge_buckets``.

    PYTHONPATH=$PWD python scripts/noise_false_positives.py --seeds 1000 --bridge 1
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from analysis.detection import DetectorSettings, detect

N = 3600
KINDS = {
    "gauge normal(100,3)": (False, lambda r: 100 + r.normal(0, 3, N)),
    "gauge student-t(3)": (False, lambda r: 100 + 3 * r.standard_t(3, N)),
    "count poisson(20)": (True, lambda r: r.poisson(20, N).astype(float)),
    "count poisson(2)": (True, lambda r: r.poisson(2, N).astype(float)),
}


def main() -> None:
    """Print one line a kind of noise."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--bridge", type=int, default=DetectorSettings().bridge_buckets)
    args = ap.parse_args()
    t0 = datetime(2026, 4, 6, 14)
    t = pl.datetime_range(t0, t0 + timedelta(seconds=N - 1), "1s", eager=True)
    settings = DetectorSettings(bridge_buckets=args.bridge)
    for name, (counts, gen) in KINDS.items():
        n_win = flagged = secs = 0
        for seed in range(args.seeds):
            x = gen(np.random.default_rng(seed))
            wins = detect(pl.DataFrame({"t": t, "value": x}), settings, counts=counts)
            n_win += len(wins)
            flagged += bool(wins)
            secs += sum(int(w.duration_s) + 1 for w in wins)
        print(f"{name:22s} windows {n_win:4d} in {args.seeds} h; series flagged "
              f"{flagged}/{args.seeds}; flagged seconds {secs} of {args.seeds * N}")


if __name__ == "__main__":
    main()
