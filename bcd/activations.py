"""Hidden activations σ and the elementwise proximal problem of the U_i block.

The U_i subproblem of Algorithm 2 (MATH.md §3) reduces, entry by entry, to

    u* = argmin_u  ½(a − σ(u))² + (β/2)(u − m)²,

with a = V_i⁺, m = (γ W_i⁻Ṽ_{i-1}⁻ + α U_i⁻)/(γ + α) and β = (γ + α)/γ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


def relu_prox(a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Exact minimiser of ½(a − max(u,0))² + (β/2)(u − m)², elementwise.

    Candidates: u₊ = max((a+βm)/(1+β), 0) (branch u ≥ 0) and u₋ = min(m, 0) (branch u ≤ 0).
    With t = a + βm:  t < 0 → u₋ is optimal (u₊ = 0 lies in the u ≤ 0 branch too);
    t ≥ 0 and m ≥ 0 → u₊ (u₋ = 0 lies in the u ≥ 0 branch);  t ≥ 0 and m < 0 → compare
    f(u₊) = β(a−m)²/(2(1+β)) with f(u₋) = a²/2, taking u₊ at a tie.
    """
    t = torch.add(a, m, alpha=beta)
    d = a - m
    keep_plus = torch.le(d.mul_(d).mul_(beta), a.square().mul_(1.0 + beta))
    keep_plus.logical_or_(m >= 0)
    u = torch.where(keep_plus, t / (1.0 + beta), m)
    return torch.where(t < 0, m.clamp(max=0.0), u)


def identity_prox(a: Tensor, m: Tensor, beta: float) -> Tensor:
    """Minimiser of ½(a − u)² + (β/2)(u − m)²: u = (a + βm)/(1 + β)."""
    return torch.add(a, m, alpha=beta).div_(1.0 + beta)


@dataclass(frozen=True)
class Activation:
    """σ together with its elementwise prox and its Lipschitz constant on bounded sets (L_B)."""

    name: str
    apply: Callable[[Tensor], Tensor]
    prox: Callable[[Tensor, Tensor, float], Tensor]
    lipschitz: float


ACTIVATION_TABLE: dict[str, Activation] = {
    "relu": Activation("relu", torch.relu, relu_prox, 1.0),
    "identity": Activation("identity", lambda u: u, identity_prox, 1.0),
}


def get_activation(name: str) -> Activation:
    try:
        return ACTIVATION_TABLE[name]
    except KeyError:
        raise ValueError(f"activation={name!r} is not supported; allowed: {', '.join(ACTIVATION_TABLE)}") from None
