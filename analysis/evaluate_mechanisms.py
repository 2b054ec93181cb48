"""Evaluation per mechanism: suspects and mechanisms on the microservice families, next
to a naive baseline.

Each run goes the whole way a user's data would (``simulate_family`` writes the
files and ``truth.json``, ``ingest`` loads them into a fresh in-memory store,
``find_chain`` reconstructs the chain with its suspects and mechanisms). Scored per
family, as the field reports it:

* **AC@k** of the suspects: the share of incidents with the true root-cause entity
  among the first k (with two causes, the share of them found in the first k, at
  most k); **Avg@5** the mean of AC@1..AC@5;
* the same for the **baseline**: every entity ranked by the largest z-score jump of
  any of its signals against the whole series (``suspects.baseline_suspects``);
* **named**: the share of incidents whose verdict names the true mechanism (mixed:
  of true causes found by some fit with its mechanism and entity);
* **culprit**: among incidents where a mechanism fits, the share whose culprit is
  the true entity (mixed: of fits, those that are a true cause);
* **role order**: for fits of the true mechanism and entity, the share whose roles
  come in the true causal order (onsets less than ``tie_s`` = 15 s apart are ties: the
  families sample metrics every 10 s, and a counter's rate is put on the interval
  before its sample, a step early);
* **false alarms**: on quiet runs, the share where a mechanism is claimed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.chain.settings import ROOT_CAUSE

FAMILY_TIE_S = 15.0


@dataclass(frozen=True)
class FamilyOutcome:
    """One microservice run: the truth, the verdict, the fits and both rankings."""

    family: str
    seed: int
    truth: list[tuple[str, str]]  # (entity, mechanism) of each cause
    verdict: str
    mechanism: str | None
    culprit: str | None
    fits: list[tuple[str, str]]  # (mechanism, culprit)
    roles_ok: bool | None
    suspects: list[str]
    baseline: list[str]
    seconds: float
    error: str | None = None


def ac_at(ranked: list[str], truth: list[str], k: int) -> float:
    """Share of the true entities among the first ``k`` (out of at most ``k``)."""
    if not truth:
        return float("nan")
    hit = len(set(ranked[:k]) & set(truth))
    return hit / min(k, len(set(truth)))


def avg5(ranked: list[str], truth: list[str]) -> float:
    """Mean of AC@1..AC@5."""
    return float(np.mean([ac_at(ranked, truth, k) for k in range(1, 6)]))


def run_family(family: str, seed: int, *, tie_s: float = FAMILY_TIE_S,
               workdir: Path | None = None) -> FamilyOutcome:
    """Simulate one run of ``family``, ingest it, run the chain, score it."""
    from analysis.chain.find import find_chain
    from analysis.chain.mechanisms import BY_NAME, build_view
    from analysis.chain.suspects import baseline_suspects
    from analysis.ingest import ingest_paths
    from analysis.simulate.micro import simulate_family
    from analysis.store import connect

    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"eval-{family}-{seed}-", dir=workdir))
    truth: list[tuple[str, str]] = []
    try:
        sim = simulate_family(family, tmp / "data", seed=seed)
        truth = [(c["entity"], c["mechanism"]) for c in sim.truth["causes"]]
        con = connect(None)
        con.execute("SET threads = 1")
        ingest_paths(con, [tmp / "data"])
        result = find_chain(con)
        base = [s.entity for s in baseline_suspects(build_view(con))]
        con.close()
        roles_ok = None
        for cause in sim.truth["causes"]:
            fit = next((f for f in result.mechanisms if f.mechanism == cause["mechanism"]
                        and f.culprit == cause["entity"]), None)
            if fit is None:
                continue
            found = fit.roles_in_order(BY_NAME[fit.mechanism].roles, tie_s)
            ok = bool(found) and found == [r for r in cause["roles"] if r in found]
            roles_ok = ok if roles_ok is None else roles_ok and ok
        return FamilyOutcome(
            family, seed, truth, result.verdict, result.mechanism,
            result.culprit.caller if result.culprit else None,
            [(f.mechanism, f.culprit) for f in result.mechanisms], roles_ok,
            [s.entity for s in result.suspects], base, time.perf_counter() - start)
    except Exception as exc:  # one broken run must not sink the evaluation
        return FamilyOutcome(family, seed, truth, "error", None, None, [], None, [], [],
                             time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class MechanismRow:
    """One line of the per-mechanism table (NaN where a figure does not apply)."""

    name: str
    n: int
    ac1: float = float("nan")
    ac3: float = float("nan")
    avg5: float = float("nan")
    base_ac1: float = float("nan")
    base_ac3: float = float("nan")
    base_avg5: float = float("nan")
    named: float = float("nan")
    culprit: float = float("nan")
    role_order: float = float("nan")
    false_alarms: float = float("nan")
    failures: int = 0
    seconds: list[float] = field(default_factory=list)


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return float(np.mean(xs)) if xs else float("nan")


def family_row(family: str, outs: list[FamilyOutcome]) -> MechanismRow:
    """The figures of one family (see the module docstring)."""
    row = MechanismRow(family, len(outs), failures=sum(o.error is not None for o in outs),
                       seconds=[o.seconds for o in outs])
    inc = [o for o in outs if o.truth and o.error is None]
    if family == "services-quiet":
        ok = [o for o in outs if o.error is None]
        row.false_alarms = _mean([float(o.verdict == ROOT_CAUSE) for o in ok])
        return row
    if not inc:
        return row
    ents = [[e for e, _ in o.truth] for o in inc]
    row.ac1 = _mean([ac_at(o.suspects, t, 1) for o, t in zip(inc, ents, strict=True)])
    row.ac3 = _mean([ac_at(o.suspects, t, 3) for o, t in zip(inc, ents, strict=True)])
    row.avg5 = _mean([avg5(o.suspects, t) for o, t in zip(inc, ents, strict=True)])
    row.base_ac1 = _mean([ac_at(o.baseline, t, 1) for o, t in zip(inc, ents, strict=True)])
    row.base_ac3 = _mean([ac_at(o.baseline, t, 3) for o, t in zip(inc, ents, strict=True)])
    row.base_avg5 = _mean([avg5(o.baseline, t) for o, t in zip(inc, ents, strict=True)])
    if family == "services-mixed":
        row.named = _mean([sum((m, e) in o.fits for e, m in o.truth) / len(o.truth)
                           for o in inc])
        row.culprit = _mean([sum((e, m) in o.truth for m, e in o.fits) / len(o.fits)
                             for o in inc if o.fits])
    else:
        row.named = _mean([float(o.mechanism == o.truth[0][1]) for o in inc])
        row.culprit = _mean([float(o.culprit == o.truth[0][0]) for o in inc
                             if o.verdict == ROOT_CAUSE])
    row.role_order = _mean([float(o.roles_ok) for o in inc if o.roles_ok is not None])
    return row


def table(rows: list[MechanismRow]) -> str:
    """The per-mechanism table, ours beside the baseline."""
    def f(x: float) -> str:
        return "    -" if x != x else f"{x:5.2f}"

    head = (f"  {'mechanism (family)':<22}{'n':>4}  {'AC@1':>5} {'AC@3':>5} {'Avg@5':>5} |"
            f" {'AC@1':>5} {'AC@3':>5} {'Avg@5':>5} | {'named':>5} {'culpr':>5}"
            f" {'order':>5} {'f.a.':>5}")
    lines = ["Per mechanism: suspects (ours | z-score baseline), mechanism named, culprit"
             " accuracy when a mechanism fits, role order, false alarms on quiet data", head]
    for r in rows:
        lines.append(f"  {r.name:<22}{r.n:>4}  {f(r.ac1)} {f(r.ac3)} {f(r.avg5)} |"
                     f" {f(r.base_ac1)} {f(r.base_ac3)} {f(r.base_avg5)} |"
                     f" {f(r.named)} {f(r.culprit)} {f(r.role_order)} {f(r.false_alarms)}"
                     + (f"  ({r.failures} failed)" if r.failures else ""))
    return "\n".join(lines)
