"""Hidden activations σ and the elementwise proximal problem of the U_i block.

The U_i subproblem of Algorithm 2 (MATH.md §3) reduces, entry by entry, to

    u* = argmin_u  ½(a − σ(u))² + (β/2)(u − m)²,

with a = V_i⁺, m = (γ W_i⁻Ṽ_{i-1}⁻ + α U_i⁻)/(γ + α) and β = (γ + α)/γ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bcd.reduction import over_samples, sq

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


def _ratio(r: Tensor, scale: Tensor) -> Tensor:
    return torch.where(scale > 0, r / scale.clamp_min(torch.finfo(scale.dtype).tiny), torch.zeros_like(r))


# entries per row block of the elementwise U residual on the CPU: 512 KB temporaries that stay in cache and
# are reused by malloc (whole-matrix temporaries cost a page fault per 4 KB here); on CUDA one block
CHUNK = 1 << 16


def u_block_residual(new: Tensor, a: Tensor, m: Tensor | None, beta: float, activation: str,
                     m_parts: tuple[Tensor, Tensor, float, float] | None = None) -> Tensor:
    """Relative exactness residual of the elementwise U_i update (verification/recorder.py explains the scale).

    Per entry f(u) = ½(a − σ(u))² + (β/2)(u − m)²; residual = ‖(1+β)·dist(u_new, argmin f)‖ divided by
    ‖a‖ + ‖σ(u_new)‖ + β‖u_new‖ + β‖m‖.  The minimisers are computed here, independently of the
    engine's prox: ReLU has the two candidates u₊ = max((a+βm)/(1+β), 0) (where σ(u₊) = u₊) and
    u₋ = min(m, 0) (where σ(u₋) = 0 and u₋ − m = −max(m, 0)); both count at a tie up to rounding.
    ``m_parts = (P, U⁻, γ, α)`` gives m = (γP + αU⁻)/(γ + α) without materialising it.  Evaluated in
    row blocks of about ``CHUNK`` entries on the CPU so that the temporaries stay small.  The arguments are
    n-sized (samples as columns): the five squared sums pass through :func:`bcd.reduction.over_samples`."""
    if activation not in ("relu", "identity"):
        raise ValueError(f"activation={activation!r} has no U-block residual; allowed: relu, identity")
    chunk = CHUNK if new.device.type == "cpu" else new.numel()
    rows = max(1, chunk // max(1, new.shape[-1]))
    sums = torch.zeros(5, dtype=new.dtype, device=new.device)  # Σr², Σa², Σσ(u)², Σu², Σm²
    for r0 in range(0, new.shape[0], rows):
        sl = slice(r0, r0 + rows)
        if m_parts is not None:
            P, U_old, g, al = m_parts
            mc = U_old[sl].mul(al / (g + al)).add_(P[sl], alpha=g / (g + al))
        else:
            mc = m[sl]
        sums += _u_residual_sums(new[sl], a[sl], mc, beta, activation)
    r, a_n, s_n, u_n, m_n = over_samples(sums).sqrt().unbind()  # local squared sums, reduced over samples
    return _ratio(r, a_n + s_n + beta * (u_n + m_n))


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
        tie = torch.add(f_plus, f_minus).mul_(64 * torch.finfo(new.dtype).eps)
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


@dataclass(frozen=True)
class Activation:
    """σ, its elementwise prox (``prox_`` overwrites its ``m`` argument with the result) and
    its Lipschitz constant on bounded sets (L_B)."""

    name: str
    apply: Callable[[Tensor], Tensor]
    prox: Callable[[Tensor, Tensor, float], Tensor]
    prox_: Callable[[Tensor, Tensor, float], Tensor]
    lipschitz: float


ACTIVATION_TABLE: dict[str, Activation] = {
    "relu": Activation("relu", torch.relu, relu_prox, relu_prox_, 1.0),
    "identity": Activation("identity", lambda u: u, identity_prox, identity_prox_, 1.0),
}


def get_activation(name: str) -> Activation:
    try:
        return ACTIVATION_TABLE[name]
    except KeyError:
        raise ValueError(f"activation={name!r} is not supported; allowed: {', '.join(ACTIVATION_TABLE)}") from None
