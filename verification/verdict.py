"""The verdict record every check returns: never a bare bool."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
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
        """The inverse of :meth:`to_dict`; a field of another kind (a hand-edited or damaged file) raises
        ValueError naming it, so that a reader can say which file is damaged instead of failing later."""
        if not isinstance(d, dict):
            raise ValueError(f"a verdict is an object of fields, not {type(d).__name__}")
        fields = _field_kinds()
        for name, value in d.items():
            if name not in fields:
                raise ValueError(f"unknown verdict field {name!r}; allowed: {', '.join(fields)}")
            kinds, optional = fields[name]
            fits = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
            if not fits and not (value is None and optional):
                raise ValueError(f"verdict field {name!r} = {value!r} is not {' or '.join(k.__name__ for k in kinds)}"
                                 + (" or null" if optional else ""))
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"a verdict without {', '.join(missing)}")
        return cls(**d)


@functools.cache
def _field_kinds() -> dict[str, tuple[tuple[type, ...], bool]]:
    """Per field of :class:`Verdict`, from its annotation: the accepted types (an int where a float is declared) and
    whether null is allowed."""
    out = {}
    for name, hint in typing.get_type_hints(Verdict).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
        out[name] = ((*kinds, int) if float in kinds else kinds, type(None) in args)
    return out
