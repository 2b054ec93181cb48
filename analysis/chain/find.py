"""``find_chain`` and its stages, in order.

1. ``select_signals``: signals by role from their names, and the environment (``roles``);
2. load the rollups of those signals (``Capture``) and shrink the time knobs to the
   capture (``settings.scale_to_span``);
3. ``role_series``: the series standing for each role, its anomaly windows (``roles``);
   series too short for a baseline are refused and listed (``ChainResult.too_short``);
4. ``score_callers``: the culprit, by weight and coincidence with the fan-out
   (``callers``), and ``_unsupported``: what the verdict lacks, if anything;
5. ``add_trigger`` and ``onsets``: when each role starts (``onsets``);
6. ``mechanism_check`` and ``hop``: the measured hops and the arithmetic (``hops``);
7. ``rivals``: other callers, packet loss, deploys, the daily curve (``rivals``);
8. the ``ChainResult`` (``result``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from analysis.chain.callers import caller_reason, evidence, score_callers
from analysis.chain.hops import exhaustion_evidence, hop, mechanism_check
from analysis.chain.onsets import add_trigger, onsets
from analysis.chain.result import CallerScore, ChainResult, Culprit, Rejected, TooShort
from analysis.chain.rivals import rivals
from analysis.chain.roles import Selection, role_series, select_signals
from analysis.chain.series import Capture, RoleSeries
from analysis.chain.settings import NO_CAUSE, ROOT_CAUSE, ChainSettings, scale_note, scale_to_span
from analysis.roles import ROLES
from analysis.rollups import ensure_rollups, signal_frame


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
    """The chain on the current rollups (``find_chain``), stage by stage."""
    sel = select_signals(con)
    env = sel.env
    frame = signal_frame(con, sel.wanted) if sel.wanted else pl.DataFrame({"t": []})
    if frame.height < 10:
        return ChainResult(NO_CAUSE, None, [], [], {}, env, notes=["too little data"])
    cap = Capture(frame)
    given = settings
    settings = scale_to_span(settings, cap.span_s, cap.grid_s)
    series, roles, short = role_series(con, sel, cap, settings)
    scores, forced = score_callers(con, sel.callers, cap, series, env, settings)
    best = scores[0] if scores else None
    why, tw_note = _unsupported(sel, cap, series, best, settings)
    if why:
        rejected = [Rejected.of_caller(s.caller, caller_reason(s, None, env.idle_pool))
                    for s in scores]
        rejected += rivals(con, sel, cap, series, {}, None, settings, short)
        return ChainResult(NO_CAUSE, None, [], rejected, {}, env, callers=scores,
                           roles=roles, notes=["; ".join(why)], too_short=_sorted(short))

    assert best is not None
    add_trigger(series, best, cap, settings)
    present = [r for r in ROLES if r in series]
    any_forced = np.sum([f.series for f in forced.values()], axis=0)
    starts = onsets(series, present, cap.t, cap.grid_s, best, any_forced, settings)
    host_dials = [cap.col(s) for s in sel.fan_hosts] or (
        [series["fan_out"].values] if "fan_out" in series else [])
    mech_pass, mech_text = mechanism_check(series, host_dials, sel.tw_signal, cap.col, cap.t,
                                           env, starts, cap.grid_s, settings, best)
    hops = [hop(series[a], series[b], cap.span, cap.grid_s, settings, mech_text.get((a, b)))
            for a, b in zip(present, present[1:], strict=False)]
    culprit = Culprit(best.caller, best.method, evidence(best, env.idle_pool))
    rejected = [Rejected.of_caller(s.caller, caller_reason(s, best, env.idle_pool))
                for s in scores[1:]]
    rejected += rivals(con, sel, cap, series, starts, best.caller, settings, short)
    notes = [n for n in (tw_note, scale_note(given, settings, cap.span_s)) if n]
    return ChainResult(ROOT_CAUSE, culprit, hops, rejected, starts, env, callers=scores,
                       roles=roles, mechanism_passed=mech_pass, notes=notes,
                       too_short=_sorted(short))


def _sorted(short: list[TooShort]) -> list[TooShort]:
    """Each refused signal once, by name."""
    return sorted(set(short), key=lambda s: s.signal)


def _unsupported(
    sel: Selection,
    cap: Capture,
    series: dict[str, RoleSeries],
    best: CallerScore | None,
    settings: ChainSettings,
) -> tuple[list[str], str]:
    """What a root cause lacks (empty: nothing), and the TIME_WAIT note.

    A root cause needs port-exhaustion evidence (address errors, or TIME_WAIT near the
    range), an error or user-impact anomaly, and a best caller that scores at least
    ``min_corr`` and whose forced dials start no later than the first address error
    (give or take ``slack_s``).
    """
    exhausted, tw_note = exhaustion_evidence(series, sel.tw_signal, cap.col, sel.env)
    impact = "user_impact" in series or "cache_errors" in series
    first_exh = series["port_exhaustion"].windows[0].start if "port_exhaustion" in series else None
    supported = (
        best is not None
        and best.score >= settings.min_corr
        and best.first_forced is not None
        and (first_exh is None
             or best.first_forced <= first_exh + timedelta(seconds=settings.slack_s))
    )
    why = []
    if not exhausted:
        why.append("no port-exhaustion evidence (no address errors, TIME_WAIT below range)")
    if not impact:
        why.append("no error or user-impact anomaly")
    if exhausted and not supported:
        why.append("no caller's batches can fill the port range ahead of the exhaustion")
    return why, tw_note
