"""Retry storm: failed calls retried without a budget multiply the offered load.

Each failed call retried r times multiplies what a caller sends by up to 1 + r x e
(e the error ratio). Check, per caller (its sent requests and their failures come
from the callees' request logs): the offered rate rose by a factor F >= 1.5 while
the goodput (sent minus failed) did not rise with it (at most 1 + (F - 1) / 4, and
1.35, times its baseline: a sampled request log is noisy), and the
implied retries per failure r = (F - 1) / e are plausible (0.5-20). Rival: organic
traffic growth (the caller's own incoming rate rose with it, and goodput with it).
"""

from __future__ import annotations

import numpy as np

from analysis.chain.mechanisms.base import MechanismFit, fits_per_entity, median, onset_of, pre
from analysis.chain.view import IncidentView


class RetryStorm:
    name = "retry_storm"
    roles = ("callee_errors", "offered_load", "goodput_drop")
    kinds = ("sent_rate", "client_errors", "rate", "errors")
    rivals = ("organic_growth",)
    knobs = ("retries", "retry_budget")

    def by_data(self, values: np.ndarray) -> str | None:
        return None

    def check(self, view: IncidentView) -> list[MechanismFit]:
        return fits_per_entity(view, self._caller)

    def _caller(self, view: IncidentView, c: str) -> MechanismFit | None:
        sent = view.of(c, "sent_rate")
        failed = view.of(c, "client_errors")
        if not sent or not failed or not view.callees(c):
            return None
        sent_s, fail_s = sent[0], failed[0]
        # retries follow the failures the caller sees: measure from there (a sampled
        # request log is too coarse to time the rise of the sent rate by itself)
        on = min((x for x in (sent_s.onset, fail_s.onset) if x is not None), default=None)
        if on is None:
            return None
        offered_pre, offered = median(pre(view, sent_s)), median(sent_s.values[on:])
        if not offered_pre > 0:
            return None
        factor = offered / offered_pre
        good = sent_s.values - np.nan_to_num(fail_s.values)
        good_pre, good_post = median(good[: view.n_baseline]), median(good[on:])
        err = median(np.nan_to_num(fail_s.values[on:])) / max(offered, 1e-9)
        # organic growth raises goodput with the offered load; retries do not
        if factor < 1.5 or good_post > min(1.35, 1 + 0.25 * (factor - 1)) * good_pre \
                or err < 0.05:
            return None
        retries = (factor - 1) / err
        if not 0.5 <= retries <= 20:
            return None
        incoming = view.of(c, "rate")
        if incoming and median(incoming[0].values[on:]) > (1 + 0.5 * (factor - 1)) * max(
                incoming[0].base, 1e-9):
            return None
        onsets = {"offered_load": view.time_of(on)}
        e_on = fail_s.onset if fail_s.onset is not None else None
        callee_on = [i for d in view.callees(c)
                     if (i := onset_of(view, d, ("errors",))) is not None]
        if callee_on or e_on is not None:
            onsets["callee_errors"] = view.time_of(min(callee_on + ([e_on] if e_on is not None
                                                                     else [])))
        low = np.flatnonzero(good[on:] < good_pre * 0.85)
        if low.size:
            onsets["goodput_drop"] = view.time_of(on + int(low[0]))
        text = (f"{c} sends {factor:.1f}x its usual requests from {onsets['offered_load']:%H:%M:%S}"
                f" while its goodput is {good_post / max(good_pre, 1e-9):.2f}x; with an error"
                f" ratio of {err:.2f}, offered = base x (1 + r x e) gives r = {retries:.1f}"
                " retries per failure")
        return MechanismFit(self.name, c, sent_s.signal, text,
                            {k: v for k, v in onsets.items() if v is not None},
                            {"offered_factor": factor, "error_ratio": err, "retries": retries},
                            ("organic growth: the caller's own traffic did not rise with it,"
                             " and goodput fell",))


MECHANISM = RetryStorm()
