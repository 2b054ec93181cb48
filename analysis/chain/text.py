"""``format_chain``: the chain as a readable hop-by-hop story (``postmortem chain``)."""

from __future__ import annotations

from analysis.chain.result import ChainResult, TooShort, iso
from analysis.chain.settings import ROOT_CAUSE
from analysis.signal_id import printable


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
    if result.too_short:
        lines.append(too_short_line(result.too_short))
    if result.verdict != ROOT_CAUSE:
        lines.append("Verdict: no supported cause. " + "; ".join(result.notes))
    else:
        c = result.culprit
        assert c is not None
        lines.append(f"Verdict: root cause found. Culprit: {c.caller} calling {c.method}.")
        lines.append(f"  Evidence: {c.evidence}")
        lines.append("Onsets: " + ", ".join(
            f"{r} {iso(result.onsets[r])}" for r in result.roles_in_order()))
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


def too_short_line(short: list[TooShort], shown: int = 8) -> str:
    """One line naming the signals detection refused (the first ``shown``, then a count)."""
    parts = [f"{s.signal} ({s.samples} samples, needs {s.needed})" for s in short[:shown]]
    more = f" and {len(short) - shown} more" if len(short) > shown else ""
    return (f"Too short for a baseline, no anomaly sought: {len(short)} signal"
            f"{'s' if len(short) != 1 else ''}: {', '.join(parts)}{more}")
