"""The constants of the convergence theory as plain numeric functions (MATH.md §4).

These are the numbers the checks compare against.  :mod:`theory.symbolic` holds the same
constants as sympy expressions and tests that both agree; nothing here imports sympy, so the
engine and the checks stay light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


def sufficient_descent_constant(gamma: float, alpha: float, variant: str = "three") -> float:
    """a: L̄(Q^{k−1}) − L̄(Q^k) ≥ a‖ΔQ^k‖².  min(α, γ)/2 for the three-splitting (Algorithms 2 and 3);
    α/2 for the two-splitting (Algorithm 1: a proximal term on every block)."""
    return alpha / 2.0 if variant == "two" else min(alpha, gamma) / 2.0


def block_descent_constant(block: str, layer: int, N: int, gamma: float, alpha: float, *, tau_next: int = 0,
                           variant: str = "three") -> float:
    """Per-block decrease constant c_blk: the update of this block lowers L̄ by ≥ c_blk‖Δ‖² (MATH.md §4.1, §7, §8).

    Three-splitting / ResNet: V_N, W_i, U_i (i<N): α/2 (proximal term);  U_N: γ (γ-strongly convex, 2γ/2);
    V_i (i<N): γ(1 + τ_{i+1})/2 (τ_{i+1} = 1 when layer i+1 has a skip).  Two-splitting: α/2 for every block
    (a monotone inner solver guarantees only the proximal term's α/2, MATH.md §7 item 1)."""
    if block not in ("W", "V", "U") or (variant == "two" and block == "U"):
        allowed = "W, V" if variant == "two" else "W, V, U"
        raise ValueError(f"block={block!r} is not a block of the {variant!r} objective; allowed: {allowed}")
    if variant == "two":
        return alpha / 2.0
    if block == "W" or (block == "V" and layer == N) or (block == "U" and layer < N):
        return alpha / 2.0
    if block == "U":
        return gamma
    return gamma * (1 + tau_next) / 2.0


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


def sufficient_descent_constant_prox_linear(gamma: float, alpha: float, L_R: float, variant: str = "three") -> float:
    """a with the prox-linear V_N step: min{a of the variant, (2α + γ − L_R)/2}."""
    return min(sufficient_descent_constant(gamma, alpha, variant), prox_linear_block_constant(gamma, alpha, L_R))


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


# ----------------------------------------------------------------------------- one run's constants


class UnknownConstant(ValueError):  # noqa: N818 (not an error of the caller's)
    """The theory has a constant here, but this suite has not derived its value (the claim is only observed)."""



@dataclass(frozen=True)
class RunConstants:
    """Every theoretical constant of one configuration — the one path that the checks, the recorder,
    the audit, the figures and the report read (so they cannot disagree).

    ``widths`` (d_0..d_N) decide the ResNet skips; ``n`` the loss scale c = 1/n of the mean reduction."""

    config: Any  # bcd.config.BCDConfig
    widths: tuple[int, ...] | None = None
    n: int | None = None
    L_B_bound: float | None = None  # L_B measured on the run's bounded set, when known (else the activation's)

    def __init__(self, config: Any, widths: tuple[int, ...] | None = None, n: int | None = None, *,
                 L_B: float | None = None) -> None:
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "widths", None if widths is None else tuple(widths))
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "L_B_bound", L_B)

    @property
    def N(self) -> int:
        return self.config.N

    @property
    def variant(self) -> str:
        from bcd.model import variant_name

        return variant_name(self.config)

    @property
    def tau(self) -> tuple[int, ...]:
        from bcd.model import skips

        if self.config.skip == "none":
            return (0,) * (self.N + 1)
        if self.widths is None:
            raise ValueError("the layer widths are unknown, so the ResNet skips τ_i (d_i = d_(i-1)) are unknown")
        return skips(self.config, tuple(self.widths))

    @property
    def prox_linear(self) -> bool:
        return self.config.vn_update == "prox_linear"

    @property
    def L_R(self) -> float:
        return loss_lipschitz_constant(self.config.reduction, self.n)

    @property
    def L_B(self) -> float:
        from bcd.activations import get_activation

        return get_activation(self.config.activation).lipschitz if self.L_B_bound is None else self.L_B_bound

    def a(self) -> float:
        """Sufficient-descent constant of a whole sweep."""
        g, al = self.config.gamma, self.config.alpha
        if self.prox_linear:
            return sufficient_descent_constant_prox_linear(g, al, self.L_R, self.variant)
        return sufficient_descent_constant(g, al, self.variant)

    def block(self, block: str, layer: int) -> float:
        """c_blk: one update of this block lowers L̄ by ≥ c_blk‖Δ‖²."""
        g, al = self.config.gamma, self.config.alpha
        if self.prox_linear and block == "V" and layer == self.N:
            return prox_linear_block_constant(g, al, self.L_R)
        tau_next = self.tau[layer + 1] if layer < self.N else 0
        return block_descent_constant(block, layer, self.N, g, al, tau_next=tau_next, variant=self.variant)

    def delta(self, B: float) -> float:
        """δ(B) of the relative-error lemma (δ_prox-linear for Theorem 2's V_N step).

        Algorithm 1: not derived here — MATH.md §7.4 shows the simple argument fails for ReLU two-splitting
        (raises :class:`UnknownConstant`; the checks then report b_emp as observed)."""
        if self.variant == "two":
            raise UnknownConstant("the relative-error constant b of Algorithm 1 (two-splitting) is not derived in this "
                                  "suite (MATH.md §7.4): b_emp is measured, not compared with a theoretical b")
        g, al = self.config.gamma, self.config.alpha
        return delta_prox_linear(g, al, B, self.L_R, self.L_B) if self.prox_linear else delta(g, al, B, self.L_B)

    def b(self, B: float) -> float:
        """Relative-error constant b(B) = δ√(3N) for iterates bounded by B.

        ResNet [derived, loose]: a skip adds to the V_N, U_N, V_i and U_i components of g^k one more term
        of the form γ‖ΔV_{i-1}‖ or γL_B‖ΔV_{i-1}‖ (coefficient ≤ δ), so each component is a sum of at most
        twice as many δ‖Δ‖ terms and Cauchy–Schwarz gives the extra factor √2."""
        b = self.delta(B) * math.sqrt(3 * self.N)
        return b * self.skip_factor

    @property
    def skip_factor(self) -> float:
        """√2 for a ResNet with at least one skip (or unknown widths: the conservative choice), else 1."""
        if self.variant != "resnet":
            return 1.0
        return math.sqrt(2.0) if self.widths is None or any(self.tau) else 1.0

    def C(self, B: float, L0: float, L_star: float = 0.0) -> float:
        """The rate constant C = b(B)²(L̄(Q⁰) − L̄*)/a."""
        return rate_constant(self.a(), self.b(B), L0, L_star)

    def alpha_bound(self) -> float:
        """Theorem 2's derived α condition for this run's loss: α > (L_R − γ)/2."""
        return prox_linear_alpha_bound(self.L_R, self.config.gamma)
