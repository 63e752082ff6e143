"""The three-splitting objective L̄ and each of its terms (MATH.md §2).

    L̄(W,V,U) = (c/2)‖V_N − Y‖² + Σ_i λ/2‖W̃_i‖²
               + γ/2 Σ_i ( ‖V_i − σ_i(U_i)‖² + ‖U_i − W̃_iṼ_{i-1}‖² ),   σ_N = Id.

Every term is logged, so the logged total is the Lyapunov function of the theory (the authors'
"total loss" omitted the ‖V_i − σ(U_i)‖² terms).  The term names below are the trace's column
names for them; :mod:`verification.schema` re-exports them.
"""

from __future__ import annotations

import torch

from bcd.blocks import affine
from bcd.problem import BCDState, Problem

Tensor = torch.Tensor

LOSS = "loss"
OBJECTIVE = "objective"


def act_term(i: int) -> str:
    """Column name of γ/2‖V_i − σ_i(U_i)‖²."""
    return f"act_gap_{i}"


def aff_term(i: int) -> str:
    """Column name of γ/2‖U_i − W̃_iṼ_{i-1}‖²."""
    return f"aff_gap_{i}"


def reg_term(i: int) -> str:
    """Column name of λ/2‖W̃_i‖²."""
    return f"reg_{i}"


def term_names(N: int, lam: float) -> list[str]:
    names = [LOSS]
    for i in range(1, N + 1):
        names += [act_term(i), aff_term(i)] + ([reg_term(i)] if lam > 0 else [])
    return names


def objective_terms(state: BCDState, problem: Problem, products: list[Tensor | None] | None = None) -> dict[str, float]:
    """Every term of L̄ at ``state`` plus their sum under ``"objective"`` (one host sync).

    ``products[i]`` may pass W̃_iṼ_{i-1} when the caller already has it."""
    cfg, N = problem.config, state.N
    g, lam = cfg.gamma, cfg.lam
    names, values = [LOSS], [0.5 * problem.c * _sq(state.V[N] - problem.Y)]
    for i in range(1, N + 1):
        P = products[i] if products is not None and products[i] is not None else affine(state.W[i], state.V[i - 1])
        names += [act_term(i), aff_term(i)]
        values += [0.5 * g * _sq(state.V[i] - problem.sigma(i, state.U[i])), 0.5 * g * _sq(state.U[i] - P)]
        if lam > 0:
            names.append(reg_term(i))
            values.append(0.5 * lam * _sq(state.W[i]))
    host = torch.stack(values).cpu().tolist()
    out = dict(zip(names, host, strict=False))
    out[OBJECTIVE] = float(sum(host))
    return out


def objective(state: BCDState, problem: Problem) -> float:
    """L̄(Q) as a Python float."""
    return objective_terms(state, problem)[OBJECTIVE]


def _sq(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t).square()


def predict(W: list[Tensor | None], X: Tensor, problem: Problem, chunk: int = 8192) -> Tensor:
    """Class predictions argmax(W̃_N σ(⋯σ(W̃_1 X̃))) — the forward pass, never V_N (MATH.md §1)."""
    N = len(W) - 1
    out = []
    for s in range(0, X.shape[1], chunk):
        h = X[:, s : s + chunk]
        for i in range(1, N + 1):
            h = affine(W[i], h)
            h = problem.sigma(i, h)
        out.append(h.argmax(dim=0))
    return torch.cat(out)


def accuracy(W: list[Tensor | None], X: Tensor, labels: Tensor, problem: Problem) -> float:
    return float((predict(W, X, problem) == labels).to(torch.float64).mean())
