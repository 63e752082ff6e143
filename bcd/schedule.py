"""A BCD variant is an ordered schedule of block steps.

Each :class:`Step` names the block it updates (``"V"``, ``"U"``, ``"W"`` and the paper's layer
index i) and a pure function ``update(state, problem, i, aux) -> new block``.  Intermediate
products the step computed anyway (``P`` = W̃_i⁻Ṽ_{i-1}⁻, the Gram ṼṼᵀ) are published in ``aux``
so that instrumentation can reuse them instead of recomputing.  New variants (two-splitting,
ResNet) are new schedules; the sweep loop in :mod:`bcd.engine` is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bcd.blocks import (
    affine,
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
Update = Callable[[BCDState, Problem, int, dict], Tensor]


@dataclass(frozen=True)
class Step:
    block: str
    layer: int
    update: Update

    @property
    def name(self) -> str:
        return f"{self.block}{self.layer}"


def step_V_N(state: BCDState, problem: Problem, i: int, aux: dict) -> Tensor:
    cfg = problem.config
    if cfg.vn_update == "prox_linear":
        grad_R = (state.V[i] - problem.Y).mul_(problem.c)  # ∇R for the squared loss
        return update_V_N_prox_linear(state.V[i], state.U[i], grad_R, gamma=cfg.gamma, alpha=cfg.alpha)
    return update_V_N(state.V[i], state.U[i], problem.Y, gamma=cfg.gamma, alpha=cfg.alpha, c=problem.c)


def step_U_N(state: BCDState, problem: Problem, i: int, aux: dict) -> Tensor:
    aux["P"] = P = affine(state.W[i], state.V[i - 1])
    return update_U_N(state.V[i], P)


def step_W(state: BCDState, problem: Problem, i: int, aux: dict) -> Tensor:
    cfg = problem.config
    aux["gram"] = G = problem.gram_X if i == 1 else augmented_gram(state.V[i - 1])
    return update_W(state.W[i], state.U[i], state.V[i - 1], gamma=cfg.gamma, alpha=cfg.alpha, lam=cfg.lam, gram=G)


def step_V_hidden(state: BCDState, problem: Problem, i: int, aux: dict) -> Tensor:
    return update_V_hidden(problem.sigma(i, state.U[i]), state.W[i + 1], state.U[i + 1])


def step_U_hidden(state: BCDState, problem: Problem, i: int, aux: dict) -> Tensor:
    cfg = problem.config
    aux["P"] = P = affine(state.W[i], state.V[i - 1])
    return update_U_hidden(state.V[i], P, state.U[i], gamma=cfg.gamma, alpha=cfg.alpha, activation=problem.activation)


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
