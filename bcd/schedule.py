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


def v_target(state: BCDState, problem: Problem, i: int) -> Tensor:
    """T_i = σ_i(U_i) + τ_iV_{i-1}: what V_i is pulled towards by its act term (σ(U_i) without a skip).

    May return ``state.U[i]`` itself (σ_N = Id, no skip): callers never write into it."""
    S = problem.sigma(i, state.U[i])
    return S + state.V[i - 1] if problem.tau[i] else S


def step_V_N(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """V_N⁺ = argmin_V R(V) + γ/2‖V − T_N⁻‖² + α/2‖V − V_N⁻‖², T_N = U_N (+ V_{N-1} with a skip);
    or its prox-linear form (Theorem 2) with R linearised at V_N⁻."""
    cfg = problem.config
    T = v_target(state, problem, i)
    if cfg.vn_update == "prox_linear":
        grad_R = (state.V[i] - problem.Y).mul_(problem.c)  # ∇R for the squared loss
        return update_V_N_prox_linear(state.V[i], T, grad_R, gamma=cfg.gamma, alpha=cfg.alpha)
    return update_V_N(state.V[i], T, problem.Y, gamma=cfg.gamma, alpha=cfg.alpha, c=problem.c)


def step_U_N(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """U_N⁺ = (a_N + W̃_N⁻Ṽ_{N-1}⁻)/2 with a_N = V_N⁺ − τ_NV_{N-1}⁻ (:meth:`Problem.u_target`; no proximal term)."""
    P = affine(state.W[i], state.V[i - 1])
    if aux is not None:
        aux["P"] = P
    return update_U_N(problem.u_target(state, i), P, overwrite_P=aux is None)


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
    """V_i (i < N): the linear solve of :func:`bcd.blocks.update_V_hidden`; with skips (MATH.md §8)
    S' = τ_iV_{i-1}⁻ + σ(U_i⁻) + τ_{i+1}(V_{i+1}⁺ − σ_{i+1}(U_{i+1}⁺)) and ρ = 1 + τ_{i+1}."""
    S = v_target(state, problem, i)
    fresh = S is not state.U[i]
    if problem.tau[i + 1]:
        S = S.add(state.V[i + 1]).sub_(problem.sigma(i + 1, state.U[i + 1]))
        fresh = True
    rho = 1.0 + problem.tau[i + 1]
    return update_V_hidden(S, state.W[i + 1], state.U[i + 1], rho=rho, overwrite_S=fresh)


def step_U_hidden(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """U_i (i < N): the elementwise prox of σ with target a_i = V_i⁺ − τ_iV_{i-1}⁻."""
    cfg = problem.config
    P = affine(state.W[i], state.V[i - 1])
    if aux is not None:
        aux["P"] = P
    return update_U_hidden(
        problem.u_target(state, i), P, state.U[i], gamma=cfg.gamma, alpha=cfg.alpha,
        activation=problem.activation, overwrite_P=aux is None,
    )


def three_splitting(N: int) -> tuple[Step, ...]:
    """Algorithm 2: V_N, U_N, W_N, then V_i, U_i, W_i for i = N−1, …, 1 (backward Gauss–Seidel).

    The same steps run Algorithm 3 (ResNet): they read the skips τ from the problem."""
    steps = [Step("V", N, step_V_N), Step("U", N, step_U_N), Step("W", N, step_W)]
    for i in range(N - 1, 0, -1):
        steps += [Step("V", i, step_V_hidden), Step("U", i, step_U_hidden), Step("W", i, step_W)]
    return tuple(steps)


# ------------------------------------------------------------------ Algorithm 1 (two-splitting, MATH.md §7)


def step2_V_N(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """V_N⁺ = argmin_V R(V) + γ/2‖V − W̃_N⁻Ṽ_{N-1}⁻‖² + α/2‖V − V_N⁻‖²: the three-splitting's closed form with
    U_N replaced by the product P = W̃_N⁻Ṽ_{N-1}⁻ (or its prox-linear form)."""
    cfg = problem.config
    P = affine(state.W[i], state.V[i - 1])
    if cfg.vn_update == "prox_linear":
        grad_R = (state.V[i] - problem.Y).mul_(problem.c)
        return update_V_N_prox_linear(state.V[i], P, grad_R, gamma=cfg.gamma, alpha=cfg.alpha)
    return update_V_N(state.V[i], P, problem.Y, gamma=cfg.gamma, alpha=cfg.alpha, c=problem.c)


def step2_W(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """W̃_i⁺ = argmin_W r_i(W) + γ/2‖V_i⁺ − σ_i(WṼ_{i-1}⁻)‖² + α/2‖W − W̃_i⁻‖².

    σ_i = Id (always for i = N): the ridge solve of Algorithm 2 with U_i replaced by V_i⁺.  Otherwise nonconvex:
    the monotone inner solver of :mod:`bcd.inner`, started at W̃_i⁻ (its record goes to ``aux["inner"]``)."""
    cfg = problem.config
    if i == cfg.N or cfg.activation == "identity":
        G = problem.gram_X if i == 1 else augmented_gram(state.V[i - 1])
        return update_W(state.W[i], state.V[i], state.V[i - 1], gamma=cfg.gamma, alpha=cfg.alpha, lam=cfg.lam,
                        gram=G)
    from bcd.inner import solve_W

    new, info = solve_W(state.V[i], state.V[i - 1], state.W[i], gamma=cfg.gamma, alpha=cfg.alpha, lam=cfg.lam,
                        activation=cfg.activation, eta=cfg.eta, max_iter=cfg.inner_max_iter)
    if aux is not None:
        aux["inner"] = info
    return new


def step2_V_hidden(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """V_i⁺ = argmin_V s_i(V) + γ/2‖V − σ_i(W̃_i⁻Ṽ_{i-1}⁻)‖² + γ/2‖V_{i+1}⁺ − σ_{i+1}(W̃_{i+1}⁺Ṽ)‖² + α/2‖V − V_i⁻‖².

    σ_{i+1} = Id (i = N−1, or identity activations): ((1 + α/γ)I + ŴᵀŴ)V = S + (α/γ)V_i⁻ + Ŵᵀ(V_{i+1}⁺ − b1ᵀ) with
    S = σ_i(W̃_i⁻Ṽ_{i-1}⁻), the linear solve of :func:`bcd.blocks.update_V_hidden` with ρ = 1 + α/γ.  Otherwise
    nonconvex and column-separable: the monotone inner solver of :mod:`bcd.inner`, started at V_i⁻."""
    cfg = problem.config
    S = problem.sigma(i, affine(state.W[i], state.V[i - 1]))
    if i + 1 == cfg.N or cfg.activation == "identity":
        S = S.add_(state.V[i], alpha=cfg.alpha / cfg.gamma)
        return update_V_hidden(S, state.W[i + 1], state.V[i + 1], rho=1.0 + cfg.alpha / cfg.gamma, overwrite_S=True)
    from bcd.inner import solve_V

    new, info = solve_V(S, state.V[i + 1], state.W[i + 1], state.V[i], gamma=cfg.gamma, alpha=cfg.alpha,
                        activation=cfg.activation, eta=cfg.eta, max_iter=cfg.inner_max_iter)
    if aux is not None:
        aux["inner"] = info
    return new


def two_splitting(N: int) -> tuple[Step, ...]:
    """Algorithm 1: V_N, W_N, then V_i, W_i for i = N−1, …, 1 (backward Gauss–Seidel, a proximal term on every
    block)."""
    steps = [Step("V", N, step2_V_N), Step("W", N, step2_W)]
    for i in range(N - 1, 0, -1):
        steps += [Step("V", i, step2_V_hidden), Step("W", i, step2_W)]
    return tuple(steps)


SCHEDULES: dict[str, Callable[[int], tuple[Step, ...]]] = {"three": three_splitting, "two": two_splitting}


def schedule_for(splitting: str, N: int) -> tuple[Step, ...]:
    try:
        return SCHEDULES[splitting](N)
    except KeyError:
        raise ValueError(f"splitting={splitting!r} is not supported; allowed: {', '.join(SCHEDULES)}") from None
