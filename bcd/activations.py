"""Hidden activations σ and the elementwise proximal problem of the U_i block.

The U_i subproblem of Algorithm 2 (MATH.md §3) reduces, entry by entry, to

    u* = argmin_u  ½(a − σ(u))² + (β/2)(u − m)²,

with a = V_i⁺ (with a skip, Algorithm 3: a = V_i⁺ − τ_iV_{i-1}⁻, ``Problem.u_target``),
m = (γ W_i⁻Ṽ_{i-1}⁻ + α U_i⁻)/(γ + α) and β = (γ + α)/γ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from bcd.catalogue import Entry, Record, build, register
from bcd.reduction import over_samples, sq

if TYPE_CHECKING:
    import sympy as sp

Tensor = torch.Tensor


def relu_prox_(a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Exact minimiser of ½(a − max(u,0))² + (β/2)(u − m)², elementwise, written into ``m``.

    Candidates: u₊ = max((a+βm)/(1+β), 0) (branch u ≥ 0) and u₋ = min(m, 0) (branch u ≤ 0).
    With t = a + βm: if t < 0, u₋ wins (u₊ = 0 also lies in the u ≤ 0 branch).  If t ≥ 0 and
    m < 0, f(u₊) = β(a−m)²/(2(1+β)) ≤ f(u₋) = a²/2  ⟺  s = a + κm ≥ 0 with κ = β + √(β(1+β))
    (MATH.md's βm ≥ aθ, since θκ = −β); if t ≥ 0 and m ≥ 0 then s ≥ t ≥ 0 and u₊ wins.  Hence
        u = t/(1+β)  where t ≥ 0 and s ≥ 0,   u = min(m, 0)  elsewhere   (u₊ at a tie).
    """
    kappa = beta + math.sqrt(beta * (1.0 + beta))
    keep_plus = torch.add(a, m, alpha=kappa) >= 0
    t = torch.add(a, m, alpha=beta)
    keep_plus.logical_and_(t >= 0)
    t.div_(1.0 + beta)
    return torch.where(keep_plus, t, m.clamp_(max=0.0), out=m)


def relu_prox(a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Pure version of :func:`relu_prox_` (``m`` is left untouched)."""
    return relu_prox_(a, m.clone(), beta)


def identity_prox_(a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Minimiser of ½(a − u)² + (β/2)(u − m)²: u = (a + βm)/(1 + β), written into ``m``."""
    return m.mul_(beta).add_(a).div_(1.0 + beta)


def identity_prox(a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Pure version of :func:`identity_prox_`."""
    return identity_prox_(a, m.clone(), beta)


def relative(r: Tensor, scale: Tensor) -> Tensor:
    """r/scale, 0 where the scale is 0 (a residual relative to the size of what it is made of)."""
    return torch.where(scale > 0, r / scale.clamp_min(torch.finfo(scale.dtype).tiny), torch.zeros_like(r))


# entries per row block of the elementwise U residual on the CPU: 512 KB temporaries that stay in cache and
# are reused by malloc (whole-matrix temporaries cost a page fault per 4 KB here); on CUDA one block
CHUNK = 1 << 16
TIE_EPS = 64  # two prox values within TIE_EPS·eps·(their scale) are a tie: a few roundings of each, with room


def chunk_size(t: Tensor) -> int:
    """Entries per elementwise chunk of ``t``: ``CHUNK`` on the CPU, all of them on CUDA."""
    return CHUNK if t.device.type == "cpu" else t.numel()


def u_block_residual(new: Tensor, a: Tensor, m: Tensor | None, beta: float, activation: str | Activation,
                     m_parts: tuple[Tensor, Tensor, float, float] | None = None) -> Tensor:
    """Relative exactness residual of the elementwise U_i update (verification/fast_path.py explains the scale).

    Per entry f(u) = ½(a − σ(u))² + (β/2)(u − m)²; residual = ‖(1+β)·dist(u_new, argmin f)‖ divided by
    ‖a‖ + ‖σ(u_new)‖ + β‖u_new‖ + β‖m‖.  The minimisers are computed here, independently of the
    engine's prox: ReLU has the two candidates u₊ = max((a+βm)/(1+β), 0) (where σ(u₊) = u₊) and
    u₋ = min(m, 0) (where σ(u₋) = 0 and u₋ − m = −max(m, 0)); both count at a tie up to rounding.
    ``m_parts = (P, U⁻, γ, α)`` gives m = (γP + αU⁻)/(γ + α) without materialising it.  Evaluated in
    row blocks of about ``CHUNK`` entries on the CPU so that the temporaries stay small.  The arguments are
    n-sized (samples as columns): the five squared sums pass through :func:`bcd.reduction.over_samples`.

    Any other σ of the catalogue (``activation`` a record): :func:`_reference_sums`, an independent global
    minimiser by a different method than the engine's."""
    record = activation if isinstance(activation, Activation) else None
    if record is not None and record.name in ("relu", "identity"):
        activation, record = record.name, None
    if record is None and activation not in ("relu", "identity"):
        raise ValueError(f"activation={activation!r} has no U-block residual; allowed: relu, identity, or a "
                         f"catalogue record")
    chunk = chunk_size(new)
    if record is not None:
        chunk = REF_CHUNK if new.device.type == "cpu" else max(1, new.numel() // 16)
    rows = max(1, chunk // max(1, new.shape[-1]))
    sums = torch.zeros(5, dtype=new.dtype, device=new.device)  # Σr², Σa², Σσ(u)², Σu², Σm²
    for r0 in range(0, new.shape[0], rows):
        sl = slice(r0, r0 + rows)
        if m_parts is not None:
            P, U_old, g, al = m_parts
            mc = U_old[sl].mul(al / (g + al)).add_(P[sl], alpha=g / (g + al))
        else:
            mc = m[sl]
        sums += _u_residual_sums(new[sl], a[sl], mc, beta, activation) if record is None \
            else _reference_sums(record, new[sl], a[sl], mc, beta)
    r, a_n, s_n, u_n, m_n = over_samples(sums).sqrt().unbind()  # local squared sums, reduced over samples
    return relative(r, a_n + s_n + beta * (u_n + m_n))


def _u_residual_sums(new: Tensor, a: Tensor, m: Tensor, beta: float, activation: str) -> Tensor:
    u = m.mul(beta).add_(a).div_(1.0 + beta)  # u₊ before the clamp
    if activation == "identity":
        dist = u.sub_(new).abs_()
        sig_sq = sq(new)
    else:
        u.clamp_(min=0.0)
        f_plus = torch.sub(a, u).square_()
        t = torch.sub(u, m)
        f_plus.add_(t.square_(), alpha=beta).mul_(0.5)  # f(u₊)
        f_minus = torch.clamp(m, min=0.0, out=t).square_().mul_(beta).addcmul_(a, a).mul_(0.5)  # f(u₋)
        # rounding of f₊, f₋: a few eps of (a² + βm² + (1+β)u₊²) ≤ 8(f₊ + f₋) (f₋ ≥ a²/2, f₊ + f₋ ≥ βm²/2)
        tie = torch.add(f_plus, f_minus).mul_(TIE_EPS * torch.finfo(new.dtype).eps)
        diff = f_plus.sub_(f_minus)
        big = torch.finfo(new.dtype).max / 4
        # 1 where a candidate is strictly worse than the other (sign of a difference, then clamped to {0, 1})
        plus_worse = torch.sub(diff, tie, out=f_minus).sign_().clamp_(min=0.0)
        minus_worse = tie.add_(diff).neg_().sign_().clamp_(min=0.0)
        d_plus = torch.sub(new, u, out=diff).abs_().add_(plus_worse, alpha=big)
        d_minus = torch.clamp(m, max=0.0, out=u).sub_(new).abs_().add_(minus_worse, alpha=big)
        dist = torch.minimum(d_plus, d_minus, out=d_plus)  # finite: never both candidates strictly worse
        sig_sq = sq(torch.clamp(new, min=0.0, out=u))
    return torch.stack([sq(dist.mul_(1.0 + beta)), sq(a), sig_sq, sq(new), sq(m)])



# ---------------------------------------------------------------------------------------------- the records


REF_GRID = 129  # grid points of the verifier's reference minimiser
REF_GOLDEN = 60  # golden-section iterations of its polish (0.618⁶⁰ ≈ 3e-13 of the cell; values err by its square)
REF_CHUNK = 1 << 13


def reference_prox(act: Activation, a: Tensor, m: Tensor, beta: float, upper: Tensor | None = None
                   ) -> tuple[Tensor, Tensor]:
    """The verifier's global minimiser of f(u) = ½(a − σ(u))² + (β/2)(u − m)², elementwise: (u_ref, f(u_ref)).

    One method for every σ, and not the engine's (which uses Newton on f′ for a smooth σ, companion roots for a
    polynomial, closed-form candidates for leaky ReLU): f ≥ (β/2)(u − m)² and f(u*) ≤ F for any F ≥ f(u*)
    (F = f(m), or ``upper`` = f(candidate)) bracket u* in |u − m| ≤ √(2F/β); ``REF_GRID`` points on that bracket, then
    a derivative-free golden-section search on f in the two cells around the best point.  Like any grid, it can miss
    a basin narrower than a cell.  Position accurate to
    ~√eps, value to ~eps: the residual compares *values* (:func:`_reference_sums`)."""
    F = 0.5 * (a - act.apply(m)) ** 2
    if upper is not None:
        F = torch.minimum(F, upper)
    h = torch.sqrt(2.0 * F / beta)
    steps = torch.linspace(-1.0, 1.0, REF_GRID, dtype=m.dtype, device=m.device)
    grid = m + h * steps[:, None]
    j = act.prox_objective(grid, a, m, beta).argmin(dim=0, keepdim=True)
    u0 = grid.gather(0, j)[0]
    cell = 2.0 * h / (REF_GRID - 1)
    lo, hi = u0 - cell, u0 + cell
    g = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = act.prox_objective(x1, a, m, beta), act.prox_objective(x2, a, m, beta)
    for _ in range(REF_GOLDEN):
        left = f1 <= f2  # the minimum lies in [lo, x2]: drop (x2, hi]; else in [x1, hi]: drop [lo, x1)
        hi = torch.where(left, x2, hi)
        lo = torch.where(left, lo, x1)
        n1 = torch.where(left, hi - g * (hi - lo), x2)
        n2 = torch.where(left, x1, lo + g * (hi - lo))
        fp = act.prox_objective(torch.where(left, n1, n2), a, m, beta)  # one new evaluation per step
        f1, f2 = torch.where(left, fp, f2), torch.where(left, f1, fp)
        x1, x2 = n1, n2
    cands = torch.stack([u0, x1, x2])
    vals = act.prox_objective(cands, a, m, beta)
    k = vals.argmin(dim=0, keepdim=True)
    return cands.gather(0, k)[0], vals.gather(0, k)[0]


def _reference_sums(act: Activation, new: Tensor, a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Squared sums (Σr², Σa², Σσ(u)², Σu², Σm²) of the generic U-residual: per entry, where f(u_new) is within
    rounding of the reference value (:func:`reference_prox`), r = the least-norm element of ∂f(u_new) (|f′| for a
    C¹ σ; at a kink of a piecewise-linear σ, the distance of 0 to the one-sided derivatives' interval when the kink
    is convex, the smaller one-sided derivative when it is concave); elsewhere r = (1 + β)|u_new − u_ref|."""
    new, a, m = new.reshape(-1), a.reshape(-1), m.reshape(-1)
    f_new = act.prox_objective(new, a, m, beta)
    u_ref, f_ref = reference_prox(act, a, m, beta, upper=f_new)
    sig = act.apply(new)
    eps = torch.finfo(new.dtype).eps
    tie = TIE_EPS * eps * (0.5 * a * a + 0.5 * sig * sig + 0.5 * beta * (new * new + m * m))
    grad = act.prox_gradient(new, a, m, beta)
    if act.kink is not None:
        left, right = (-(a - act.apply(torch.zeros_like(new))) * s + beta * (0.0 - m) for s in act.kink)
        lo, hi = torch.minimum(left, right), torch.maximum(left, right)
        convex = left <= right
        at_kink = torch.where(convex, (lo.clamp(min=0.0) - hi.clamp(max=0.0)).abs(),
                              torch.minimum(left.abs(), right.abs()))
        grad = torch.where(new == 0, at_kink, grad)
    r = torch.where(f_new <= f_ref + tie, grad.abs(), (1.0 + beta) * (new - u_ref).abs())
    return torch.stack([sq(r), sq(a), sq(sig), sq(new), sq(m)])


@dataclass(frozen=True)
class Activation(Record):
    """σ as a catalogue record: σ, σ′, σ″ (a.e.), the elementwise U-prox (``prox_`` overwrites its ``m`` argument with
    argmin_u ½(a − σ(u))² + (β/2)(u − m)², the *global* minimiser), and L_B, the Lipschitz constant on [−B, B].

    ``kink``: for a piecewise-linear σ, its one-sided slopes (left, right) at its kink u = 0 (the least-norm
    subgradient of the act term there, :mod:`verification.subgradient`); ``None`` for a C¹ σ."""

    kink: tuple[float, float] | None = None

    @property
    def is_identity(self) -> bool:
        return False

    @property
    def closed_form_prox(self) -> bool:
        """Whether :meth:`prox_` is a fixed sequence of elementwise operations (no iteration, no search), so that
        ``BCD_FUSE`` may compile it into one kernel (:mod:`bcd.fusion`)."""
        return False

    def apply(self, U: Tensor) -> Tensor:
        raise NotImplementedError

    def apply_into(self, U: Tensor, out: Tensor) -> Tensor:
        """σ(U) written into ``out`` (a buffer the caller owns; records override it to skip the temporary)."""
        return out.copy_(self.apply(U))

    def d1(self, U: Tensor) -> Tensor:
        """σ′ (at a kink: the left slope, the convention of autograd for ReLU and leaky ReLU)."""
        raise NotImplementedError

    def d2(self, U: Tensor) -> Tensor:
        raise NotImplementedError

    def lipschitz(self, B: float | None = None) -> float:
        """L_B: a Lipschitz constant of σ on [−B, B] (on all of ℝ where it exists; B is then ignored)."""
        raise NotImplementedError

    def prox_(self, a: Tensor, m: Tensor, beta: float) -> Tensor:
        raise NotImplementedError

    def prox(self, a: Tensor, m: Tensor, beta: float) -> Tensor:
        """Pure version of :meth:`prox_` (``m`` is left untouched)."""
        return self.prox_(a, m.clone(), beta)

    def prox_objective(self, u: Tensor, a: Tensor, m: Tensor, beta: float) -> Tensor:
        """f(u) = ½(a − σ(u))² + (β/2)(u − m)², elementwise (two temporaries, the same roundings as the formula)."""
        r = a - self.apply(u)
        d = u - m
        return r.mul_(r).mul_(0.5).add_(d.mul_(d).mul_(0.5 * beta))

    def prox_gradient(self, u: Tensor, a: Tensor, m: Tensor, beta: float) -> Tensor:
        """f′(u) = −(a − σ(u))σ′(u) + β(u − m)."""
        return -(a - self.apply(u)) * self.d1(u) + beta * (u - m)

    def sym(self, u: sp.Symbol) -> sp.Expr:

        raise NotImplementedError


@dataclass(frozen=True)
class Identity(Activation):
    @property
    def is_identity(self) -> bool:
        return True

    @property
    def closed_form_prox(self) -> bool:
        return True

    def apply(self, U):
        return U

    def d1(self, U):
        return torch.ones_like(U)

    def d2(self, U):
        return torch.zeros_like(U)

    def lipschitz(self, B=None):
        return 1.0

    def prox_(self, a, m, beta):
        return identity_prox_(a, m, beta)

    def sym(self, u):

        return u


@dataclass(frozen=True)
class LeakyReLU(Activation):
    """max(u, su), 0 ≤ s < 1 (s = 0 is ReLU).  The prox has two candidates, u₊ = max((a + βm)/(1 + β), 0) on
    u ≥ 0 and u₋ = min((sa + βm)/(s² + β), 0) on u ≤ 0; the better one is the global minimiser (u₊ at a tie)."""

    @property
    def slope(self) -> float:
        return self.params[0] if self.params else 0.0

    @property
    def closed_form_prox(self) -> bool:
        return True

    def apply(self, U):
        return torch.relu(U) if self.slope == 0 else torch.where(U > 0, U, U * self.slope)

    def apply_into(self, U, out):
        return torch.clamp(U, min=0.0, out=out) if self.slope == 0 else torch.where(U > 0, U, U * self.slope, out=out)

    def d1(self, U):
        return torch.where(U > 0, torch.ones_like(U), torch.full_like(U, self.slope))

    def d2(self, U):
        return torch.zeros_like(U)

    def lipschitz(self, B=None):
        return 1.0

    def prox_(self, a, m, beta):
        if self.slope == 0:
            return relu_prox_(a, m, beta)
        s = self.slope
        plus = torch.add(a, m, alpha=beta).div_(1.0 + beta).clamp_(min=0.0)
        minus = torch.add(a, m, alpha=beta / s).mul_(s / (s * s + beta)).clamp_(max=0.0)
        keep = self.prox_objective(plus, a, m, beta) <= self.prox_objective(minus, a, m, beta)
        return torch.where(keep, plus, minus, out=m)

    def sym(self, u):
        import sympy as sp

        return sp.Max(u, 0) if self.slope == 0 else sp.Max(u, sp.Float(self.slope) * u)


def _chunked_prox_(solve, a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Write ``solve(a, m, β)`` (an elementwise U-prox on flat chunks) into ``m``, ``CHUNK`` entries at a time on the
    CPU (bounded temporaries), in one piece on CUDA."""
    chunk = chunk_size(m)
    flat_a, flat_m = a.reshape(-1), m.view(-1)
    for s in range(0, flat_m.numel(), chunk):
        sl = slice(s, s + chunk)
        flat_m[sl] = solve(flat_a[sl], flat_m[sl], beta)
    return m


GRID = 33  # grid points of the engine's bracket search for a smooth σ
NEWTON = 40  # safeguarded Newton iterations after it
BEND, BEND_GRID = 12.0, 97  # a fixed grid of step 1/4 on [−12, 12], where sigmoid, tanh and softplus bend


@dataclass(frozen=True)
class SmoothActivation(Activation):
    """A C² σ with bounded σ′ (sigmoid, tanh, softplus).  The U-prox f(u) = ½(a − σ(u))² + (β/2)(u − m)² is nonconvex
    in general.  Bracket [derived, MATH.md §9]: f(u*) ≤ f(m) and f ≥ (β/2)(u − m)² give |u* − m| ≤ |a − σ(m)|/√β.
    The engine's method: the best of ``GRID`` equispaced points of the bracket, then Newton on f′ safeguarded by
    bisection within the neighbouring grid cells, keeping the best point seen (never worse than the grid's best).
    A wide bracket (|a| ≫ 1 or small β) can hide a narrow basin between those points, so the same Newton also
    starts from the two best local minima of a fixed grid where σ bends (``BEND``) and from the minimiser of f with σ
    replaced by each of its asymptotes (``asymptotes``: slope, intercept), each within its own cells; the best
    of all starts wins (never worse than the bracket's start alone).
    (The verifier's reference is a different method: :func:`reference_prox`.)"""

    asymptotes = ((0.0, 0.0),)  # lines σ approaches at ±∞ (a slope 0 line gives the candidate m, whatever its height)

    def prox_(self, a, m, beta):
        return _chunked_prox_(self._prox_chunk, a, m, beta)

    def _prox_chunk(self, a: Tensor, m: Tensor, beta: float) -> Tensor:
        h = (a - self.apply(m)).abs() / math.sqrt(beta)
        steps = torch.linspace(-1.0, 1.0, GRID, dtype=m.dtype, device=m.device)
        grid = m[:, None] + h[:, None] * steps  # n × GRID: the argmin runs along contiguous rows
        j = self.prox_objective(grid, a[:, None], m[:, None], beta).argmin(dim=1, keepdim=True)
        cell = 2.0 * h / (GRID - 1)
        u0 = grid.gather(1, j)[:, 0]
        best, f_best = self._newton(u0[None], cell[None], a, m, beta)
        wide = cell > 2.0 * BEND / (BEND_GRID - 1)  # the bracket grid is coarser than the bend grid: more starts
        if bool(wide.any()):
            aw, mw = a[wide], m[wide]
            u, c = self._starts(u0[wide], cell[wide], aw, mw, beta)
            bw, fw = self._newton(u, c, aw, mw, beta)
            k = fw.argmin(dim=0, keepdim=True)  # the best start
            bw, fw = bw.gather(0, k)[0], fw.gather(0, k)[0]
            keep = fw < f_best[0][wide]
            best[0][wide] = torch.where(keep, bw, best[0][wide])
            f_best[0][wide] = torch.where(keep, fw, f_best[0][wide])
        best, f_best = best[0], f_best[0]
        # comparing values stalls ~√eps from the minimiser (f is flat there): polish on |f′| within rounding of f
        tie = TIE_EPS * torch.finfo(m.dtype).eps * (f_best + 0.5 * a * a + 0.5 * beta * m * m)
        sig, s1, s2 = self.jet(best)
        for _ in range(3):  # f′ = −(a − σ)σ′ + β(u − m) and f″ = σ′² − (a − σ)σ″ + β from one jet per point
            g = -(a - sig) * s1 + beta * (best - m)
            h2 = s1 * s1 - (a - sig) * s2 + beta
            step = best - g / h2.clamp_min(torch.finfo(m.dtype).tiny)
            sig_s, s1_s, s2_s = self.jet(step)
            r, d = a - sig_s, step - m
            f_step = r * r * 0.5 + d * d * (0.5 * beta)  # prox_objective(step), from the jet's σ
            ok = (h2 > 0) & ((-r * s1_s + beta * d).abs() < g.abs()) & (f_step <= f_best + tie)
            best = torch.where(ok, step, best)
            sig, s1, s2 = (torch.where(ok, x, y) for x, y in ((sig_s, sig), (s1_s, s1), (s2_s, s2)))
        return best

    def _newton(self, u: Tensor, cell: Tensor, a: Tensor, m: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        """Newton on f′ from each start (K × n), safeguarded by bisection within ±``cell``; the best point seen per
        start and its value.  Every 4 iterations the entries whose step is at rounding level stop, and the rest go on
        alone (most entries converge in a step or two, a few bisect for ~40)."""
        shape = u.shape
        a, m = a.expand(shape).reshape(-1), m.expand(shape).reshape(-1)
        u, cell = u.reshape(-1), cell.expand(shape).reshape(-1)
        lo, hi = u - cell, u + cell
        best, f_best = u, self.prox_objective(u, a, m, beta)
        out_best = out_f = idx = None  # every entry's result once some stop; ``idx``: where the active ones go
        eps = torch.finfo(m.dtype).eps
        for it in range(NEWTON):
            sig, s1, s2 = self.jet(u)
            g = beta * (u - m) - (a - sig) * s1
            lo = torch.where(g < 0, u, lo)
            hi = torch.where(g > 0, u, hi)
            h2 = s1 * s1 - (a - sig) * s2 + beta
            step = u - g / h2
            new = torch.where((h2 > 0) & (step > lo) & (step < hi), step, 0.5 * (lo + hi))
            f = self.prox_objective(new, a, m, beta)
            better = f < f_best
            best, f_best = torch.where(better, new, best), torch.where(better, f, f_best)
            if it % 4 == 3:
                going = (new - u).abs() > 4 * eps * (u.abs() + 1.0)
                if not bool(going.all()):
                    if idx is None:
                        out_best, out_f = best.clone(), f_best.clone()
                        idx = torch.arange(best.numel(), device=best.device)
                    else:
                        out_best[idx], out_f[idx] = best, f_best
                    if not bool(going.any()):
                        idx = idx[:0]
                        break
                    idx = idx[going]
                    new, lo, hi, best, f_best, a, m = (t[going] for t in (new, lo, hi, best, f_best, a, m))
            u = new
        if idx is None:
            out_best, out_f = best, f_best
        elif idx.numel():
            out_best[idx], out_f[idx] = best, f_best
        return out_best.reshape(shape), out_f.reshape(shape)

    def jet(self, U: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(σ, σ′, σ″) at U (subclasses share the work)."""
        return self.apply(U), self.d1(U), self.d2(U)

    def _starts(self, u: Tensor, cell: Tensor, a: Tensor, m: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        """Newton's starts (K × n) and their half-widths: the bracket grid's best ``u`` (cell ``cell``), the two best
        local minima of f on the ``BEND`` grid (scanned point by point: O(n) memory), the asymptotes' minimisers."""
        pts = torch.linspace(-BEND, BEND, BEND_GRID, dtype=m.dtype).tolist()
        inf = torch.full_like(m, math.inf)
        v1, u1, v2, u2 = inf, m.clone(), inf, m.clone()
        f_prev = self.prox_objective(torch.full_like(m, pts[0]), a, m, beta)
        f_cur = self.prox_objective(torch.full_like(m, pts[1]), a, m, beta)
        for k in range(1, BEND_GRID - 1):
            f_next = self.prox_objective(torch.full_like(m, pts[k + 1]), a, m, beta)
            v = torch.where((f_cur <= f_prev) & (f_cur < f_next), f_cur, inf)
            first, second = v < v1, v < v2
            v2 = torch.where(first, v1, torch.where(second, v, v2))
            u2 = torch.where(first, u1, torch.where(second, pts[k], u2))
            v1, u1 = torch.where(first, v, v1), torch.where(first, pts[k], u1)
            f_prev, f_cur = f_cur, f_next
        lines = [(p * (a - q) + beta * m) / (p * p + beta) for p, q in self.asymptotes]
        step = torch.full_like(m, 2.0 * BEND / (BEND_GRID - 1))
        return torch.stack([u, u1, u2, *lines]), torch.stack([cell, step, step, *(step for _ in lines)])

    def lipschitz(self, B=None):
        return self.lipschitz_constant

    @property
    def lipschitz_constant(self) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Sigmoid(SmoothActivation):
    def apply(self, U):
        return torch.sigmoid(U)

    def d1(self, U):
        s = torch.sigmoid(U)
        return s * (1 - s)

    def d2(self, U):
        s = torch.sigmoid(U)
        return s * (1 - s) * (1 - 2 * s)

    def jet(self, U):
        s = torch.sigmoid(U)
        d1 = s * (1 - s)
        return s, d1, d1 * (1 - 2 * s)

    @property
    def lipschitz_constant(self):
        return 0.25

    def sym(self, u):
        import sympy as sp

        return 1 / (1 + sp.exp(-u))


@dataclass(frozen=True)
class Tanh(SmoothActivation):
    def apply(self, U):
        return torch.tanh(U)

    def d1(self, U):
        return 1 - torch.tanh(U) ** 2

    def d2(self, U):
        t = torch.tanh(U)
        return -2 * t * (1 - t * t)

    def jet(self, U):
        t = torch.tanh(U)
        d1 = 1 - t * t
        return t, d1, -2 * t * d1

    @property
    def lipschitz_constant(self):
        return 1.0

    def sym(self, u):
        import sympy as sp

        return sp.tanh(u)


@dataclass(frozen=True)
class Softplus(SmoothActivation):
    asymptotes = ((0.0, 0.0), (1.0, 0.0))

    def apply(self, U):
        return torch.nn.functional.softplus(U, threshold=40.0)  # the default 20 cuts log1p(e^{−u}) ≈ 2e-9 off

    def d1(self, U):
        return torch.sigmoid(U)

    def d2(self, U):
        s = torch.sigmoid(U)
        return s * (1 - s)

    def jet(self, U):
        s = torch.sigmoid(U)
        return self.apply(U), s, s * (1 - s)

    @property
    def lipschitz_constant(self):
        return 1.0

    def sym(self, u):
        import sympy as sp

        return sp.log(1 + sp.exp(u))


@dataclass(frozen=True)
class Polynomial(Activation):
    """σ(u) = Σ_k c_k u^k (``params`` = c_0..c_K, c_K ≠ 0).  L_B = Σ_k k|c_k|B^{k−1} bounds |σ′| on [−B, B]: it
    depends on B (Assumption 1(c) holds on bounded sets only).  The U-prox: f′ is a polynomial of degree 2K − 1, so
    the engine takes *all* its real roots (eigenvalues of the batched companion matrix, then two Newton steps of
    polish: roots near a double root are accurate to ~1e-8 only) and the one with the least f."""

    @property
    def coefficients(self) -> tuple[float, ...]:
        return self.params

    @property
    def degree(self) -> int:
        return len(self.params) - 1

    def _horner(self, coeffs, U):
        out = torch.full_like(U, coeffs[-1])
        for c in reversed(coeffs[:-1]):
            out = out * U + c
        return out

    def _deriv(self, coeffs):
        return tuple(k * c for k, c in enumerate(coeffs))[1:] or (0.0,)

    def apply(self, U):
        return self._horner(self.params, U)

    def d1(self, U):
        return self._horner(self._deriv(self.params), U)

    def d2(self, U):
        return self._horner(self._deriv(self._deriv(self.params)), U)

    def lipschitz(self, B=None):
        if self.degree <= 1:
            return abs(self.params[1]) if self.degree == 1 else 0.0
        if B is None or not math.isfinite(B):
            return math.inf
        return sum(k * abs(c) * B ** (k - 1) for k, c in enumerate(self.params) if k >= 1)

    def prox_(self, a, m, beta):
        return _chunked_prox_(self._prox_chunk, a, m, beta)

    def _fprime_coefficients(self, a: Tensor, m: Tensor, beta: float) -> Tensor:
        """Coefficients (ascending) of f′(u) = σ(u)σ′(u) − aσ′(u) + β(u − m), one row per entry."""
        p = torch.tensor(self.params, dtype=m.dtype, device=m.device)
        q = torch.tensor(self._deriv(self.params), dtype=m.dtype, device=m.device)
        pq = torch.zeros(len(p) + len(q) - 1, dtype=m.dtype, device=m.device)
        for i in range(len(p)):
            pq[i:i + len(q)] += p[i] * q
        deg = max(len(pq), 2)
        C = torch.zeros(m.numel(), deg, dtype=m.dtype, device=m.device)
        C[:, :len(pq)] += pq
        C[:, :len(q)] -= a[:, None] * q
        C[:, 1] += beta
        C[:, 0] -= beta * m
        return C

    def _prox_chunk(self, a, m, beta):
        C = self._fprime_coefficients(a, m, beta)
        while C.shape[1] > 2 and bool((C[:, -1] == 0).all()):
            C = C[:, :-1]
        k = C.shape[1] - 1  # degree of f′ (≥ 1: the β(u − m) term)
        comp = torch.zeros(m.numel(), k, k, dtype=m.dtype, device=m.device)
        if k > 1:
            comp[:, 1:, :-1] = torch.eye(k - 1, dtype=m.dtype, device=m.device)
        comp[:, :, -1] = -C[:, :k] / C[:, k:k + 1]
        finite = torch.isfinite(comp).flatten(1).all(dim=1, keepdim=True)  # an overflowed row crashes LAPACK's
        roots = torch.linalg.eigvals(torch.where(finite[:, :, None], comp, 0.0)).real  # balancing: its roots are NaN,
        roots = torch.where(finite, roots, math.nan)  # which the engine reports as divergence (real parts: harmless)
        cand = torch.cat([roots, m[:, None]], dim=1)
        A, Mx = a[:, None], m[:, None]
        for _ in range(2):  # Newton polish on f′, kept only where it does not increase f
            g = self.prox_gradient(cand, A, Mx, beta)
            h2 = self.d1(cand) ** 2 - (A - self.apply(cand)) * self.d2(cand) + beta
            step = torch.where(h2 > 0, cand - g / h2.clamp_min(torch.finfo(m.dtype).tiny), cand)
            better = self.prox_objective(step, A, Mx, beta) <= self.prox_objective(cand, A, Mx, beta)
            cand = torch.where(better, step, cand)
        j = self.prox_objective(cand, A, Mx, beta).argmin(dim=1, keepdim=True)
        return cand.gather(1, j)[:, 0]

    def sym(self, u):
        import sympy as sp

        return sum(sp.Float(c) * u**k for k, c in enumerate(self.params))


def _leaky(slope: float) -> Activation:
    if not 0 < slope < 1:
        raise ValueError(f"the slope must lie in (0, 1); got {slope:g}")
    return LeakyReLU("leaky_relu", (slope,), f"max(u, {slope:g}u)", True, False, False, kink=(slope, 1.0))


def _polynomial(*coeffs: float) -> Activation:
    c = list(coeffs)
    while len(c) > 1 and c[-1] == 0:
        c.pop()
    if len(c) < 2:
        raise ValueError("give the coefficients c0, c1, ..., ck of a polynomial of degree >= 1 (ascending powers)")
    terms = " + ".join(f"{v:g}u^{k}" for k, v in enumerate(c) if v)
    return Polynomial("polynomial", tuple(c), terms, True, True, True)


register(Entry("activation", "relu", lambda: LeakyReLU("relu", (), "max(u, 0)", True, False, False, kink=(0.0, 1.0)),
               doc="1-Lipschitz, piecewise linear"))
register(Entry("activation", "leaky_relu", _leaky, ("slope",), (0.01,), doc="max(u, su), 0 < s < 1"))
register(Entry("activation", "identity", lambda: Identity("identity", (), "u", True, True, True),
               doc="linear (σ = Id)"), linear="identity")
register(Entry("activation", "sigmoid", lambda: Sigmoid("sigmoid", (), "1/(1 + e^{−u})", False, True, True),
               doc="1/4-Lipschitz"))
register(Entry("activation", "tanh", lambda: Tanh("tanh", (), "tanh(u)", False, True, True), doc="1-Lipschitz"))
register(Entry("activation", "softplus", lambda: Softplus("softplus", (), "log(1 + e^u)", False, True, True),
               doc="1-Lipschitz"))
register(Entry("activation", "polynomial", _polynomial, variadic=True, doc="Σ c_k u^k, ascending coefficients"),
         quadratic="polynomial(0, 0, 1)")


def get_activation(spec: str | Activation) -> Activation:
    """The activation record for ``spec`` (``relu``, ``leaky_relu(0.01)``, ``quadratic``, ...)."""
    return build("activation", spec)
