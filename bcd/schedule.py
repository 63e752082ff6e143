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

from bcd import inner
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
from bcd.prox_solvers import solve_V_nonconvex, solve_V_prox, solve_W_nonconvex, solve_W_prox

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


def v_target(state: BCDState, problem: Problem, i: int, out: Tensor | None = None) -> Tensor:
    """T_i = σ_i(U_i) + τ_iV_{i-1}: what V_i is pulled towards by its act term (σ(U_i) without a skip), written
    into ``out`` when given.

    Without ``out`` it may return ``state.U[i]`` itself (σ_N = Id, no skip): callers never write into it."""
    S = problem.sigma(i, state.U[i], out=out)
    if not problem.tau[i]:
        return S
    return S.add_(state.V[i - 1]) if out is not None else S + state.V[i - 1]


def output_step(V_N: Tensor, T: Tensor, problem: Problem) -> Tensor:
    """V_N⁺ = argmin_V R(V) + s_N(V) + γ/2‖V − T‖² + α/2‖V − V_N⁻‖² (T = U_N⁻ (+ V_{N-1}⁻ with a skip) in
    Algorithms 2–3, the product W̃_N⁻Ṽ_{N-1}⁻ in Algorithm 1), by the records of :mod:`bcd.catalogue`:

    * ``prox``: squared loss: the closed form (cY + γT + αV⁻)/(c + γ + α), then s_N's prox with t = 1/(c + γ + α)
      (the subproblem is an isotropic quadratic plus s_N); other losses (s_N = 0): R's prox at the weighted centre
      z = (γT + αV⁻)/(γ + α) with t = 1/(γ + α);
    * ``prox_linear`` (Theorem 2): R linearised at V_N⁻, then s_N's prox:
      prox_{s_N/(α+γ)}((αV⁻ − ∇R(V⁻) + γT)/(α + γ))."""
    cfg = problem.config
    s_N = problem.s[cfg.N]
    if cfg.vn_update == "prox_linear":
        grad_R = problem.loss.grad(V_N, problem.Y, problem.c)
        out = update_V_N_prox_linear(V_N, T, grad_R, gamma=cfg.gamma, alpha=cfg.alpha)
        return out if s_N.is_zero else s_N.prox(out, 1.0 / (cfg.alpha + cfg.gamma))
    if problem.loss.name == "squared":
        out = update_V_N(V_N, T, problem.Y, gamma=cfg.gamma, alpha=cfg.alpha, c=problem.c)
        return out if s_N.is_zero else s_N.prox(out, 1.0 / (problem.c + cfg.gamma + cfg.alpha))
    z = torch.add(V_N, T, alpha=cfg.gamma / cfg.alpha).mul_(cfg.alpha / (cfg.gamma + cfg.alpha))
    return problem.loss.prox(z, 1.0 / (cfg.gamma + cfg.alpha), problem.Y, problem.c)


def step_V_N(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """V_N⁺ = argmin_V R(V) + s_N(V) + γ/2‖V − T_N⁻‖² + α/2‖V − V_N⁻‖², T_N = U_N (+ V_{N-1} with a skip);
    or its prox-linear form (Theorem 2) with R linearised at V_N⁻ (:func:`output_step`)."""
    return output_step(state.V[i], v_target(state, problem, i), problem)


def step_U_N(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """U_N⁺ = (a_N + W̃_N⁻Ṽ_{N-1}⁻)/2 with a_N = V_N⁺ − τ_NV_{N-1}⁻ (:meth:`Problem.u_target`; no proximal term)."""
    P = affine(state.W[i], state.V[i - 1])
    if aux is not None:
        aux["P"] = P
    return update_U_N(problem.u_target(state, i), P, overwrite_P=aux is None)


def weight_step(W: Tensor, gram: Tensor, cross: Tensor, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """W̃_i⁺ = argmin_W r_i(W) + γ/2‖T − WṼ⁻‖² + α/2‖W − W̃_i⁻‖² from ṼṼᵀ (``gram``) and TṼᵀ (``cross``), T = U_i⁺
    (Algorithms 2–3) or V_i⁺ (Algorithm 1 with σ_i = Id).  A ridge r_i = λ/2‖·‖² (the bias included or not): the
    Cholesky solve of :func:`bcd.blocks.update_W`; any other r_i: monotone FISTA under MATH.md §7's rule
    (:func:`bcd.prox_solvers.solve_W_prox`; its record goes to ``aux["inner"]``)."""
    cfg, r = problem.config, problem.r[i]
    if r.ridge is not None:
        lam = r.ridge if cfg.reg_bias else torch.full((W.shape[1],), r.ridge, dtype=W.dtype, device=W.device)
        if not cfg.reg_bias:
            lam[-1] = 0.0
        return update_W(W, None, None, gamma=cfg.gamma, alpha=cfg.alpha, lam=lam, gram=gram, cross=cross)
    new, info = solve_W_prox(W, gram, cross, gamma=cfg.gamma, alpha=cfg.alpha, reg=r, reg_bias=cfg.reg_bias,
                             eta=cfg.eta, max_iter=cfg.inner_max_iter)
    if aux is not None:
        aux["inner"] = info
    return new


def step_W(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """W̃_i⁺ from U_i⁺ and Ṽ_{i-1}⁻ (:func:`weight_step`); ṼṼᵀ and UṼᵀ are published for the recorder."""
    G = problem.gram_X if i == 1 else augmented_gram(state.V[i - 1])
    C = augmented_cross(state.U[i], state.V[i - 1])
    if aux is not None:
        aux["gram"], aux["cross"] = G, C
    return weight_step(state.W[i], G, C, problem, i, aux)


def step_V_hidden(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """V_i (i < N): the linear solve of :func:`bcd.blocks.update_V_hidden`; with skips (MATH.md §8)
    S' = τ_iV_{i-1}⁻ + σ(U_i⁻) + τ_{i+1}(V_{i+1}⁺ − σ_{i+1}(U_{i+1}⁺)) and ρ = 1 + τ_{i+1}.

    With no hook listening and s_i = 0, S' is built in V_i⁻'s storage and solved there (nothing after this step reads
    V_i⁻, and nothing before it needs it: the subproblem has no proximal term): no full-size allocation.  Otherwise
    in storage recycled by the problem's pool when it has some (:mod:`bcd.buffers`; filled only while hooks listen)."""
    V = state.V[i]
    reuse = aux is None and problem.s[i].is_zero
    S = v_target(state, problem, i, out=V if reuse else problem.pool.take(V.shape, V))
    fresh = S is not state.U[i]
    if problem.tau[i + 1]:
        S = S.add(state.V[i + 1]).sub_(problem.sigma(i + 1, state.U[i + 1]))
        fresh = True
    rho = 1.0 + problem.tau[i + 1]
    return hidden_V_step(S, state.W[i + 1], state.U[i + 1], state.V[i], rho, problem, i, aux, overwrite_S=fresh)


def hidden_V_step(S: Tensor, W_next: Tensor, T_next: Tensor, V_old: Tensor, rho: float, problem: Problem, i: int,
                  aux: dict | None, *, overwrite_S: bool = False) -> Tensor:
    """V_i⁺ = argmin_V s_i(V) + γ/2⟨V, (ρI + ŴᵀŴ)V⟩ − γ⟨V, R⟩, R = S' + Ŵᵀ(T − b1ᵀ), [Ŵ b] = W̃_{i+1}⁺ and T = U_{i+1}⁺
    (Algorithms 2–3) or V_{i+1}⁺ (Algorithm 1 with σ_{i+1} = Id).  s_i = 0: the linear solve of
    :func:`bcd.blocks.update_V_hidden`; otherwise monotone FISTA started from the prox of that solve
    (:func:`bcd.prox_solvers.solve_V_prox`; its record goes to ``aux["inner"]``)."""
    s_i = problem.s[i]
    if s_i.is_zero:
        return update_V_hidden(S, W_next, T_next, rho=rho, overwrite_S=overwrite_S)
    cfg = problem.config
    rhs = torch.addmm(S, W_next[:, :-1].T, T_next - W_next[:, -1:])
    closed = update_V_hidden(S, W_next, T_next, rho=rho)
    new, info = solve_V_prox(V_old, rhs, W_next, gamma=cfg.gamma, rho=rho, reg=s_i, eta=cfg.eta,
                             max_iter=cfg.inner_max_iter, closed_form=closed)
    if aux is not None:
        aux["inner"] = info
    return new


def step_U_hidden(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """U_i (i < N): the elementwise prox of σ with target a_i = V_i⁺ − τ_iV_{i-1}⁻.

    With no hook listening, P = W̃_i⁻Ṽ_{i-1}⁻ goes to the problem's scratch buffer and U_i⁺ into U_i⁻'s storage (read
    chunk by chunk before it is overwritten; nothing later reads U_i⁻); with a hook, P is published as ``aux["P"]``
    and left intact, and both P and U_i⁺ go to storage recycled by the problem's pool when it has some
    (:mod:`bcd.buffers`; otherwise new tensors).  Every path does the same arithmetic (tests/test_engine_descent.py
    checks the bits)."""
    cfg = problem.config
    U = state.U[i]
    pool = problem.pool
    quiet = aux is None and U.is_contiguous()  # a user-built state may hold a strided U_i: then a fresh block
    P = affine(state.W[i], state.V[i - 1], out=problem.scratch(*U.shape) if quiet else pool.take(U.shape, U))
    if aux is not None:
        aux["P"] = P
    return update_U_hidden(problem.u_target(state, i), P, U, gamma=cfg.gamma, alpha=cfg.alpha,
                           activation=problem.activation, overwrite_P=aux is None,
                           out=U if quiet else pool.take(U.shape, U))


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
    return output_step(state.V[i], affine(state.W[i], state.V[i - 1]), problem)


def step2_W(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """W̃_i⁺ = argmin_W r_i(W) + γ/2‖V_i⁺ − σ_i(WṼ_{i-1}⁻)‖² + α/2‖W − W̃_i⁻‖².

    σ_i = Id (always for i = N): Algorithm 2's W step with U_i replaced by V_i⁺ (:func:`weight_step`).  Otherwise
    nonconvex, started at W̃_i⁻ (the record goes to ``aux["inner"]``): ReLU with a ridge r_i on the whole W̃_i takes
    the piecewise Newton solver of :mod:`bcd.inner` (:func:`bcd.inner.applies`), every other σ and r_i the monotone
    proximal gradient of :func:`bcd.prox_solvers.solve_W_nonconvex`."""
    cfg = problem.config
    G = problem.gram_X if i == 1 else augmented_gram(state.V[i - 1])
    if i == cfg.N or cfg.activation == "identity":
        return weight_step(state.W[i], G, augmented_cross(state.V[i], state.V[i - 1]), problem, i, aux)
    if inner.applies(cfg, "W", i):
        new, info = inner.solve_W(state.V[i], state.V[i - 1], state.W[i], gamma=cfg.gamma, alpha=cfg.alpha,
                                  lam=problem.r[i].ridge, activation=cfg.activation, eta=cfg.eta,
                                  max_iter=cfg.inner_max_iter)
    else:
        new, info = solve_W_nonconvex(state.V[i], state.V[i - 1], state.W[i], act=problem.activation,
                                      gamma=cfg.gamma, alpha=cfg.alpha, reg=problem.r[i], reg_bias=cfg.reg_bias,
                                      eta=cfg.eta, max_iter=cfg.inner_max_iter, gram=G)
    if aux is not None:
        aux["inner"] = info
    return new


def step2_V_hidden(state: BCDState, problem: Problem, i: int, aux: dict | None) -> Tensor:
    """V_i⁺ = argmin_V s_i(V) + γ/2‖V − σ_i(W̃_i⁻Ṽ_{i-1}⁻)‖² + γ/2‖V_{i+1}⁺ − σ_{i+1}(W̃_{i+1}⁺Ṽ)‖² + α/2‖V − V_i⁻‖².

    σ_{i+1} = Id (i = N−1, or identity activations): ((1 + α/γ)I + ŴᵀŴ)V = S + (α/γ)V_i⁻ + Ŵᵀ(V_{i+1}⁺ − b1ᵀ) with
    S = σ_i(W̃_i⁻Ṽ_{i-1}⁻), the linear solve of :func:`bcd.blocks.update_V_hidden` with ρ = 1 + α/γ.  Otherwise
    nonconvex and column-separable, started at V_i⁻: ReLU with s_i = 0 takes the piecewise Newton solver of
    :mod:`bcd.inner`, every other σ and s_i the monotone proximal gradient of
    :func:`bcd.prox_solvers.solve_V_nonconvex`."""
    cfg = problem.config
    S = problem.sigma(i, affine(state.W[i], state.V[i - 1]))
    if i + 1 == cfg.N or cfg.activation == "identity":
        S = S.add_(state.V[i], alpha=cfg.alpha / cfg.gamma)
        return hidden_V_step(S, state.W[i + 1], state.V[i + 1], state.V[i], 1.0 + cfg.alpha / cfg.gamma, problem, i,
                             aux, overwrite_S=True)
    if inner.applies(cfg, "V", i):
        new, info = inner.solve_V(S, state.V[i + 1], state.W[i + 1], state.V[i], gamma=cfg.gamma, alpha=cfg.alpha,
                                  activation=cfg.activation, eta=cfg.eta, max_iter=cfg.inner_max_iter)
    else:
        new, info = solve_V_nonconvex(S, state.V[i + 1], state.W[i + 1], state.V[i], act=problem.activation,
                                      gamma=cfg.gamma, alpha=cfg.alpha, reg=problem.s[i], eta=cfg.eta,
                                      max_iter=cfg.inner_max_iter)
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
