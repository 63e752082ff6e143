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

**Two-splitting with ReLU** (MATH.md §7.4).  The kinks sit at z = (W̃_iṼ_{i-1})_{jk} = 0 and couple W̃_i with
V_{i-1}, so the least-norm element is a coupled box QP.  We return instead the element with s = 0 at every kink
(what autograd's relu′(0) = 0 computes): 0 lies in the limiting subdifferential of z ↦ ½(t − relu z)² at 0 for
every target t ({−t, 0} for t > 0, [0, −t] for t < 0), and z ↦ (W̃Ṽ)_{jk} is a submersion (the bias column),
so this is an element of ∂L(Q) — the limit of gradients from the side where the kink entries are negative.
Its norm is an upper bound of the least norm: a relative-error check that passes on it also passes on the
least-norm element (no false pass), one that fails may be a false alarm (say so).  :func:`definition` names
which element a problem gets.

The smooth part is differentiated with autograd over the problem's declared terms, so every variant
and term added to :mod:`bcd.model` is covered without a second formula.
"""

from __future__ import annotations

import torch

from bcd.blocks import affine
from bcd.model import Block
from bcd.problem import BCDState, Problem

Tensor = torch.Tensor


def definition(problem: Problem) -> str:
    """``least_norm`` (three-splitting, ResNet, identity σ) or ``limiting_element`` (two-splitting with ReLU)."""
    return "limiting_element" if problem.variant == "two" and problem.config.activation == "relu" else "least_norm"


def least_norm_subgradient(state: BCDState, problem: Problem) -> dict[Block, Tensor]:
    """The least-norm element of ∂L̄(Q) at ``state``, block by block (for the two-splitting with ReLU: the
    element of :func:`definition`, an upper bound of the least norm; module docstring)."""
    keys = problem.variables
    cfg = problem.config
    if cfg.activation not in ("relu", "identity"):
        raise ValueError(f"activation={cfg.activation!r} has no least-norm subgradient here; allowed: relu, identity")
    leaves = {key: state.get(*key).detach().clone().requires_grad_(True) for key in keys}
    at = BCDState(list(state.W), list(state.V), list(state.U), state.sweep)
    for (b, i), leaf in leaves.items():
        at.set(b, i, leaf)
    with torch.enable_grad():
        total = torch.stack([t.value(at, problem) for t in problem.terms]).sum()
        grads = torch.autograd.grad(total, list(leaves.values()))
    out = dict(zip(keys, grads, strict=True))
    if cfg.activation == "relu" and problem.variant != "two":
        for i in range(1, cfg.N):
            U = state.U[i]
            at_kink = U == 0
            if not bool(at_kink.any()):
                continue
            a = problem.u_target(state, i)
            R = U - affine(state.W[i], state.V[i - 1])
            zero = torch.zeros_like(a)
            two_point = torch.where((R - a).abs() < R.abs(), -a, zero)  # a > 0: s ∈ {−a, 0}
            interval = torch.minimum(torch.clamp(-R, min=0.0), (-a).clamp(min=0.0))  # a < 0: s ∈ [0, −a]
            s_kink = torch.where(a > 0, two_point, torch.where(a < 0, interval, zero))
            out[("U", i)] = torch.where(at_kink, (R + s_kink).mul_(cfg.gamma), out[("U", i)])
    return out
