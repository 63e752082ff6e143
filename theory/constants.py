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
