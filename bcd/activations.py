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
