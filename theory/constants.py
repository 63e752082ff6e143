"""The constants of the convergence theory as plain numeric functions (MATH.md §4).

These are the numbers the checks compare against.  :mod:`theory.symbolic` holds the same
constants as sympy expressions and tests that both agree; nothing here imports sympy, so the
engine and the checks stay light.
"""

from __future__ import annotations

import math

# Claim identifiers shared by theory/, verification/ and reports/.
MONOTONE = "monotone_descent"
SUFFICIENT_DESCENT = "sufficient_descent"
RELATIVE_ERROR = "relative_error"
RATE = "rate"
CONVERGENCE = "convergence"
KL_EXPONENT = "kl_exponent"
BLOCK_EXACTNESS = "block_exactness"
GLOBAL_MINIMUM = "global_minimum"
CLAIM_IDS = (MONOTONE, SUFFICIENT_DESCENT, RELATIVE_ERROR, RATE, CONVERGENCE, KL_EXPONENT, BLOCK_EXACTNESS)


def sufficient_descent_constant(gamma: float, alpha: float) -> float:
    """a = min(α, γ)/2: L̄(Q^{k−1}) − L̄(Q^k) ≥ a‖ΔQ^k‖² (three-splitting, Algorithm 2)."""
    return min(alpha, gamma) / 2.0


def block_descent_constant(block: str, layer: int, N: int, gamma: float, alpha: float) -> float:
    """Per-block decrease constant c_blk: the update of this block lowers L̄ by ≥ c_blk‖Δ‖² (MATH.md §4.1).

    V_N, W_i, U_i (i<N): α/2 (proximal term);  U_N: γ (γ-strongly convex, 2γ/2);  V_i (i<N): γ/2."""
    if block == "W" or (block == "V" and layer == N) or (block == "U" and layer < N):
        return alpha / 2.0
    if block == "U":
        return gamma
    if block == "V":
        return gamma / 2.0
    raise ValueError(f"block={block!r} is not a block of the three-splitting objective; allowed: W, V, U")


def delta(gamma: float, alpha: float, B: float, L_B: float = 1.0) -> float:
    """δ = max{γ, α + γB, α + γL_B, 2γB + 2γB²}."""
    return max(gamma, alpha + gamma * B, alpha + gamma * L_B, 2 * gamma * B + 2 * gamma * B * B)


def relative_error_constant(gamma: float, alpha: float, B: float, N: int, L_B: float = 1.0) -> float:
    """b = δ√(3N): there is g^k ∈ ∂L̄(Q^k) with ‖g^k‖ ≤ b‖ΔQ^k‖ (loose upper bound)."""
    return delta(gamma, alpha, B, L_B) * math.sqrt(3 * N)


def rate_constant(a: float, b: float, L0: float, L_star: float) -> float:
    """C = b²(L̄(Q⁰) − L̄*)/a: (1/T)Σ_{k≤T}‖g^k‖² ≤ C/T."""
    return b * b * max(L0 - L_star, 0.0) / a


def prox_linear_alpha_bound(L_R: float, gamma: float) -> float:
    """Derived condition for the prox-linear V_N step as implemented: α > (L_R − γ)/2
    (block decrease ≥ ((2α + γ − L_R)/2)‖ΔV_N‖²).  The seeds state α > max{0, (L_R − 1)/2};
    the two agree at γ = 1."""
    return max(0.0, (L_R - gamma) / 2.0)


# ----------------------------------------------------------------------------- extensions (Theorem 2, L_R)


def loss_lipschitz_constant(reduction: str, n: int | None = None) -> float:
    """L_R (Lipschitz constant of ∇R) for R = (c/2)‖V − Y‖²: c = 1 ("sum") or 1/n ("mean").

    With ``reduction="mean"`` and n unknown, returns the upper bound 1 (every constant below is
    monotone in L_R, so this is conservative)."""
    if reduction == "sum":
        return 1.0
    if reduction == "mean":
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ValueError(f"n={n!r} is not allowed; n must be an integer >= 1")
        return 1.0 if n is None else 1.0 / n
    raise ValueError(f"reduction={reduction!r} is not supported; allowed: sum, mean")


def prox_linear_block_constant(gamma: float, alpha: float, L_R: float) -> float:
    """V_N block decrease constant of the prox-linear step (Theorem 2, derived): (2α + γ − L_R)/2.

    Exact (equality) for a quadratic loss; negative when α ≤ (L_R − γ)/2 (L̄ may rise)."""
    return (2.0 * alpha + gamma - L_R) / 2.0


def sufficient_descent_constant_prox_linear(gamma: float, alpha: float, L_R: float) -> float:
    """a for Algorithm 2 with the prox-linear V_N step: min{α/2, γ/2, (2α + γ − L_R)/2}."""
    return min(sufficient_descent_constant(gamma, alpha), prox_linear_block_constant(gamma, alpha, L_R))


def seeds_prox_linear_alpha_bound(L_R: float) -> float:
    """The seeds' condition of Theorem 2: α > max{0, (L_R − 1)/2} (equals the derived one at γ = 1)."""
    return max(0.0, (L_R - 1.0) / 2.0)


def delta_prox_linear(gamma: float, alpha: float, B: float, L_R: float, L_B: float = 1.0) -> float:
    """δ for the prox-linear V_N step: max{δ, α + γ + L_R} (the V_N component of g^k gains
    ∇R(V_N⁺) − ∇R(V_N⁻), of norm ≤ L_R‖ΔV_N‖) [derived]."""
    return max(delta(gamma, alpha, B, L_B), alpha + gamma + L_R)


def relative_error_constant_prox_linear(
    gamma: float, alpha: float, B: float, N: int, L_R: float, L_B: float = 1.0
) -> float:
    """b = δ_pl√(3N) for the prox-linear V_N step."""
    return delta_prox_linear(gamma, alpha, B, L_R, L_B) * math.sqrt(3 * N)
