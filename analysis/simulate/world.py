"""The world model: callers, the pool mechanism and the Go runtime, second by second.

``run_world(scenario)`` returns a ``World``: per-second, per-host arrays of
what happened (the ground truth the files are written from). One loop over
seconds couples three parts, each vectorised over hosts:

1. Load. The memcached load of each data centre (background lookups of all
   endpoints following the daily curve) is split over the DC's hosts that are
   up; each big batch (a request of a caller with ``batch_rate``) goes to one
   up host of its DC, picked by a pre-drawn uniform number.
2. The pool: ``analysis.mechanism.PoolState.step`` (ports, TIME_WAIT, failed
   dials), with the runtime's ``stall`` stretching lookup times.
3. The runtime (stylised, documented in ``Runtime``): every failed cache
   operation logs a line; the smoothed error-line rate drives OS threads
   towards ``threads_max`` (Go never gives threads back, so they only ratchet
   up until the process restarts); GC pauses and the stall grow with threads;
   memory grows with threads and log buffers; past ``mem_limit_mb`` the pod is
   OOM-killed and restarts after the kubelet's crash-loop back-off. A process
   that starts while its host's TIME_WAIT sockets still fill the port range
   fails its start-up at once (killed after ``startup_s``), so restarts come in
   bursts. User requests time out when the stall passes ``timeout_stall``:
   user-facing traffic of the DC drops with the share of healthy hosts, in
   cycles of roughly up-time to OOM plus crash loop (~30 min in april-2026).

Settings changes (mitigation, fix) are rolled out host by host (a restart
each, 20 s apart). Requests and log lines are drawn afterwards, vectorised,
from these arrays (``analysis.simulate.files``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.mechanism import PoolSettings, PoolState, batch_load
from analysis.simulate.scenario import Scenario

_POOL_KEYS = ("concurrency", "dials", "failed_dials", "failed_lookups", "failed_user_lookups",
              "open_conns", "idle", "closed", "time_wait", "lookups")


@dataclass(frozen=True)
class Batches:
    """The big requests: start second, caller index, DC index, host index, URIs, status."""

    second: np.ndarray
    caller: np.ndarray
    dc: np.ndarray
    host: np.ndarray
    uris: np.ndarray
    status: np.ndarray  # 0 ok, 1 host down (Unavailable), 2 timed out


@dataclass(frozen=True)
class World:
    """What happened, per second (rows) and per host (columns) unless noted."""

    scenario: Scenario
    curve: np.ndarray  # (T,) daily traffic curve, 1 at the peak
    up: np.ndarray  # bool: the host's process is serving
    pool: dict[str, np.ndarray]  # mechanism outputs (see PoolState.step)
    stall: np.ndarray  # lookup-time multiplier of the runtime (1 = healthy)
    timeout_frac: np.ndarray  # share of user requests that time out
    threads: np.ndarray
    goroutines: np.ndarray
    gc_pause_s: np.ndarray  # max GC pause in the second
    mem_mb: np.ndarray
    restarts: np.ndarray  # cumulative container restarts
    error_lines: np.ndarray  # cache-failure log lines written (unsampled) per second
    timeout_lines: np.ndarray  # i/o timeout log lines written (unsampled) per second
    errno: np.ndarray  # (T,) errno class of failed dials under the settings in force
    source_addr: np.ndarray  # (T,) "fixed" | "random" | "default"
    user_rps: np.ndarray  # (T, n_dc) user-facing requests/s served per DC
    served: np.ndarray  # (T, n_dc) share of the DC's user traffic served
    batches: Batches
    starts: list[tuple[int, int]]  # (second, host) of every process start (restart)

    @property
    def n_seconds(self) -> int:
        return int(self.up.shape[0])


def daily_curve(sc: Scenario, n: int) -> np.ndarray:
    """Daily traffic curve over the window's seconds, 1 at ``curve_peak_hour`` UTC."""
    hour0 = sc.start.hour + sc.start.minute / 60 + sc.start.second / 3600
    hours = hour0 + np.arange(n) / 3600.0
    a = sc.curve_amplitude
    return (1 + a * np.cos(2 * np.pi * (hours - sc.curve_peak_hour) / 24)) / (1 + a)


def draw_batches(sc: Scenario, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Big requests of every caller with a batch rate: (second, caller, dc, uris, pick)."""
    dc_index = {d: i for i, d in enumerate(sc.dcs)}
    parts = []
    t = np.arange(n)
    for ci, c in enumerate(sc.callers):
        if c.batch_rate <= 0 and c.pre_batch_rate <= 0:
            continue
        rate = np.where(t >= c.batch_from_s, c.batch_rate, c.pre_batch_rate)
        if c.active is not None:
            rate = np.where((t >= c.active[0]) & (t < c.active[1]), rate, 0.0)
        counts = rng.poisson(rate)
        sec = np.repeat(t, counts)
        dcs = np.array([dc_index[d] for d in c.dcs])[rng.integers(0, len(c.dcs), sec.size)]
        uris = rng.integers(c.batch_lo, c.batch_hi + 1, sec.size)
        parts.append((sec, np.full(sec.size, ci), dcs, uris, rng.random(sec.size)))
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z, z, z, np.zeros(0)
    sec, caller, dcs, uris, pick = (np.concatenate(x) for x in zip(*parts, strict=True))
    order = np.argsort(sec, kind="stable")
    return sec[order], caller[order], dcs[order], uris[order], pick[order]


def _settings_at(sc: Scenario, t: int) -> PoolSettings:
    cur = sc.pool
    for ch in sorted(sc.changes, key=lambda c: c.at_s):
        if ch.at_s <= t:
            cur = ch.settings
    return cur


def run_world(sc: Scenario) -> World:
    """Run ``sc`` second by second (see the module docstring)."""
    rng = np.random.default_rng([sc.seed, 11])
    n = sc.duration_s
    hosts = sc.hosts
    n_h = len(hosts)
    dcs = sc.dcs
    host_dc = np.array([dcs.index(h.dc) for h in hosts])
    members = [np.flatnonzero(host_dc == d) for d in range(len(dcs))]
    rt = sc.runtime
    curve = daily_curve(sc, n)
    dc_load = (
        sc.background_lookups * curve[:, None] * np.array([len(m) for m in members])[None, :]
        * (1 + 0.02 * rng.standard_normal((n, len(dcs))))
    )
    b_sec, b_caller, b_dc, b_uris, b_pick = draw_batches(sc, rng, n)
    b_host = np.full(b_sec.size, -1)
    b_status = np.zeros(b_sec.size, np.int64)
    b_bounds = np.searchsorted(b_sec, np.arange(n + 1))
    # per-batch load under the settings in force at its second (vectorised per segment)
    b_run, b_conc, b_wait = (np.zeros(b_sec.size) for _ in range(3))
    bounds = sorted({0, n, *(min(max(c.at_s, 0), n) for c in sc.changes)})
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        sel = (b_sec >= a) & (b_sec < b)
        u, _rej, conc, wait = batch_load(b_uris[sel], _settings_at(sc, a))
        b_run[sel], b_conc[sel], b_wait[sel] = u, conc, wait
    tau = rt.threads_tau_s * rng.uniform(0.85, 1.15, n_h)
    mem_noise = rng.normal(0, 15, (n, n_h))
    gc_noise = 1 + 0.1 * rng.random((n, n_h))
    dc_size = np.array([len(m) for m in members], dtype=np.float64)
    steady_all = dc_load[:, host_dc] / dc_size[host_dc]  # every host up

    # rollouts of settings changes: host i restarts at at_s + 20 i, down 15 s
    rollout_at = {ch.at_s + 20 * i: i for ch in sc.changes for i in range(n_h)}
    change_at = {ch.at_s for ch in sc.changes}

    state = PoolState(n, n_h)
    pool = {k: np.zeros((n, n_h)) for k in _POOL_KEYS}
    stall_a = np.ones((n, n_h))
    threads_a = np.zeros((n, n_h))
    mem_a = np.zeros((n, n_h))
    restarts_a = np.zeros((n, n_h))
    up_a = np.zeros((n, n_h), bool)
    tout_a = np.zeros((n, n_h))
    errno = np.empty(n, "<U13")
    source = np.empty(n, "<U7")

    threads = np.full(n_h, rt.threads_base)
    e_ema = np.zeros(n_h)
    down_until = np.zeros(n_h, np.int64)  # the host is down while t < down_until
    backoff_i = np.zeros(n_h, np.int64)
    up_since = np.zeros(n_h, np.int64)
    restarts = np.zeros(n_h)
    starts: list[tuple[int, int]] = []
    settings = _settings_at(sc, 0)
    s0, s1 = rt.timeout_stall
    zeros = np.zeros(n_h)

    # Python-level bookkeeping of rare events keeps the per-second loop lean.
    wake: dict[int, list[int]] = {}  # second -> hosts whose process starts then
    crash: dict[int, list[int]] = {}  # second -> hosts whose start-up fails then
    n_down = 0
    up = np.ones(n_h, bool)
    no_tout = np.zeros(n_h)

    def kill(h: int, t: int, wait_s: int) -> None:
        nonlocal n_down
        if up[h]:
            n_down += 1
        up[h] = False
        down_until[h] = t + 1 + wait_s
        wake.setdefault(t + 1 + wait_s, []).append(h)
        restarts[h] += 1

    for t in range(n):
        if t in change_at:
            settings = _settings_at(sc, t)
        if t in rollout_at:
            h = rollout_at[t]
            if up[h]:
                kill(h, t, 14)
                backoff_i[h] = 0
        restart = None
        if t in wake:
            hs = [h for h in wake.pop(t) if down_until[h] == t]
            if hs:
                restart = np.zeros(n_h, bool)
                restart[hs] = True
                # the new process meets the old one's TIME_WAIT sockets: start-up fails at once
                prev_tw = state.cum[t] - state.cum[max(0, t - settings.time_wait_s + 1)]
                for h in hs:
                    starts.append((t, h))
                    up[h] = True
                    n_down -= 1
                    up_since[h] = t
                    if prev_tw[h] >= 0.5 * settings.port_ceiling:
                        crash.setdefault(t + rt.startup_s, []).append(h)
                threads[restart] = rt.threads_base
                e_ema[restart] = 0.0
        all_up = n_down == 0

        # 1. load
        if all_up:
            steady = steady_all[t]
        else:
            steady = zeros.copy()
            for d, m in enumerate(members):
                live = m[up[m]]
                if live.size:
                    steady[live] = dc_load[t, d] / live.size
        i0, i1 = b_bounds[t], b_bounds[t + 1]
        if i1 > i0:
            bl, bc, bw = zeros.copy(), zeros.copy(), zeros.copy()
            u, conc, wait = b_run[i0:i1], b_conc[i0:i1], b_wait[i0:i1]
            for k in range(i1 - i0):
                m = members[b_dc[i0 + k]]
                live = m if all_up else m[up[m]]
                if live.size == 0:
                    b_host[i0 + k] = m[int(b_pick[i0 + k] * m.size)]
                    b_status[i0 + k] = 1
                    continue
                h = live[int(b_pick[i0 + k] * live.size)]
                b_host[i0 + k] = h
                bl[h] += u[k]  # a batch refused by max_batch adds nothing
                bc[h] += conc[k]
                bw[h] += wait[k]
        else:
            bl = bc = bw = zeros

        # 2. pool
        stall = (threads * (1 / rt.threads_base)) ** rt.stall_exponent
        res = state.step(t, settings, steady, bl, bc, bw, restart, stall, latency=False)
        for k in _POOL_KEYS:
            pool[k][t] = res[k]

        # 3. runtime
        if stall.max() > s0:
            tout = steady * np.clip((stall - s0) * (1 / (s1 - s0)), 0.0, 1.0) * 0.002
            e_ema += (res["failed_lookups"] + tout - e_ema) * (1 / 30)
        else:
            tout = no_tout
            e_ema += (res["failed_lookups"] - e_ema) * (1 / 30)
        gap = rt.threads_base + (rt.threads_max - rt.threads_base) * e_ema / (
            e_ema + rt.errors_half) - threads
        np.maximum(gap, 0.0, out=gap)
        if not all_up:
            gap *= up
        threads = threads + gap / tau
        mem = (rt.mem_base_mb + rt.mem_per_thread_mb * threads
               + rt.mem_per_kerr_mb * 0.001 * e_ema + mem_noise[t])
        if not all_up:  # survivors carry the dead hosts' share: in-flight memory grows
            mem += rt.mem_per_load_mb * (steady / np.maximum(steady_all[t], 1.0) - 1.0)
        dying = crash.pop(t, [])
        if mem.max() > rt.mem_limit_mb:
            dying += np.flatnonzero(mem > rt.mem_limit_mb).tolist()
        for h in dict.fromkeys(dying):
            if not up[h]:
                continue
            if t - up_since[h] >= rt.backoff_reset_s:
                backoff_i[h] = 0
            kill(h, t, rt.backoff_s[min(int(backoff_i[h]), len(rt.backoff_s) - 1)])
            backoff_i[h] += 1

        up_a[t] = up
        stall_a[t] = stall
        threads_a[t] = threads
        mem_a[t] = mem
        restarts_a[t] = restarts
        tout_a[t] = tout
        errno[t] = settings.errno_class
        source[t] = settings.source_addresses

    down = ~up_a
    tfrac_a = np.clip((stall_a - s0) / (s1 - s0), 0.0, 1.0) * up_a
    err_a = pool["failed_lookups"] * up_a
    gor_a = 1800 + pool["concurrency"] + (err_a + tout_a) * 0.05
    gc_a = rt.gc_base_ms / 1000 * stall_a * gc_noise
    for arr in (stall_a, threads_a, gor_a, gc_a, mem_a):
        arr[down] = np.nan
    health = np.where(up_a, 1.0 - tfrac_a, 0.0)
    served = np.stack([health[:, m].mean(axis=1) for m in members], axis=1)
    user = sc.user_rps * curve[:, None] * served * (1 + 0.01 * rng.standard_normal(served.shape))
    # a batch on a stalled host times out with the host's timeout share
    ok_host = b_host >= 0
    tf = np.zeros(b_sec.size)
    tf[ok_host] = tfrac_a[b_sec[ok_host], b_host[ok_host]]
    b_status[(b_status == 0) & (rng.random(b_sec.size) < tf)] = 2
    return World(
        scenario=sc, curve=curve, up=up_a, pool=pool, stall=stall_a, timeout_frac=tfrac_a,
        threads=threads_a, goroutines=gor_a, gc_pause_s=gc_a, mem_mb=mem_a,
        restarts=restarts_a, error_lines=err_a, timeout_lines=tout_a, errno=errno,
        source_addr=source, user_rps=user, served=served,
        batches=Batches(b_sec, b_caller, b_dc, b_host, b_uris, b_status), starts=starts,
    )
