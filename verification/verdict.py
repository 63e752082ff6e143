"""The verdict record every check returns: never a bare bool."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bcd.rundir import json_safe

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
VERDICTS_FILE = "verdicts.json"  # the list of Verdict.to_dict() a run directory holds
STATUSES = (PASS, FAIL, INCONCLUSIVE)


@dataclass(frozen=True)
class Verdict:
    """Outcome of one check, with the measured and theoretical quantities side by side.

    ``worst`` locates the worst sweep/block (e.g. ``{"sweep": 12, "block": "U2"}``); ``margin`` is
    how far the worst case is from the bound (positive = inside it); ``tolerance`` and
    ``tolerance_reason`` say what slack was allowed and why; ``guaranteed`` says whether the theory
    guarantees the claim for this configuration (None = not decided)."""

    claim: str
    title: str
    status: str
    measured: float | None = None
    theoretical: float | None = None
    relation: str = ""
    worst: dict[str, Any] | None = None
    margin: float | None = None
    tolerance: float | None = None
    tolerance_reason: str = ""
    explanation: str = ""
    guaranteed: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not allowed; allowed: {', '.join(STATUSES)}")

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite floats become None)."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(**d)
