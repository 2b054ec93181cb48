"""The incident simulator: a scenario's raw files (the ones ingest reads) plus ``truth.json``.

Public API::

    simulate(scenario: str, out: Path, seed: int = 1, scale: float = 1.0) -> SimulationResult
    build_scenario(name, seed, scale) -> Scenario      # every number of the story
    run_world(scenario) -> World                       # per-second ground truth

Flow: ``build_scenario`` (``scenario.py``) fixes or draws every parameter;
``run_world`` (``world.py``) runs callers, the connection-pool mechanism
(``analysis.mechanism``) and the Go runtime second by second; the writers
(``files.py``) draw requests and log lines vectorised and write them in the
formats of ``docs/formats.md``; ``truth.py`` computes the chain's onsets.
The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.errors import UserError
from analysis.progress import progress_line
from analysis.simulate.files import (
    Written,
    write_events,
    write_logs,
    write_manifest,
    write_metrics,
    write_requests,
)
from analysis.simulate.micro import FAMILIES, simulate_family
from analysis.simulate.scenario import SCENARIOS as _PORT_SCENARIOS
from analysis.simulate.scenario import Scenario, build_scenario, rename_callers
from analysis.simulate.truth import build_truth
from analysis.simulate.world import World, run_world

#: every scenario ``simulate`` writes: the port-exhaustion ones and the microservice families
SCENARIOS = (*_PORT_SCENARIOS, *FAMILIES)

__all__ = ["FAMILIES", "SCENARIOS", "Scenario", "SimulationResult", "World", "build_scenario",
           "run_world", "simulate"]

_OWNED = ("requests", "logs", "metrics", "events", "incident.toml", "truth.json")
# (a family writes a subset of these)


@dataclass(frozen=True)
class SimulationResult:
    """What ``simulate`` wrote and how long it took."""

    out: Path
    truth: dict
    request_rows: int
    log_lines: int
    metric_samples: int
    files: int
    seconds_world: float
    seconds_files: float

    @property
    def rows_per_s(self) -> float:
        """Request rows generated and written per second of wall time."""
        return self.request_rows / max(self.seconds_world + self.seconds_files, 1e-9)


def _prepare(out: Path) -> None:
    """Make ``out`` ready: empty, or a previous simulation's output (which is replaced)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a directory; expected an output directory for simulate")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "truth.json").is_file():
            raise UserError(f"{out}: directory is not empty and holds no truth.json; expected"
                            " an empty directory or a previous simulation's output")
        for name in _OWNED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def simulate(scenario: str, out: Path, seed: int = 1, scale: float = 1.0,
             rename: Mapping[str, str] | None = None) -> SimulationResult:
    """Simulate ``scenario`` with ``seed`` and write its raw files and ``truth.json`` to ``out``.

    ``scale`` multiplies the ordinary callers' request rows, not the story. ``rename``
    gives callers other names (old -> new; ``scenario.rename_callers``). A microservice
    family (``FAMILIES``: one per failure mechanism, quiet and mixed) ignores both.
    """
    if scenario in FAMILIES:  # a microservice family (``analysis.simulate.micro``)
        out = Path(out)
        _prepare(out)
        fam = simulate_family(scenario, out, seed)
        files = sum(1 for p in out.rglob("*") if p.is_file() and p.name != "truth.json")
        return SimulationResult(out, fam.truth, fam.request_rows, 0, fam.metric_samples, files,
                                fam.seconds, 0.0)
    sc = build_scenario(scenario, seed, scale)
    if rename:
        sc = rename_callers(sc, rename)
    out = Path(out)
    _prepare(out)
    with progress_line("simulate", total=5, unit="step") as bar:
        bar.note("the world")
        t0 = time.perf_counter()
        world = run_world(sc)
        t1 = time.perf_counter()
        rng = np.random.default_rng([seed, 13])
        acc = Written()
        bar.step("request logs")
        n_req = write_requests(out, world, rng, acc)
        bar.step("error logs")
        n_log = write_logs(out, world, rng, acc)
        bar.step("metrics")
        n_met = write_metrics(out, world, rng, acc)
        bar.step("events, manifest, truth")
        write_events(out, world, acc)
        write_manifest(out, sc)
        truth = build_truth(world, acc.corrupt, acc.rows)
        (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
        bar.advance()
        t2 = time.perf_counter()
    return SimulationResult(out, truth, n_req, n_log, n_met, len(acc.rows), t1 - t0, t2 - t1)
