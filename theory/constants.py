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


def delta_two_splitting(gamma: float, alpha: float, B: float, L_R_extra: float = 0.0) -> float:
    """δ of Algorithm 1 with σ = Id [derived]: max{α + L_R_extra, γB(2B + 1)} (module docstring of
    :class:`RunConstants`; ``L_R_extra`` = L_R for the prox-linear V_N step, else 0)."""
    return max(alpha + L_R_extra, gamma * B * (2 * B + 1))


def iterate_bound(norm_W: float, norm_V: float, norm_U: float, n: int, norm_X_tilde: float) -> float:
    """B of the relative-error lemma: a bound on every factor its proof multiplies by —
    ‖W̃_i‖, ‖U_i‖ and ‖Ṽ_i‖ = (‖V_i‖² + n)^½ for i = 0..N (Ṽ_0 = X̃, the data with its ones row).
    NaN norms (a variant without U blocks) are ignored."""
    vals = [norm_W, math.sqrt(norm_V * norm_V + n) if math.isfinite(norm_V) else math.nan, norm_U, norm_X_tilde]
    return max((v for v in vals if math.isfinite(v)), default=math.nan)


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
        return self.config.activation_record.lipschitz() if self.L_B_bound is None else self.L_B_bound

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

        Algorithm 1 with σ = Id [derived]: every block is a closed form, 0 = ∇_X h(P_X) + αΔX at the point P_X
        where X is updated (h = L without the proximal terms, C¹ here), so g_X = ∇_X h(Q^k) − ∇_X h(P_X) − αΔX
        ∈ ∂_X L(Q^k), and ∇_X h(Q^k) − ∇_X h(P_X) only involves the blocks updated after X in the backward sweep:
        V_N: γ(W̃_N⁻Ṽ_{N-1}⁻ − W̃_N⁺Ṽ_{N-1}⁺), V_i: γ(W̃_i⁻Ṽ_{i-1}⁻ − W̃_i⁺Ṽ_{i-1}⁺), each ≤ γB(‖ΔW̃‖ + ‖ΔV‖);
        W̃_i: γ(W̃_iΔṼ)Ṽ⁺ᵀ + γ(W̃_iṼ⁻ − V_i)ΔṼᵀ ≤ γB(2B + 1)‖ΔV_{i-1}‖ (B of :func:`iterate_bound`).  So each
        component is ≤ δ times a sum of ≤ 3 block steps, with δ = max{α (+ L_R prox-linear), γB(2B + 1)}, and each
        block step occurs in ≤ 3 components: ‖g^k‖ ≤ 3δ‖ΔQ^k‖.
        Algorithm 1 with ReLU: not derived — MATH.md §7.4 shows this argument fails when σ has kinks (the W_i
        component's factor relu′(W̃_iṼ_{i-1}) jumps when V_{i-1}, updated after W_i, flips an activation):
        raises :class:`UnknownConstant`, and the checks report b_emp as observed."""
        g, al = self.config.gamma, self.config.alpha
        if self.variant == "two":
            if self.config.activation != "identity":
                raise UnknownConstant("the relative-error constant b of Algorithm 1 with a nonsmooth σ "
                                      f"({self.config.activation}) is not derived (MATH.md §7.4: the argument needs a "
                                      "C¹ coupling): b_emp is measured, not compared with a theoretical b")
            return delta_two_splitting(g, al, B, self.L_R if self.prox_linear else 0.0)
        return delta_prox_linear(g, al, B, self.L_R, self.L_B) if self.prox_linear else delta(g, al, B, self.L_B)

    def b(self, B: float) -> float:
        """Relative-error constant b(B) = δ√(3N) for iterates bounded by B.

        ResNet [derived, loose]: a skip adds to the V_N, U_N, V_i and U_i components of g^k one more term
        of the form γ‖ΔV_{i-1}‖ or γL_B‖ΔV_{i-1}‖ (coefficient ≤ δ), so each component is a sum of at most
        twice as many δ‖Δ‖ terms and Cauchy–Schwarz gives the extra factor √2.
        Algorithm 1 (σ = Id): b = 3δ (:meth:`delta`)."""
        if self.variant == "two":
            return 3.0 * self.delta(B)
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
