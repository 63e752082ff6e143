"""Losses R(V_N; Y) of Proposition 1, one record each (MATH.md §9).

Samples are columns; Y is one-hot (d_N × n); one-vs-all losses use ỹ = 2Y − 1 ∈ {±1}.  c = 1 (``sum``) or 1/n
(``mean``).  Every record gives

* ``value(V, Y, c)``: R over the *local* columns (a sum over samples: the caller reduces it, MATH.md §10);
* ``grad(V, Y, c)``: ∇R (smooth losses; Theorem 2's prox-linear step needs it and ``lipschitz(c)`` = L_R);
* ``prox(Z, t, Y, c)`` = argmin_V R(V) + 1/(2t)‖V − Z‖²: the exact V_N step, where Z is the weighted centre of the
  other quadratic terms and t their inverse total weight (closed form for squared and hinge, a safeguarded Newton
  solve for logistic (elementwise) and cross-entropy (per column));
* ``least_norm(V, G, Y, c)``: the least-norm element of G + ∂R(V) (the hinge's kink ỹv = 1 is set-valued).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from bcd.catalogue import Entry, Record, register

if TYPE_CHECKING:
    import sympy as sp

Tensor = torch.Tensor

NEWTON_ITERS = 60  # cap of the inner Newton solves (they stop earlier when the step is at rounding level)


def signed(Y: Tensor) -> Tensor:
    """ỹ = 2Y − 1 ∈ {±1} from one-hot Y."""
    return Y.mul(2.0).sub_(1.0)


@dataclass(frozen=True)
class Loss(Record):
    lipschitz_factor: float | None = None  # L_R = factor·c for smooth losses; None when R is not smooth

    def lipschitz(self, c: float) -> float | None:
        """L_R: the Lipschitz constant of ∇R (None when R is not differentiable: Theorem 2 does not apply)."""
        return None if self.lipschitz_factor is None else self.lipschitz_factor * c

    def value(self, V: Tensor, Y: Tensor, c: float) -> Tensor:
        raise NotImplementedError

    def grad(self, V: Tensor, Y: Tensor, c: float) -> Tensor:
        raise ValueError(f"loss={self.name!r} is not differentiable; it has no gradient (use least_norm)")

    def prox(self, Z: Tensor, t: float, Y: Tensor, c: float) -> Tensor:
        raise NotImplementedError

    def least_norm(self, V: Tensor, G: Tensor, Y: Tensor, c: float) -> Tensor:
        """G + ∇R(V) for a smooth loss."""
        return G + self.grad(V, Y, c)

    def rounding(self, V: Tensor, Y: Tensor, c: float) -> Tensor:
        """E: the computed ``value`` is within about eps·E of R at the stored V, beyond the eps·|value| of its
        reductions (a local sum over this shard's samples; verification/tolerance.py, "Block noise").  0 where every
        summand is rounded relative to itself (a difference V − Y, a softplus)."""
        return V.new_zeros(())

    def sym(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        """R for one entry (one column of two classes for cross-entropy) with c = 1, and its variables."""

        raise NotImplementedError


@dataclass(frozen=True)
class Squared(Loss):
    def value(self, V, Y, c):
        D = V - Y
        return 0.5 * c * torch.sum(D * D)

    def grad(self, V, Y, c):
        return (V - Y).mul_(c)

    def prox(self, Z, t, Y, c):
        """(Z + tcY)/(1 + tc)."""
        return torch.add(Z, Y, alpha=t * c).div_(1.0 + t * c)

    def sym(self):
        import sympy as sp

        v, y = sp.symbols("v y", real=True)
        return sp.Rational(1, 2) * (v - y) ** 2, (v, y)


@dataclass(frozen=True)
class Logistic(Loss):
    """c Σ log(1 + e^{−ỹv}); ∇R = −cỹ·sigmoid(−ỹv), L_R = c/4."""

    def value(self, V, Y, c):
        return c * torch.nn.functional.softplus(-signed(Y) * V, threshold=40.0).sum()  # exact in float64

    def grad(self, V, Y, c):
        s = signed(Y)
        return torch.sigmoid(-s * V).mul_(s).mul_(-c)

    def prox(self, Z, t, Y, c):
        """In w = ỹv: min_w c·log(1 + e^{−w}) + (w − ỹz)²/(2t), strictly convex; f′(w) = −c·sigmoid(−w) + (w − ỹz)/t
        is increasing and its root lies in [ỹz, ỹz + tc]: Newton safeguarded by bisection on that bracket, which is
        taken whenever the Newton step leaves the bracket or is not half the step before last (as in rtsafe: plain
        Newton can cycle between the bracket's two sides for large tc)."""
        s = signed(Y)
        z = s * Z
        lo, hi = z.clone(), z + t * c
        w = z + 0.5 * t * c
        dx = dx_old = torch.full_like(z, t * c)
        for it in range(NEWTON_ITERS):
            sg = torch.sigmoid(-w)
            g = (w - z) / t - c * sg
            lo = torch.where(g < 0, w, lo)
            hi = torch.where(g > 0, w, hi)
            h = 1.0 / t + c * sg * (1.0 - sg)
            step = w - g / h
            newton = (step > lo) & (step < hi) & (2.0 * g.abs() <= dx_old * h)
            new = torch.where(newton, step, 0.5 * (lo + hi))
            dx_old, dx = dx, (new - w).abs()
            done = it % 5 == 4 and bool(((new - w).abs() <= 4 * torch.finfo(w.dtype).eps * (w.abs() + t * c)).all())
            w = new
            if done:
                break
        return s * w

    def sym(self):
        import sympy as sp

        v, y = sp.symbols("v ytilde", real=True)
        return sp.log(1 + sp.exp(-y * v)), (v, y)


@dataclass(frozen=True)
class CrossEntropy(Loss):
    """c Σ_j (logsumexp(v_j) − ⟨y_j, v_j⟩) over columns j; ∇R = c(softmax(v_j) − y_j), L_R = c/2."""

    def value(self, V, Y, c):
        return c * (torch.logsumexp(V, dim=0).sum() - torch.sum(Y * V))

    def grad(self, V, Y, c):
        return torch.softmax(V, dim=0).sub_(Y).mul_(c)

    def rounding(self, V, Y, c):
        """Two sums that cancel: c(Σ|lse(v_j)| + Σ|⟨y_j, v_j⟩|)."""
        return c * (torch.logsumexp(V, dim=0).abs().sum() + (Y * V).abs().sum())

    def prox(self, Z, t, Y, c):
        """Per column: min_v c(lse(v) − yᵀv) + ‖v − z‖²/(2t), strictly convex (modulus 1/t).  Newton with the Hessian
        diag(D) − c ppᵀ, D = cp + 1/t, inverted by Sherman–Morrison, and a per-column backtracking line search."""

        def phi(V):
            return c * (torch.logsumexp(V, dim=0) - (Y * V).sum(0)) + ((V - Z) ** 2).sum(0) / (2 * t)

        V = Z - t * c * (torch.softmax(Z, dim=0) - Y)
        f = phi(V)
        eps = torch.finfo(Z.dtype).eps
        for _ in range(NEWTON_ITERS):
            p = torch.softmax(V, dim=0)
            g = c * (p - Y) + (V - Z) / t
            D = c * p + 1.0 / t
            Dg, Dp = g / D, p / D
            d = -(Dg + Dp * (c * (p * Dg).sum(0) / (1.0 - c * (p * Dp).sum(0))))
            step = torch.ones_like(f)
            slope = (g * d).sum(0)
            for _ in range(30):  # backtracking, per column (Armijo with 1e-4)
                trial = V + step * d
                ft = phi(trial)
                ok = ft <= f + 1e-4 * step * slope + 8 * eps * f.abs()
                if bool(ok.all()):
                    break
                step = torch.where(ok, step, 0.5 * step)
            V, f = torch.where(ok, trial, V), torch.where(ok, ft, f)  # a column without decrease keeps its point
            if bool(((step * d).abs().amax(0) <= 8 * eps * (V.abs().amax(0) + t * c)).all()):
                break
        return V

    def sym(self):
        import sympy as sp

        v1, v2 = sp.symbols("v1 v2", real=True)
        return sp.log(sp.exp(v1) + sp.exp(v2)) - v1, (v1, v2)


@dataclass(frozen=True)
class Hinge(Loss):
    """c Σ max(0, 1 − ỹv): not differentiable (Theorem 2 does not apply); its prox is closed form."""

    def value(self, V, Y, c):
        return c * (1.0 - signed(Y) * V).clamp_min(0.0).sum()

    def prox(self, Z, t, Y, c):
        """With w = ỹz: v = z if w ≥ 1; z + tcỹ if w ≤ 1 − tc; ỹ otherwise (the kink ỹv = 1, exactly)."""
        s = signed(Y)
        w = s * Z
        return torch.where(w >= 1.0, Z, torch.where(w <= 1.0 - t * c, Z + (t * c) * s, s))

    def rounding(self, V, Y, c):
        """1 − ỹv rounds by eps(1 + |v|) where it is not cut at 0: c·Σ over those entries of (1 + |v|)."""
        t = 1.0 - signed(Y) * V
        return c * torch.where(t > 0, 1.0 + V.abs(), torch.zeros_like(V)).sum()

    def least_norm(self, V, G, Y, c):
        """∂R(v) = −cỹ (ỹv < 1), 0 (ỹv > 1), −cỹ·[0, 1] (ỹv = 1): nearest −G there is θ = clip(ỹG/c, 0, 1)."""
        s = signed(Y)
        w = s * V
        theta = torch.where(w < 1.0, torch.ones_like(V), torch.zeros_like(V))
        theta = torch.where(w == 1.0, (s * G / c).clamp(0.0, 1.0), theta)
        return G - c * s * theta

    def sym(self):
        import sympy as sp

        v, y = sp.symbols("v ytilde", real=True)
        return sp.Max(0, 1 - y * v), (v, y)


register(Entry("loss", "squared", lambda: Squared("squared", (), "(c/2)‖V − Y‖²", True, True, True,
                                                     lipschitz_factor=1.0), doc="L_R = c"))
register(Entry("loss", "logistic", lambda: Logistic("logistic", (), "c Σ log(1 + exp(−ỹ·v))", False, True, True,
                                                       lipschitz_factor=0.25), doc="one-vs-all, L_R = c/4"))
register(Entry("loss", "cross_entropy",
               lambda: CrossEntropy("cross_entropy", (), "c Σ_j (logsumexp(v_j) − ⟨y_j, v_j⟩)", False, True, True,
                                    lipschitz_factor=0.5), doc="softmax cross-entropy, L_R = c/2"),
         ce="cross_entropy")
register(Entry("loss", "hinge", lambda: Hinge("hinge", (), "c Σ max(0, 1 − ỹ·v)", True, False, False),
               doc="one-vs-all, not differentiable (prox-linear V_N not available)"))
