"""A private network namespace and the processes run in it, all ended by PID.

The namespace is anonymous: ``unshare --net sleep LIMIT`` creates it and holds
it open (the *holder*); every other process enters it with ``nsenter
--net=/proc/HOLDER/ns/net``. It has only a loopback interface, so nothing the
lab does can reach another machine, and its sysctls (ephemeral port range,
``tcp_tw_reuse``) are its own: the host's settings are never touched. When
the last process in it exits the kernel removes it, TIME_WAIT sockets and
all. Belt and braces for a runner that dies without cleaning up: the holder
sleeps only up to the hard time limit, and every child gets a parent-death
signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.errors import UserError

REQUIRED_TOOLS = ("unshare", "nsenter", "ip", "sysctl", "timeout")
_PR_SET_PDEATHSIG = 1


def unavailable_reason(extra_tools: Sequence[str] = ()) -> str | None:
    """Why a namespace lab cannot run here (one line), or None when it can.

    Needs root (CAP_SYS_ADMIN for ``unshare --net``), the tools above and
    ``extra_tools`` on PATH, and a kernel that lets us create a namespace.
    """
    if os.name != "posix" or not Path("/proc/self/ns/net").exists():
        return "the lab needs Linux network namespaces (/proc/self/ns/net is missing)"
    if os.geteuid() != 0:
        return "the lab needs root to create a network namespace (run as root)"
    missing = [t for t in (*REQUIRED_TOOLS, *extra_tools) if shutil.which(t) is None]
    if missing:
        return f"the lab needs {', '.join(missing)} on PATH (scripts/sysdeps.sh installs them)"
    probe = subprocess.run(
        ["unshare", "--net", "true"], capture_output=True, text=True, timeout=10, check=False
    )
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"cannot create a network namespace here: {why}"
    return None


def _child_setup(death_signal: int, nofile: int | None) -> Callable[[], None]:
    """What a child runs before exec: die with the parent; raise the open-file limit.

    libc is loaded here, in the parent, so the child only makes system calls.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    limits = None
    if nofile is not None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limits = (min(nofile, hard), hard)

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if limits is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    return setup


def end_process(proc: subprocess.Popen, grace_s: float = 3.0) -> int | None:
    """End one process by its PID: SIGTERM, then SIGKILL after ``grace_s``; reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    return proc.returncode


def _children(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (from /proc; empty once it is gone)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def end_pid(pid: int, grace_s: float = 3.0) -> None:
    """End a process we did not spawn directly (a grandchild) by its PID."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Namespace:
    """A live lab namespace: its holder process and the processes started in it."""

    holder: subprocess.Popen
    hard_limit_s: int
    procs: list[subprocess.Popen] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)

    @property
    def net_path(self) -> str:
        """The namespace's handle, for ``nsenter --net=``."""
        return f"/proc/{self.holder.pid}/ns/net"

    def sockstat(self) -> str:
        """The namespace's own ``/proc/net/sockstat`` text, read from outside it."""
        return Path(f"/proc/{self.holder.pid}/net/sockstat").read_text()

    def run(self, argv: Sequence[str], *, timeout_s: float = 10) -> str:
        """Run a short command inside the namespace; its stdout, or a UserError."""
        res = subprocess.run(
            ["nsenter", f"--net={self.net_path}", "--", *argv],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        if res.returncode != 0:
            raise UserError(f"lab: {' '.join(argv)} failed in the namespace: {res.stderr.strip()}")
        return res.stdout

    def start(
        self, argv: Sequence[str], *, stdout=None, stderr=None, nofile: int | None = None,
        death_signal: int = signal.SIGKILL,
    ) -> subprocess.Popen:
        """Start a long-running process inside the namespace and track its PID."""
        proc = subprocess.Popen(
            ["nsenter", f"--net={self.net_path}", "--", *argv],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup(death_signal, nofile),
        )
        self.procs.append(proc)
        return proc

    def sysctl(self, key: str, value: str) -> None:
        """Set a sysctl of this namespace only and check it took."""
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])
        got = " ".join(self.run(["sysctl", "-n", key]).split())
        if got != " ".join(value.split()):
            raise UserError(f"lab: sysctl {key} is {got!r} in the namespace, wanted {value!r}")

    def close(self) -> None:
        """End every process (grandchildren first, then children, newest first), then the holder."""
        for proc in reversed(self.procs):
            for pid in _children(proc.pid):
                end_pid(pid)
                self.ended.append(pid)
            end_process(proc)
            self.ended.append(proc.pid)
        end_process(self.holder)
        self.ended.append(self.holder.pid)


def _own_netns() -> str:
    return os.readlink("/proc/self/ns/net")


@contextlib.contextmanager
def namespace(hard_limit_s: int) -> Iterator[Namespace]:
    """A fresh network namespace with loopback up, removed on exit whatever happens."""
    holder = subprocess.Popen(
        ["unshare", "--net", "--", "sleep", str(int(hard_limit_s))],
        stdin=subprocess.DEVNULL, preexec_fn=_child_setup(signal.SIGKILL, None),
    )
    ns = Namespace(holder, hard_limit_s)
    try:
        mine = _own_netns()
        for _ in range(200):  # until unshare has switched namespace (bounded: 2 s)
            with contextlib.suppress(OSError):
                if os.readlink(ns.net_path) != mine:
                    break
            if holder.poll() is not None:
                raise UserError(f"lab: unshare --net exited with {holder.returncode}")
            time.sleep(0.01)
        else:
            raise UserError("lab: the namespace holder did not enter a new namespace in 2 s")
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        ns.close()


def namespace_gone(ns: Namespace) -> bool:
    """True when every process we started in it has ended (so the kernel removed it)."""
    return not any(_pid_alive(pid) for pid in ns.ended) and not Path(ns.net_path).exists()
