"""Speed and memory benchmark of the suite against DuckDB's floor, pandas and polars.

``make bench`` runs ``python scripts/bench.py --out build/bench``. For each scale
(request rows: 1, 10 and 50 million by default) it writes the april-2026 incident's
files (``bench_data.py``), then times, each job in its own process so that its
peak resident memory (``ru_maxrss`` from ``wait4``) is its own:

- ingest of every format into a fresh store (JSON lines, Parquet and CSV request
  logs, followed by the rollups; JSON lines, logfmt and Go text error logs;
  Prometheus JSON metrics);
- on one store holding requests, errors and metrics: rollups, detection, chain;
- side by side on the same request file: DuckDB's bare aggregate scan (the
  floor), pandas as a notebook user writes it, polars' lazy dynamic group-by.

Once, on the bundled incident: the notebook run (``postmortem report``).

It prints a table and writes ``bench.json`` (every run, medians, ratios and
the targets of issue 7 with met / missed). A job over its time or memory cap
is killed and recorded as "did not finish", never retried.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_data  # noqa: E402

CHILD = HERE / "bench_child.py"
DEFAULT_SCALES = (1_000_000, 10_000_000, 50_000_000)
QUICK_SCALES = (20_000, 50_000)

#: Stages recorded at every scale (key in ``scales[i].stages``).
STAGES: tuple[str, ...] = (
    "generate",
    "generate/simulator",
    *(f"ingest/{k}" for k in bench_data.FORMATS),
    "rollups",
    "detection",
    "chain",
    "detection+chain",
    "convert/requests",
    "rollup/duckdb",
    "rollup/spark",
)
#: The distributed path (``postmortem convert``, then ``postmortem rollup --engine``) is
#: timed at this many request rows only (and in ``--quick`` smoke runs, Spark excepted).
ENGINE_ROWS = 10_000_000
ENGINE_STAGES = ("convert/requests", "rollup/duckdb", "rollup/spark")
#: Side-by-side contenders on the same request file (key in ``scales[i].contenders``).
CONTENDERS: tuple[str, ...] = (
    "ours/jsonl",
    "ours/parquet",
    "ours/csv",
    "duckdb_floor/jsonl",
    "duckdb_floor/parquet",
    "pandas/jsonl",
    "polars/jsonl",
)
#: Steps on the bundled incident (key in ``notebook``); ``report`` is the notebook run.
NOTEBOOK_STEPS: tuple[str, ...] = (
    "simulate",
    "ingest",
    "rollups",
    "detection",
    "chain",
    "detection+chain",
    "report",
    "report/warm",
)
FOUR_GB_MIB = 4e9 / 2**20
#: Request rows of the april-2026 simulation at --scale 1 (re-measured on each run).
ROWS_AT_SCALE_1 = 1_130_000
#: The real simulator is timed up to this many request rows.
SIMULATOR_MAX_ROWS = 1_000_000
#: From this many rows on, every job runs once.
LARGEST = 50_000_000
#: Jobs that run once from 10 M rows on (see ``Bench.runs_of``).
SECONDARY = frozenset(
    {
        "ours/csv",
        "pipeline",
        "convert/requests",
        "rollup/duckdb",
        "rollup/spark",
        *(
            f"ingest/{k}"
            for k in ("errors/jsonl", "errors/logfmt", "errors/gotext", "metrics/prometheus")
        ),
    }
)
SKIPPED_FROM_10M = frozenset({"ours/csv"})
#: Ratios at every scale: ours over the floor (lower is better), the others over ours.
RATIOS: tuple[str, ...] = (
    "ours_over_floor/jsonl",
    "ours_over_floor/parquet",
    "pandas_over_ours",
    "polars_over_ours",
)


@dataclass
class Measured:
    """One process run: wall time, peak RSS, the child's own JSON report, and how it ended.

    ``status`` is ``ok``, ``did not finish: <why>`` (killed at a cap) or ``failed: <why>``.
    """

    wall_s: float
    peak_rss_mb: float
    status: str
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run finished cleanly."""
        return self.status == "ok"


@dataclass
class Stat:
    """Repeated runs of one job: their times (seconds), median, and the worst peak RSS.

    ``seconds`` holds the measured quantity of each successful run (wall time of the
    process, or one stage inside it); ``status`` is that of the first failure, if any.
    """

    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    status: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float | None:
        """Median of the successful runs, ``None`` when there was none."""
        return statistics.median(self.seconds) if self.seconds else None

    def as_json(self) -> dict[str, Any]:
        """The stat with its median, for bench.json."""
        return {**asdict(self), "median_s": self.median_s, "runs": len(self.seconds)}


def _rss_mb(pid: int) -> float:
    """Current resident set of ``pid`` and all its descendants, in MiB (0 when gone)."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    break
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(_rss_mb(int(c)) for c in f.read().split())
    except OSError:
        pass
    return total


# Runs the measured command and writes its ru_maxrss (KiB) to argv[1]. Linux carries a
# process's resident memory at fork time into its ru_maxrss across exec, so the command
# is started from this small interpreter, not from the benchmark's (larger) process.
_LAUNCHER = """
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(
    argv: list[str], *, timeout_s: float, rss_cap_mb: float, cwd: Path | None = None
) -> Measured:
    """Run ``argv`` in its own session; return wall time, peak RSS and its last JSON line.

    A watcher kills the session when it runs past ``timeout_s`` or the resident memory
    of its processes passes ``rss_cap_mb``. Peak RSS is the command's own ``ru_maxrss``
    (it and the descendants it waited for), taken by a small launcher with ``wait4``:
    not ``RUSAGE_CHILDREN`` of this process, whose high-water mark carries over
    between runs, nor inflated by this process's memory.
    """
    env = {**os.environ, "TZ": "UTC", "PYTHONPATH": str(ROOT)}
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as rss_file,
    ):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, rss_file.name, *argv],
            stdout=out,
            stderr=err,
            cwd=cwd or ROOT,
            env=env,
            start_new_session=True,
        )
        reason: list[str] = []
        seen = [0.0]  # the largest resident memory the watcher saw
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.1):
                seen[0] = max(seen[0], _rss_mb(proc.pid))
                if time.perf_counter() - t0 > timeout_s:
                    reason.append(f"did not finish: over the {timeout_s:.0f} s time cap")
                elif seen[0] > rss_cap_mb:
                    cap = rss_cap_mb / 1024
                    reason.append(f"did not finish: over the {cap:.1f} GiB memory cap")
                if reason:
                    os.killpg(proc.pid, signal.SIGKILL)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        wall = time.perf_counter() - t0
        done.set()
        watcher.join()
        _, wstatus, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(wstatus)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        measured = rss_file.read().strip()
    # Killed before the launcher could write: what the watcher saw is the bound we have.
    peak = int(measured) / 1024 if measured else seen[0]
    if reason:
        return Measured(wall, peak, reason[0])
    if proc.returncode != 0:
        return Measured(wall, peak, f"failed: {_why(stderr, proc.returncode)}")
    report: dict[str, Any] = {}
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            report = json.loads(line)
            break
    return Measured(wall, peak, "ok", report)


def _why(stderr: str, code: int) -> str:
    """The line of a failed job's stderr that says what went wrong (the exception, if any)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip(" ^~\t")]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Exit)\b", line):
            return line[:300]
    return lines[-1][:300] if lines else f"exit {code}"


def child_argv(job: str, **kwargs: Any) -> list[str]:
    """Command line of one ``bench_child.py`` job."""
    return [sys.executable, str(CHILD), job, json.dumps(kwargs)]


@dataclass
class Options:
    """What to run: scales, repeats, caps, where to write."""

    out: Path
    scales: tuple[int, ...]
    repeats: int
    timeout_s: float
    mem_cap_mb: float
    notebook: bool
    keep_data: bool
    profile: bool
    quick: bool
    parallel: int
    window_s: int
    seed: int


class Bench:
    """Runs the benchmark and collects every measurement into ``self.result``."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.data_root = opts.out / "data"
        self.result: dict[str, Any] = {"meta": _meta(opts), "scales": [], "notebook": {}}
        # request rows the simulator writes at --scale 1 (measured on the bundled incident)
        self.rows_at_scale_1 = ROWS_AT_SCALE_1

    def log(self, msg: str) -> None:
        """A progress line on stderr, stamped with the time."""
        print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)

    def repeats_at(self, scale: int) -> int:
        """Repeats at ``scale``: fewer as one run grows to minutes (at most 2 from 10 M
        rows on, 1 from 50 M)."""
        if scale >= LARGEST:
            return 1
        return min(self.opts.repeats, 2) if scale >= 10_000_000 else self.opts.repeats

    def repeat(
        self,
        label: str,
        argv: list[str],
        n: int,
        pick: str | None = None,
        before: Callable[[], None] | None = None,
    ) -> Stat:
        """Run ``argv`` up to ``n`` times; stop after a failure or after a run over 5 minutes.

        ``pick`` names a stage of the child's report to take as the time of each run
        (``"*"``: the sum of its stages, i.e. the work without interpreter start and
        imports) instead of the process's wall time. ``before`` runs before each run, untimed.
        """
        stat = Stat()
        for k in range(n):
            if before is not None:
                before()
            m = run_measured(argv, timeout_s=self.opts.timeout_s, rss_cap_mb=self.opts.mem_cap_mb)
            stat.peak_rss_mb = max(stat.peak_rss_mb or 0.0, m.peak_rss_mb)
            self.log(
                f"  {label} run {k + 1}/{n}: {m.status}, {m.wall_s:.2f} s, {m.peak_rss_mb:.0f} MiB"
            )
            if not m.ok:
                stat.status = m.status
                break
            if "skipped" in m.report:
                stat.status = f"skipped: {m.report['skipped']}"
                break
            stages = m.report.get("stages", {})
            if pick == "*":
                stat.seconds.append(sum(stages.values()))
            else:
                stat.seconds.append(stages[pick] if pick else m.wall_s)
            runs = stat.detail.get("stage_runs", []) + [stages]
            walls = stat.detail.get("wall_s", []) + [m.wall_s]
            stat.detail = {k2: v for k2, v in m.report.items() if k2 != "stages"}
            stat.detail.update(stage_runs=runs, wall_s=walls)
            if m.wall_s > 300:
                break
        return stat

    def runs_of(self, job: str, scale: int) -> int:
        """How often ``job`` runs at ``scale``: the repeats for jobs that targets are judged
        on; once from 10 M rows on for the other formats' ingest and the full store (its
        rollups, detection and chain read the store, whose size hardly grows); 0
        (skipped) from 10 M rows on for CSV, whose ingest takes about twice the JSON
        lines': the run has to fit in an hour on two cores."""
        if job in SKIPPED_FROM_10M and scale >= 10_000_000:
            return 0
        if job in SECONDARY and scale >= 10_000_000:
            return 1
        return self.repeats_at(scale)

    def run_jobs(
        self, jobs: dict[str, tuple[list[str], str | None]], scale: int
    ) -> dict[str, Stat]:
        """Run every job as often as ``runs_of`` says; ``--parallel`` of them at once (a
        smoke run's shortcut: jobs running side by side slow each other down)."""
        skipped = Stat(status="skipped at this scale (time budget): see the smaller scales")

        partial = self.result.setdefault("partial", {"scale": scale, "jobs": {}})

        def one(k: str, argv: list[str], pick: str | None) -> Stat:
            n = self.runs_of(k, scale)
            stat = self.repeat(k, argv, n, pick=pick) if n else skipped
            partial["jobs"][k] = stat.as_json()
            if self.opts.parallel <= 1:
                self.write()
            return stat

        if self.opts.parallel <= 1:
            return {k: one(k, argv, pick) for k, (argv, pick) in jobs.items()}
        with ThreadPoolExecutor(self.opts.parallel) as pool:
            futures = {k: pool.submit(one, k, argv, pick) for k, (argv, pick) in jobs.items()}
            return {k: fut.result() for k, fut in futures.items()}

    def run_scale(self, scale: int) -> dict[str, Any]:
        """Generate the files at ``scale`` and run every stage and contender on them."""
        n = self.repeats_at(scale)
        root = self.data_root / f"rows-{scale}"
        self.log(f"scale {scale:,}: generating under {root}")
        # CSV is not written where its ingest is not timed (it is the slowest to write too).
        formats = [
            k for k in bench_data.FORMATS if k != "requests/csv" or self.runs_of("ours/csv", scale)
        ]
        gen = self.repeat(
            "generate",
            child_argv(
                "generate",
                scale=scale,
                root=str(root),
                seed=self.opts.seed,
                window_s=self.opts.window_s,
                formats=formats,
            ),
            1,
            pick="generate",
        )
        gen.detail["generator"] = "scripts/bench_data.py (DuckDB COPY)"
        f = {k: str(root / bench_data.FILE_NAMES[k]) for k in bench_data.FORMATS}
        # The full store takes its requests from Parquet, the quickest to load: what is timed
        # in it (rollups, detection, chain) reads the store, not the files.
        full = [f["requests/parquet"], f["errors/jsonl"], f["metrics/prometheus"]]

        def db(job: str) -> str:
            return str(root / f"store-{job.replace('/', '-')}.duckdb")

        # job -> (argv, what to time: "*" = the child's stages summed, None = wall time),
        # in order of importance: a run cut short keeps what the targets are judged on.
        jobs: dict[str, tuple[list[str], str | None]] = {}
        for fmt in ("jsonl", "parquet"):
            path = f[f"requests/{fmt}"]
            jobs[f"ours/{fmt}"] = (
                child_argv("ours", paths=[path], db=db(fmt), steps=["rollups"]),
                "*",
            )
            jobs[f"duckdb_floor/{fmt}"] = (child_argv("floor", path=path, fmt=fmt), "*")
        jobs["polars/jsonl"] = (child_argv("polars", path=f["requests/jsonl"]), "*")
        jobs["pandas/jsonl"] = (child_argv("pandas", path=f["requests/jsonl"]), "*")
        jobs["pipeline"] = (
            child_argv("ours", paths=full, db=db("full"), steps=["rollups", "detection", "chain"]),
            None,
        )
        jobs["ours/csv"] = (
            child_argv("ours", paths=[f["requests/csv"]], db=db("csv"), steps=["rollups"]),
            "*",
        )
        for key in ("errors/jsonl", "errors/logfmt", "errors/gotext", "metrics/prometheus"):
            jobs[f"ingest/{key}"] = (child_argv("ours", paths=[f[key]], db=db(key)), "*")
        done = self.run_jobs(jobs, scale)
        # in order: the rollups read what convert wrote
        for step in self.engine_jobs(scale, f, root).items():
            done.update(self.run_jobs(dict([step]), scale))

        stages: dict[str, Stat] = {"generate": gen, "generate/simulator": self.simulate_at(scale)}
        contenders = {k: done[k] for k in CONTENDERS}
        for key in bench_data.FORMATS:
            whole = done[
                f"ours/{key.split('/')[1]}" if key.startswith("requests/") else f"ingest/{key}"
            ]
            stages[f"ingest/{key}"] = _sub_stat(whole, f"ingest:{Path(f[key]).name}")
        for step in ("rollups", "detection", "chain"):
            stages[step] = _sub_stat(done["pipeline"], step)
        stages["detection+chain"] = _sum_stat(stages["detection"], stages["chain"])
        for step in ENGINE_STAGES:
            stages[step] = done.get(step) or Stat(
                status="skipped in --quick runs (a Spark session takes ~20 s to start)"
                if self.opts.quick else f"run at {ENGINE_ROWS:,} rows only")

        self.result.pop("partial", None)
        if self.opts.profile:
            self.profile_scale(scale, f, db("profile"), full)
        for store in root.glob("store-*.duckdb*"):  # the stores, their logs and parts
            if store.is_dir():
                shutil.rmtree(store, ignore_errors=True)
            else:
                store.unlink()
        if not self.opts.keep_data:
            shutil.rmtree(root, ignore_errors=True)
        return {
            "scale": scale,
            "repeats": n,
            "stages": {k: stages[k].as_json() for k in STAGES},
            "contenders": {k: contenders[k].as_json() for k in CONTENDERS},
            "ratios": ratios(contenders),
        }

    def engine_jobs(
        self, scale: int, f: dict[str, str], root: Path
    ) -> dict[str, tuple[list[str], str | None]]:
        """The distributed path at ``ENGINE_ROWS``: ``postmortem convert`` of the request
        log (JSON lines, the format users have) to partitioned Parquet, then ``postmortem
        rollup`` of that on DuckDB and on Spark (``local[2]``: the point is that it runs;
        these two cores are no cluster). Spark is skipped in --quick runs (its session
        alone takes ~20 s to start)."""
        if scale != ENGINE_ROWS and not self.opts.quick:
            return {}
        converted = root / "converted"
        jobs: dict[str, tuple[list[str], str | None]] = {
            "convert/requests": (
                child_argv("convert", paths=[f["requests/jsonl"]], out=str(converted)),
                "*",
            )
        }
        for engine in ("duckdb", "spark"):
            if engine == "spark" and self.opts.quick:
                continue
            jobs[f"rollup/{engine}"] = (
                child_argv(
                    "engine_rollup",
                    engine=engine,
                    requests=str(converted / "requests"),
                    out=str(root / f"rolled-{engine}"),
                ),
                "*",
            )
        return jobs

    def profile_scale(self, scale: int, f: dict[str, str], db: str, full: list[str]) -> None:
        """One more run of our jobs under the profiler, and EXPLAIN ANALYZE of the floor,
        written to ``profile-<scale>-<job>.txt`` next to bench.json."""
        out = self.opts.out

        def ours(paths: list[str], steps: list[str]) -> list[str]:
            return child_argv("ours", paths=paths, db=db, steps=steps, profile=str(out / "{name}"))

        jobs = {
            "ours-jsonl": ours([f["requests/jsonl"]], ["rollups"]),
            "ours-parquet": ours([f["requests/parquet"]], ["rollups"]),
            "ours-pipeline": ours(full, ["rollups", "detection", "chain"]),
            "floor-jsonl": child_argv(
                "floor", path=f["requests/jsonl"], fmt="jsonl", explain=str(out / "{name}")
            ),
            "floor-parquet": child_argv(
                "floor", path=f["requests/parquet"], fmt="parquet", explain=str(out / "{name}")
            ),
        }
        for job, argv in jobs.items():
            name = f"profile-{scale}-{job}.txt"
            self.repeat(f"profile {job}", [a.replace("{name}", name) for a in argv], 1)
            self.result.setdefault("profiles", []).append(str(out / name))

    def simulate_at(self, scale: int) -> Stat:
        """The real simulator writing the april-2026 incident with about ``scale`` request
        rows (its ``--scale`` is a multiple of the bundled incident's rows), timed; up to
        1 M rows: it runs the world second by second and holds every row in memory
        (2.4 GB and minutes at 10 M rows), so the larger scales use the bench's writer."""
        if self.opts.quick:
            return Stat(status="skipped (--quick)")
        if scale > SIMULATOR_MAX_ROWS:
            return Stat(status=f"skipped above {SIMULATOR_MAX_ROWS:,} rows (memory and time)")
        out = self.data_root / f"simulated-{scale}"
        factor = f"{scale / self.rows_at_scale_1:.4g}"
        argv = [*self.simulate_argv(out), "--scale", factor]
        stat = self.repeat(f"simulator --scale {factor}", argv, 1)
        stat.detail.update(scale_factor=float(factor), request_rows=simulated_request_rows(out))
        shutil.rmtree(out, ignore_errors=True)
        return stat

    def simulate_argv(self, out: Path) -> list[str]:
        """``postmortem simulate`` of the bundled scenario into ``out``."""
        pm = str(Path(sys.executable).parent / "postmortem")
        return [pm, "simulate", "--scenario", "april-2026", "--seed", str(self.opts.seed),
                "--out", str(out)]

    def run_notebook(self) -> dict[str, Any]:
        """On the bundled incident: simulate it (the real simulator), ingest it and run
        rollups, detection and chain on it, then time the notebook run on that store."""
        pm = str(Path(sys.executable).parent / "postmortem")
        data = self.data_root / "bundled"
        db = self.data_root / "bundled.duckdb"
        simulate = self.simulate_argv(data)
        pipeline = child_argv(
            "ours",
            paths=[str(data)],
            db=str(db),
            steps=["rollups", "detection", "chain"],
            keep=True,
        )
        report = [
            pm,
            "report",
            "--db",
            str(db),
            "--data-dir",
            str(data),
            "--out",
            str(self.opts.out / "report"),
        ]
        out: dict[str, Any] = {}

        def skip_rest(why: str) -> dict[str, Any]:
            rest = {k: Stat(status=why).as_json() for k in NOTEBOOK_STEPS if k not in out}
            return {k: (out | rest)[k] for k in NOTEBOOK_STEPS}

        sim = self.repeat("bundled incident: simulate", simulate, 1)
        out["simulate"] = sim.as_json()
        if not sim.seconds:
            return skip_rest("not run: simulate failed")
        self.rows_at_scale_1 = simulated_request_rows(data) or self.rows_at_scale_1
        pipe = self.repeat("bundled incident: ingest, rollups, detection, chain", pipeline, 1)
        out["ingest"] = _sub_stat(pipe, f"ingest:{data.name}").as_json()
        for step in ("rollups", "detection", "chain"):
            out[step] = _sub_stat(pipe, step).as_json()
        out["detection+chain"] = _sum_stat(
            _sub_stat(pipe, "detection"), _sub_stat(pipe, "chain")
        ).as_json()
        if not pipe.seconds:
            return skip_rest("not run: ingest failed")
        # Cold: the report caches the chain and the what-ifs next to the store; a fresh
        # `make report` has no cache, so each timed run starts without it. Then one warm run.
        cache = Path(f"{db}.cache")
        n_report = min(self.opts.repeats, 2)
        executed = self.opts.out / "report" / "notebooks"
        out["report"] = self.repeat(
            "bundled incident: report (cold)",
            report,
            n_report,
            before=lambda: shutil.rmtree(cache, ignore_errors=True),
        ).as_json()
        out["report"]["detail"]["notebooks"] = notebook_cell_times(executed)
        if out["report"]["runs"]:
            out["report/warm"] = self.repeat(
                "bundled incident: report (warm cache)", report, 1
            ).as_json()
            out["report/warm"]["detail"]["notebooks"] = notebook_cell_times(executed)
        return skip_rest("not run: report failed")

    def run(self) -> dict[str, Any]:
        """The notebook run on the bundled incident, then every scale, smallest first;
        returns the whole result (also written after each part)."""
        if self.opts.notebook:
            self.result["notebook"] = self.run_notebook()
        else:
            skipped = Stat(status="skipped (--no-notebook)").as_json()
            self.result["notebook"] = {step: skipped for step in NOTEBOOK_STEPS}
        self.write()
        for scale in sorted(self.opts.scales):
            self.result["scales"].append(self.run_scale(scale))
            self.write()
        self.result["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.write()
        return self.result

    def write(self) -> Path:
        """Write bench.json (also after each scale, so a cut run keeps what it measured)."""
        self.result["targets"] = targets(self.result)
        self.opts.out.mkdir(parents=True, exist_ok=True)
        path = self.opts.out / "bench.json"
        path.write_text(json.dumps(self.result, indent=1, default=str) + "\n")
        return path


def notebook_cell_times(directory: Path, top: int = 3) -> dict[str, Any]:
    """Where a notebook run's time went: per executed notebook in ``directory``, the sum
    of its cells' execution times (nbclient's timestamps) and its slowest cells."""
    out: dict[str, Any] = {}
    for path in sorted(directory.glob("*.ipynb")):
        try:
            cells = json.loads(path.read_text())["cells"]
        except (OSError, ValueError, KeyError):
            continue
        times = []
        for i, cell in enumerate(cells):
            ex = cell.get("metadata", {}).get("execution", {})
            start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
            if start and end:
                s = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
                source = "".join(cell.get("source", "")).strip().splitlines()
                times.append((round(s, 3), i, source[0][:80] if source else ""))
        out[path.stem] = {
            "cells_s": round(sum(t for t, _, _ in times), 3),
            "slowest": [
                {"cell": i, "s": t, "source": src} for t, i, src in sorted(times)[::-1][:top]
            ],
        }
    return out


def simulated_request_rows(out: Path) -> int | None:
    """Request rows a simulation wrote, from its ``truth.json`` (None when unreadable)."""
    try:
        rows = json.loads((out / "truth.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return None
    return sum(n for path, n in rows.items() if path.startswith("requests/"))


def _sub_stat(whole: Stat, stage: str) -> Stat:
    """The runs' times of one named stage inside a child's report."""
    runs = whole.detail.get("stage_runs", [])
    secs = [r[stage] for r in runs if stage in r]
    status = whole.status if whole.status != "ok" or secs else f"failed: no stage {stage!r}"
    return Stat(secs, whole.peak_rss_mb, status)


def _sum_stat(a: Stat, b: Stat) -> Stat:
    """Run-by-run sum of two stages measured in the same runs."""
    status = a.status if a.status != "ok" else b.status
    return Stat(
        [x + y for x, y in zip(a.seconds, b.seconds, strict=False)],
        max(a.peak_rss_mb or 0, b.peak_rss_mb or 0),
        status,
    )


def _ratio(num: Stat, den: Stat) -> float | None:
    """Ratio of medians, ``None`` when either side has no successful run."""
    if num.median_s is None or not den.median_s:
        return None
    return num.median_s / den.median_s


def ratios(c: dict[str, Stat]) -> dict[str, Any]:
    """Ours over the DuckDB floor per format, and pandas and polars over ours (JSON lines).

    When pandas did not finish, its ratio is ``None`` and ``pandas_status`` says why.
    """
    out: dict[str, Any] = {
        "ours_over_floor/jsonl": _ratio(c["ours/jsonl"], c["duckdb_floor/jsonl"]),
        "ours_over_floor/parquet": _ratio(c["ours/parquet"], c["duckdb_floor/parquet"]),
        "pandas_over_ours": _ratio(c["pandas/jsonl"], c["ours/jsonl"]),
        "polars_over_ours": _ratio(c["polars/jsonl"], c["ours/jsonl"]),
    }
    for who in ("pandas", "polars"):
        if c[f"{who}/jsonl"].status != "ok":
            out[f"{who}_status"] = c[f"{who}/jsonl"].status
    return out


def _won_by_default(c: dict[str, Any], rival: str) -> bool | None:
    """True when ``rival`` did not finish within the caps while ours did (None otherwise)."""
    dnf = c[rival]["status"].startswith("did not finish")
    return True if dnf and c["ours/jsonl"]["median_s"] else None


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 7, each with the measured value and met / missed / unmeasured."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, met: bool | None, note: str = "") -> None:
        rows.append({"target": name, "value": value, "met": met, "note": note})

    for s in result["scales"]:
        scale, r, c, st = s["scale"], s["ratios"], s["contenders"], s["stages"]
        for fmt in ("jsonl", "parquet"):
            v = r[f"ours_over_floor/{fmt}"]
            add(
                f"{scale:,} rows: ingest+rollups {fmt} <= 1.5x DuckDB floor",
                v,
                None if v is None else v <= 1.5,
            )
        v = r["polars_over_ours"]
        add(
            f"{scale:,} rows: ahead of polars",
            v,
            v > 1.0 if v is not None else _won_by_default(c, "polars/jsonl"),
            r.get("polars_status", ""),
        )
        v = r["pandas_over_ours"]
        if scale >= 10_000_000:
            add(
                f"{scale:,} rows: >= 10x faster than pandas",
                v,
                (v >= 10) if v is not None else _won_by_default(c, "pandas/jsonl"),
                c["pandas/jsonl"]["status"] if v is None else "",
            )
        ours = [c[k] for k in ("ours/jsonl", "ours/parquet") if k in c]
        rss = max((o["peak_rss_mb"] for o in ours if o["peak_rss_mb"] is not None), default=None)
        if scale >= 50_000_000:
            add(
                f"{scale:,} rows: peak RSS of ingest+rollups < 4 GB (MiB, JSON lines and Parquet)",
                rss,
                None if rss is None or any(o["status"] != "ok" for o in ours)
                else rss < FOUR_GB_MIB,
            )
        if scale == ENGINE_ROWS and "rollup/spark" in st:
            spark, duck = st["rollup/spark"], st["rollup/duckdb"]
            v = spark["median_s"]
            beside = f"DuckDB's: {_fmt_s(duck['median_s'])} s" if duck["median_s"] else ""
            add(
                f"{scale:,} rows: the Spark rollup runs, its time beside DuckDB's (s)",
                v,
                None if v is None else True,
                beside if v is not None else spark["status"],
            )
        v = st["detection+chain"]["median_s"]
        add(f"{scale:,} rows: detection+chain < 5 s", v, None if v is None else v < 5)
    nb = result.get("notebook", {})
    for key, name, limit in (
        ("detection+chain", "bundled incident (12 h at 1 s): detection+chain < 5 s", 5),
        ("report", "notebook suite on the bundled incident < 60 s", 60),
    ):
        if key in nb:
            v = nb[key]["median_s"]
            status = nb[key]["status"]
            add(name, v, None if v is None else v < limit, "" if status == "ok" else status)
    return rows


def _meta(opts: Options) -> dict[str, Any]:
    """Machine, versions and options, so that figures can be compared across runs."""
    versions: dict[str, str | None] = {}
    for dist in ("duckdb", "polars", "pandas", "pyarrow", "numpy"):
        try:  # from the metadata: importing them would make this process large
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "versions": versions,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
    }


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(result: dict[str, Any]) -> str:
    """The results as a fixed-width text table: one line per scale and stage or contender."""
    lines = [
        f"{'rows':>11}  {'stage / contender':<28} {'median s':>9} {'runs':>4} {'peak MiB':>9}  note"
    ]
    for s in result["scales"]:
        for group in ("stages", "contenders"):
            for name, st in s[group].items():
                note = "" if st["status"] == "ok" else st["status"]
                rss = "-" if st["peak_rss_mb"] is None else f"{st['peak_rss_mb']:.0f}"
                lines.append(
                    f"{s['scale']:>11,}  {name:<28} {_fmt_s(st['median_s']):>9} "
                    f"{st['runs']:>4} {rss:>9}  {note}"
                )
        for name in RATIOS:
            v = s["ratios"][name]
            lines.append(
                f"{s['scale']:>11,}  {'ratio ' + name:<28} {'-' if v is None else f'{v:.2f}x':>9}"
            )
    for name, st in result.get("notebook", {}).items():
        rss = "-" if st["peak_rss_mb"] is None else f"{st['peak_rss_mb']:.0f}"
        note = "" if st["status"] == "ok" else st["status"]
        lines.append(
            f"{'bundled':>11}  {name:<28} {_fmt_s(st['median_s']):>9} "
            f"{st['runs']:>4} {rss:>9}  {note}"
        )
        per_nb = st.get("detail", {}).get("notebooks")
        if per_nb:
            cells = ", ".join(f"{k.split('-')[0]} {v['cells_s']:.1f}" for k, v in per_nb.items())
            lines.append(f"{'':>11}    cells per notebook (s): {cells}")
    if result.get("targets"):
        lines.append("")
        lines.append("targets:")
        for t in result["targets"]:
            mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
            v = t["value"]
            shown = "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
            lines.append(f"  [{mark:>12}] {t['target']}: {shown} {t['note']}".rstrip())
    return "\n".join(lines)


def parse_scales(text: str) -> tuple[int, ...]:
    """``"1e6,1e7,5e7"`` -> ``(1000000, 10000000, 50000000)``."""
    try:
        scales = tuple(int(float(x)) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--scales: expected numbers like 1e6,1e7, got {text!r}"
        ) from exc
    if not scales or min(scales) < 1:
        raise argparse.ArgumentTypeError(f"--scales: expected positive row counts, got {text!r}")
    return scales


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "build" / "bench",
        help="where bench.json, the table and the generated data go",
    )
    p.add_argument(
        "--scales",
        type=parse_scales,
        default=None,
        help="request rows per scale, comma-separated (default 1e6,1e7,5e7)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per job; medians are reported (at most 2 at 10M rows, 1 at 50M)",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny scales, one repeat: a smoke run of every stage"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1500.0,
        help="time cap per job, seconds; over it a job 'did not finish'",
    )
    p.add_argument(
        "--mem-cap-gb",
        type=float,
        default=12.0,
        help="resident-memory cap per job, GiB; over it a job 'did not finish'",
    )
    p.add_argument("--no-notebook", action="store_true", help="skip the notebook run")
    p.add_argument("--keep-data", action="store_true", help="keep the generated files")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="jobs run at once (default 1; 3 with --quick, whose figures are a smoke test)",
    )
    p.add_argument(
        "--window-hours",
        type=float,
        default=None,
        help="incident window of the generated files (default 8; 1 with --quick)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile our jobs (statement timings, cProfile) and EXPLAIN"
        " ANALYZE the floor at each scale: profile-<scale>-<job>.txt",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print the table, write bench.json and bench.txt."""
    args = build_parser().parse_args(argv)
    scales = args.scales or (QUICK_SCALES if args.quick else DEFAULT_SCALES)
    hours = args.window_hours or (1.0 if args.quick else bench_data.WINDOW_S / 3600)
    window_s = int(hours * 3600)
    opts = Options(
        out=args.out.resolve(),
        scales=scales,
        repeats=1 if args.quick else max(1, args.repeats),
        timeout_s=args.timeout,
        mem_cap_mb=args.mem_cap_gb * 1024,
        notebook=not args.no_notebook,
        keep_data=args.keep_data,
        profile=args.profile,
        quick=args.quick,
        parallel=args.parallel or (3 if args.quick else 1),
        window_s=window_s,
        seed=args.seed,
    )
    bench = Bench(opts)
    result = bench.run()
    text = table(result)
    print(text)
    (opts.out / "bench.txt").write_text(text + "\n")
    bench.log(f"wrote {opts.out / 'bench.json'} and bench.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
