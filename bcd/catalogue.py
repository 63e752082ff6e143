"""The catalogue of Proposition 1: every loss, activation and regulariser, one record each (MATH.md §9).

A record is a frozen object that knows everything the suite needs about one function:

* its value and (where smooth) gradient, or its proximal map / elementwise prox (the exact block steps);
* the least-norm element of ``G + ∂f(X)`` (what the verifier's g^k and the exactness residuals need at
  nonsmooth points: ℓ1 at 0, box faces, the hinge kink);
* its Lipschitz data (L_R of a loss, L_B of an activation on [−B, B]) and its classes (smooth, convex, coercive,
  semialgebraic, real analytic: Assumption 1(d) and Theorem 1(ii));
* a sympy form, for :mod:`theory`.

Records are chosen by *spec strings*, the same in a TOML config and on the command line::

    relu    leaky_relu(0.01)    polynomial(0, 0, 1)    quadratic    l1(1e-4)    box(-1, 1)    elastic_net(1e-4, 1e-3)

:func:`build` turns a spec into a record (``ValueError`` naming the value and what is allowed otherwise),
:func:`names` lists a kind's records.  Each module (:mod:`bcd.losses`, :mod:`bcd.activations`,
:mod:`bcd.regularisers`) registers its records here once with :func:`register`; config validation, the engine,
the recorder, the audit, ``theory/`` and the reports all read this registry.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("loss", "activation", "regulariser")


@dataclass(frozen=True)
class Record:
    """What every catalogue record has.  Subclasses (:class:`bcd.losses.Loss`, :class:`bcd.activations.Activation`,
    :class:`bcd.regularisers.Regulariser`) add the numerical methods."""

    name: str
    params: tuple[float, ...] = ()
    formula: str = ""
    semialgebraic: bool = True
    real_analytic: bool = False
    smooth: bool = True  # C¹ (with a locally Lipschitz gradient) on its domain

    @property
    def spec(self) -> str:
        """The canonical spec string, e.g. ``leaky_relu(0.01)``; ``build(kind, record.spec)`` gives the record."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(_number(p) for p in self.params)})"

    @property
    def kl_class(self) -> str:
        """Why Assumption 1(d) (the Kurdyka–Łojasiewicz property via o-minimality) holds for this function."""
        if self.semialgebraic and self.real_analytic:
            return "semialgebraic and real analytic"
        if self.semialgebraic:
            return "semialgebraic"
        if self.real_analytic:
            return "real analytic"
        return "neither semialgebraic nor real analytic"


def _number(p: float) -> str:
    """``p`` as a spec writes it: ``{p:g}`` (``0.01``, ``1e-05``) when that reads back as ``p``, else ``repr(p)``
    (shortest exact form), so that ``build(kind, record.spec)`` gives the record itself."""
    text = f"{p:g}"
    return text if float(text) == p else repr(float(p))


@dataclass(frozen=True)
class Entry:
    """How to build one record from its parameters: their names, defaults, and a validator."""

    kind: str
    name: str
    build: Callable[..., Record]
    params: tuple[str, ...] = ()
    defaults: tuple[float, ...] = ()
    variadic: bool = False  # polynomial: any number of coefficients
    doc: str = ""
    aliases: dict[str, tuple[str, tuple[float, ...]]] = field(default_factory=dict)

    @property
    def usage(self) -> str:
        if self.variadic:
            return f"{self.name}(c0, c1, ..., ck)"
        return self.name if not self.params else f"{self.name}({', '.join(self.params)})"


REGISTRY: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
ALIASES: dict[str, dict[str, str]] = {k: {} for k in KINDS}  # alias -> spec


def register(entry: Entry, **aliases: str) -> Entry:
    """Add ``entry`` to the registry (once; a second record of the same name is a programming error)."""
    table = REGISTRY[entry.kind]
    if entry.name in table:
        raise RuntimeError(f"{entry.kind} {entry.name!r} is registered twice")
    table[entry.name] = entry
    ALIASES[entry.kind].update(aliases)
    return entry


MAX_PARAM = 1e12  # |a spec's number| (and |γ|, |α|, |λ|: bcd.config): beyond it products of two overflow float64

_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")


def parse_spec(kind: str, spec: Any) -> tuple[str, tuple[float, ...]]:
    """``"box(-1, 1)"`` → ``("box", (-1.0, 1.0))``.  Numbers only; a bad spec raises ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not a catalogue kind; allowed: {', '.join(KINDS)}")
    if not isinstance(spec, str):
        raise ValueError(f"{kind}={spec!r} is not allowed; give a spec string such as {_example(kind)!r} "
                         f"(allowed: {allowed(kind)})")
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"{kind}={spec!r} is not a valid spec; write name or name(number, ...), "
                         f"e.g. {_example(kind)!r} (allowed: {allowed(kind)})")
    name, args = m.group(1), m.group(2)
    values: list[float] = []
    if args is not None and args.strip():
        for part in args.split(","):
            try:
                v = float(part)
            except ValueError:
                raise ValueError(f"{kind}={spec!r}: parameter {part.strip()!r} is not a number") from None
            if not math.isfinite(v) or abs(v) > MAX_PARAM:
                raise ValueError(f"{kind}={spec!r}: parameter {part.strip()!r} must be finite with magnitude <= "
                                 f"{MAX_PARAM:g}")
            values.append(v)
    return name, tuple(values)


def _example(kind: str) -> str:
    return {"loss": "cross_entropy", "activation": "leaky_relu(0.01)", "regulariser": "l1(1e-4)"}[kind]


def names(kind: str) -> tuple[str, ...]:
    """The record names of one kind (aliases not included)."""
    return tuple(REGISTRY[kind])


def allowed(kind: str) -> str:
    """Human-readable list of a kind's specs, for error messages and ``--help``."""
    usages = [e.usage for e in REGISTRY[kind].values()]
    usages += [f"{a} (= {s})" for a, s in ALIASES[kind].items()]
    return ", ".join(usages)


def build(kind: str, spec: Any) -> Record:
    """The record for ``spec`` (``ValueError`` naming the spec and what is allowed when it is not in the registry or
    its parameters are invalid).  Records are immutable, so a spec string's record is built once and cached."""
    if isinstance(spec, Record):
        return spec
    if isinstance(spec, str):
        return _build_cached(kind, spec)
    return _build(kind, spec)


@functools.lru_cache(maxsize=256)
def _build_cached(kind: str, spec: str) -> Record:
    return _build(kind, spec)


def _build(kind: str, spec: Any) -> Record:
    name, values = parse_spec(kind, spec)
    if name in ALIASES[kind]:
        if values:
            raise ValueError(f"{kind}={spec!r}: {name!r} takes no parameters (it means {ALIASES[kind][name]!r})")
        name, values = parse_spec(kind, ALIASES[kind][name])
    entry = REGISTRY[kind].get(name)
    if entry is None:
        raise ValueError(f"{kind}={spec!r} is not supported; allowed: {allowed(kind)}")
    if not entry.variadic:
        if len(values) > len(entry.params):
            raise ValueError(f"{kind}={spec!r} takes at most {len(entry.params)} parameter(s): {entry.usage}")
        n_required = len(entry.params) - len(entry.defaults)
        if len(values) < n_required:
            raise ValueError(f"{kind}={spec!r} needs its parameter(s): {entry.usage}")
        values = values + entry.defaults[len(values) - n_required:]
    try:
        return entry.build(*values)
    except ValueError as e:
        raise ValueError(f"{kind}={spec!r}: {e}") from None


def records(kind: str, examples: bool = True) -> tuple[Record, ...]:
    """One record per registered name, with example parameters (for the conformance suite and ``bcd theory``)."""
    out = []
    for name, entry in REGISTRY[kind].items():
        spec = EXAMPLES[kind].get(name, name)
        out.append(build(kind, spec if examples else entry.name))
    return tuple(out)


# example parameters for records that need them (the conformance suite runs every registered record)
EXAMPLES: dict[str, dict[str, str]] = {
    "loss": {},
    "activation": {"leaky_relu": "leaky_relu(0.1)", "polynomial": "polynomial(0, 0.5, 0.5)"},
    "regulariser": {"l2": "l2(0.01)", "l1": "l1(0.01)", "elastic_net": "elastic_net(0.01, 0.01)",
                    "box": "box(-1, 1)"},
}


def _load() -> None:
    """Import the modules that register records (they import this module first)."""
    from bcd import activations, losses, regularisers  # noqa: F401


_load()
