"""The chain's one typed contract: ``ChainResult`` and the records it holds, read by
attribute; ``to_dict`` only builds the JSON of ``postmortem chain --json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from analysis.chain.environment import Environment
from analysis.roles import role_order
from analysis.rollups import RollupInfo
from analysis.signal_id import quote


def iso(t: datetime) -> str:
    """A time as ISO 8601 UTC to the second (``...Z``)."""
    return t.replace(microsecond=0).isoformat() + "Z"


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


@dataclass(frozen=True)
class TooShort:
    """A signal refused by detection: ``samples`` raw samples, fewer than the ``needed``
    its baseline wants, so no anomaly was sought in it (``detection.detect_series``)."""

    signal: str
    samples: int
    needed: int


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
    too_short: list[TooShort] = field(default_factory=list)  # refused by detection, by name

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
            "onsets": {r: iso(t) for r, t in self.onsets.items()},
            "too_short": [asdict(s) for s in self.too_short],
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

