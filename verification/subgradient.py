"""The least-norm element of the limiting subdifferential ∂L̄(Q), for any variant built from declared terms.

Algorithm-independent stationarity measure: it needs the iterate only, not the update order, so it
serves the audit of foreign iterates and the recorder's generic (order-agnostic) path.

**Three-splitting and ResNet.**  L̄ = h + γ Σ_{i<N} Σ_e φ(U_{i,e}, a_{i,e}) with h continuously
differentiable (loss, affine gaps, λ/2‖W̃‖², the i = N activation gap), a_i = V_i − τ_iV_{i-1} and
φ(u, a) = ½(a − relu(u))².  By the exact sum rule for a C¹ function and the product rule for
separable functions (Rockafellar–Wets 8.8(c), 10.5), ∂L̄(Q) = ∇h(Q) + γ Π_e ∂φ(U_e, a_e).  Off the
kink, ∂φ = {∇φ}.  At u = 0: ∇φ = (−(a − u), a − relu(u)) on u > 0 tends to (−a, a), and ∇φ = (0, a)
on u < 0, so

* a > 0: φ(·, a) has a downward (concave) kink; the regular subdifferential is empty and the
  limiting one is the two points {(−a, a), (0, a)};
* a < 0: φ(·, a) is convex near 0; ∂φ = {(s, a) : s ∈ [0, −a]};
* a = 0: φ is differentiable there, ∂φ = {(0, 0)}.

The a-component is always a (continuous), so the least-norm element differs from the gradient with
the convention relu′(0) = 0 (what autograd computes) only in the u-entries at kinks, where it is
γ(R_e + s*) with R = U − W̃Ṽ and s* ∈ S(a) minimising |R_e + s|: the better of {−a, 0} for a > 0,
clip(−R_e, 0, −a) for a < 0.  For an exact BCD run its norm is ≤ the recorder's optimality-condition
‖g^k‖ (equal away from kinks).

**The catalogue** (MATH.md §9).  Leaky ReLU (slope s) has the same structure with one-sided u-derivatives −a·s and
−a at its kink (ReLU: s = 0): a convex kink for a < 0 (the interval between them), a concave one for a > 0 (the two
points).  A C¹ σ has no kink: autograd's gradient is the subgradient.  A nonsmooth ℓ1, elastic-net or indicator
r_i/s_i, or the hinge loss, acts on one block X; its record's ``least_norm(X, G)`` turns the smooth part G of that
block's component into the least-norm element of G + ∂t(X) (separable, so exact; the configuration admits at most
one nonsmooth term per block).

**Two-splitting with ReLU** (MATH.md §7.3–7.4).  L = h + γ Σ_{i<N} Σ_{jk} φ(Z_{i,jk}, V_{i,jk}) with
Z_i = W̃_iṼ_{i-1} and φ(z, t) = ½(t − relu z)².  ∂φ/∂t = t − relu z is continuous, so only the z-derivative ξ of a
kink entry is set-valued: ξ ∈ {−t, 0} (t > 0, concave kink), [0, −t] (t < 0, convex kink).  A kink entry (j, k) of
layer i moves the W̃_i component by γξ ṽ_kᵀ (row j) and the V_{i-1} component by γξ ŵ_j (column k): the least-norm
element is a box QP **coupled** within a layer, and the layers decouple (layer i's kinks touch W̃_i and V_{i-1} only;
V_0 = X is data).  Per layer, over the kink multipliers ξ (:func:`_layer_qp`):

* the **hull QP** min ½‖g⁰ + γJξ‖² over the box ξ ∈ [min(0, −t), max(0, −t)], solved by projected accelerated
  gradient (FISTA with restart, step 1/γ²(‖Ṽ‖₂² + ‖Ŵ‖₂²)), gives a **certified lower bound** of the least norm:
  f(ξ) minus the Frank–Wolfe gap max_{ξ' ∈ box}⟨∇f(ξ), ξ − ξ'⟩ is ≤ min f for any ξ (convexity).  It is a lower
  bound of dist(0, ∂L(Q)) because the hull contains the limiting set at concave kinks and
  ∂L(Q) ⊂ ∇h(Q) + Σ γJᵀ∂φ (the chain rule's inclusion, valid as φ is locally Lipschitz; Rockafellar–Wets 10.6);
* an **element of ∂L(Q)**: the concave-kink multipliers rounded to the nearer point of {−t, 0}, the convex ones
  re-optimised with those fixed, and the better of that and the element with ξ = relu′(0)·(…) = 0 at every kink
  (what autograd computes, a limit of gradients).  Its norm is an upper bound of the least norm; it *is* in
  ∂L(Q) when the map from the blocks to the kink entries is onto (RW Exercise 10.7: e.g. Ŵ_i of full row rank and
  at most d_{i-1} + 1 kink entries per row of layer 1), the generic case.

**Two-splitting with leaky ReLU** (slope s): the same QP with ξ between the one-sided z-derivatives −st and −t (ReLU
is s = 0), the concave multipliers rounded to the nearer of {−t, −st}.

**With a nonsmooth r_i or s_{i-1}** (ℓ1, elastic net, an indicator) the layer's minimum is joint over ξ and
u ∈ ∂t(X): min ½‖g⁰ + γJξ + u‖² over both.  Minimising over u first leaves ½ dist(g⁰ + γJξ, −∂t(X))², which is
convex in ξ with gradient γJᵀ·LN(g⁰ + γJξ), LN being the term's own least-norm map G ↦ G − proj_{−∂t(X)}(G) (its
``least_norm``; it is 1-Lipschitz, so the step stays 1/L).  The QP runs on that function, so its Frank–Wolfe bound is
certified for the joint minimum and its element is LN of the residual, in ∂L(Q).

The recorded g^k is the element (``parts``); :attr:`LeastNorm.lower_sq` is the certified lower bound; they coincide
(up to the QP's accuracy) when no kink is concave.  Entries with |Z_jk| ≤ rtol·‖w̃_j‖‖ṽ_k‖ count as kinks (the
inner solvers' rounding band, :func:`bcd.inner.default_kink_rtol`), so "at Q" means up to that band.  For such an
entry with z > 0, autograd's multiplier z − t lies just outside [min(0, −t), max(0, −t)]; the box is widened to
contain it (δ = ξ − ξ⁰ ranges over [min(lo − ξ⁰, 0), max(hi − ξ⁰, 0)]), which keeps ξ⁰ feasible and the lower bound
certified for the point as it is.

The smooth part is differentiated with autograd over the problem's declared terms, so every variant
and term added to :mod:`bcd.model` is covered without a second formula.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from bcd.blocks import affine
from bcd.inner import default_kink_rtol
from bcd.model import Block
from bcd.problem import BCDState, Problem
from bcd.reduction import block_sq, locally, over_samples
from verification import schema as S  # noqa: N812

Tensor = torch.Tensor


QP_ITERS = 500  # FISTA iterations per layer and phase (stops earlier once the Frank–Wolfe gap is negligible)
QP_RTOL = 1e-10  # stop when the gap is ≤ QP_RTOL·(f + tiny)


@dataclass(frozen=True)
class LeastNorm:
    """``parts``: an element g of ∂L̄(Q), block by block (the least-norm element, except for the two-splitting with
    ReLU: module docstring); ``lower_sq``: a certified lower bound of dist(0, ∂L̄(Q))², ≤ ‖g‖² (= ‖g‖² where g is
    the least-norm element).  Sums over samples pass through :func:`bcd.reduction.over_samples`."""

    parts: dict[Block, Tensor]
    lower_sq: Tensor


def definition(problem: Problem) -> str:
    """``least_norm`` (three-splitting, ResNet, identity σ) or ``least_norm_bracket`` (two-splitting with ReLU:
    an element of ∂L, its norm and a certified lower bound bracketing the least norm)."""
    return S.G_BRACKET if problem.variant == "two" and problem.activation.kink is not None else S.G_LEAST_NORM


def _smooth_gradient(at: BCDState, problem: Problem, leaves: dict[Block, Tensor]) -> dict[Block, Tensor]:
    """∇ of the declared smooth terms (σ′ at a kink = the left slope, as autograd) through the reduction seam: each
    sample term's gradient is taken of its *local* value (:func:`bcd.reduction.locally`), so the V and U components
    are the local columns' own, and the W components of the sample terms are then summed over shards; r_i is
    replicated.  Nonsmooth terms (ℓ1, indicators, the hinge) are left to :func:`_nonsmooth`."""
    keys = list(leaves)
    with torch.enable_grad():
        with locally():
            sample = torch.stack([t.value(at, problem) for t in problem.terms if t.sample and t.smooth]).sum()
            grads = dict(zip(keys, torch.autograd.grad(sample, list(leaves.values())), strict=True))
        for key in keys:
            if key[0] == "W":
                grads[key] = over_samples(grads[key])
        reg = [t for t in problem.terms if not t.sample and t.smooth]
        if reg:
            w_keys = [("W", t.layer) for t in reg]  # the W̃_i with a smooth r_i (a layer may have none)
            for key, g in zip(w_keys, torch.autograd.grad(torch.stack([t.value(at, problem) for t in reg]).sum(),
                                                          [leaves[k] for k in w_keys]), strict=True):
                grads[key] = grads[key] + g
    return grads


def _nonsmooth(state: BCDState, problem: Problem) -> dict[Block, Callable[[Tensor], Tensor]]:
    """Each nonsmooth term's least-norm map G ↦ the least-norm element of G + ∂t(X), for the one block X it acts on
    (G = the smooth part; the configuration admits at most one nonsmooth term per block, so the map's value is the
    least-norm element of that block's component of ∂L̄)."""
    maps: dict[Block, Callable[[Tensor], Tensor]] = {}
    for t in problem.terms:
        if t.smooth:
            continue
        (key,) = t.blocks
        if key in maps:
            raise RuntimeError(f"two nonsmooth terms act on {key}: the least-norm element is not separable")
        maps[key] = partial(t.least_norm, state, problem)
    return maps


def least_norm_subgradient(state: BCDState, problem: Problem) -> LeastNorm:
    """The least-norm element of ∂L̄(Q) at ``state``, block by block, with the lower bound of its norm (for the
    two-splitting with ReLU: the bracket of the module docstring)."""
    keys = problem.variables
    cfg = problem.config
    leaves = {key: state.get(*key).detach().clone().requires_grad_(True) for key in keys}
    at = BCDState(list(state.W), list(state.V), list(state.U), state.sweep)
    for (b, i), leaf in leaves.items():
        at.set(b, i, leaf)
    smooth = _smooth_gradient(at, problem, leaves)
    maps = _nonsmooth(state, problem)
    out = {key: maps[key](g) if key in maps else g for key, g in smooth.items()}
    kink = problem.activation.kink
    if kink is not None and problem.variant != "two":
        sl, sr = kink
        for i in range(1, cfg.N):
            U = state.U[i]
            at_kink = U == 0
            if not bool(at_kink.any()):
                continue
            a = problem.u_target(state, i)
            R = U - affine(state.W[i], state.V[i - 1])
            # one-sided u-derivatives of ½(a − σ(u))² at 0: −a·s_left, −a·s_right (ReLU: 0, −a)
            d_left, d_right = -a * sl, -a * sr
            two_point = torch.where((R + d_right).abs() < (R + d_left).abs(), d_right, d_left)  # a > 0: concave
            interval = torch.minimum(torch.maximum(-R, d_left), d_right)  # a < 0: s ∈ [d_left, d_right]
            s_kink = torch.where(a > 0, two_point, torch.where(a < 0, interval, torch.zeros_like(a)))
            out[("U", i)] = torch.where(at_kink, (R + s_kink).mul_(cfg.gamma), out[("U", i)])
    norm_sq = {key: block_sq(key[0], g) for key, g in out.items()}
    if kink is None or problem.variant != "two":
        return LeastNorm(out, torch.stack(list(norm_sq.values())).sum())
    lower = dict(norm_sq)
    for i in range(1, cfg.N):
        _layer_qp(state, problem, i, smooth, maps, out, norm_sq, lower)
    return LeastNorm(out, torch.stack(list(lower.values())).sum())


# ---------------------------------------------------------------------- the coupled box QP of a two-splitting layer


def _layer_qp(state: BCDState, problem: Problem, i: int, smooth: dict, maps: dict, out: dict, norm_sq: dict,
              lower: dict) -> None:
    """Layer i's kink multipliers (module docstring): update ``out`` (the element) and ``lower`` (the bound)
    for the blocks W̃_i and V_{i-1} in place; ``smooth`` holds the smooth parts g⁰, ``maps`` the nonsmooth terms'
    least-norm maps, ``norm_sq`` the current element's squared norms."""
    gamma = problem.config.gamma
    W, Vp, T = state.W[i], state.V[i - 1], state.V[i]
    What = W[:, :-1]
    Z = affine(W, Vp)
    rtol = default_kink_rtol(Z.dtype)
    v_norm = (Vp.square().sum(dim=0) + 1.0).sqrt()  # ‖ṽ_k‖ (local columns)
    band = Z.abs() <= rtol * W.norm(dim=1, keepdim=True) * v_norm.unsqueeze(0)
    jj, kk = band.nonzero(as_tuple=True)  # local kink entries (the multipliers are column-local)
    n_kinks = over_samples(torch.tensor(float(jj.numel()), dtype=torch.float64, device=Z.device))
    if float(n_kinks) == 0:
        return
    with_V = i >= 2  # V_0 = X is data
    slope = problem.activation.kink[0]  # σ's slope left of its kink (ReLU 0, leaky ReLU s); 1 on the right
    t = T[jj, kk]
    z = Z[jj, kk]
    xi0 = torch.where(z > 0, z - t, slope * (slope * z - t))  # autograd's multiplier (σ′ = 1 on z > 0, else s)
    left, right = -slope * t, -t  # the one-sided z-derivatives of ½(t − σ(z))² at 0
    lo = torch.minimum(torch.minimum(left, right) - xi0, torch.zeros_like(t))  # δ = ξ − ξ⁰ ∈ [lo, hi] ∋ 0
    hi = torch.maximum(torch.maximum(left, right) - xi0, torch.zeros_like(t))
    concave = t > 0
    gW = smooth[("W", i)]
    gV = smooth[("V", i - 1)] if with_V else None
    map_W = maps.get(("W", i), lambda G: G)  # G ↦ LN(G) of a nonsmooth r_i (identity for a smooth one)
    map_V = maps.get(("V", i - 1), lambda G: G)
    Vt_rows = torch.cat([Vp.T[kk], torch.ones_like(t).unsqueeze(1)], dim=1)  # ṽ_k per kink (m × (d+1))
    W_rows = What[jj]  # ŵ_j per kink (m × d)
    spec = torch.linalg.matrix_norm(torch.cat([Vp, torch.ones_like(Vp[:1])]), ord=2).square()
    spec = over_samples(spec)  # ‖Ṽ‖₂² ≤ Σ over shards of the local ‖Ṽ_s‖₂² (ṼṼᵀ = Σ_s Ṽ_sṼ_sᵀ)
    if with_V:
        spec = spec + torch.linalg.matrix_norm(What, ord=2).square()
    L = (gamma * gamma * spec).clamp_min(torch.finfo(Z.dtype).tiny)

    def residuals(d: Tensor) -> tuple[Tensor, Tensor | None]:
        """R_W = LN_W(g_W + γE(δ)Ṽᵀ) (replicated) and R_V = LN_V(g_V + γŴᵀE(δ)) (column-local); LN is the
        identity without a nonsmooth term on the block."""
        RW = torch.zeros_like(gW).index_add_(0, jj, Vt_rows * d.unsqueeze(1))
        RW = map_W(over_samples(RW).mul_(gamma).add_(gW))
        RV = None
        if with_V:
            RV = map_V(torch.zeros_like(gV.T).index_add_(0, kk, W_rows * d.unsqueeze(1)).T.mul_(gamma).add_(gV))
        return RW, RV

    def f_and_grad(d: Tensor) -> tuple[Tensor, Tensor]:
        RW, RV = residuals(d)
        f = 0.5 * torch.linalg.vector_norm(RW).square()
        grad = (RW[jj] * Vt_rows).sum(dim=1)
        if with_V:
            f = f + 0.5 * over_samples(torch.linalg.vector_norm(RV).square())
            grad = grad + (RV.T[kk] * W_rows).sum(dim=1)
        return f, grad.mul_(gamma)

    def solve(d0: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """FISTA with restart on the box; returns the best δ, its f and the certified lower bound of min f."""
        d = y = d0.clone()
        best = d0
        f_best = f_d = f_and_grad(d0)[0]
        theta = 1.0
        lb = torch.zeros((), dtype=Z.dtype, device=Z.device)
        for it in range(QP_ITERS):
            g_y = f_and_grad(y)[1]
            d_new = torch.clamp(y - g_y / L, lo, hi)
            f_new = f_and_grad(d_new)[0]
            if f_new < f_best:
                best, f_best = d_new, f_new
            if it % 10 == 9 or it == QP_ITERS - 1:  # Frank–Wolfe gap at the best point so far
                f_b, g_b = f_and_grad(best)
                gap = over_samples(torch.maximum(g_b * (best - lo), g_b * (best - hi)).sum())
                lb = torch.maximum(lb, f_b - gap)
                if float(gap) <= QP_RTOL * (float(f_b) + 1e-300):
                    break
            theta_new = 0.5 * (1.0 + (1.0 + 4.0 * theta * theta) ** 0.5)
            if f_new > f_d:  # restart the momentum when the objective rises
                y, theta_new = d_new.clone(), 1.0
            else:
                y = d_new + ((theta - 1.0) / theta_new) * (d_new - d)
            d, f_d, theta = d_new, f_new, theta_new
        return best, f_best, lb

    zero = torch.zeros_like(t)
    hull, _f_hull, lb = solve(zero, lo, hi)
    # an element of the limiting set: concave multipliers rounded to {−t, 0}, convex ones re-optimised
    xi = hull + xi0
    end = torch.where((xi - right).abs() <= (xi - left).abs(), right, left) - xi0
    lo2, hi2 = torch.where(concave, end, lo), torch.where(concave, end, hi)
    elem, f_elem, _ = solve(torch.where(concave, end, hull.clamp(lo2, hi2)), lo2, hi2)
    keys = [("W", i)] + ([("V", i - 1)] if with_V else [])
    current = sum(norm_sq[k] for k in keys)
    lower_here = (2.0 * lb).clamp(min=0.0)
    if not bool(torch.isfinite(current)):  # an indicator's block off its set: ∂L̄ is empty, no bound to certify
        lower_here = torch.zeros_like(lower_here)
    for k in keys:
        lower[k] = torch.zeros_like(lower[k])
    lower[keys[0]] = torch.minimum(lower_here, 2.0 * f_elem).minimum(current)
    if 2.0 * f_elem < current:
        RW, RV = residuals(elem)
        out[("W", i)] = RW
        norm_sq[("W", i)] = block_sq("W", RW)
        if with_V:
            out[("V", i - 1)] = RV
            norm_sq[("V", i - 1)] = block_sq("V", RV)
