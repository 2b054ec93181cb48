"""The root-cause chain: from the user-facing drop back to a culprit, hop by hop.

``find_chain`` reads the rolled-up ``signals`` (building them if needed), gives
signals roles (``analysis.roles``), finds their anomaly windows
(``analysis.detection``) and measures each hop of the causal order
``trigger -> fan_out -> port_exhaustion -> cache_errors -> runtime_stress ->
user_impact`` with a lead/lag and its bootstrap interval, the coincidence of
windows and its p-value (``analysis.correlation``), an effect size, and a
mechanism check where the physics allows one:

* trigger -> fan_out: a batch of ``B`` URIs, one lookup each, against an idle
  pool of ``P`` dials ``B - P`` connections;
* fan_out -> port_exhaustion: dials per second times the TIME_WAIT duration
  against the port range, and the moment the observed dials should fill the
  range against the moment address errors were first seen.

The culprit is ranked by per-caller *weight* (URIs, the largest batch and the
dials its batches force past the idle pool) and by how its heavy windows
coincide with the fan-out, never by request rate: a busy caller of small
batches is a rival, rejected because its batches cannot dial past the pool.
Rivals (other callers, packet loss, deploys, the daily curve) are listed with
the reason each was rejected. Without exhaustion evidence, or without a caller
whose batches explain it, the verdict is ``no_supported_cause``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from analysis.correlation import Coincidence, coincidence, lead_lag
from analysis.detection import AnomalyWindow, DetectorSettings, detect
from analysis.roles import ROLES, role_by_data, role_of_signal, role_order
from analysis.rollups import (
    HEAVY_URIS,
    RollupInfo,
    ensure_rollups,
    has_table,
    raw_absent,
    signal_frame,
    signal_ids,
)
from analysis.signal_id import SignalId, printable, quote

ROOT_CAUSE = "root_cause_found"
NO_CAUSE = "no_supported_cause"

KERNEL_PORT_RANGE = (32768, 60999)
KERNEL_TIME_WAIT_S = 60
UNKNOWN_POOL_CAP = 200
STRESS_FACTOR = 2.0  # runtime stress: OS threads at twice their level
IMPACT_SHARE = 0.9  # user impact: a minute below 90 % of the usual traffic
IMPACT_BIN_S = 60  # the longest user-impact bin (``scale_to_span`` shortens it)
# Effects that build up over minutes (threads ratchet, pods run out of memory):
# their hops are measured over ``slow_lag_s`` instead of ``max_lag_s``.
SLOW_EFFECTS = frozenset({"runtime_stress", "user_impact"})

# Within a role, which signal stands for it (first pattern that matches wins).
_PREFERRED: dict[str, tuple[str, ...]] = {
    # client-side dial attempts (failed ones too) first: memcached's accepted-connection
    # counter stops rising once the ports are gone, while the fan-out goes on
    "fan_out": ("dial", "connections_total", "current_connections", "open", "goroutines"),
    "port_exhaustion": ("errors:EADDR",),
    "cache_errors": ("errors:total", "errors:cache:"),
    "runtime_stress": ("go_threads", "threads", "gc_duration", "restarts"),
    "user_impact": ("appview", "requests_per_second", "http_requests_total"),
}


@dataclass(frozen=True)
class ChainSettings:
    """Knobs of the chain search.

    ``max_lag_s``: the longest delay a hop may have (``slow_lag_s`` for hops
    into effects that build up over minutes, ``SLOW_EFFECTS``); ``min_share`` and
    ``max_p``: coincidence a hop (and the culprit) needs to count as supported;
    ``n_boot``/``n_shuffle``: resamples for the lag interval and the p-value;
    ``exhaustion_tolerance_s``: how close the predicted and observed moments of
    exhaustion must be for the mechanism check; ``min_corr``: correlation the
    culprit's forced dials need with the fan-out; ``smooth_s``: moving average
    applied before that correlation; ``impact_bin_s``: bins in which user traffic is
    compared with its level before the drop. ``find_chain`` shortens the time
    knobs on short captures (``scale_to_span``).
    """

    detector: DetectorSettings = field(default_factory=DetectorSettings)
    max_lag_s: int = 120
    min_share: float = 0.5
    max_p: float = 0.05
    n_boot: int = 100
    n_shuffle: int = 300
    seed: int = 0
    exhaustion_tolerance_s: float = 15.0
    min_corr: float = 0.1
    smooth_s: int = 15
    slack_s: float = 15.0
    slow_lag_s: int = 1800
    lag_how: str = "diff"
    impact_bin_s: int = IMPACT_BIN_S


def scale_to_span(settings: ChainSettings, span_s: float, grid_s: float) -> ChainSettings:
    """The settings with their time knobs shrunk to fit a capture of ``span_s`` seconds.

    Lags and coincidence are only meaningful when the lag window is short against
    the data: with a 120 s lag on a 2-minute capture every shifted window still
    "coincides" (p near 1) and the cross-correlation has almost no common range
    left. So the lag window is at most a tenth of the span (slow effects a
    quarter), the early-detection slack a quarter of the lag window, the
    smoothing an eighth of the span, the user-impact bins a sixtieth (whole grid
    steps, at least one), and the shuffles no more than the span has grid steps
    (each distinct shift once, about). Every knob only ever shrinks: an
    incident of two hours or more keeps the settings as given, one of 20
    minutes or more keeps the lag window (only slow effects look less far).
    """
    g = max(grid_s, 1e-9)
    span = max(span_s, g)
    max_lag = min(settings.max_lag_s, max(int(3 * g), int(span / 10)))
    return replace(
        settings,
        max_lag_s=max_lag,
        slow_lag_s=min(settings.slow_lag_s, max(max_lag, int(span / 4))),
        slack_s=min(settings.slack_s, max(g, max_lag / 4)),
        smooth_s=min(settings.smooth_s, max(int(g), int(span / 8))),
        impact_bin_s=min(settings.impact_bin_s, max(1, int(span / 60 / g)) * int(max(g, 1))),
        n_shuffle=min(settings.n_shuffle, max(99, int(span / g))),
        exhaustion_tolerance_s=min(settings.exhaustion_tolerance_s, max(g, float(max_lag))),
    )


def _scale_note(given: ChainSettings, used: ChainSettings, span_s: float) -> str | None:
    """Says which knobs a short capture shrank and the smallest p-value one pair of
    windows can reach (the lag window's share of the span)."""
    if used == given:
        return None
    width = used.max_lag_s + used.slack_s
    return (f"short capture ({span_s:.0f} s): lag window {used.max_lag_s} s (slow effects"
            f" {used.slow_lag_s} s), slack {used.slack_s:.0f} s, user-impact bins"
            f" {used.impact_bin_s} s; one cause window and one effect window cannot reach a"
            f" coincidence p below about {min(1.0, width / max(span_s, 1e-9)):.2f}")


@dataclass(frozen=True)
class Environment:
    """Facts the mechanism depends on, from the ``incident`` table or kernel defaults."""

    port_range: tuple[int, int] = KERNEL_PORT_RANGE
    time_wait_s: int = KERNEL_TIME_WAIT_S
    idle_pool: int | None = None
    from_manifest: tuple[str, ...] = ()

    @property
    def ports(self) -> int:
        """Ports one source address can use."""
        return self.port_range[1] - self.port_range[0] + 1


@dataclass(frozen=True)
class Hop:
    """One measured link of the chain (``lag_s`` positive = cause leads)."""

    cause: str
    effect: str
    cause_role: str
    effect_role: str
    lag_s: float
    lag_ci_s: tuple[float, float]
    coincidence: float
    p_value: float
    effect_size: float
    mechanism: str | None


@dataclass(frozen=True)
class Rejected:
    """A rival explanation and why it was rejected. ``caller`` is set, exactly as the
    data name it, when the rival is a caller (``candidate`` is then ``caller:<name>``)."""

    candidate: str
    reason: str
    caller: str | None = None

    @classmethod
    def of_caller(cls, caller: str, reason: str) -> Rejected:
        return cls(f"caller:{quote(caller)}", reason, caller)


@dataclass(frozen=True)
class Culprit:
    """The caller the chain blames, with a one-line summary of the evidence."""

    caller: str
    method: str | None
    evidence: str


@dataclass(frozen=True)
class CallerScore:
    """Per-caller evidence used to rank culprits (weight, not request rate)."""

    caller: str
    method: str | None
    peak_rps: float
    max_batch: float
    forced_dials: float
    fill: float
    share: float
    p_value: float
    corr: float
    score: float
    first_forced: datetime | None


@dataclass
class ChainResult:
    """The chain, its evidence and its rivals. ``to_dict`` is the ``chain --json`` contract."""

    verdict: str
    culprit: Culprit | None
    hops: list[Hop]
    rejected: list[Rejected]
    onsets: dict[str, datetime]
    environment: Environment
    callers: list[CallerScore] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # signal -> role (or rival:<kind>)
    mechanism_passed: bool | None = None
    notes: list[str] = field(default_factory=list)
    rollup: RollupInfo | None = None  # the grid and window the chain ran on

    def to_dict(self) -> dict:
        """The JSON object of ``postmortem chain --json``."""
        return {
            "verdict": self.verdict,
            "grid": None if self.rollup is None else self.rollup.to_dict(),
            "outside_window": None if self.rollup is None else self.rollup.outside_line(),
            "culprit": None if self.culprit is None else asdict(self.culprit),
            "hops": [
                {**asdict(h), "lag_ci_s": list(h.lag_ci_s)} for h in self.hops
            ],
            "rejected": [asdict(r) for r in self.rejected],
            "onsets": {r: _iso(t) for r, t in self.onsets.items()},
        }

    def roles_in_order(self, tie_s: float = 0.0) -> list[str]:
        """Roles sorted by onset; onsets less than ``tie_s`` apart count as simultaneous
        and keep the causal order (metrics sampled every few seconds cannot order them)."""
        out: list[str] = []
        for r in sorted(self.onsets, key=lambda r: (self.onsets[r], role_order(r))):
            i = len(out)
            while i > 0 and role_order(out[i - 1]) > role_order(r) and (
                self.onsets[r] - self.onsets[out[i - 1]]
            ).total_seconds() < tie_s:
                i -= 1
            out.insert(i, r)
        return out


@dataclass
class _RoleSeries:
    role: str
    signal: str  # the name, or names joined by '+' when several signals are summed
    values: np.ndarray  # signed so that "up" is the active direction
    windows: list[AnomalyWindow]
    family: str = "metric"  # of the signal(s): counts (callers, errors) or metrics


def _iso(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat() + "Z"


def environment(con: duckdb.DuckDBPyConnection) -> Environment:
    """Port range, TIME_WAIT and idle pool from the ``incident`` table (kernel defaults)."""
    try:
        rows = dict(con.execute("SELECT key, value FROM incident").fetchall())
    except duckdb.Error:
        rows = {}
    found: list[str] = []
    port_range = KERNEL_PORT_RANGE
    raw = rows.get("ephemeral_port_range")
    if raw:
        lo, _, hi = str(raw).replace(" ", "-").partition("-")
        try:
            port_range = (int(lo), int(hi))
            found.append("ephemeral_port_range")
        except ValueError:
            pass
    tw = KERNEL_TIME_WAIT_S
    if rows.get("time_wait_s"):
        tw = int(float(rows["time_wait_s"]))
        found.append("time_wait_s")
    pool = None
    if rows.get("idle_pool"):
        pool = int(float(rows["idle_pool"]))
        found.append("idle_pool")
    return Environment(port_range, tw, pool, tuple(found))


def _pick(role: str, candidates: list[str], ids: dict[str, SignalId]) -> list[str]:
    """Candidates of a role ordered by preference (aggregates before per-label series)."""
    prefs = _PREFERRED.get(role, ())

    def rank(s: str) -> tuple[int, bool, str]:
        hit = next((i for i, p in enumerate(prefs) if p.lower() in s.lower()), len(prefs))
        return (hit, bool(ids[s].labels), s)

    return sorted(candidates, key=rank)


def _windows(
    t: pl.Series, values: np.ndarray, name: str, settings: ChainSettings, *, counts: bool
) -> list[AnomalyWindow]:
    """Upward anomaly windows of a (signed) series; error and caller series are ``counts``."""
    v = np.nan_to_num(values, nan=0.0)
    if not np.any(v != v[0]):
        return []
    frame = pl.DataFrame({"t": t, "value": values})
    return [
        w for w in detect(frame, settings.detector, signal=name, counts=counts)
        if w.direction == "up"
    ]


def _coincide(cause: list[AnomalyWindow], effect: list[AnomalyWindow],
              span: tuple[datetime, datetime], settings: ChainSettings,
              max_lag_s: float | None = None) -> Coincidence:
    """Coincidence of window starts, tolerating an effect detected ``slack_s`` early
    (metrics sampled every 5-15 s put a counter's rise up to one step early)."""
    return coincidence(cause, effect, max_lag_s=max_lag_s or settings.max_lag_s,
                       min_lag_s=-settings.slack_s, n_shuffle=settings.n_shuffle,
                       seed=settings.seed, span=span)


def _roles_by_data(
    con: duckdb.DuckDBPyConnection,
    ids: dict[str, SignalId],
    matches: dict,
    series: dict[str, _RoleSeries],
    t: pl.Series,
    env: Environment,
    settings: ChainSettings,
) -> dict[str, str]:
    """Roles of metrics nobody recognised by name, from their data (``roles.role_by_data``).

    A series that moves with a role's representative takes that role; one that
    fills up to the port range is TIME_WAIT-like. When the role has no
    representative yet, the series becomes it (an export with unusual names
    still gets a chain).
    """
    unknown = [s for s, sid in ids.items() if sid.family == "metric" and not sid.labels
               and s not in matches]
    if not unknown:
        return {}
    frame = signal_frame(con, unknown)
    if frame.height != len(t):
        return {}
    refs = {r: np.abs(np.nan_to_num(rs.values)) for r, rs in series.items()}
    out: dict[str, str] = {}
    for sig in unknown:
        v = frame[sig].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        hit = role_by_data(v, refs, port_range=env.ports)
        if hit is None:
            continue
        role, direction, _why = hit
        out[sig] = f"{role} (by data)"
        if role not in series:
            signed = -v if direction == "down" else v
            wins = _windows(t, signed, sig, settings, counts=False)
            if wins:
                series[role] = _RoleSeries(role, sig, signed, wins)
    return out


def _point_window(signal: str, at: datetime) -> AnomalyWindow:
    """A one-bucket window at ``at`` (for a cause known from the request log)."""
    return AnomalyWindow(signal, at, at, at, "up", 0.0, 0.0, 0.0, 0.0, 0.0)


def _weight(windows: list[AnomalyWindow]) -> float:
    """How anomalous a series is: the summed scores of its windows (inf counted as large)."""
    return float(sum(min(abs(w.score), 1e6) for w in windows))


def _smooth(v: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average (NaN as 0), so one-bucket misalignments do not hide a link."""
    k = max(1, width)
    return np.convolve(np.nan_to_num(v), np.ones(k) / k, mode="same")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, 0 when either side is constant."""
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def find_chain(
    con: duckdb.DuckDBPyConnection,
    settings: ChainSettings | None = None,
    *,
    grid_s: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> ChainResult:
    """Reconstruct the root-cause chain from the store (see the module docstring), on the
    rollups of the given grid and window (``analysis.rollups.ensure_rollups``: by default
    the stored ones, or a grid and window chosen from the data); the result says which
    (``rollup``)."""
    info = ensure_rollups(con, grid_s, start, end)
    result = _chain(con, settings or ChainSettings())
    result.rollup = info
    if info.n_buckets == 0 and info.window is not None and info.window.n_outside:
        result.notes = ["too little data: no row inside the window (--start/--end or the"
                        " manifest's [window] leaves every row out)"]
    return result


def _chain(con: duckdb.DuckDBPyConnection, settings: ChainSettings) -> ChainResult:
    """The chain on the current rollups (``find_chain``)."""
    env = environment(con)
    ids = signal_ids(con)
    matches = {s: m for s, sid in ids.items() if (m := role_of_signal(sid)) is not None}
    by_role: dict[str, list[str]] = {r: [] for r in ROLES}
    for s, m in matches.items():
        if m.role and m.role != "trigger":
            by_role[m.role].append(s)
    chosen: dict[str, list[str]] = {}
    for role, cands in by_role.items():
        ordered = _pick(role, cands, ids)
        if not ordered:
            continue  # a store without this role (metrics only, logs only ...)
        if role == "port_exhaustion":
            chosen[role] = [s for s in ordered if ids[s].errno_class] or ordered[:1]
        else:
            chosen[role] = ordered[:1]
    tw_signals = [s for s in by_role["port_exhaustion"] if ids[s].family == "metric"]
    tw_signal = _pick("port_exhaustion", [s for s in tw_signals if not ids[s].labels]
                      or tw_signals, ids)
    callers = sorted({c for s in matches if (c := ids[s].caller) is not None})
    rival_loss = [s for s, m in matches.items() if m.rival == "packet_loss" and not ids[s].labels]

    def label_sets(agg: str) -> list[str]:
        """The per-label-set signals of the metric ``agg`` aggregates."""
        return [s for s, sid in ids.items() if sid.labels and sid.aggregate.key == agg]

    fan_hosts = label_sets(chosen["fan_out"][0]) if "fan_out" in chosen else []
    # user traffic drops in the affected DC only: each DC's series is a candidate
    options: dict[str, list[list[str]]] = {r: [v] for r, v in chosen.items()}
    if "user_impact" in chosen:
        options["user_impact"] += [[s] for s in label_sets(chosen["user_impact"][0])]
    wanted = sorted(
        {s for opts in options.values() for v in opts for s in v}
        | set(tw_signal[:1])
        | set(fan_hosts)
        | set(rival_loss)
        | {SignalId.for_caller(c, k).key for c in callers for k in ("uris", "max_uris",
                                                                    "requests")}
    )
    wanted = [s for s in wanted if s in ids]
    frame = signal_frame(con, wanted) if wanted else pl.DataFrame({"t": []})
    if frame.height < 10:
        return ChainResult(NO_CAUSE, None, [], [], {}, env, notes=["too little data"])
    t = frame["t"]
    t0: datetime = t[0]
    grid_s = (t[1] - t[0]).total_seconds() if frame.height > 1 else 1.0
    span = (t0, t[-1])
    span_s = (t[-1] - t0).total_seconds() + grid_s
    given = settings
    settings = scale_to_span(settings, span_s, grid_s)
    scale_note = _scale_note(given, settings, span_s)

    def col(s: str) -> np.ndarray:
        return frame[s].cast(pl.Float64).fill_null(float("nan")).to_numpy()

    series: dict[str, _RoleSeries] = {}
    for role, opts in options.items():
        for sigs in opts:
            v = np.nansum(np.vstack([col(s) for s in sigs]), axis=0) if len(sigs) > 1 else col(
                sigs[0])
            sign = -1.0 if matches[sigs[0]].direction == "down" else 1.0
            name = "+".join(sigs)
            family = ids[sigs[0]].family
            wins = _windows(t, sign * v, name, settings, counts=family != "metric")
            # the most anomalous candidate stands for the role
            if wins and (role not in series or _weight(wins) > _weight(series[role].windows)):
                series[role] = _RoleSeries(role, name, sign * v, wins, family)

    roles = {sig: m.role or f"rival:{m.rival}" for sig, m in matches.items()}
    roles.update(_roles_by_data(con, ids, matches, series, t, env, settings))
    if "cache_errors" in series and "port_exhaustion" in series:
        # a failed dial is a failed cache operation: address-error windows are cache-error
        # windows too (errors:total also carries sampled noise that can mask its own rise)
        ce = series["cache_errors"]
        ce.windows = sorted(ce.windows + series["port_exhaustion"].windows,
                            key=lambda w: w.start)

    # The culprit: per-caller weight and its coincidence with the fan-out.
    fan = _demand(series)
    pool = env.idle_pool
    forced = forced_dials(con, t0, frame.height, grid_s, env)
    smooth = max(1, int(settings.smooth_s / grid_s))
    scores = [
        _score_caller(con, c, col, t, fan, forced.get(c), span, settings, smooth)
        for c in callers if SignalId.for_caller(c, "uris").key in frame.columns
    ]
    scores.sort(key=lambda s: (-s.score, -s.fill, s.caller))

    exhausted, tw_note = _exhaustion_evidence(series, tw_signal, col, env)
    impact = "user_impact" in series or "cache_errors" in series
    best = scores[0] if scores else None
    first_exh = series["port_exhaustion"].windows[0].start if "port_exhaustion" in series else None
    supported = (
        best is not None
        and best.score >= settings.min_corr
        and best.first_forced is not None
        and (first_exh is None
             or best.first_forced <= first_exh + timedelta(seconds=settings.slack_s))
    )
    rejected: list[Rejected] = []
    if not (exhausted and impact and supported):
        why = []
        if not exhausted:
            why.append("no port-exhaustion evidence (no address errors, TIME_WAIT below range)")
        if not impact:
            why.append("no error or user-impact anomaly")
        if exhausted and not supported:
            why.append("no caller's batches can fill the port range ahead of the exhaustion")
        for s in scores:
            rejected.append(Rejected.of_caller(s.caller, _caller_reason(s, None, pool)))
        rejected += _reject_packet_loss(rival_loss, col, t, series, span, settings)
        return ChainResult(NO_CAUSE, None, [], rejected, {}, env, callers=scores,
                           roles=roles, notes=["; ".join(why)])

    assert best is not None
    trig_sig = SignalId.for_caller(best.caller, "uris").key
    uris = col(trig_sig)
    trig_w = _windows(t, uris, trig_sig, settings, counts=True)
    if not trig_w:  # batches without a rate anomaly: the first one is the window
        trig_w = [_point_window(trig_sig, best.first_forced)]
    series["trigger"] = _RoleSeries("trigger", trig_sig, uris, trig_w, "caller")
    present = [r for r in ROLES if r in series]
    any_forced = np.sum([f.series for f in forced.values()], axis=0)
    onsets = _onsets(series, present, t, grid_s, best, any_forced, settings)
    host_dials = [col(s) for s in fan_hosts] or (
        [series["fan_out"].values] if "fan_out" in series else [])
    mech_pass, mech_text = _mechanism(series, host_dials, tw_signal, col, t, env, onsets,
                                      grid_s, settings, best)
    hops: list[Hop] = []
    for a, b in zip(present, present[1:], strict=False):
        hops.append(_hop(series[a], series[b], span, grid_s, settings,
                         mech_text.get((a, b))))
    culprit = Culprit(best.caller, best.method, _evidence(best, pool))
    for s in scores[1:]:
        rejected.append(Rejected.of_caller(s.caller, _caller_reason(s, best, pool)))
    rejected += _reject_packet_loss(rival_loss, col, t, series, span, settings)
    rejected += _reject_deploys(con, onsets, settings, best.caller)
    others = [o[0] for o in options.get("user_impact", []) if o[0] != series["user_impact"].signal
              and ids[o[0]].labels] if "user_impact" in series else []
    rejected += _reject_daily_curve(series, grid_s, {ids[o]: col(o) for o in others}, t,
                                    settings, ids)
    notes = [n for n in (tw_note, scale_note) if n]
    return ChainResult(ROOT_CAUSE, culprit, hops, rejected, onsets, env, callers=scores,
                       roles=roles, mechanism_passed=mech_pass, notes=notes)


def _caller_method(con: duckdb.DuckDBPyConnection, caller: str) -> str | None:
    """The caller's main method: the one its URIs went to most (from ``roll_callers``,
    whatever the raw volume)."""
    rows = con.execute(
        "SELECT method FROM roll_callers WHERE caller = ? GROUP BY method "
        "ORDER BY sum(uris) DESC NULLS LAST, method NULLS LAST LIMIT 1",
        [caller],
    ).fetchall()
    return rows[0][0] if rows else None


def _onsets(
    series: dict[str, _RoleSeries],
    present: list[str],
    t: pl.Series,
    grid_s: float,
    best: CallerScore,
    any_forced: np.ndarray,
    settings: ChainSettings,
) -> dict[str, datetime]:
    """When each role starts, on the definitions an analyst would use.

    * trigger: the culprit's first request larger than the idle pool;
    * fan_out: the first request larger than the pool inside the dial counter's
      first window (a counter sampled every 5-15 s only says the dials happened
      somewhere in the interval; the request log says when);
    * runtime_stress (OS threads): the first time threads reach
      ``STRESS_FACTOR`` times their level before the window;
    * user_impact: the first minute whose mean traffic is below ``IMPACT_SHARE``
      of the level before the window, in ``impact_bin_s`` bins counted from the grid's
      start (a minute on long incidents, a few seconds on short captures; never a bin
      that starts before the trigger);
    * otherwise the start of the role's first anomaly window.

    Windows that end before the trigger (noise before the story starts) are skipped.
    """
    t0 = t[0]
    trig = best.first_forced or series["trigger"].windows[0].start
    earliest = trig - timedelta(seconds=settings.slack_s)
    i_earliest = max(0, int((earliest - t0).total_seconds() / grid_s))
    out: dict[str, datetime] = {"trigger": trig}
    for role in present:
        if role == "trigger":
            continue
        rs = series[role]
        w = next((w for w in rs.windows if w.end >= earliest), rs.windows[0])
        i0 = int((w.start - t0).total_seconds() / grid_s)
        onset = w.start
        if w.start < earliest:
            # a window that began before the story (background noise merged into it):
            # the role starts where the series first leaves its baseline after the trigger
            i1 = int((w.end - t0).total_seconds() / grid_s) + 1
            seg = np.nan_to_num(rs.values[i_earliest:i1], nan=-np.inf)
            above = np.flatnonzero(seg > w.baseline + 1e-9)
            i0 = i_earliest + (int(above[0]) if above.size else 0)
            onset = t[min(i0, len(t) - 1)]
        if role == "fan_out":
            lo = max(0, i0 - int(settings.slack_s / grid_s))
            hi = int((w.end - t0).total_seconds() / grid_s) + 1
            nz = np.flatnonzero(any_forced[lo:hi])
            if nz.size:
                onset = t[lo + int(nz[0])]
        elif role in ("runtime_stress", "user_impact"):
            v = np.abs(rs.values)  # user traffic is stored negated
            before = v[max(0, i0 - max(1, int(600 / grid_s))):i0]
            base = float(np.nanmedian(before)) if np.isfinite(before).any() else float("nan")
            if np.isfinite(base) and base > 0:
                if role == "runtime_stress" and "thread" in rs.signal:
                    hit = np.flatnonzero(np.nan_to_num(v[i0:]) >= STRESS_FACTOR * base)
                    if hit.size:
                        onset = t[i0 + int(hit[0])]
                elif role == "user_impact":
                    onset = _first_low_bin(v, base, i0, i_earliest, t, grid_s,
                                           settings.impact_bin_s) or onset
        out[role] = onset
    return out


def _first_low_bin(
    v: np.ndarray, base: float, i0: int, i_earliest: int, t: pl.Series, grid_s: float,
    bin_s: float = IMPACT_BIN_S,
) -> datetime | None:
    """Start of the first ``bin_s`` bin (from the grid start) around or after ``i0``
    whose mean is below ``IMPACT_SHARE`` of ``base``; bins starting before
    ``i_earliest`` (the trigger, less the slack) are not the story's impact."""
    k = max(1, int(bin_s / grid_s))
    first_bin = max(0, i0 // k - 1, -(-i_earliest // k))
    n_bins = v.size // k
    for b in range(first_bin, n_bins):
        chunk = v[b * k:(b + 1) * k]
        if np.isfinite(chunk).any() and float(np.nanmean(chunk)) < IMPACT_SHARE * base:
            return t[b * k]
    return None


def _demand(series: dict[str, _RoleSeries]) -> _RoleSeries | None:
    """What the culprit's batches must explain: fan-out plus failed dials (address errors).

    Successful dials flatten once the ports are gone while the batches go on;
    the failed ones show as address errors, so the two, each scaled to its
    peak, together follow the connections the batches wanted.
    """
    parts = [series[r] for r in ("fan_out", "port_exhaustion") if r in series]
    if not parts:
        return None
    total = sum(np.nan_to_num(p.values) / max(float(np.nanmax(p.values)), 1e-12) for p in parts)
    windows = sorted((w for p in parts for w in p.windows), key=lambda w: w.start)
    return _RoleSeries(parts[0].role, "+".join(p.signal for p in parts), total, windows)


@dataclass(frozen=True)
class Forced:
    """Dials a caller's batches force past the idle pool, per bucket and per host.

    ``series`` is summed over hosts; ``fill`` is the largest number forced on
    one host within one TIME_WAIT period, as a share of that host's free ports
    (>= 1: the batches alone can fill the range).
    """

    series: np.ndarray
    fill: float
    first: int | None


def forced_dials(
    con: duckdb.DuckDBPyConnection,
    t0: datetime,
    n: int,
    grid_s: float,
    env: Environment,
) -> dict[str, Forced]:
    """Per caller: the lookups its requests want beyond the idle pool (see ``Forced``).

    One lookup per URI at once, so a request of ``u`` URIs dials ``max(u - pool, 0)``
    connections. With an unknown pool, ``UNKNOWN_POOL_CAP`` stands in (four
    times the largest normal batch: small batches never count). Read from the heavy
    requests of the rollups (``roll_heavy``: exact whenever the pool is at least
    ``HEAVY_URIS``, and as small as the heavy traffic, whatever the raw volume), from the
    raw ``requests`` otherwise.
    """
    cap = env.idle_pool if env.idle_pool is not None else UNKNOWN_POOL_CAP
    source = "roll_heavy" if cap >= HEAVY_URIS and has_table(con, "roll_heavy") else "requests"
    if source == "requests":
        raw_absent(con, f"the port arithmetic with an idle pool under {HEAVY_URIS}")
    rows = con.sql(
        f"""SELECT caller, coalesce(host, '') AS host,
                  CAST(floor((epoch(time) - epoch(?::TIMESTAMP)) / ?) AS BIGINT) AS b,
                  sum(uris - ?) AS v
           FROM {source} WHERE caller IS NOT NULL AND uris > ? GROUP BY ALL""",
        params=[t0, grid_s, cap, cap],
    ).pl().filter(pl.col("b").is_between(0, n - 1))
    if rows.height == 0:
        return {}
    pairs = rows.select("caller", "host").unique().sort("caller", "host")
    rows = rows.join(pairs.with_row_index("k"), on=["caller", "host"])
    per = np.zeros((pairs.height, n))
    values = rows["v"].cast(pl.Float64).to_numpy()
    np.add.at(per, (rows["k"].to_numpy(), rows["b"].to_numpy()), values)
    room = max(env.ports - cap, 1)
    fills = _fills(con, source, t0, n * grid_s, cap, env.time_wait_s)
    out: dict[str, Forced] = {}
    owners = pairs["caller"].to_numpy()
    for caller in pairs["caller"].unique(maintain_order=True).to_list():
        total = per[owners == caller].sum(axis=0)
        nz = np.flatnonzero(total)
        out[caller] = Forced(total, fills.get(caller, 0.0) / room, int(nz[0]) if nz.size else None)
    return out


def _fills(
    con: duckdb.DuckDBPyConnection, source: str, t0: datetime, span_s: float, cap: int,
    time_wait_s: int,
) -> dict[str, float]:
    """Per caller, the most dials its requests force past the pool on one host within one
    TIME_WAIT period (``time_wait_s`` whole seconds), from the request times at 1 s
    whatever the grid: on a grid coarser than TIME_WAIT a bucket's sum would count
    several periods' dials as one."""
    rows = con.execute(
        f"""WITH s AS (
              SELECT caller, coalesce(host, '') AS host,
                     CAST(floor(epoch(time) - epoch($t0::TIMESTAMP)) AS BIGINT) AS sec,
                     sum(uris - $cap) AS v
              FROM {source}
              WHERE caller IS NOT NULL AND uris > $cap
                AND time >= $t0::TIMESTAMP
                AND time < $t0::TIMESTAMP + to_microseconds(CAST($span * 1e6 AS BIGINT))
              GROUP BY ALL)
            SELECT caller, max(w) FROM (
              SELECT caller, sum(v) OVER (PARTITION BY caller, host ORDER BY sec
                                          RANGE BETWEEN $back PRECEDING AND CURRENT ROW) AS w
              FROM s) GROUP BY caller""",
        {"t0": t0, "cap": cap, "span": float(span_s), "back": max(1, int(time_wait_s)) - 1},
    ).fetchall()
    return {str(c): float(w) for c, w in rows}


def _score_caller(
    con: duckdb.DuckDBPyConnection,
    caller: str,
    col,
    t: pl.Series,
    fan: _RoleSeries | None,
    forced: Forced | None,
    span: tuple[datetime, datetime],
    settings: ChainSettings,
    smooth: int,
) -> CallerScore:
    """A caller's weight and how it lines up with the fan-out.

    The score is the correlation of the (smoothed) dials the caller's batches
    force past the pool with the (smoothed) fan-out, zero unless its batches
    alone can fill a host's port range within one TIME_WAIT period: a caller
    of small batches scores 0 whatever its request rate.
    """
    uris = col(SignalId.for_caller(caller, "uris").key)
    max_b = float(np.nanmax(col(SignalId.for_caller(caller, "max_uris").key), initial=0.0))
    rps = float(np.nanmax(col(SignalId.for_caller(caller, "requests").key), initial=0.0))
    total = float(forced.series.sum()) if forced is not None else 0.0
    fill = forced.fill if forced is not None else 0.0
    wins = _windows(t, uris, SignalId.for_caller(caller, "uris").key, settings, counts=True)
    share, p, corr = 0.0, 1.0, 0.0
    if fan is not None:
        if wins:
            c = _coincide(wins, fan.windows, span, settings)
            share, p = c.share, c.p_value
        if forced is not None:
            corr = _corr(_smooth(forced.series, smooth), _smooth(fan.values, smooth))
    score = max(corr, 0.0) if fill >= 1.0 else 0.0
    first = t[forced.first] if forced is not None and forced.first is not None else None
    return CallerScore(caller, _caller_method(con, caller), rps, max_b, total, fill, share, p,
                       corr, score, first)


def _evidence(s: CallerScore, pool: int | None) -> str:
    pool_txt = f"idle pool {pool}" if pool is not None else "idle pool unknown"
    return (
        f"peak {s.peak_rps:.1f} req/s but batches up to {s.max_batch:,.0f} URIs ({pool_txt}):"
        f" within one TIME_WAIT its batches alone force {s.fill:.1f}x a host's free ports;"
        f" its forced dials follow the fan-out (r={s.corr:.2f})"
    )


def _caller_reason(s: CallerScore, best: CallerScore | None, pool: int | None) -> str:
    """Why a caller is not the culprit (weight, not request rate, decides)."""
    if s.forced_dials <= 0:
        cap = f"the idle pool ({pool})" if pool is not None else (
            f"{UNKNOWN_POOL_CAP} URIs (pool unknown)")
        return (
            f"effect too small for the mechanism: largest batch {s.max_batch:,.0f} URIs is"
            f" within {cap}, so its requests (peak {s.peak_rps:.1f} req/s) never dial past"
            " the pool"
        )
    if s.fill < 1.0:
        return (
            f"effect too small for the mechanism: within one TIME_WAIT its batches force only"
            f" {s.fill:.0%} of a host's free ports"
        )
    if best is not None and best.first_forced and s.first_forced and (
        s.first_forced > best.first_forced
    ):
        return f"wrong order: its batches start after {best.caller}'s"
    if s.corr < 0.1:
        return f"no coincidence: its forced dials do not follow the fan-out (r={s.corr:.2f})"
    return f"weaker evidence than {best.caller if best else 'the culprit'} (r={s.corr:.2f})"


def _exhaustion_evidence(
    series: dict[str, _RoleSeries], tw_signal: list[str], col, env: Environment
) -> tuple[bool, str]:
    """Address errors seen, or TIME_WAIT reaching (90 % of) the port range."""
    note = ""
    tw_hit = False
    if tw_signal:
        tw = col(tw_signal[0])
        peak = float(np.nanmax(tw, initial=0.0))
        tw_hit = peak >= 0.9 * env.ports
        note = f"TIME_WAIT peak {peak:,.0f} vs {env.ports:,} ports"
    return ("port_exhaustion" in series) or tw_hit, note


def _effect_size(cause: _RoleSeries, effect: _RoleSeries, span_t0: datetime, grid_s: float,
                 lag_s: float) -> float:
    """Standardised difference of the effect inside vs outside the cause's windows.

    Windows are shifted by the measured lag; the scale is the pooled standard
    deviation (floored so a flat baseline does not divide by zero).
    """
    n = effect.values.size
    inside = np.zeros(n, dtype=bool)
    shift = max(lag_s, 0.0)
    for w in cause.windows:
        a = int(((w.start - span_t0).total_seconds() + shift) / grid_s)
        b = int(((w.end - span_t0).total_seconds() + shift) / grid_s) + 1
        inside[max(a, 0):min(b, n)] = True
    v = np.nan_to_num(effect.values)
    if inside.all() or not inside.any():
        return 0.0
    sd = math.sqrt((np.var(v[inside]) + np.var(v[~inside])) / 2)
    sd = max(sd, 1e-9 + 0.01 * abs(float(np.mean(v[~inside]))))
    return float((np.mean(v[inside]) - np.mean(v[~inside])) / sd)


def _hop(
    a: _RoleSeries,
    b: _RoleSeries,
    span: tuple[datetime, datetime],
    grid_s: float,
    settings: ChainSettings,
    mechanism: str | None,
) -> Hop:
    lag_s = settings.slow_lag_s if b.role in SLOW_EFFECTS else settings.max_lag_s
    max_lag = max(1, int(lag_s / grid_s))
    k = max(1, int(settings.smooth_s / grid_s))
    ll = lead_lag(_smooth(a.values, k), _smooth(b.values, k), max_lag=max_lag,
                  n_boot=settings.n_boot, seed=settings.seed, step_s=grid_s, how=settings.lag_how)
    c = _coincide(a.windows, b.windows, span, settings, lag_s)
    size = _effect_size(a, b, span[0], grid_s, ll.lag_s)
    if b.role == "user_impact":
        size = -size  # the effect is a drop: report it with its sign
    return Hop(a.signal, b.signal, a.role, b.role, float(ll.lag_s),
               (float(ll.ci_low), float(ll.ci_high)), float(c.share), float(c.p_value),
               round(size, 3), mechanism)


def _mechanism(
    series: dict[str, _RoleSeries],
    host_dials: list[np.ndarray],
    tw_signal: list[str],
    col,
    t: pl.Series,
    env: Environment,
    onsets: dict[str, datetime],
    grid_s: float,
    settings: ChainSettings,
    best: CallerScore | None = None,
) -> tuple[bool | None, dict[tuple[str, str], str]]:
    """Mechanism texts per hop and whether the port-exhaustion check passes.

    Per host (each has its own ports), the sockets in TIME_WAIT are predicted
    as the dials of the last ``time_wait_s`` seconds; the range is full when
    they reach the ports minus the idle pool. The check passes when the
    hottest host's dial rate times TIME_WAIT exceeds that room and the earliest
    predicted moment of exhaustion is within ``exhaustion_tolerance_s`` of the
    first address error.
    """
    texts: dict[tuple[str, str], str] = {}
    passed: bool | None = None
    fan = series.get("fan_out")
    if fan is not None and host_dials and "port_exhaustion" in onsets:
        win = max(1, int(env.time_wait_s / grid_s))
        # sockets in TIME_WAIT: the dials of the last ``time_wait_s`` seconds (a grid coarser
        # than TIME_WAIT holds the bucket's mean rate for that long)
        held_s = min(win * grid_s, env.time_wait_s)
        room = env.ports - (env.idle_pool or 0)
        first_hit: int | None = None
        rate = 0.0
        for v in host_dials:
            dials = np.nan_to_num(v)
            tw_pred = np.convolve(dials, np.ones(win))[: dials.size] * (held_s / win)
            hit = np.flatnonzero(tw_pred >= room)
            if hit.size and (first_hit is None or hit[0] < first_hit):
                first_hit = int(hit[0])
            active = dials > 0.1 * max(float(dials.max()), 1e-9)
            if active.any():
                rate = max(rate, float(dials[active].mean()))
        observed = onsets["port_exhaustion"]
        fills = rate * env.time_wait_s >= room
        if first_hit is not None:
            predicted = t[first_hit]
            delta = (observed - predicted).total_seconds()
            # a grid coarser than the tolerance cannot time either moment more finely
            passed = fills and abs(delta) <= max(settings.exhaustion_tolerance_s, grid_s)
            when = (f"predicted exhaustion {_iso(predicted)}, observed {_iso(observed)}"
                    f" ({delta:+.0f} s)")
        else:
            passed = False
            when = f"dials never fill the range, yet exhaustion observed {_iso(observed)}"
        plateau = ""
        exh = series["port_exhaustion"]
        if tw_signal and exh.family == "errors":
            tw = col(tw_signal[0])
            during = tw[(np.nan_to_num(exh.values) > 0) & np.isfinite(tw)]
            if during.size:
                level = float(np.median(during))
                plateau = (f"; TIME_WAIT while address errors occur: {level:,.0f} per host"
                           f" ({level / env.ports:.0%} of the range)")
        texts[("fan_out", "port_exhaustion")] = (
            f"{rate:,.0f} dials/s per host x {env.time_wait_s} s TIME_WAIT ="
            f" {rate * env.time_wait_s:,.0f} sockets vs {room:,} free ports"
            f" ({env.ports:,} in {env.port_range[0]}-{env.port_range[1]} minus the idle pool)"
            f"{plateau}; {when}: {'PASS' if passed else 'FAIL'}"
        )
    trig = series.get("trigger")
    if trig is not None and fan is not None and best is not None:
        pool = env.idle_pool if env.idle_pool is not None else UNKNOWN_POOL_CAP
        peak = float(np.nanmax(fan.values, initial=0.0))
        texts[("trigger", "fan_out")] = (
            f"one lookup per URI: a batch of {best.max_batch:,.0f} URIs wants as many"
            f" connections at once; past the idle pool ({pool:,}) that is"
            f" {max(best.max_batch - pool, 0):,.0f} new dials per batch; observed dials peak"
            f" at {peak:,.0f}/s"
        )
    if "port_exhaustion" in series and "cache_errors" in series:
        texts[("port_exhaustion", "cache_errors")] = (
            "a dial with no free (address, port) fails with EADDRINUSE/EADDRNOTAVAIL and the"
            " cache operation logs an error"
        )
    return passed, texts


def _reject_packet_loss(
    loss_signals: list[str],
    col,
    t: pl.Series,
    series: dict[str, _RoleSeries],
    span: tuple[datetime, datetime],
    settings: ChainSettings,
) -> list[Rejected]:
    out: list[Rejected] = []
    target = series.get("user_impact") or series.get("cache_errors")
    for s in loss_signals:
        v = col(s)
        wins = _windows(t, v, s, settings, counts=False)
        peak = float(np.nanmax(v, initial=0.0))
        if not wins:
            out.append(Rejected(s, f"no anomaly: loss stays near its baseline (peak {peak:.3g})"))
            continue
        exh = series.get("port_exhaustion")
        if target is None:
            out.append(Rejected(s, f"nothing to explain: loss rose (peak {peak:.3g}) but no"
                                   " errors or user traffic moved"))
            continue
        c = _coincide(wins, target.windows, span, settings)
        if exh is not None and wins[0].start > exh.windows[0].start:
            lag = (wins[0].start - exh.windows[0].start).total_seconds()
            out.append(Rejected(s, f"wrong order: loss starts {lag:.0f} s after port exhaustion"
                                   f" ({c.share:.0%} of its windows precede a {target.role}"
                                   " window)"))
        elif c.share < settings.min_share or c.p_value > settings.max_p:
            out.append(Rejected(s, f"no coincidence: {c.n_followed} of {c.n_cause} loss windows"
                                   f" precede a {target.role} window (p={c.p_value:.2f})"))
        else:
            out.append(Rejected(s, f"effect too small for the mechanism: loss (peak"
                                   f" {peak:.3g}) opens no sockets, so it cannot fill the port"
                                   " range; address errors show exhaustion"))
    return out


def _reject_deploys(
    con: duckdb.DuckDBPyConnection,
    onsets: dict[str, datetime],
    settings: ChainSettings,
    culprit: str | None = None,
) -> list[Rejected]:
    """Deploys before the chain: too early, too late, or without a mechanism.

    A deploy of the culprit itself (its name in the title) is context, not a rival
    cause: the chain starts with its batches.
    """
    rows = con.execute(
        "SELECT start, title FROM roll_events WHERE lower(kind) = 'deploy' ORDER BY start"
    ).fetchall()
    first = min(onsets.values()) if onsets else None
    out: list[Rejected] = []
    for when, title in rows:
        name = f"deploy: {title} ({_iso(when)})"
        if culprit and first is not None and culprit.lower() in str(title).lower():
            out.append(Rejected(name, f"not a separate cause: it brought {culprit} in; the chain"
                                      f" starts with its batches {_ago(first - when)} later"))
        elif first is None:
            out.append(Rejected(name, "nothing to explain"))
        elif when > first:
            out.append(Rejected(name, f"wrong order: {_ago(when - first)} after the chain's"
                                      " first onset"))
        elif first - when > timedelta(seconds=settings.max_lag_s):
            out.append(Rejected(name, f"no coincidence: {_ago(first - when)} before the first"
                                      f" onset (more than {settings.max_lag_s} s)"))
        else:
            out.append(Rejected(name, "no mechanism: a deploy opens no connections; the fan-out"
                                      " follows the caller's batches"))
    return out


def _ago(d: timedelta) -> str:
    """A duration in words: seconds, minutes, hours or days."""
    sec = abs(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if sec >= 2 * size:
            return f"{sec / size:.0f} {unit}"
    return f"{sec:.0f} s"


def _reject_daily_curve(
    series: dict[str, _RoleSeries],
    grid_s: float,
    others: dict[SignalId, np.ndarray],
    t: pl.Series,
    settings: ChainSettings,
    ids: dict[str, SignalId],
) -> list[Rejected]:
    """The daily curve is shared by every DC and moves over hours; the drops are short,
    follow the errors and (when traffic is split by DC) hit one DC while others hold."""
    imp = series.get("user_impact")
    if imp is None:
        return []
    dur = [(w.end - w.start).total_seconds() + grid_s for w in imp.windows]
    reason = (f"the drops last {float(np.median(dur)):.0f} s (median of {len(dur)}) and follow"
              " the errors; a daily curve moves over hours")
    if others:
        here = _change_in_windows(-imp.values, imp.windows, t, grid_s)
        parts = [f"{_label_text(o)} {_change_in_windows(v, imp.windows, t, grid_s):+.0%}"
                 for o, v in others.items()]
        reason += (f"; during the drops {_label_text(ids[imp.signal])} changes by {here:+.0%},"
                   f" {', '.join(parts)}")
    return [Rejected("daily curve", reason)]


def _change_in_windows(
    v: np.ndarray, windows: list[AnomalyWindow], t: pl.Series, grid_s: float
) -> float:
    """Median relative change of ``v`` inside each window against the 5 minutes before it."""
    t0 = t[0]
    out = []
    for w in windows:
        a = int((w.start - t0).total_seconds() / grid_s)
        b = int((w.end - t0).total_seconds() / grid_s) + 1
        before = v[max(0, a - max(1, int(300 / grid_s))):a]
        inside = v[a:b]
        if np.isfinite(before).any() and np.isfinite(inside).any():
            ref = float(np.nanmean(before))
            if ref:
                out.append(float(np.nanmean(inside)) / ref - 1.0)
    return float(np.median(out)) if out else 0.0


def _label_text(sid: SignalId) -> str:
    """A label set as ``dc=us-west,job=y`` (control characters escaped); the name of a
    signal without labels."""
    if not sid.labels:
        return sid.key
    return printable(",".join(f"{k}={v}" for k, v in sid.labels))


def format_chain(result: ChainResult) -> str:
    """A readable hop-by-hop story with numbers (the human output of ``chain``)."""
    env = result.environment
    lines = [
        f"Environment: ports {env.port_range[0]}-{env.port_range[1]} ({env.ports:,}),"
        f" TIME_WAIT {env.time_wait_s} s, idle pool "
        f"{env.idle_pool if env.idle_pool is not None else 'unknown'}"
        f" (from manifest: {', '.join(env.from_manifest) or 'none, kernel defaults'})",
    ]
    if result.rollup is not None:
        lines.append(f"Data: {result.rollup.describe()}")
        outside = result.rollup.outside_line()
        if outside:
            lines.append(f"Outside the window: {outside}")
    if result.verdict != ROOT_CAUSE:
        lines.append("Verdict: no supported cause. " + "; ".join(result.notes))
    else:
        c = result.culprit
        assert c is not None
        lines.append(f"Verdict: root cause found. Culprit: {c.caller} calling {c.method}.")
        lines.append(f"  Evidence: {c.evidence}")
        lines.append("Onsets: " + ", ".join(
            f"{r} {_iso(result.onsets[r])}" for r in result.roles_in_order()))
        lines.append("Chain (lag > 0: the cause moves first; [95 % bootstrap interval]):")
        for i, h in enumerate(result.hops, 1):
            lines.append(
                f"  {i}. {h.cause_role} -> {h.effect_role}: {h.cause} -> {h.effect},"
                f" lag {h.lag_s:+.0f} s [{h.lag_ci_s[0]:+.0f}, {h.lag_ci_s[1]:+.0f}],"
                f" coincidence {h.coincidence:.0%} (p={h.p_value:.3f}),"
                f" effect size {h.effect_size:+.2f}"
            )
            if h.mechanism:
                lines.append(f"     mechanism: {h.mechanism}")
    if result.rejected:
        lines.append("Rejected rivals:")
        lines += [f"  - {r.candidate}: {r.reason}" for r in result.rejected]
    # names come from the data: a newline or an escape sequence in one must not reach the
    # terminal as such
    return "\n".join(printable(line) for line in lines)
