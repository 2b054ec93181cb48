"""The hops of the chain and the port-exhaustion mechanism check (its arithmetic)."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import polars as pl

from analysis.chain.environment import UNKNOWN_POOL_CAP, Environment
from analysis.chain.result import CallerScore, Hop, iso
from analysis.chain.series import RoleSeries, coincide, smooth
from analysis.chain.settings import SLOW_EFFECTS, ChainSettings
from analysis.correlation import lead_lag


def exhaustion_evidence(
    series: dict[str, RoleSeries], tw_signal: list[str], col, env: Environment
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


def _effect_size(cause: RoleSeries, effect: RoleSeries, span_t0: datetime, grid_s: float,
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


def hop(
    a: RoleSeries,
    b: RoleSeries,
    span: tuple[datetime, datetime],
    grid_s: float,
    settings: ChainSettings,
    mechanism: str | None,
) -> Hop:
    """One hop ``a -> b``: lead/lag with its bootstrap interval (over ``slow_lag_s`` into
    effects that build up over minutes), coincidence of windows and effect size."""
    lag_s = settings.slow_lag_s if b.role in SLOW_EFFECTS else settings.max_lag_s
    max_lag = max(1, int(lag_s / grid_s))
    k = max(1, int(settings.smooth_s / grid_s))
    ll = lead_lag(smooth(a.values, k), smooth(b.values, k), max_lag=max_lag,
                  n_boot=settings.n_boot, seed=settings.seed, step_s=grid_s, how=settings.lag_how)
    c = coincide(a.windows, b.windows, span, settings, lag_s)
    size = _effect_size(a, b, span[0], grid_s, ll.lag_s)
    if b.role == "user_impact":
        size = -size  # the effect is a drop: report it with its sign
    return Hop(a.signal, b.signal, a.role, b.role, float(ll.lag_s),
               (float(ll.ci_low), float(ll.ci_high)), float(c.share), float(c.p_value),
               round(size, 3), mechanism)


def mechanism_check(
    series: dict[str, RoleSeries],
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
    """Mechanism texts per hop and whether the port-exhaustion check passes
    (``_exhaustion_check``; ``None`` when there is nothing to check)."""
    texts: dict[tuple[str, str], str] = {}
    passed: bool | None = None
    fan = series.get("fan_out")
    if fan is not None and host_dials and "port_exhaustion" in onsets:
        tw = col(tw_signal[0]) if tw_signal else None
        passed, texts[("fan_out", "port_exhaustion")] = _exhaustion_check(
            series["port_exhaustion"], host_dials, tw, t, env, onsets["port_exhaustion"],
            grid_s, settings)
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


def _exhaustion_check(
    exh: RoleSeries, host_dials: list[np.ndarray], tw: np.ndarray | None, t: pl.Series,
    env: Environment, observed: datetime, grid_s: float, settings: ChainSettings,
) -> tuple[bool, str]:
    """Whether the dials fill the port range when exhaustion (``exh``) was ``observed``,
    and the arithmetic as one line (``tw``: the TIME_WAIT gauge, when there is one).

    Per host (each has its own ports), the sockets in TIME_WAIT are predicted
    as the dials of the last ``time_wait_s`` seconds; the range is full when
    they reach the ports minus the idle pool. The check passes when the
    hottest host's dial rate times TIME_WAIT exceeds that room and the earliest
    predicted moment of exhaustion is within ``exhaustion_tolerance_s`` of the
    first address error.
    """
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
    fills = rate * env.time_wait_s >= room
    if first_hit is not None:
        predicted = t[first_hit]
        delta = (observed - predicted).total_seconds()
        # a grid coarser than the tolerance cannot time either moment more finely
        passed = fills and abs(delta) <= max(settings.exhaustion_tolerance_s, grid_s)
        when = (f"predicted exhaustion {iso(predicted)}, observed {iso(observed)}"
                f" ({delta:+.0f} s)")
    else:
        passed = False
        when = f"dials never fill the range, yet exhaustion observed {iso(observed)}"
    plateau = ""
    if tw is not None and exh.family == "errors":
        during = tw[(np.nan_to_num(exh.values) > 0) & np.isfinite(tw)]
        if during.size:
            level = float(np.median(during))
            plateau = (f"; TIME_WAIT while address errors occur: {level:,.0f} per host"
                       f" ({level / env.ports:.0%} of the range)")
    return passed, (
        f"{rate:,.0f} dials/s per host x {env.time_wait_s} s TIME_WAIT ="
        f" {rate * env.time_wait_s:,.0f} sockets vs {room:,} free ports"
        f" ({env.ports:,} in {env.port_range[0]}-{env.port_range[1]} minus the idle pool)"
        f"{plateau}; {when}: {'PASS' if passed else 'FAIL'}"
    )
