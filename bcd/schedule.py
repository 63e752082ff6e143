"""A BCD variant is an ordered schedule of block steps.

Each :class:`Step` names the block it updates (``"V"``, ``"U"``, ``"W"`` and the paper's layer
index i) and a pure function ``update(state, problem, i, aux) -> new block``.  When ``aux`` is a
dict, intermediate products the step computed anyway (``P`` = W̃_i⁻Ṽ_{i-1}⁻, the Gram ṼṼᵀ and
``cross`` = U_i⁺Ṽ_{i-1}⁻ᵀ of a W step) are
published in it so that instrumentation can reuse them; when it is ``None`` (no hook listens)
the step may reuse their storage instead.  New variants (two-splitting,
ResNet) are new schedules; the sweep loop in :mod:`bcd.engine` is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bcd.blocks import (
    affine,
    augmented_cross,
    augmented_gram,
    update_U_hidden,
    update_U_N,
    update_V_hidden,
    update_V_N,
    update_V_N_prox_linear,
    update_W,
)
from bcd.problem import BCDState, Problem

Tensor = torch.Tensor
Update = Callable[[BCDState, Problem, int, dict | None], Tensor]


@dataclass(frozen=True)
class Step:
    block: str
    layer: int
    update: Update

    @property
    def name(self) -> str:
        return f"{self.block}{self.layer}"


def step_V_N(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    cfg = problem.config
    if cfg.vn_update == "prox_linear":
        grad_R = (state.V[i] - problem.Y).mul_(problem.c)  # ∇R for the squared loss
        return update_V_N_prox_linear(state.V[i], state.U[i], grad_R, gamma=cfg.gamma, alpha=cfg.alpha)
    return update_V_N(state.V[i], state.U[i], problem.Y, gamma=cfg.gamma, alpha=cfg.alpha, c=problem.c)


def step_U_N(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    P = affine(state.W[i], state.V[i - 1])
    if aux is not None:
        aux["P"] = P
    return update_U_N(state.V[i], P, overwrite_P=aux is None)


def step_W(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    cfg = problem.config
    G = problem.gram_X if i == 1 else augmented_gram(state.V[i - 1])
    C = augmented_cross(state.U[i], state.V[i - 1])
    if aux is not None:
        aux["gram"], aux["cross"] = G, C
    return update_W(
        state.W[i], state.U[i], state.V[i - 1], gamma=cfg.gamma, alpha=cfg.alpha, lam=cfg.lam, gram=G, cross=C
    )


def step_V_hidden(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    S = problem.activation.apply(state.U[i])
    return update_V_hidden(S, state.W[i + 1], state.U[i + 1], overwrite_S=S is not state.U[i])


def step_U_hidden(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    cfg = problem.config
    P = affine(state.W[i], state.V[i - 1])
    if aux is not None:
        aux["P"] = P
    return update_U_hidden(
        state.V[i], P, state.U[i], gamma=cfg.gamma, alpha=cfg.alpha, activation=problem.activation,
        overwrite_P=aux is None,
    )


def three_splitting(N: int) -> tuple[Step, ...]:
    """Algorithm 2: V_N, U_N, W_N, then V_i, U_i, W_i for i = N−1, …, 1 (backward Gauss–Seidel)."""
    steps = [Step("V", N, step_V_N), Step("U", N, step_U_N), Step("W", N, step_W)]
    for i in range(N - 1, 0, -1):
        steps += [Step("V", i, step_V_hidden), Step("U", i, step_U_hidden), Step("W", i, step_W)]
    return tuple(steps)


SCHEDULES: dict[str, Callable[[int], tuple[Step, ...]]] = {"three": three_splitting}


def schedule_for(splitting: str, N: int) -> tuple[Step, ...]:
    try:
        return SCHEDULES[splitting](N)
    except KeyError:
        raise ValueError(f"splitting={splitting!r} is not supported; allowed: {', '.join(SCHEDULES)}") from None
