"""Bad deploy: a version or config change event, then an error or latency step in the
deployed component within minutes.

Check: a ``deploy`` event naming an entity (as a whole word of its title or detail),
that entity's errors or latency stepping up within ``MAX_DELAY_S`` of it, and the
step the entity's own: none of its callees moved first (rival: a dependency change)
and no peer outside its callers stepped with it (rival: a change that hit everyone, such
as traffic; errors are per request, so traffic alone is no step).
"""

from __future__ import annotations

import numpy as np

from analysis.chain.mechanisms.base import MechanismFit, names, onset_of
from analysis.chain.view import IncidentView

MAX_DELAY_S = 600.0


class BadDeploy:
    name = "bad_deploy"
    roles = ("deploy_event", "errors", "caller_errors")
    kinds = ("errors", "latency", "rate")
    rivals = ("dependency_change", "traffic_change")
    knobs = ("rollback",)

    def by_data(self, values: np.ndarray) -> str | None:
        return None

    def check(self, view: IncidentView) -> list[MechanismFit]:
        fits = []
        ents = sorted(view.entities, key=len, reverse=True)
        for t, kind, title, detail in view.events:
            if kind != "deploy":
                continue
            ent = next((e for e in ents if names(e, f"{title} {detail}")), None)
            if ent is None:
                continue
            fit = self._deploy(view, ent, t, title)
            if fit is not None and all(f.culprit != ent for f in fits):
                fits.append(fit)
        return fits

    def _deploy(self, view: IncidentView, e: str, at, title: str) -> MechanismFit | None:
        on = onset_of(view, e, ("errors", "latency"))
        if on is None:
            return None
        delay = (view.time_of(on) - at).total_seconds()
        if not -view.step_s <= delay <= MAX_DELAY_S:
            return None
        for c in view.callees(e):
            c_on = onset_of(view, c, ("errors", "latency"))
            if c_on is not None and c_on < on:
                return None
        # confined: no peer (neither a caller of it nor it) stepped at the same time
        above = {a for a in view.entities if e in view.descendants(a)}
        for p in view.entities:
            p_on = onset_of(view, p, ("errors",))
            if p not in above and p != e and p_on is not None and abs(p_on - on) <= 2:
                return None
        onsets = {"deploy_event": at, "errors": view.time_of(on)}
        errs = [i for c in view.callers(e) if (i := onset_of(view, c, ("errors",))) is not None
                and i >= on]
        if errs:
            onsets["caller_errors"] = view.time_of(min(errs))
        text = (f"{title!r} at {at:%H:%M:%S}; {e}'s errors/latency stepped up"
                f" {max(delay, 0):.0f} s later, its callees unchanged before it")
        sig = next((s.signal for k in ("errors", "latency") for s in view.of(e, k)
                    if s.onset == on), "")
        return MechanismFit(self.name, e, sig, text, onsets, {"delay_s": delay},
                            ("dependency change: no callee moved first",
                             "a change that hit everyone: no peer stepped with it"))


MECHANISM = BadDeploy()
