"""Evaluation: run the chain on simulated incidents with known ground truth.

Each scenario goes the whole way a user's data would: ``simulate`` writes the
raw files and ``truth.json``, ``ingest`` loads them into a fresh in-memory
store, ``find_chain`` reconstructs the chain. The chain is then scored against
the truth:

* culprit accuracy at rank 1 (incidents of the ``random`` family);
* the share of chains whose roles come in the true order (roles sorted by
  onset; onsets less than ``tie_s`` apart count as simultaneous);
* onset error per role, ``|chain - truth|`` in seconds (median and 90th
  percentile);
* the false-alarm rate: ``root_cause_found`` on ``quiet`` scenarios (rivals
  and noise, no culprit), and separately on random scenarios whose culprit
  never exhausted the ports (the truth says "no incident");
* the time per scenario (simulate + ingest + chain) and of the chain alone.

Scenario seeds derive from the evaluation seed, so a run is deterministic
apart from its timings; scenarios run in at most two worker processes, each in
its own temporary directory, with DuckDB on one thread.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from analysis.chain.find import find_chain
from analysis.chain.mechanisms import build_view
from analysis.chain.result import ChainResult
from analysis.chain.settings import ROOT_CAUSE
from analysis.chain.suspects import baseline_suspects
from analysis.evaluate_mechanisms import (
    FamilyOutcome,
    MechanismRow,
    ac_at,
    avg5,
    family_row,
    run_family,
)
from analysis.evaluate_mechanisms import table as mechanism_table
from analysis.roles import ROLES
from analysis.simulate.micro import FAMILIES

MAX_WORKERS = 2


@dataclass(frozen=True)
class ScenarioOutcome:
    """The chain's answer on one scenario, next to the truth."""

    kind: str
    seed: int
    incident: bool
    truth_culprit: str | None
    verdict: str
    culprit: str | None
    order_ok: bool | None
    roles_found: list[str]
    onset_error_s: dict[str, float]
    seconds: float
    seconds_chain: float
    error: str | None = None
    suspects: list[str] = field(default_factory=list)  # ranked entities (ours)
    baseline: list[str] = field(default_factory=list)  # ranked by the largest z-score jump

    @property
    def culprit_ok(self) -> bool | None:
        """Rank-1 culprit right (None when the truth has no incident)."""
        return None if not self.incident else self.culprit == self.truth_culprit


@dataclass
class EvaluationResult:
    """Outcomes of every scenario and the summary the brief asks for."""

    n: int
    n_quiet: int
    seed: int
    tie_s: float
    outcomes: list[ScenarioOutcome] = field(default_factory=list)
    families: list[FamilyOutcome] = field(default_factory=list)  # microservice families

    def _of(self, kind: str, incident: bool | None = None) -> list[ScenarioOutcome]:
        return [o for o in self.outcomes if o.kind == kind
                and (incident is None or o.incident == incident)]

    @property
    def culprit_accuracy(self) -> float:
        """Share of random incidents whose rank-1 culprit is the true one."""
        inc = self._of("random", True)
        return float(np.mean([o.culprit_ok for o in inc])) if inc else float("nan")

    @property
    def order_share(self) -> float:
        """Share of random incidents whose chain gives its roles in the true order."""
        inc = self._of("random", True)
        return float(np.mean([bool(o.order_ok) for o in inc])) if inc else float("nan")

    @property
    def false_alarm_rate(self) -> float:
        """Share of quiet scenarios where the chain still claims a root cause."""
        q = self._of("quiet")
        return float(np.mean([o.verdict == ROOT_CAUSE for o in q])) if q else float("nan")

    @property
    def false_alarm_no_incident(self) -> float:
        """The same on random scenarios whose culprit never exhausted the ports."""
        q = self._of("random", False)
        return float(np.mean([o.verdict == ROOT_CAUSE for o in q])) if q else float("nan")

    def onset_errors(self) -> dict[str, dict[str, float]]:
        """Per role: median and 90th percentile of |onset error| (s) and how many."""
        out: dict[str, dict[str, float]] = {}
        for role in ROLES:
            e = [abs(o.onset_error_s[role]) for o in self._of("random", True)
                 if role in o.onset_error_s]
            out[role] = {
                "median_s": float(np.median(e)) if e else float("nan"),
                "p90_s": float(np.percentile(e, 90)) if e else float("nan"),
                "n": len(e),
            }
        return out

    def timings(self) -> dict[str, float]:
        """Median and mean seconds per scenario (whole pipeline) and of the chain alone."""
        s = [o.seconds for o in self.outcomes]
        c = [o.seconds_chain for o in self.outcomes]
        return {
            "median_s": float(np.median(s)) if s else float("nan"),
            "mean_s": float(np.mean(s)) if s else float("nan"),
            "chain_median_s": float(np.median(c)) if c else float("nan"),
        }

    def to_dict(self) -> dict:
        """The summary and every outcome, JSON-ready."""
        inc = self._of("random", True)
        return {
            "n_random": self.n,
            "n_quiet": self.n_quiet,
            "seed": self.seed,
            "tie_s": self.tie_s,
            "random_incidents": len(inc),
            "random_without_incident": len(self._of("random", False)),
            "culprit_accuracy_rank1": self.culprit_accuracy,
            "roles_in_true_order": self.order_share,
            "onset_error": self.onset_errors(),
            "false_alarm_rate_quiet": self.false_alarm_rate,
            "false_alarm_rate_random_without_incident": self.false_alarm_no_incident,
            "failures": sum(o.error is not None for o in self.outcomes),
            "time_per_scenario": self.timings(),
            "outcomes": [asdict(o) | {"culprit_ok": o.culprit_ok} for o in self.outcomes],
            "mechanisms": [{k: v for k, v in asdict(r).items() if k != "seconds"}
                           for r in self.mechanism_rows()],
            "family_outcomes": [asdict(o) for o in self.families],
        }

    def port_row(self) -> MechanismRow:
        """Port exhaustion's line of the per-mechanism table (random and quiet)."""
        inc = [o for o in self._of("random", True) if o.truth_culprit]
        row = MechanismRow("port_exhaustion", len(self._of("random")),
                           failures=sum(o.error is not None for o in self.outcomes))
        if inc:
            t = [[o.truth_culprit or ""] for o in inc]
            for name, ranks in (("", [o.suspects for o in inc]),
                                ("base_", [o.baseline for o in inc])):
                setattr(row, f"{name}ac1", float(np.mean([ac_at(r, x, 1) for r, x in
                                                           zip(ranks, t, strict=True)])))
                setattr(row, f"{name}ac3", float(np.mean([ac_at(r, x, 3) for r, x in
                                                           zip(ranks, t, strict=True)])))
                setattr(row, f"{name}avg5", float(np.mean([avg5(r, x) for r, x in
                                                            zip(ranks, t, strict=True)])))
            row.named = float(np.mean([o.verdict == ROOT_CAUSE for o in inc]))
        row.culprit = self.culprit_accuracy
        row.role_order = self.order_share
        row.false_alarms = self.false_alarm_rate
        return row

    def mechanism_rows(self) -> list[MechanismRow]:
        """Every line of the per-mechanism table: port exhaustion, then each family."""
        rows = [self.port_row()] if self.outcomes else []
        for fam in FAMILIES:
            outs = [o for o in self.families if o.family == fam]
            if outs:
                rows.append(family_row(fam, outs))
        return rows

    def table(self) -> str:
        """The summary as a small text table."""
        if self.families and not self.outcomes:  # the families alone (``--ports 0``)
            return "\n".join([f"Evaluation: microservice families only, seed {self.seed}",
                              mechanism_table(self.mechanism_rows())])
        d = self.to_dict()
        lines = [
            f"Evaluation: {d['n_random']} random ({d['random_incidents']} incidents,"
            f" {d['random_without_incident']} without) + {d['n_quiet']} quiet scenarios,"
            f" seed {self.seed}",
            f"  culprit accuracy at rank 1      {d['culprit_accuracy_rank1']:.3f}",
            f"  roles in true order (tie {self.tie_s:g} s) {d['roles_in_true_order']:.3f}",
            f"  false alarms on quiet           {d['false_alarm_rate_quiet']:.3f}",
            "  false alarms, random w/o incident"
            f" {d['false_alarm_rate_random_without_incident']:.3f}",
            f"  failed scenarios                {d['failures']}",
            "  onset error per role      median s    p90 s      n",
        ]
        for role, e in d["onset_error"].items():
            lines.append(f"    {role:<22}{e['median_s']:>10.1f}{e['p90_s']:>9.1f}{e['n']:>7}")
        tm = d["time_per_scenario"]
        lines.append(f"  time per scenario: median {tm['median_s']:.2f} s,"
                     f" mean {tm['mean_s']:.2f} s"
                     f" (chain alone: median {tm['chain_median_s']:.2f} s)")
        rows = self.mechanism_rows()
        if rows:
            lines.append(mechanism_table(rows))
            fam = [o.seconds for o in self.families]
            if fam:
                lines.append(f"  time per family run: median {np.median(fam):.2f} s"
                             f" ({len(fam)} runs; role order with ties under"
                             " 15 s: metrics every 10 s)")
        return "\n".join(lines)


def _parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).replace(tzinfo=None)


def score(kind: str, seed: int, truth: dict, result: ChainResult, *, tie_s: float,
          seconds: float, seconds_chain: float) -> ScenarioOutcome:
    """Compare one chain with its truth (see the module docstring)."""
    incident = bool(truth.get("incident"))
    t_culprit = (truth.get("culprit") or {}).get("caller")
    found = result.roles_in_order(tie_s) if result.verdict == ROOT_CAUSE else []
    errors: dict[str, float] = {}
    order_ok: bool | None = None
    if incident:
        for role, iso in truth.get("onsets", {}).items():
            if role in result.onsets:
                errors[role] = (result.onsets[role] - _parse_iso(iso)).total_seconds()
        true_order = [r for r in truth.get("roles", []) if r in found]
        order_ok = bool(found) and found == true_order
    culprit = result.culprit.caller if result.culprit else None
    return ScenarioOutcome(kind, seed, incident, t_culprit, result.verdict, culprit, order_ok,
                           found, errors, seconds, seconds_chain,
                           suspects=[x.entity for x in result.suspects])


def run_scenario(kind: str, seed: int, *, scale: float = 0.1, tie_s: float = 2.0,
                 workdir: Path | None = None) -> ScenarioOutcome:
    """Simulate one scenario, ingest it into a fresh store, run the chain, score it."""
    from analysis.ingest import ingest_paths
    from analysis.simulate import simulate
    from analysis.store import connect

    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"eval-{kind}-{seed}-", dir=workdir))
    try:
        sim = simulate(kind, tmp / "data", seed=seed, scale=scale)
        con = connect(None)
        con.execute("SET threads = 1")
        ingest_paths(con, [tmp / "data"])
        t_chain = time.perf_counter()
        result = find_chain(con)
        done = time.perf_counter()
        base = [x.entity for x in baseline_suspects(build_view(con))]
        con.close()
        out = score(kind, seed, sim.truth, result, tie_s=tie_s, seconds=done - start,
                    seconds_chain=done - t_chain)
        return replace(out, baseline=base)
    except Exception as exc:  # one broken scenario must not sink the evaluation
        return ScenarioOutcome(kind, seed, False, None, "error", None, None, [], {},
                               time.perf_counter() - start, 0.0, f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: tuple[str, int, float, float]) -> ScenarioOutcome | FamilyOutcome:
    kind, seed, scale, tie_s = args
    if kind in FAMILIES:
        return run_family(kind, seed)
    return run_scenario(kind, seed, scale=scale, tie_s=tie_s)


def family_jobs(n: int, seed: int, families: tuple[str, ...]) -> list[tuple[str, int]]:
    """``n`` runs of each microservice family, round-robin (a partial run holds all)."""
    base = 1_000 * seed
    return [(f, base + i) for i in range(n) for f in families]


def scenario_seeds(n: int, n_quiet: int, seed: int) -> list[tuple[str, int]]:
    """The (family, seed) pairs an evaluation runs: deterministic in ``seed``, the two
    families interleaved so that a partial run holds both."""
    base = 1_000 * seed
    jobs = [("random", base + i) for i in range(n)]
    quiet = [("quiet", base + i) for i in range(n_quiet)]
    step = max(1, n // max(1, n_quiet)) if n_quiet else 0
    out: list[tuple[str, int]] = []
    for i, job in enumerate(jobs):
        out.append(job)
        if quiet and step and (i + 1) % step == 0:
            out.append(quiet.pop(0))
    return out + quiet


def evaluate(
    n: int = 200,
    seed: int = 0,
    *,
    n_quiet: int | None = None,
    workers: int = MAX_WORKERS,
    scale: float = 0.1,
    tie_s: float = 2.0,
    progress=None,
    log: Path | None = None,
    families: tuple[str, ...] = FAMILIES,
    n_families: int | None = None,
) -> EvaluationResult:
    """Run the chain on ``n`` random incidents and ``n_quiet`` quiet scenarios
    (default ``n // 4``), and ``n_families`` (default ``n``) runs of each microservice
    family in ``families``
    (``analysis.evaluate_mechanisms``), in at most two processes; see the module
    docstring. ``log`` receives each outcome as a JSON line as soon as it is known."""
    n_quiet = n // 4 if n_quiet is None else n_quiet
    pairs = scenario_seeds(n, n_quiet, seed)
    fam = family_jobs(n if n_families is None else n_families, seed, families)
    # the slow port scenarios spread among the quick family runs
    step = max(1, len(fam) // max(1, len(pairs)))
    mixed: list[tuple[str, int]] = []
    for i, p in enumerate(pairs):
        mixed += [p, *fam[i * step:(i + 1) * step]]
    mixed += fam[len(pairs) * step:]
    jobs = [(k, s, scale, tie_s) for k, s in mixed]
    res = EvaluationResult(n, n_quiet, seed, tie_s)
    workers = max(1, min(MAX_WORKERS, workers))
    outcomes: list[ScenarioOutcome | FamilyOutcome] = []
    sink = open(log, "w") if log else None  # noqa: SIM115 (closed below)

    def done(o: ScenarioOutcome | FamilyOutcome) -> None:
        outcomes.append(o)
        if sink:
            sink.write(json.dumps(asdict(o)) + "\n")
            sink.flush()
        if progress:
            progress(len(outcomes), len(jobs))

    try:
        if workers == 1:
            for j in jobs:
                done(_run(j))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for o in pool.map(_run, jobs):
                    done(o)
    finally:
        if sink:
            sink.close()
    _split(res, outcomes)
    return res


def _split(res: EvaluationResult, outcomes: list) -> None:
    """Port-exhaustion scenarios and family runs into their lists, in a stable order."""
    res.outcomes = sorted((o for o in outcomes if isinstance(o, ScenarioOutcome)),
                          key=lambda o: (o.kind, o.seed))
    res.families = sorted((o for o in outcomes if isinstance(o, FamilyOutcome)),
                          key=lambda o: (o.family, o.seed))


def from_log(path: Path, *, seed: int = 0, tie_s: float = 2.0) -> EvaluationResult:
    """An evaluation rebuilt from a ``--log`` file (also from a run cut short)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    outcomes = [FamilyOutcome(**{**r, "truth": [tuple(x) for x in r["truth"]],
                                 "fits": [tuple(x) for x in r["fits"]]})
                if "family" in r else ScenarioOutcome(**r) for r in rows]
    ports = [o for o in outcomes if isinstance(o, ScenarioOutcome)]
    res = EvaluationResult(sum(o.kind == "random" for o in ports),
                           sum(o.kind == "quiet" for o in ports), seed, tie_s)
    _split(res, outcomes)
    return res


def dumps(result: EvaluationResult) -> str:
    """The evaluation as JSON (NaN written as null)."""
    def clean(x):
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(result.to_dict()), indent=2)
