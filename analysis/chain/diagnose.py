"""The last stage of ``find_chain``: suspects and mechanisms, for every incident.

The chain above knows one story (port exhaustion). This stage looks at the incident
as entities and their signals (``view``), runs every mechanism's check
(``mechanisms``; port exhaustion reads the chain's own result), ranks the suspects
(``suspects``) and settles the verdict:

* ``root_cause_found``: a mechanism fits, with its evidence (the chain's culprit for
  port exhaustion; otherwise the mechanism's culprit entity);
* ``suspects_only``: something moved, the suspects are ranked, no mechanism is
  confirmed;
* ``no_supported_cause``: nothing moved.
"""

from __future__ import annotations

import duckdb

from analysis.chain.mechanisms import build_view, check_all
from analysis.chain.result import ChainResult, Culprit
from analysis.chain.settings import NO_CAUSE, ROOT_CAUSE, SUSPECTS_ONLY
from analysis.chain.suspects import rank_suspects


def diagnose(con: duckdb.DuckDBPyConnection, result: ChainResult) -> ChainResult:
    """``result`` with its suspects, mechanisms and verdict (see the module docstring)."""
    view = build_view(con)
    fits = check_all(view, result)
    # port exhaustion explains what follows it (restarts, saturated pools): it leads
    fits.sort(key=lambda f: f.mechanism != "port_exhaustion")
    result.mechanisms = fits
    result.suspects = rank_suspects(view, fits)
    if fits:
        result.mechanism = fits[0].mechanism
        if result.verdict != ROOT_CAUSE:
            f = fits[0]
            result.verdict = ROOT_CAUSE
            result.culprit = Culprit(f.culprit, None, f"{f.mechanism}: {f.evidence}")
    elif result.suspects:
        result.verdict = SUSPECTS_ONLY
    else:
        result.verdict = NO_CAUSE
    return result
