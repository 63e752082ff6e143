"""Regularisers r_i (on W̃_i) and s_i (on V_i) of Proposition 1, one record each (MATH.md §9).

Every record is separable over the entries of its block and gives

* ``value(X)`` (+∞ off the domain of an indicator);
* ``prox(X, t)`` = argmin_Z t·r(Z) + ½‖Z − X‖² (the exact step wherever r meets an isotropic quadratic);
* ``least_norm(X, G)`` = the least-norm element of G + ∂r(X), entry by entry (G the gradient of the smooth rest
  of the subproblem), so that dist(0, ∂Φ(X)) = ‖least_norm(X, ∇f(X))‖ for Φ = f + r;
* ``ridge``: the weight λ of a purely quadratic r = λ/2‖·‖² (0 for ``none``), ``None`` when r is not quadratic —
  the engine then needs the inner solver of :mod:`bcd.prox_solvers` instead of the closed form;
* ``coercive`` (Theorem 1(ii)), ``convex`` (all of them), the KL class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from bcd.catalogue import Entry, Record, register

if TYPE_CHECKING:
    import sympy as sp

Tensor = torch.Tensor


@dataclass(frozen=True)
class Regulariser(Record):
    coercive: bool = False
    indicator: bool = False

    @property
    def ridge(self) -> float | None:
        """λ of r = λ/2‖·‖² (0 for no regulariser); ``None`` when r is not a pure quadratic."""
        return None

    @property
    def is_zero(self) -> bool:
        return self.ridge == 0.0

    def value(self, X: Tensor) -> Tensor:
        raise NotImplementedError

    def prox(self, X: Tensor, t: float) -> Tensor:
        raise NotImplementedError

    def least_norm(self, X: Tensor, G: Tensor) -> Tensor:
        raise NotImplementedError

    def sym(self, x: sp.Symbol) -> sp.Expr:
        """r of one entry as a sympy expression (indicators: a Piecewise with ∞ off the set)."""

        raise NotImplementedError


@dataclass(frozen=True)
class Zero(Regulariser):
    @property
    def ridge(self) -> float:
        return 0.0

    def value(self, X):
        return X.new_zeros(())

    def prox(self, X, t):
        return X.clone()

    def least_norm(self, X, G):
        return G.clone()

    def sym(self, x):
        import sympy as sp

        return sp.Integer(0)


@dataclass(frozen=True)
class L2(Regulariser):
    """λ/2‖X‖²: prox X/(1 + tλ), gradient λX."""

    @property
    def lam(self) -> float:
        return self.params[0]

    @property
    def ridge(self) -> float:
        return self.lam

    def value(self, X):
        return 0.5 * self.lam * torch.sum(X * X)

    def prox(self, X, t):
        return X / (1.0 + t * self.lam)

    def least_norm(self, X, G):
        return G + self.lam * X

    def sym(self, x):
        import sympy as sp

        return sp.Rational(1, 2) * sp.Float(self.lam) * x**2


def penalised(W: Tensor, reg_bias: bool) -> Tensor:
    """The part of W̃_i = [Ŵ_i b_i] that r_i acts on: all of it, or Ŵ_i (a view) when the bias is not regularised."""
    return W if reg_bias else W[:, :-1]


def _soft_least_norm(X: Tensor, G: Tensor, lam: float) -> Tensor:
    """Least-norm element of G + λ∂|X| entrywise: G + λ sign(X) off 0, the soft-threshold of G at λ on 0."""
    off = G + lam * torch.sign(X)
    at0 = torch.sign(G) * (G.abs() - lam).clamp_min(0.0)
    return torch.where(X == 0, at0, off)


def soft_threshold(X: Tensor, tau: float) -> Tensor:
    """prox of τ‖·‖₁: sign(X)·max(|X| − τ, 0) (exact zeros inside the threshold)."""
    return torch.sign(X) * (X.abs() - tau).clamp_min(0.0)


@dataclass(frozen=True)
class L1(Regulariser):
    """λ‖X‖₁: prox = soft-threshold at tλ; at 0 the subdifferential is [−λ, λ]."""

    @property
    def lam(self) -> float:
        return self.params[0]

    def value(self, X):
        return self.lam * X.abs().sum()

    def prox(self, X, t):
        return soft_threshold(X, t * self.lam)

    def least_norm(self, X, G):
        return _soft_least_norm(X, G, self.lam)

    def sym(self, x):
        import sympy as sp

        return sp.Float(self.lam) * sp.Abs(x)


@dataclass(frozen=True)
class ElasticNet(Regulariser):
    """λ₁‖X‖₁ + λ₂/2‖X‖²: prox = soft-threshold at tλ₁, then divide by 1 + tλ₂."""

    @property
    def lam1(self) -> float:
        return self.params[0]

    @property
    def lam2(self) -> float:
        return self.params[1]

    def value(self, X):
        return self.lam1 * X.abs().sum() + 0.5 * self.lam2 * torch.sum(X * X)

    def prox(self, X, t):
        return soft_threshold(X, t * self.lam1) / (1.0 + t * self.lam2)

    def least_norm(self, X, G):
        return _soft_least_norm(X, G + self.lam2 * X, self.lam1)

    def sym(self, x):
        import sympy as sp

        return sp.Float(self.lam1) * sp.Abs(x) + sp.Rational(1, 2) * sp.Float(self.lam2) * x**2


@dataclass(frozen=True)
class Box(Regulariser):
    """Indicator of [l, u] entrywise (l = −∞ allowed: the nonnegative orthant is [0, ∞)): prox = clip.

    Normal cone at a face: (−∞, 0] at X = l, [0, ∞) at X = u, {0} inside; so the least-norm element of G + N(X) is
    min(G, 0) on the lower face, max(G, 0) on the upper face, G inside, and +∞ off the box (infeasible)."""

    lower: float = -math.inf
    upper: float = math.inf

    def feasible(self, X: Tensor) -> Tensor:
        return (self.lower <= X) & (self.upper >= X)

    def value(self, X):
        inside = self.feasible(X).all()  # no host sync
        return torch.where(inside, X.new_zeros(()), X.new_full((), math.inf))

    def prox(self, X, t):
        return X.clamp(min=None if math.isinf(self.lower) else self.lower,
                       max=None if math.isinf(self.upper) else self.upper)

    def least_norm(self, X, G):
        out = torch.where(self.lower == X, G.clamp(max=0.0), G)
        out = torch.where(self.upper == X, G.clamp(min=0.0), out)
        return torch.where(self.feasible(X), out, torch.full_like(G, math.inf))

    def sym(self, x):
        import sympy as sp

        lo = -sp.oo if math.isinf(self.lower) else sp.Float(self.lower)
        hi = sp.oo if math.isinf(self.upper) else sp.Float(self.upper)
        return sp.Piecewise((0, sp.And(x >= lo, x <= hi)), (sp.oo, True))


def _nonneg_weight(*p: float) -> tuple[float, ...]:
    for v in p:
        if not (v >= 0):
            raise ValueError(f"weights must be >= 0; got {v:g}")
    return p


def _l2(lam: float) -> Regulariser:
    _nonneg_weight(lam)
    return L2("l2", (lam,), "λ/2‖X‖²", True, True, True, coercive=lam > 0)


def _l1(lam: float) -> Regulariser:
    _nonneg_weight(lam)
    return L1("l1", (lam,), "λ‖X‖₁", True, False, lam == 0, coercive=lam > 0)


def _elastic(lam1: float, lam2: float) -> Regulariser:
    _nonneg_weight(lam1, lam2)
    return ElasticNet("elastic_net", (lam1, lam2), "λ₁‖X‖₁ + λ₂/2‖X‖²", True, False, lam1 == 0,
                      coercive=lam1 + lam2 > 0)


def _box(lower: float, upper: float) -> Regulariser:
    if not lower < upper:
        raise ValueError(f"box needs lower < upper; got lower={lower:g}, upper={upper:g}")
    return Box("box", (lower, upper), f"ι_[{lower:g},{upper:g}](X)", True, False, False, coercive=True, indicator=True,
               lower=lower, upper=upper)


register(Entry("regulariser", "none", lambda: Zero("none", (), "0", True, True, True, coercive=False),
               doc="no regulariser (not coercive)"), zero="none")
register(Entry("regulariser", "l2", _l2, ("lam",), doc="λ/2‖X‖² (coercive for λ > 0)"))
register(Entry("regulariser", "l1", _l1, ("lam",), doc="λ‖X‖₁ (coercive for λ > 0)"))
register(Entry("regulariser", "elastic_net", _elastic, ("lam1", "lam2"), doc="λ₁‖X‖₁ + λ₂/2‖X‖²"))
register(Entry("regulariser", "nonneg",
               lambda: Box("nonneg", (), "ι_{X ≥ 0}(X)", True, False, False, coercive=False, indicator=True,
                           lower=0.0),
               doc="indicator of the nonnegative orthant (not coercive)"))
register(Entry("regulariser", "box", _box, ("lower", "upper"), doc="indicator of [lower, upper] (coercive)"))
register(Entry("regulariser", "unit_interval",
               lambda: Box("unit_interval", (), "ι_[0,1](X)", True, False, False, coercive=True, indicator=True,
                           lower=0.0, upper=1.0),
               doc="indicator of [0, 1] (coercive)"))
