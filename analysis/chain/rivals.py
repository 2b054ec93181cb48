"""Rival explanations and why each is rejected: packet loss, deploys, the daily curve."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from analysis.chain.result import Rejected, TooShort, iso
from analysis.chain.roles import Selection
from analysis.chain.series import Capture, RoleSeries, coincide, detect_up, refused
from analysis.chain.settings import ChainSettings
from analysis.detection import AnomalyWindow
from analysis.signal_id import SignalId, printable


def rivals(
    con: duckdb.DuckDBPyConnection,
    sel: Selection,
    cap: Capture,
    series: dict[str, RoleSeries],
    onsets: dict[str, datetime],
    culprit: str | None,
    settings: ChainSettings,
    short: list[TooShort],
) -> list[Rejected]:
    """Packet loss always; with a ``culprit``, deploys and the daily curve too (other DCs'
    user traffic as the comparison). Loss series too short for a baseline are added to
    ``short``."""
    out = reject_packet_loss(sel.rival_loss, cap.col, cap.t, series, cap.span, settings,
                             sel.samples, short)
    if culprit is None:
        return out
    out += reject_deploys(con, onsets, settings, culprit)
    imp = series.get("user_impact")
    others = [o[0] for o in sel.options.get("user_impact", [])
              if imp is not None and o[0] != imp.signal and sel.ids[o[0]].labels]
    out += reject_daily_curve(series, cap.grid_s, {sel.ids[o]: cap.col(o) for o in others},
                              cap.t, settings, sel.ids)
    return out


def reject_packet_loss(
    loss_signals: list[str],
    col,
    t: pl.Series,
    series: dict[str, RoleSeries],
    span: tuple[datetime, datetime],
    settings: ChainSettings,
    samples: dict[str, int],
    short: list[TooShort],
) -> list[Rejected]:
    """Packet loss: too short to judge, no anomaly, nothing to explain, wrong order, no
    coincidence, or (when it does coincide) no mechanism: loss opens no sockets."""
    out: list[Rejected] = []
    target = series.get("user_impact") or series.get("cache_errors")
    for s in loss_signals:
        v = col(s)
        found = detect_up(t, v, s, settings, counts=False, samples=samples.get(s))
        wins = found.windows
        peak = float(np.nanmax(v, initial=0.0))
        if found.too_short:
            short += refused(found)
            out.append(Rejected(s, f"not judged: {found.samples} samples, fewer than the"
                                   f" {found.needed} a baseline needs"))
            continue
        if not wins:
            out.append(Rejected(s, f"no anomaly: loss stays near its baseline (peak {peak:.3g})"))
            continue
        exh = series.get("port_exhaustion")
        if target is None:
            out.append(Rejected(s, f"nothing to explain: loss rose (peak {peak:.3g}) but no"
                                   " errors or user traffic moved"))
            continue
        c = coincide(wins, target.windows, span, settings)
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


def reject_deploys(
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
        name = f"deploy: {title} ({iso(when)})"
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


def reject_daily_curve(
    series: dict[str, RoleSeries],
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
