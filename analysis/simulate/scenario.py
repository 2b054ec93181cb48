"""Scenarios: every number of a simulated incident, drawn or fixed, in one frozen object.

``build_scenario(name, seed, scale)`` returns a ``Scenario``; the world model
(``analysis.simulate.world``) runs it and the writers (``analysis.simulate.files``)
turn the result into raw files. Three families:

- ``april-2026``: the Bluesky AppView outage of Monday 6 April 2026 as the
  post-mortem tells it (see ``/work/shared/incident.md``): a 12-hour window at
  1 s resolution with the death spiral from 13:00 UTC, the workaround (random
  loopback source addresses) at 21:00, and the humans' timeline from the
  Saturday page to the Wednesday fix (the fix lies after the window: it is an
  event and a scheduled setting, not in the window's data).
- ``random``: a family for evaluation; the seed draws the culprit's name,
  onset, batch sizes, pool cap, port range, hosts, callers, rivals, skew and
  gaps. A 1-2 h window so that 200 of them run fast.
- ``quiet``: rivals and noise, no culprit: the right answer is "no supported
  root cause".

``scale`` multiplies the request-log volume of the ordinary callers (rows),
not the story: the culprit's requests, the memcached load the mechanism sees
and everything downstream are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from analysis.errors import UserError
from analysis.mechanism import PoolSettings
from analysis.signal_id import quote

SCENARIOS: tuple[str, ...] = ("april-2026", "random", "quiet")


@dataclass(frozen=True)
class Host:
    """A data-plane host: its name, data centre, clock skew and export formats."""

    name: str
    dc: str
    skew_s: float = 0.0
    requests_format: str = "jsonl.gz"  # jsonl.gz | jsonl.zst | jsonl-alias.gz | csv.gz | parquet
    log_format: str = "json"  # json | logfmt | gotext


@dataclass(frozen=True)
class Caller:
    """A caller of the data plane as the request log shows it.

    ``rate`` is log rows per second at the daily peak (before ``scale``),
    spread over ``dcs``; small requests carry ``uris_lo..uris_hi`` URIs
    (log-uniform). ``batch_rate`` big requests per second (not scaled) carry
    ``batch_lo..batch_hi`` URIs, from ``batch_from_s`` on (``pre_batch_rate``
    before). ``spike`` multiplies ``rate`` by ``factor`` in ``[start, end)``.
    """

    name: str
    method: str
    dcs: tuple[str, ...]
    rate: float
    uris_lo: int = 1
    uris_hi: int = 50
    follows_curve: bool = True
    active: tuple[int, int] | None = None  # seconds [start, end) of the window
    batch_rate: float = 0.0
    pre_batch_rate: float = 0.0
    batch_from_s: int = 0
    batch_lo: int = 15_000
    batch_hi: int = 20_000
    spike: tuple[int, int, float] | None = None


@dataclass(frozen=True)
class Runtime:
    """The Go runtime / pod model behind the death spiral (see ``world``)."""

    threads_base: float = 150.0
    threads_max: float = 2000.0  # the ratchet's asymptote; OOM comes first (~1,350)
    threads_tau_s: float = 2000.0
    errors_half: float = 400.0  # error lines/s that drive threads half-way to the max
    mem_base_mb: float = 700.0
    mem_per_thread_mb: float = 1.0
    mem_per_kerr_mb: float = 2.0  # log buffers per 1,000 error lines/s
    mem_per_load_mb: float = 400.0  # in-flight memory per host's normal share of the DC's load
    mem_limit_mb: float = 2200.0
    gc_base_ms: float = 0.4
    startup_s: int = 30
    backoff_s: tuple[int, ...] = (10, 20, 40, 80, 160, 300)
    backoff_reset_s: int = 600
    # lookups hold connections (threads / threads_base) ** stall_exponent times longer
    stall_exponent: float = 2.0
    # stall at which user requests start / all fail
    timeout_stall: tuple[float, float] = (29.0, 71.0)


@dataclass(frozen=True)
class Rival:
    """A rival explanation: its kind (roles.RIVALS), name, and why it is not a cause."""

    name: str
    kind: str
    why_not: str
    episodes: tuple[tuple[int, int], ...] = ()  # [start, end) seconds of the window
    value: float = 0.0
    dc: str = ""


@dataclass(frozen=True)
class Event:
    """A human event (deploy, page, alert, mitigation, fix, status, note)."""

    time: datetime
    kind: str
    title: str
    source: str = ""
    detail: str = ""
    end_time: datetime | None = None


@dataclass(frozen=True)
class Change:
    """A change of pool settings at ``at_s`` (the mitigation, the fix), with a rollout."""

    at_s: int
    settings: PoolSettings
    kind: str
    title: str


@dataclass(frozen=True)
class Scenario:
    """Everything a simulated incident is made of. Built by ``build_scenario``."""

    name: str
    seed: int
    scale: float
    start: datetime
    duration_s: int
    hosts: tuple[Host, ...]
    callers: tuple[Caller, ...]
    culprit: str | None
    culprit_method: str | None
    onset_s: int | None
    pool: PoolSettings
    changes: tuple[Change, ...]
    events: tuple[Event, ...]
    rivals: tuple[Rival, ...]
    affected_dc: str | None
    background_lookups: float = 120_000.0  # memcached lookups/s per host at peak, beyond the log
    user_rps: float = 60_000.0  # user-facing requests/s per DC at the daily peak
    curve_amplitude: float = 0.35
    curve_peak_hour: float = 17.0
    sample_rate: float = 0.0005
    metric_step_s: int = 15
    gaps: tuple[tuple[str, str, int, int], ...] = ()  # (metric, host, start_s, end_s)
    runtime: Runtime = field(default_factory=Runtime)
    corrupt_per_file: tuple[int, int] = (1, 3)  # corrupt lines per line-based file: lo..hi

    @property
    def dcs(self) -> tuple[str, ...]:
        """Data centres, in host order."""
        return tuple(dict.fromkeys(h.dc for h in self.hosts))

    @property
    def end(self) -> datetime:
        """End of the window (exclusive)."""
        return self.start + timedelta(seconds=self.duration_s)

    def at(self, seconds: float) -> datetime:
        """The UTC time ``seconds`` after the window's start."""
        return self.start + timedelta(seconds=float(seconds))


def rename_callers(sc: Scenario, names: Mapping[str, str]) -> Scenario:
    """The same incident with callers renamed (``names``: old -> new), everywhere a name
    appears: callers, culprit, rivals and event texts. Real caller ids are ``host:port``,
    SPIFFE ids, anything; this tells whether the analysis treats names as data."""
    def text(s: str) -> str:
        for old, new in names.items():
            s = s.replace(old, new)
        return s

    callers = tuple(replace(c, name=names.get(c.name, c.name)) for c in sc.callers)
    rivals = tuple(
        replace(r, name=f"caller:{quote(names[r.name.removeprefix('caller:')])}")
        if r.kind == "request_rate" and r.name.removeprefix("caller:") in names else r
        for r in sc.rivals
    )
    events = tuple(replace(e, title=text(e.title), detail=text(e.detail)) for e in sc.events)
    changes = tuple(replace(c, title=text(c.title)) for c in sc.changes)
    culprit = names.get(sc.culprit, sc.culprit) if sc.culprit else None
    return replace(sc, callers=callers, culprit=culprit, rivals=rivals, events=events,
                   changes=changes)


def build_scenario(name: str, seed: int = 1, scale: float = 1.0) -> Scenario:
    """The scenario ``name`` for ``seed`` and ``scale`` (see the module docstring)."""
    if scale <= 0:
        raise UserError(f"--scale must be positive, got {scale}")
    if name == "april-2026":
        return _april_2026(seed, scale)
    if name == "random":
        return _random(seed, scale, quiet=False)
    if name == "quiet":
        return _random(seed, scale, quiet=True)
    raise UserError(f"unknown scenario {name!r}; expected one of: {', '.join(SCENARIOS)}")


def _april_2026(seed: int, scale: float) -> Scenario:
    start = datetime(2026, 4, 6, 12, 0, tzinfo=UTC)
    hours = 3600
    onset = 1 * hours
    mitigation = 9 * hours
    hosts = (
        Host("dp-1", "us-east", 0.0, "jsonl.gz", "json"),
        Host("dp-2", "us-east", 3.2, "jsonl.zst", "logfmt"),
        Host("dp-3", "us-east", 0.0, "jsonl-alias.gz", "json"),
        Host("dp-4", "us-west", 0.0, "csv.gz", "json"),
        Host("dp-5", "us-west", -2.1, "jsonl.gz", "logfmt"),
        Host("dp-6", "us-west", 0.0, "parquet", "gotext"),
    )
    both = ("us-east", "us-west")
    callers = (
        Caller("appview", "GetPostRecord", both, 14.0, 1, 50),
        Caller("appview", "GetProfileRecord", both, 2.0, 1, 25),
        Caller("feed-generator", "GetPostRecord", both, 2.5, 10, 50),
        Caller("notif-service", "GetPostRecord", both, 1.0, 1, 10),
        Caller("search-indexer", "GetPostRecord", both, 1.5, 1, 20,
               spike=(int(4.5 * hours), int(5.25 * hours), 6.0)),
        Caller("feed-indexer", "GetPostRecord", ("us-east",), 1.6, 1, 50, follows_curve=False,
               batch_rate=0.9, batch_from_s=onset),
    )
    fixed = PoolSettings(port_range=(32768, 60999), idle_pool=1000, time_wait_s=60,
                         source_addresses="fixed")
    random_src = PoolSettings(port_range=fixed.port_range, idle_pool=1000, time_wait_s=60,
                              source_addresses="random")
    fix_at = datetime(2026, 4, 8, 16, 0, tzinfo=UTC)
    changes = (
        Change(mitigation, random_src, "mitigation",
               "dataplane: bind memcached dials to random 127.a.b.c source addresses"),
        Change(int((fix_at - start).total_seconds()),
               PoolSettings(port_range=fixed.port_range, idle_pool=1000, time_wait_s=60,
                            source_addresses="fixed", concurrency_limit=50),
               "fix", "dataplane: GetPostRecord concurrency limit 50; random source removed"),
    )
    at = start.__add__
    events = (
        Event(datetime(2026, 3, 31, 15, 0, tzinfo=UTC), "deploy",
              "feed-indexer v0.1 launched in us-east", "deploys",
              "new internal service calling GetPostRecord"),
        Event(datetime(2026, 4, 4, 9, 12, tzinfo=UTC), "page", "AppView error rate high",
              "pagerduty", "first page; suspected transit problem"),
        Event(datetime(2026, 4, 4, 10, 5, tzinfo=UTC), "status",
              "Investigating degraded performance; a third-party network provider is suspected",
              "statuspage"),
        Event(datetime(2026, 4, 4, 11, 30, tzinfo=UTC), "note",
              "network monitoring looks clear; data-plane error logs spike with AppView dips",
              "incident-channel"),
        Event(at(timedelta(minutes=35)), "deploy", "appview v2026.04.06-1 (both DCs)",
              "deploys", "feed ranking tweak; no data-plane change"),
        Event(at(timedelta(seconds=onset + 420)), "page",
              "AppView us-east availability below SLO", "pagerduty"),
        Event(at(timedelta(seconds=onset + 900)), "status",
              "Some users cannot load Bluesky; investigating", "statuspage"),
        Event(at(timedelta(hours=3, minutes=10)), "note",
              "traceroutes show packet loss from cloud-x towards us-east", "incident-channel"),
        Event(at(timedelta(hours=5)), "note",
              "errors come from every cache type; data-plane pods OOM-killed in cycles",
              "incident-channel"),
        Event(at(timedelta(seconds=mitigation)), "mitigation", changes[0].title, "deploys",
              "widens the (address, port) space; TIME_WAIT no longer blocks dials"),
        Event(at(timedelta(seconds=mitigation + 1800)), "status", "Resolved: service restored",
              "statuspage"),
        Event(fix_at - timedelta(hours=2), "note",
              "root cause: feed-indexer batches of 15-20k URIs fan out one lookup per URI",
              "incident-channel"),
        Event(fix_at, "fix", changes[1].title, "deploys"),
    )
    loss = ((20 * 60, 45 * 60), (int(3.17 * hours), int(3.5 * hours)),
            (int(9.67 * hours), int(10.17 * hours)))
    rivals = (
        Rival("transit_packet_loss_ratio{src=cloud-x}", "packet_loss",
              "loss episodes (12:20-12:45, 15:10-15:30, 21:40-22:10) do not line up with the"
              " error spikes or user drops; errors are on loopback, which transit never carries",
              loss, 0.04, "us-east"),
        Rival(f"caller:{quote('search-indexer')}", "request_rate",
              "its request rate spikes 6x at 16:30-17:15 but its batches are 1-20 URIs: its"
              " URIs/s stay tiny and nothing downstream moves with the spike",
              ((int(4.5 * hours), int(5.25 * hours)),)),
        Rival("deploy:appview v2026.04.06-1", "deploy",
              "deployed to both DCs 25 min before the first error; only us-east fails and the"
              " data plane's settings did not change", ((35 * 60, 35 * 60),)),
        Rival("daily traffic curve", "daily_curve",
              "both DCs follow the same daily curve; the drops hit us-east only, in ~30 min"
              " cycles, and stop at the mitigation while the curve goes on"),
    )
    return Scenario(
        name="april-2026", seed=seed, scale=scale, start=start, duration_s=12 * hours,
        hosts=hosts, callers=callers, culprit="feed-indexer", culprit_method="GetPostRecord",
        onset_s=onset, pool=fixed, changes=changes, events=events, rivals=rivals,
        affected_dc="us-east", sample_rate=0.00005, metric_step_s=15,
        gaps=(("go_threads", "dp-1", int(4.2 * hours), int(4.45 * hours)),),
    )


_CULPRIT_NAMES = ("feed-indexer", "backfill-worker", "thread-hydrator", "labeler-sync",
                  "graph-exporter", "timeline-rebuilder", "starterpack-crawler")
_NORMAL_NAMES = ("appview", "feed-generator", "notif-service", "search-indexer",
                 "moderation", "chat-backend", "video-service", "ozone")
_DC_NAMES = ("us-east", "us-west", "eu-central", "ap-south")


def _random(seed: int, scale: float, *, quiet: bool) -> Scenario:
    """A scenario whose every parameter is drawn from ``seed`` (``quiet``: no culprit)."""
    rng = np.random.default_rng([seed, 7 if quiet else 3])
    start = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(
        days=int(rng.integers(0, 300)), hours=int(rng.integers(0, 24)))
    duration = int(rng.integers(60, 121)) * 60
    dcs = tuple(rng.choice(_DC_NAMES, size=2, replace=False).tolist())
    n_hosts = int(rng.integers(2, 4))
    skews = rng.choice([0.0, 0.0, 0.0, 2.5, -1.8, 4.1], size=2 * n_hosts)
    req_formats = ("jsonl.gz", "jsonl.zst", "jsonl-alias.gz", "csv.gz", "parquet")
    log_formats = ("json", "logfmt", "json", "gotext")
    # Go log text carries no sample rate: only hosts outside the failing DC write it
    hosts = tuple(
        Host(f"dp-{i + 1}", dcs[i // n_hosts], float(skews[i]),
             req_formats[int(rng.integers(0, len(req_formats)))],
             log_formats[int(rng.integers(0, len(log_formats) - (0 if i >= n_hosts else 1)))])
        for i in range(2 * n_hosts)
    )
    affected = dcs[0]
    n_normal = int(rng.integers(2, 6))
    names = rng.choice(_NORMAL_NAMES, size=n_normal, replace=False).tolist()
    methods = ("GetPostRecord", "GetProfileRecord", "GetLikeCounts")
    callers: list[Caller] = [
        Caller(n, str(methods[int(rng.integers(0, 3))]) if i else "GetPostRecord", dcs,
               float(rng.uniform(2.0, 8.0) if i else rng.uniform(10.0, 20.0)), 1,
               int(rng.integers(10, 51)))
        for i, n in enumerate(names)
    ]
    onset = int(rng.integers(int(0.15 * duration), int(0.4 * duration)))
    culprit = None if quiet else str(rng.choice(_CULPRIT_NAMES))
    lo = int(rng.integers(3_000, 16_000))
    hi = lo + int(rng.integers(500, 6_000))
    if culprit:
        callers.append(Caller(culprit, "GetPostRecord", (affected,),
                              float(rng.uniform(0.3, 1.5)), 1, 50, follows_curve=False,
                              batch_rate=float(rng.uniform(0.4, 1.4)),
                              batch_from_s=onset, batch_lo=lo, batch_hi=hi))
    lo_port = int(rng.choice([32768, 32768, 40000, 49152]))
    width = int(rng.choice([28231, 16383, 12000, 9999])) if not quiet else 28231
    pool = PoolSettings(port_range=(lo_port, min(65535, lo_port + width)),
                        idle_pool=int(rng.choice([500, 1000, 1000, 2000])), time_wait_s=60,
                        source_addresses=str(rng.choice(["fixed", "default"])))
    changes: list[Change] = []
    events: list[Event] = []
    t_of = start.__add__
    if culprit and rng.random() < 0.7:
        at = int(rng.integers(int(0.7 * duration), int(0.9 * duration)))
        if rng.random() < 0.5:
            changes.append(Change(at, PoolSettings(
                port_range=pool.port_range, idle_pool=pool.idle_pool, source_addresses="random"),
                "mitigation", "dataplane: random loopback source addresses"))
        else:
            changes.append(Change(at, PoolSettings(
                port_range=pool.port_range, idle_pool=pool.idle_pool,
                source_addresses=pool.source_addresses, concurrency_limit=50),
                "fix", "dataplane: GetPostRecord concurrency limit 50"))
        events.append(Event(t_of(timedelta(seconds=at)), changes[-1].kind, changes[-1].title,
                            "deploys"))
    if culprit:
        events.append(Event(t_of(timedelta(seconds=onset + int(rng.integers(300, 900)))),
                            "page", f"availability below SLO in {affected}", "pagerduty"))
    rivals: list[Rival] = []
    # The daily curve is always there.
    rivals.append(Rival("daily traffic curve", "daily_curve",
                        "every DC follows the same curve; it explains no drop confined to one DC"
                        if culprit else "a smooth curve shared by every DC, not an incident"))
    if rng.random() < 0.8 or quiet:
        a = int(rng.integers(0, max(1, duration - 900)))
        rivals.append(Rival("transit_packet_loss_ratio{src=cloud-x}", "packet_loss",
                            "loss episodes do not line up with errors or drops; cache traffic"
                            " is loopback", ((a, a + int(rng.integers(300, 900))),),
                            float(rng.uniform(0.02, 0.08)), affected))
    if rng.random() < 0.8 or quiet:
        busy = callers[int(rng.integers(0, n_normal))]
        a = int(rng.integers(0, max(1, duration - 1200)))
        busy_spike = (a, a + int(rng.integers(600, 1200)), float(rng.uniform(4, 8)))
        callers = [c if c is not busy else Caller(
            c.name, c.method, c.dcs, c.rate, c.uris_lo, min(c.uris_hi, 20), spike=busy_spike)
            for c in callers]
        rivals.append(Rival(f"caller:{quote(busy.name)}", "request_rate",
                            "its request rate spikes but its batches stay small; its URIs/s"
                            " and everything downstream do not move", (busy_spike[:2],)))
    if rng.random() < 0.8 or quiet:
        a = int(rng.integers(0, duration))
        why = "an unrelated service's deploy; nothing in the chain starts there"
        if culprit and rng.random() < 0.3:  # the hard case: just before the onset
            a = max(0, onset - int(rng.integers(30, 300)))
            why = (f"deployed {onset - a} s before the onset, but to an unrelated service in"
                   " every DC: only the culprit's DC fails, and the chain starts with the"
                   " culprit's batches")
        title = f"{str(rng.choice(_NORMAL_NAMES))} deploy v{int(rng.integers(100, 999))}"
        events.append(Event(t_of(timedelta(seconds=a)), "deploy", title, "deploys",
                            "unrelated service; no data-plane change"))
        rivals.append(Rival(f"deploy:{title}", "deploy", why, ((a, a),)))
    gap_host = hosts[int(rng.integers(0, len(hosts)))].name
    g = int(rng.integers(0, duration - 600))
    gaps = ((str(rng.choice(["go_threads", "node_sockstat_TCP_tw", "go_goroutines"])),
             gap_host, g, g + int(rng.integers(120, 600))),) if rng.random() < 0.7 else ()
    return Scenario(
        name="quiet" if quiet else "random", seed=seed, scale=scale, start=start,
        duration_s=duration, hosts=hosts, callers=tuple(callers), culprit=culprit,
        culprit_method="GetPostRecord" if culprit else None, onset_s=onset if culprit else None,
        pool=pool, changes=tuple(changes), events=tuple(sorted(events, key=lambda e: e.time)),
        rivals=tuple(rivals), affected_dc=affected if culprit else None,
        background_lookups=float(rng.uniform(60_000, 200_000)),
        sample_rate=float(rng.choice([0.0002, 0.0005])), metric_step_s=int(rng.choice([5, 10, 15])),
        gaps=gaps, runtime=Runtime(threads_tau_s=float(rng.uniform(150, 300))),
    )
