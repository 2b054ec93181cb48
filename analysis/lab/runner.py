"""Run one lab variant: namespace, memcached, the Go data plane, capture, cleanup.

The run is bounded: the data plane stops itself after ``seconds``; the
runner waits at most ``seconds + margin`` and then kills it; the namespace
holder sleeps no longer than the hard limit; every process is ended by its
PID in a ``finally`` (Ctrl-C and SIGTERM included) and the namespace goes
with them. Only loopback exists in the namespace.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from analysis.errors import UserError
from analysis.lab.capture import (
    MANIFEST,
    PARTIAL_METRICS,
    RAW_FILES,
    Facts,
    compress,
    finish_metrics,
    write_manifest,
)
from analysis.lab.gobuild import build_dataplane
from analysis.lab.netns import namespace, namespace_gone, unavailable_reason
from analysis.progress import progress_line

VARIANTS = ("naive", "fixed-source", "random-source", "bounded")
BATCH_CALLER = "feed-indexer"
FIXED_SOURCE = "127.32.0.1"
MEMCACHED = "127.0.0.1:11211"
PORT_RANGE_START = 40000
MIN_SECONDS = 30


class LabUnavailable(UserError):
    """The lab cannot run on this machine (not root, no namespaces, a tool missing)."""


@dataclass(frozen=True)
class LabConfig:
    """One lab run. ``scale`` shrinks or grows the port range and the batch together.

    At scale 1: 3,000 ephemeral ports, batches of 2,000 URIs (production's
    28,232 ports and ~17,500-URI batches, scaled by the same ~0.11). The
    default is scale 0.5 (1,500 ports, batches of 1,000): at scale 1 one batch
    a second saturates two cores in the kernel's port search and turns a third
    of the errors into connect timeouts. An idle
    pool of 100 (production's 1,000 at ~0.1), 200 user lookups/s in small
    batches, and the fix's concurrency limit of 50 for ``bounded``. The
    batch caller starts after a quiet baseline of a third of the run (5-60 s)
    and sends ``batches`` batches ``batch_every_s`` apart: one request per
    second (the real culprit sent under 3/s).
    """

    variant: str
    out: Path
    seconds: int = 60
    scale: float = 0.5
    seed: int = 1
    idle_pool: int = 100
    concurrency_limit: int = 50
    user_lookups_per_s: int = 200
    batches: int = 10
    batch_every_s: int = 1
    base_ports: int = 3000
    base_batch: int = 2000

    def check(self) -> None:
        """Raise a UserError naming the bad setting."""
        if self.variant not in VARIANTS:
            raise UserError(
                f"lab: --variant {self.variant!r}: expected one of {', '.join(VARIANTS)}"
            )
        if self.seconds < MIN_SECONDS:
            raise UserError(f"lab: --seconds {self.seconds}: expected at least {MIN_SECONDS}")
        if not 0.1 <= self.scale <= 5:
            raise UserError(f"lab: --scale {self.scale}: expected between 0.1 and 5")
        end = self.baseline_s + (self.batches - 1) * self.batch_every_s
        if end + 5 > self.seconds:
            raise UserError(f"lab: --seconds {self.seconds} leaves no time after the batches")

    @property
    def port_range(self) -> tuple[int, int]:
        """The namespace's ephemeral port range (inclusive)."""
        n = max(200, round(self.base_ports * self.scale))
        return PORT_RANGE_START, PORT_RANGE_START + n - 1

    @property
    def batch_size(self) -> int:
        """URIs per large batch."""
        return max(100, round(self.base_batch * self.scale))

    @property
    def baseline_s(self) -> int:
        """Quiet seconds before the batch caller starts."""
        return min(60, max(5, self.seconds // 3))

    @property
    def hard_limit_s(self) -> int:
        """Past this the runner kills everything, whatever state it is in."""
        return self.seconds + 45

    def facts(self) -> Facts:
        """What the manifest records about this run."""
        return Facts(
            variant=self.variant,
            port_range=self.port_range,
            idle_pool=self.idle_pool,
            concurrency_limit=self.concurrency_limit if self.variant == "bounded" else None,
            source_addresses={"fixed-source": "fixed", "random-source": "random"}.get(
                self.variant, "default"
            ),
            batch_caller=BATCH_CALLER,
            batch_size=self.batch_size,
            batches=self.batches,
            user_lookups_per_s=self.user_lookups_per_s,
            scale=self.scale,
            seed=self.seed,
        )

    def dataplane_args(self, out: Path) -> list[str]:
        """Flags for the Go data plane."""
        return [
            f"-variant={self.variant}", f"-memcached={MEMCACHED}", f"-out={out}",
            f"-seconds={self.seconds}", f"-baseline={self.baseline_s}",
            f"-batches={self.batches}", f"-batch-every={self.batch_every_s}s",
            f"-batch-size={self.batch_size}", f"-batch-caller={BATCH_CALLER}",
            f"-user-rate={self.user_lookups_per_s}", f"-idle-pool={self.idle_pool}",
            f"-limit={self.concurrency_limit if self.variant == 'bounded' else 0}",
            f"-fixed-source={FIXED_SOURCE}", f"-seed={self.seed}",
        ]


@dataclass(frozen=True)
class LabResult:
    """Where a run's capture is, what it ran, and its window (UTC)."""

    out: Path
    config: LabConfig
    start: dt.datetime
    end: dt.datetime
    files: list[Path] = field(default_factory=list)
    pids: tuple[int, ...] = ()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the lab runs, so cleanup runs too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prepare_out(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in [*RAW_FILES, *(f"{n}.gz" for n in RAW_FILES), *PARTIAL_METRICS, MANIFEST]:
        (out / name).unlink(missing_ok=True)


def _wait_showing(proc: subprocess.Popen, limit_s: float, what: str, seconds: int) -> int:
    """``proc.wait(timeout=limit_s)``, with a progress line of the run's seconds."""
    with progress_line(f"lab: {what}", total=seconds, unit="s") as bar:
        for waited in range(int(limit_s)):
            try:
                return proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                bar.reach(min(seconds, waited + 1))
        return proc.wait(timeout=max(0.01, limit_s - int(limit_s)))


def run_lab(config: LabConfig) -> LabResult:
    """Run one variant and leave its capture (compressed, with manifest) in ``config.out``.

    Raises ``LabUnavailable`` when the machine cannot run it and ``UserError``
    when a step fails; the namespace and every process are gone either way.
    """
    config.check()
    reason = unavailable_reason(("memcached", "go"))
    if reason:
        raise LabUnavailable(reason)
    binary = build_dataplane()
    out = config.out.resolve()
    _prepare_out(out)
    lo, hi = config.port_range
    start = dt.datetime.now(dt.UTC)
    with (
        _sigterm_as_interrupt(),
        tempfile.TemporaryFile(mode="w+") as stderr,
        namespace(config.hard_limit_s) as ns,
    ):
        ns.sysctl("net.ipv4.ip_local_port_range", f"{lo} {hi}")
        ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
        host, port = MEMCACHED.split(":")
        ns.start(
            ["timeout", "-s", "TERM", str(config.hard_limit_s), "memcached", "-u", "nobody",
             "-l", host, "-p", port, "-U", "0", "-t", "2", "-c", "4096", "-b", "4096"],
            stdout=subprocess.DEVNULL, stderr=stderr, death_signal=signal.SIGTERM,
        )
        dp = ns.start([str(binary), *config.dataplane_args(out)], stdout=stderr, stderr=stderr,
                      nofile=20000)
        sampler = ns.start(
            [str(binary), "-mode=sampler", f"-pid={dp.pid}", f"-memcached={MEMCACHED}",
             f"-out={out}", f"-seconds={config.seconds + 15}"],
            stdout=stderr, stderr=stderr,
        )
        for proc, what, limit in ((dp, "data plane", config.seconds + 30), (sampler, "sampler", 5)):
            try:
                rc = _wait_showing(proc, limit, what, config.seconds)
            except subprocess.TimeoutExpired as exc:
                raise UserError(f"lab: the {what} did not finish in time; killed it") from exc
            if rc != 0:
                stderr.seek(0)
                tail = " | ".join(stderr.read().strip().splitlines()[-3:])
                raise UserError(f"lab: the {what} exited with {rc}: {tail}")
    if not namespace_gone(ns):
        raise UserError("lab: the namespace is still held after cleanup")
    end = dt.datetime.now(dt.UTC)
    finish_metrics(out, BATCH_CALLER)
    files = compress(out)
    files.append(write_manifest(out, config.facts(), start, end))
    return LabResult(out=out, config=config, start=start, end=end, files=files,
                     pids=tuple(ns.ended))
