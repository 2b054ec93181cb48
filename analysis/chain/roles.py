"""Roles: which signals play which part of the chain, and the series that stands for each.

By name first (``analysis.roles.role_of_signal``: the preferred signal of each role,
every address-error class, the TIME_WAIT gauge, the callers, packet loss as a rival),
then by data for metrics nobody recognised (``roles_by_data``). Per role, the most
anomalous candidate stands for it (``role_series``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from analysis.chain.environment import Environment, environment
from analysis.chain.result import TooShort
from analysis.chain.series import (
    Capture,
    RoleSeries,
    detect_up,
    pick,
    refused,
    samples_of,
    weight,
)
from analysis.chain.settings import ChainSettings
from analysis.detection import raw_samples
from analysis.roles import ROLES, RoleMatch, role_by_data, role_of_signal
from analysis.rollups import signal_frame, signal_ids
from analysis.signal_id import SignalId


@dataclass(frozen=True)
class Selection:
    """The signals the chain reads, by role, as the store names them.

    ``options``: per role, the candidate signal groups (user traffic: the aggregate and
    each DC's series); ``tw_signal``: TIME_WAIT gauges, preferred first; ``fan_hosts``:
    the fan-out per host; ``wanted``: every signal to load; ``samples``: the raw samples
    behind each metric signal (``detection.raw_samples``), for detection to refuse series
    too short for a baseline.
    """

    env: Environment
    ids: dict[str, SignalId]
    matches: dict[str, RoleMatch]
    options: dict[str, list[list[str]]]
    tw_signal: list[str]
    fan_hosts: list[str]
    callers: list[str]
    rival_loss: list[str]
    wanted: list[str]
    samples: dict[str, int]


def select_signals(con: duckdb.DuckDBPyConnection) -> Selection:
    """Signals by role from their names (``analysis.roles``), and the environment."""
    env = environment(con)
    ids = signal_ids(con)
    matches = {s: m for s, sid in ids.items() if (m := role_of_signal(sid)) is not None}
    by_role: dict[str, list[str]] = {r: [] for r in ROLES}
    for s, m in matches.items():
        if m.role and m.role != "trigger":
            by_role[m.role].append(s)
    chosen: dict[str, list[str]] = {}
    for role, cands in by_role.items():
        ordered = pick(role, cands, ids)
        if not ordered:
            continue  # a store without this role (metrics only, logs only ...)
        if role == "port_exhaustion":
            chosen[role] = [s for s in ordered if ids[s].errno_class] or ordered[:1]
        else:
            chosen[role] = ordered[:1]
    tw_signals = [s for s in by_role["port_exhaustion"] if ids[s].family == "metric"]
    tw_signal = pick("port_exhaustion", [s for s in tw_signals if not ids[s].labels]
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
    return Selection(env, ids, matches, options, tw_signal, fan_hosts, callers, rival_loss,
                     wanted, raw_samples(con))


def role_series(
    con: duckdb.DuckDBPyConnection, sel: Selection, cap: Capture, settings: ChainSettings
) -> tuple[dict[str, RoleSeries], dict[str, str], list[TooShort]]:
    """Per role, the candidate with the most anomalous windows; every recognised
    signal's role (``rival:<kind>`` for rivals, ``<role> (by data)`` for those found by
    ``roles_by_data``); and the candidates detection refused as too short for a baseline
    (no anomaly sought in them)."""
    ids, matches = sel.ids, sel.matches
    series: dict[str, RoleSeries] = {}
    short: list[TooShort] = []
    for role, opts in sel.options.items():
        for sigs in opts:
            v = np.nansum(np.vstack([cap.col(s) for s in sigs]), axis=0) if len(
                sigs) > 1 else cap.col(sigs[0])
            sign = -1.0 if matches[sigs[0]].direction == "down" else 1.0
            name = "+".join(sigs)
            family = ids[sigs[0]].family
            found = detect_up(cap.t, sign * v, name, settings, counts=family != "metric",
                              samples=samples_of(sigs, sel.samples))
            short += refused(found)
            wins = found.windows
            # the most anomalous candidate stands for the role
            if wins and (role not in series or weight(wins) > weight(series[role].windows)):
                series[role] = RoleSeries(role, name, sign * v, wins, family)

    roles = {sig: m.role or f"rival:{m.rival}" for sig, m in matches.items()}
    roles.update(roles_by_data(con, ids, matches, series, cap.t, sel.env, settings,
                               sel.samples, short))
    if "cache_errors" in series and "port_exhaustion" in series:
        # a failed dial is a failed cache operation: address-error windows are cache-error
        # windows too (errors:total also carries sampled noise that can mask its own rise)
        ce = series["cache_errors"]
        ce.windows = sorted(ce.windows + series["port_exhaustion"].windows,
                            key=lambda w: w.start)
    return series, roles, short


def roles_by_data(
    con: duckdb.DuckDBPyConnection,
    ids: dict[str, SignalId],
    matches: dict,
    series: dict[str, RoleSeries],
    t: pl.Series,
    env: Environment,
    settings: ChainSettings,
    samples: dict[str, int],
    short: list[TooShort],
) -> dict[str, str]:
    """Roles of metrics nobody recognised by name, from their data (``roles.role_by_data``).

    A series that moves with a role's representative takes that role; one that
    fills up to the port range is TIME_WAIT-like. When the role has no
    representative yet, the series becomes it (an export with unusual names
    still gets a chain), unless it is too short for a baseline (added to ``short``).
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
            found = detect_up(t, signed, sig, settings, counts=False, samples=samples.get(sig))
            short += refused(found)
            wins = found.windows
            if wins:
                series[role] = RoleSeries(role, sig, signed, wins)
    return out
