"""The connection-pool mechanism: one memcached lookup per URI, ports, TIME_WAIT.

A pure, deterministic model over per-second arrays, shared by the simulator
(which runs it to write an incident's metrics and errors) and by the what-if
replay (which runs it on loaded requests with other settings).

The model, per data-plane host and per second ``t`` (all hosts are
independent; each host has its own loopback and its own port space):

1. Demand. ``lookups[t, h]`` lookups start in second ``t``: one per URI of
   every request. Most come from small requests spread over the second; their
   concurrency follows Little's law, ``steady * lookup_ms / 1000``. The URIs of
   *batches* (requests listed in ``PoolDemand.batches``, the caller decides
   which) all start at once, one goroutine each: a batch of ``B`` URIs wants
   ``B`` connections at the same moment, or ``min(B, concurrency_limit)`` when
   the handler has a limit. Batches starting in the same second on the same
   host are taken to overlap (a fan-out that dials thousands of connections
   lasts a good part of a second), and to finish within that second.
   ``max_batch`` rejects a request with more URIs outright (its lookups never
   run; they are counted as ``rejected_lookups``).
2. Pool. ``idle`` connections carried over from the last second are reused
   first. The rest of the wanted concurrency is dialled. A dial needs a free
   local port: with a ``fixed`` or ``default`` source address, the ports of
   ``port_range`` are shared by open connections, idle connections and
   TIME_WAIT sockets; with ``random`` source addresses (the workaround: bind
   each dial to a random 127.a.b.c) the (address, port) space is taken as
   unbounded. Dials beyond the free ports fail: ``EADDRINUSE`` ("bind: address
   already in use") from a fixed source address, ``EADDRNOTAVAIL`` ("connect:
   cannot assign requested address") from the kernel's default one. A lookup
   that gets no connection fails (no retry); failures are spread over steady
   and batch lookups in proportion to their share of the wanted concurrency,
   so user-facing (steady) lookups fail only while a batch runs.
3. Close. When the second's lookups are done, up to ``idle_pool`` connections
   go back to the idle pool (gomemcache's ``MaxIdleConns`` caps idle ones
   only, never open ones); the rest are closed by the client and each holds
   its port in TIME_WAIT for ``time_wait_s`` seconds. The kernel keeps at most
   ``max_tw_buckets`` TIME_WAIT sockets; beyond that it destroys them at once.
4. Restarts. ``PoolDemand.restarts[t, h]`` marks a process restart (an OOM
   kill): the idle connections are closed into TIME_WAIT and the pool starts
   empty, while the TIME_WAIT sockets of the old process stay: a restarted pod
   meets them at once.
5. Latency. A lookup on an existing connection takes ``lookup_ms``; a dial adds
   ``dial_ms``; with a concurrency limit a batch's lookups queue behind each
   other (``ceil(B / limit)`` rounds). A failed lookup falls back to the
   database (``fallback_ms``). ``lookup_ms_mean`` is the mean over the second's
   lookups.

Settings may change during the window (the mitigation, the fix): pass
``changes=[(second, PoolSettings(...)), ...]``; the state (idle pool, TIME_WAIT
sockets) carries over. The model runs over seconds, not requests. The
simulator steps ``PoolState`` second by second (its runtime feeds back into the
pool); ``simulate_pool`` has the demand up front, so it only walks the seconds
whose state can change (dials, restarts, settings changes: ~30,000 host-seconds
of 260,000 on the april-2026 incident, in plain floats) and then evaluates every
second at once with ``pool_second``, the arithmetic ``PoolState.step`` uses, so
both give the same numbers to the bit (``tests/test_mechanism_fast.py``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SourceAddresses = Literal["fixed", "random", "default"]

#: errno class of a failed dial, by source-address policy ("" when dials cannot fail).
ERRNO_BY_SOURCE: dict[str, str] = {
    "fixed": "EADDRINUSE",
    "default": "EADDRNOTAVAIL",
    "random": "",
}

#: Linux default ``net.ipv4.ip_local_port_range``.
DEFAULT_PORT_RANGE = (32768, 60999)


@dataclass(frozen=True)
class PoolSettings:
    """The client, kernel and handler settings the mechanism depends on.

    ``port_range`` is inclusive (``ip_local_port_range``). ``concurrency_limit``
    caps one request's concurrent lookups (the fix: 50); ``max_batch`` rejects
    requests with more URIs than that.
    """

    idle_pool: int = 1000
    port_range: tuple[int, int] = DEFAULT_PORT_RANGE
    time_wait_s: int = 60
    source_addresses: SourceAddresses = "fixed"
    concurrency_limit: int | None = None
    max_batch: int | None = None
    lookup_ms: float = 0.5
    dial_ms: float = 0.2
    fallback_ms: float = 8.0
    max_tw_buckets: int = 131072

    def __post_init__(self) -> None:
        lo, hi = self.port_range
        if not 0 < lo <= hi <= 65535:
            raise ValueError(f"port_range must be 0 < lo <= hi <= 65535, got {self.port_range}")
        if self.source_addresses not in ERRNO_BY_SOURCE:
            raise ValueError(f"source_addresses must be fixed|random|default, got "
                             f"{self.source_addresses!r}")
        if self.idle_pool < 0 or self.time_wait_s < 1:
            raise ValueError("idle_pool must be >= 0 and time_wait_s >= 1")
        if self.concurrency_limit is not None and self.concurrency_limit < 1:
            raise ValueError("concurrency_limit must be None or >= 1")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError("max_batch must be None or >= 1")

    @property
    def ports(self) -> int:
        """Number of local ports one source address can use."""
        lo, hi = self.port_range
        return hi - lo + 1

    @property
    def port_ceiling(self) -> float:
        """Ports a host can hold at once (open + idle + TIME_WAIT); inf for random sources."""
        return float("inf") if self.source_addresses == "random" else float(self.ports)

    @property
    def errno_class(self) -> str:
        """errno class of a dial that finds no free port ("" if none can fail)."""
        return ERRNO_BY_SOURCE[self.source_addresses]


@dataclass(frozen=True)
class Batches:
    """Requests whose URIs fan out all at once: start second, host index, URIs."""

    second: np.ndarray
    host: np.ndarray
    uris: np.ndarray

    @staticmethod
    def empty() -> Batches:
        z = np.zeros(0, dtype=np.int64)
        return Batches(z, z, z)


@dataclass(frozen=True)
class PoolDemand:
    """Per-second, per-host load on the pool.

    ``lookups`` (shape ``(seconds, hosts)``) counts every lookup started in the
    second, batches included; ``batches`` lists the requests that fan out at
    once (their URIs are part of ``lookups``); ``restarts`` marks process
    restarts (bool, same shape) or is ``None``.
    """

    lookups: np.ndarray
    batches: Batches = field(default_factory=Batches.empty)
    restarts: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(seconds, hosts)``."""
        return self.lookups.shape  # type: ignore[return-value]


@dataclass(frozen=True)
class PoolSeries:
    """The mechanism's output: arrays of shape ``(seconds, hosts)`` unless noted."""

    lookups: np.ndarray  # lookups that ran (demand minus rejected)
    rejected_lookups: np.ndarray  # lookups of requests refused by max_batch
    concurrency: np.ndarray  # connections wanted at the peak of the second
    dials: np.ndarray  # dials attempted
    failed_dials: np.ndarray  # dials that found no free port
    failed_lookups: np.ndarray  # lookups that got no connection (fell back to the DB)
    failed_user_lookups: np.ndarray  # of which steady (user-facing, non-batch) lookups
    open_conns: np.ndarray  # connections open at the peak (in use + idle)
    idle: np.ndarray  # idle connections at the end of the second
    closed: np.ndarray  # connections closed into TIME_WAIT this second
    time_wait: np.ndarray  # TIME_WAIT sockets at the end of the second
    lookup_ms_mean: np.ndarray  # mean lookup latency over the second's lookups
    errno_class: np.ndarray  # shape (seconds,): errno class of failed dials, "" if none
    port_ceiling: np.ndarray  # shape (seconds,): ports one host can hold (inf if random)


def demand_from_requests(
    second: np.ndarray,
    host: np.ndarray,
    uris: np.ndarray,
    n_seconds: int,
    n_hosts: int,
    batch_min: int = 1000,
    restarts: np.ndarray | None = None,
) -> PoolDemand:
    """Build a ``PoolDemand`` from per-request arrays (vectorised).

    ``second`` and ``host`` are 0-based indices; requests outside the grid are
    dropped. Requests with at least ``batch_min`` URIs are batches (they fan
    out at once); the others count as steady load.
    """
    second = np.asarray(second, dtype=np.int64)
    host = np.asarray(host, dtype=np.int64)
    uris = np.asarray(uris, dtype=np.int64)
    ok = (second >= 0) & (second < n_seconds) & (host >= 0) & (host < n_hosts)
    second, host, uris = second[ok], host[ok], uris[ok]
    flat = second * n_hosts + host
    lookups = np.bincount(flat, weights=uris, minlength=n_seconds * n_hosts)
    big = uris >= batch_min
    return PoolDemand(
        lookups=lookups.reshape(n_seconds, n_hosts).round().astype(np.int64),
        batches=Batches(second[big], host[big], uris[big]),
        restarts=restarts,
    )


def _schedule(
    settings: PoolSettings, changes: Sequence[tuple[int, PoolSettings]], n: int
) -> list[tuple[int, int, PoolSettings]]:
    """Segments ``(start, end, settings)`` covering ``[0, n)``.

    Changes at the same second apply in the order given (the last one wins).
    """
    points = sorted(((max(0, int(s)), c) for s, c in changes if int(s) < n),
                    key=lambda p: p[0])
    segs: list[tuple[int, int, PoolSettings]] = []
    start, cur = 0, settings
    for s, c in points:
        if s > start:
            segs.append((start, s, cur))
        start, cur = max(start, s), c
    segs.append((start, n, cur))
    return [s for s in segs if s[1] > s[0]]


def batch_load(uris: np.ndarray, settings: PoolSettings) -> tuple[np.ndarray, ...]:
    """Per batch: (lookups run, lookups rejected, concurrent want, summed queueing ms).

    ``max_batch`` refuses a batch outright; ``concurrency_limit`` caps its concurrent
    lookups, and lookup ``k`` then waits ``k // limit`` rounds of ``lookup_ms``.
    """
    u = np.asarray(uris, dtype=np.float64)
    runs = np.ones(u.shape, bool) if settings.max_batch is None else u <= settings.max_batch
    rejected = np.where(runs, 0.0, u)
    u = np.where(runs, u, 0.0)
    limit = settings.concurrency_limit
    conc = u if limit is None else np.minimum(u, limit)
    rounds = np.ceil(u / np.maximum(conc, 1.0))
    wait = u * (rounds - 1) / 2 * settings.lookup_ms
    return u, rejected, conc, wait


@dataclass
class PoolState:
    """The mutable state of the pools of ``n_hosts`` hosts over ``n_seconds`` seconds.

    Holds the idle connections and the cumulative count of sockets closed into
    TIME_WAIT (so that TIME_WAIT is exact even when ``time_wait_s`` changes).
    Call :meth:`step` once per second, in order; ``simulate_pool`` does that for
    fixed demand, the simulator does it coupled to its runtime model.
    """

    n_seconds: int
    n_hosts: int
    idle: np.ndarray = field(init=False)
    cum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.idle = np.zeros(self.n_hosts)
        self.cum = np.zeros((self.n_seconds + 1, self.n_hosts))

    def step(
        self,
        t: int,
        st: PoolSettings,
        steady: np.ndarray,
        batch_lookups: np.ndarray,
        batch_conc: np.ndarray,
        batch_wait_ms: np.ndarray,
        restart: np.ndarray | None = None,
        stall: np.ndarray | float = 1.0,
        latency: bool = True,
    ) -> dict[str, np.ndarray]:
        """Advance second ``t`` for every host; return that second's outputs.

        ``steady`` lookups are spread over the second, batch lookups start at once
        (``batch_conc`` of them concurrently). ``stall`` multiplies the lookup time
        (a stalled runtime holds connections longer, so more are wanted at once).
        ``latency=False`` skips ``lookup_ms_mean`` (a third of the work) for callers
        that do not need it.
        """
        cum = self.cum
        tw = cum[t] - cum[max(0, t - st.time_wait_s + 1)]
        if restart is not None and not restart.any():
            restart = None
        out = pool_second(
            tw, self.idle, restart, st.lookup_ms * np.asarray(stall, dtype=np.float64),
            steady, batch_lookups, batch_conc, batch_wait_ms, _limits(st), latency=latency,
        )
        cum[t + 1] = cum[t] + out["closed"]
        self.idle = out["idle"]
        return out


@dataclass(frozen=True)
class _Limits:
    """The settings one second of the pool needs: scalars, or columns of shape
    ``(seconds, 1)`` when many seconds are evaluated at once."""

    port_ceiling: np.ndarray | float
    idle_pool: np.ndarray | float
    max_tw_buckets: np.ndarray | float
    dial_ms: np.ndarray | float
    fallback_ms: np.ndarray | float


def _limits(st: PoolSettings) -> _Limits:
    return _Limits(st.port_ceiling, st.idle_pool, st.max_tw_buckets, st.dial_ms, st.fallback_ms)


def pool_second(
    tw: np.ndarray,
    idle: np.ndarray,
    restart: np.ndarray | None,
    lookup_ms: np.ndarray,
    steady: np.ndarray,
    batch_lookups: np.ndarray,
    batch_conc: np.ndarray,
    batch_wait_ms: np.ndarray,
    lim: _Limits,
    latency: bool = True,
) -> dict[str, np.ndarray]:
    """One second of the pool model (steps 1-5 of the module docstring), elementwise.

    ``tw`` and ``idle`` are the TIME_WAIT sockets and idle connections at the
    start of the second. The arrays broadcast: one row of hosts (``PoolState.step``)
    or a whole ``(seconds, hosts)`` grid whose ``tw``/``idle`` are already known
    (``simulate_pool``'s fast path), with the same arithmetic either way, so the
    two agree to the bit. ``out["closed"]`` and ``out["idle"]`` are the new state.
    """
    dropped: np.ndarray | float = 0.0
    if restart is not None:
        dropped = idle * restart
        tw = tw + dropped
        idle = idle - dropped
    want = np.ceil(steady * lookup_ms * 0.001) + batch_conc
    need = np.maximum(want - idle, 0.0)
    ok = np.minimum(need, np.maximum(lim.port_ceiling - tw - idle, 0.0))
    failed = need - ok
    frac = failed / np.maximum(want, 1.0)
    failed_steady = np.rint(steady * frac)
    failed_batch = np.rint(batch_lookups * frac)
    opened = idle + ok  # connections open at the peak
    new_idle = np.minimum(opened, lim.idle_pool)
    close_now = np.minimum(opened - new_idle, np.maximum(lim.max_tw_buckets - tw, 0.0))
    closed = close_now + dropped

    total = steady + batch_lookups
    failed_all = failed_steady + failed_batch
    out = {
        "lookups": total,
        "concurrency": want,
        "dials": need,
        "failed_dials": failed,
        "failed_lookups": failed_all,
        "failed_user_lookups": failed_steady,
        "open_conns": opened,
        "idle": new_idle,
        "closed": closed,
        "time_wait": tw + close_now,
    }
    if not latency:
        return out
    lat_sum = (
        (total - failed_all) * (lookup_ms + ok / np.maximum(want, 1.0) * lim.dial_ms)
        + batch_wait_ms * (batch_lookups - failed_batch) / np.maximum(batch_lookups, 1.0)
        + failed_all * lim.fallback_ms
    )
    out["lookup_ms_mean"] = np.where(total > 0, lat_sum / np.maximum(total, 1.0), lookup_ms)
    return out


@dataclass(frozen=True)
class PreparedDemand:
    """Demand laid out per second and host for the settings in force each second.

    ``segments`` are ``(start, end, settings)``; ``seg_of[t]`` indexes the one
    in force at second ``t``. ``steady``, ``batch_lookups``, ``batch_conc``,
    ``batch_wait`` and ``rejected`` have shape ``(seconds, hosts)``.
    """

    segments: list[tuple[int, int, PoolSettings]]
    seg_of: np.ndarray
    restarts: np.ndarray
    steady: np.ndarray
    batch_lookups: np.ndarray
    batch_conc: np.ndarray
    batch_wait: np.ndarray
    rejected: np.ndarray
    errno: np.ndarray
    ceiling: np.ndarray


def prepare_demand(
    demand: PoolDemand,
    settings: PoolSettings,
    changes: Sequence[tuple[int, PoolSettings]] = (),
) -> PreparedDemand:
    """Apply the settings schedule to the demand: batch limits, rejections, steady load."""
    lookups_in = np.asarray(demand.lookups, dtype=np.float64)
    if lookups_in.ndim != 2:
        raise ValueError("demand.lookups must have shape (seconds, hosts)")
    n_t, n_h = lookups_in.shape
    restarts = (
        np.zeros((n_t, n_h), dtype=bool)
        if demand.restarts is None
        else np.asarray(demand.restarts, dtype=bool)
    )
    segments = _schedule(settings, changes, n_t)

    b = demand.batches
    b_sec = np.asarray(b.second, dtype=np.int64)
    b_host = np.asarray(b.host, dtype=np.int64)
    b_uris = np.asarray(b.uris, dtype=np.float64)
    inside = (b_sec >= 0) & (b_sec < n_t) & (b_host >= 0) & (b_host < n_h)
    b_sec, b_host, b_uris = b_sec[inside], b_host[inside], b_uris[inside]
    flat = b_sec * n_h + b_host
    size = n_t * n_h

    errno = np.empty(n_t, dtype="<U13")
    ceiling = np.empty(n_t)
    grids = {k: np.zeros(size) for k in ("lookups", "rejected", "conc", "wait")}
    seg_of = np.empty(n_t, dtype=np.int64)
    for i, (start, end, st) in enumerate(segments):
        sel = (b_sec >= start) & (b_sec < end)
        for key, values in zip(grids, batch_load(b_uris[sel], st), strict=True):
            grids[key] += np.bincount(flat[sel], weights=values, minlength=size)
        errno[start:end] = st.errno_class
        ceiling[start:end] = st.port_ceiling
        seg_of[start:end] = i
    batch_lookups, rejected, batch_conc, batch_wait = (
        g.reshape(n_t, n_h) for g in grids.values()
    )
    total = np.maximum(lookups_in - rejected, 0.0)
    bl = np.minimum(batch_lookups, total)
    return PreparedDemand(segments, seg_of, restarts, total - bl, bl, batch_conc, batch_wait,
                          rejected, errno, ceiling)


#: ``pool_second`` outputs, in ``PoolSeries`` order.
POOL_KEYS = ("lookups", "concurrency", "dials", "failed_dials", "failed_lookups",
             "failed_user_lookups", "open_conns", "idle", "closed", "time_wait", "lookup_ms_mean")


def pool_series(prep: PreparedDemand, out: dict[str, np.ndarray]) -> PoolSeries:
    """Wrap ``(seconds, hosts)`` grids of ``pool_second`` outputs as a ``PoolSeries``."""
    ints = {k: out[k].round().astype(np.int64) for k in POOL_KEYS if k != "lookup_ms_mean"}
    return PoolSeries(
        **ints,
        rejected_lookups=prep.rejected.round().astype(np.int64),
        lookup_ms_mean=out["lookup_ms_mean"],
        errno_class=prep.errno,
        port_ceiling=prep.ceiling,
    )


def _column(prep: PreparedDemand, name: str) -> np.ndarray:
    """One setting per second, shape ``(seconds, 1)``."""
    values = np.array([float(getattr(st, name)) for _, _, st in prep.segments])
    return values[prep.seg_of][:, None]


def _pool_state(
    prep: PreparedDemand, want: np.ndarray, lim: _Limits, tws: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Idle connections at the start of every second and cumulative closes (``PoolState.cum``).

    The state only changes in a second that dials (``want > idle``), restarts or
    starts a settings segment (*forced* seconds); any other second carries it
    over unchanged. Between forced seconds the idle pool never shrinks, so
    seconds whose ``want`` does not exceed the idle pool at the start of a
    window of them cannot dial: each host walks (in plain floats, with
    ``pool_second``'s arithmetic in the same order) only the other seconds.
    The state between changes is filled in afterwards.
    """
    n_t, n_h = want.shape
    forced = prep.restarts.copy()
    forced[[start for start, _, _ in prep.segments]] = True
    trigger = np.where(forced, np.inf, want)
    ceil_l, pool_l, mtb_l = (np.broadcast_to(np.asarray(x, dtype=np.float64), (n_t, 1))[:, 0]
                             .tolist() for x in (lim.port_ceiling, lim.idle_pool,
                                                 lim.max_tw_buckets))
    back = np.maximum(np.arange(n_t) - tws + 1, 0).tolist()
    before = np.arange(n_t + 1) - 1  # a state change in second t shows from t + 1
    idle_start = np.empty((n_t, n_h))
    cum = np.empty((n_t + 1, n_h))
    for h in range(n_h):
        trig = np.ascontiguousarray(trigger[:, h])
        ev_t, ev_c, ev_i = _walk_host(trig, want[:, h], forced[:, h], prep.restarts[:, h],
                                      back, ceil_l, pool_l, mtb_l)
        i = np.searchsorted(np.asarray(ev_t, dtype=np.int64), before, side="right")
        last = np.maximum(i - 1, 0)
        cum[:, h] = np.where(i > 0, np.asarray(ev_c + [0.0])[last], 0.0)
        idle_start[:, h] = np.where(i > 0, np.asarray(ev_i + [0.0])[last], 0.0)[:n_t]
    return idle_start, cum


def _walk_host(
    trig: np.ndarray,
    want: np.ndarray,
    forced: np.ndarray,
    restart: np.ndarray,
    back: list[int],
    ceil_l: list[float],
    pool_l: list[float],
    mtb_l: list[float],
    window: int = 256,
) -> tuple[list[int], list[float], list[float]]:
    """One host's state changes: (second, cumulative closes after it, idle after it)."""
    n = trig.size
    ev_t: list[int] = []
    ev_c: list[float] = []
    ev_i: list[float] = []
    idle = total = 0.0
    a = 0
    while a < n:
        b = min(a + window, n)
        nxt = b
        idx = np.flatnonzero(trig[a:b] > idle) + a
        for t, w, f, r in zip(idx.tolist(), want[idx].tolist(), forced[idx].tolist(),
                              restart[idx].tolist(), strict=True):
            if not (f or w > idle):
                continue
            k = bisect_right(ev_t, back[t] - 1)
            tw = total - (ev_c[k - 1] if k else 0.0)
            dropped = 0.0
            if r:
                dropped = idle
                tw = tw + dropped
                idle = idle - dropped
            ok = min(max(w - idle, 0.0), max(ceil_l[t] - tw - idle, 0.0))
            opened = idle + ok
            idle = min(opened, pool_l[t])
            total = total + (min(opened - idle, max(mtb_l[t] - tw, 0.0)) + dropped)
            ev_t.append(t)
            ev_c.append(total)
            ev_i.append(idle)
            if f:  # the idle pool may have shrunk: look again from the next second
                nxt = t + 1
                break
        a = nxt
    return ev_t, ev_c, ev_i


def simulate_pool(
    demand: PoolDemand,
    settings: PoolSettings,
    changes: Sequence[tuple[int, PoolSettings]] = (),
) -> PoolSeries:
    """Run the connection-pool model second by second over every host at once.

    ``changes`` switches to other settings from a given second on (the
    mitigation, the fix); the pool and TIME_WAIT state carry over. See the
    module docstring for the model and its assumptions.

    Fast path, same result as calling ``PoolState.step`` for every second: a
    plain-float walk finds the state (idle pool, cumulative closes) at the start
    of every second, then ``pool_second`` evaluates all seconds at once.
    """
    prep = prepare_demand(demand, settings, changes)
    n_t = prep.steady.shape[0]
    lim = _Limits(*(_column(prep, k) for k in ("port_ceiling", "idle_pool", "max_tw_buckets",
                                              "dial_ms", "fallback_ms")))
    lookup_ms = _column(prep, "lookup_ms") * np.asarray(1.0)
    tws = _column(prep, "time_wait_s")[:, 0].astype(np.int64)
    want = np.ceil(prep.steady * lookup_ms * 0.001) + prep.batch_conc
    idle, cum = _pool_state(prep, want, lim, tws)
    t = np.arange(n_t)
    tw = cum[:-1] - cum[np.maximum(0, t - tws + 1)]
    out = pool_second(tw, idle, prep.restarts if prep.restarts.any() else None, lookup_ms,
                      prep.steady, prep.batch_lookups, prep.batch_conc, prep.batch_wait, lim)
    return pool_series(prep, out)
