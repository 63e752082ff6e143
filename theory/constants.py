"""The constants of the convergence theory as plain numeric functions (MATH.md §4).

These are the numbers the checks compare against.  :mod:`theory.symbolic` holds the same
constants as sympy expressions and tests that both agree; nothing here imports sympy, so the
engine and the checks stay light.  The run's functions come from the catalogue records (:mod:`bcd.catalogue`,
MATH.md §9): L_R from the loss record (``lipschitz(c)``), L_B from the activation record (``lipschitz(B)``), and
which blocks need the inner solver from the regulariser records — there is no table of functions here.
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
# Every claim in MATH.md §4 order (the order of tables and listings); the global-minimum claim is decided by an
# experiment (``bcd reproduce global-minimum``), not by a check of one trace, so CLAIM_IDS — the checks — leave it out.
CLAIM_ORDER = (MONOTONE, SUFFICIENT_DESCENT, RELATIVE_ERROR, RATE, CONVERGENCE, GLOBAL_MINIMUM, KL_EXPONENT,
               BLOCK_EXACTNESS)
CLAIM_IDS = tuple(c for c in CLAIM_ORDER if c != GLOBAL_MINIMUM)


def sufficient_descent_constant(gamma: float, alpha: float, variant: str = "three") -> float:
    """a: L̄(Q^{k−1}) − L̄(Q^k) ≥ a‖ΔQ^k‖².  min(α, γ)/2 for the three-splitting (Algorithms 2 and 3);
    α/2 for the two-splitting (Algorithm 1: a proximal term on every block)."""
    return alpha / 2.0 if variant == "two" else min(alpha, gamma) / 2.0


def has_proximal_term(variant: str, block: str, layer: int, N: int) -> bool:
    """Whether the block's subproblem carries α/2‖X − X⁻‖² (MATH.md §3 table, §7: every block in Algorithm 1; in
    Algorithms 2 and 3 every block but U_N and V_i, i < N) — read by the engine's subproblems and by the constants."""
    if variant == "two":
        return True
    return not ((block == "U" and layer == N) or (block == "V" and layer < N))


def block_descent_constant(block: str, layer: int, N: int, gamma: float, alpha: float, *, tau_next: int = 0,
                           variant: str = "three") -> float:
    """Per-block decrease constant c_blk: the update of this block lowers L̄ by ≥ c_blk‖Δ‖² (MATH.md §4.1, §7, §8).

    Three-splitting / ResNet: V_N, W_i, U_i (i<N): α/2 (proximal term);  U_N: γ (γ-strongly convex, 2γ/2);
    V_i (i<N): γ(1 + τ_{i+1})/2 (τ_{i+1} = 1 when layer i+1 has a skip).  Two-splitting: α/2 for every block
    (a monotone inner solver guarantees only the proximal term's α/2, MATH.md §7 item 1)."""
    if block not in ("W", "V", "U") or (variant == "two" and block == "U"):
        allowed = "W, V" if variant == "two" else "W, V, U"
        raise ValueError(f"block={block!r} is not a block of the {variant!r} objective; allowed: {allowed}")
    if has_proximal_term(variant, block, layer, N):
        return alpha / 2.0
    if block == "U":  # U_N
        return gamma
    return gamma * (1 + tau_next) / 2.0  # V_i, i < N


def capped_block_constant(block: str, layer: int, N: int, alpha: float, variant: str = "three") -> float:
    """c_blk of an inner solve that stopped *without* its rule (the cap, or a stall): a monotone solver never accepts a
    larger subproblem value Φ_X = (the terms of L̄ that touch X) + its proximal term, so L̄ still falls by at least that
    proximal term's α/2‖Δ‖² (MATH.md §7 item 1): every block of Algorithm 1 and W̃_i of Algorithms 2 and 3; a block
    without one (V_i, i < N, of Algorithms 2 and 3) keeps only monotonicity, 0."""
    return alpha / 2.0 if has_proximal_term(variant, block, layer, N) else 0.0


def inner_V_block_constant(gamma: float, eta: float, rho: float = 1.0) -> float:
    """c_blk of a V_i block (i < N, three-splitting) solved by the monotone inner solver (a nonzero s_i) [derived]:
    γρ/2 − η_V with η_V = min(η, γρ/4) (:func:`bcd.prox_solvers.block_eta`), ρ = 1 + τ_(i+1).

    Φ_V = L̄ restricted to V_i (no proximal term) is μ-strongly convex with μ = γρ (Hessian γ(ρI + ŴᵀŴ) ⪰ γρI; a
    convex s_i only adds), so for any g ∈ ∂Φ_V(V⁺): Φ_V(V⁻) ≥ Φ_V(V⁺) + ⟨g, V⁻ − V⁺⟩ + μ/2‖ΔV‖²; the rule gives
    such a g with ‖g‖ ≤ η_V‖ΔV‖, hence L̄ falls by ≥ (μ/2 − η_V)‖ΔV‖² ≥ (μ/4)‖ΔV‖² — when the rule held (a solve
    stopped at the iteration cap keeps only monotonicity, decrease ≥ 0)."""
    from bcd.prox_solvers import block_eta

    return gamma * rho / 2.0 - block_eta(eta, gamma * rho)


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


def loss_lipschitz_constant(reduction: str, n: int | None = None, loss: Any = "squared") -> float | None:
    """L_R (Lipschitz constant of ∇R) from the loss record (:mod:`bcd.losses`): L_R = factor·c with c = 1 ("sum")
    or 1/n ("mean") — squared: c, logistic: c/4, cross-entropy: c/2; ``None`` for a loss that is not
    differentiable (hinge: Theorem 2 does not apply).  ``loss`` is a spec string or a record.

    With ``reduction="mean"`` and n unknown, c = 1/n ≤ 1 is replaced by 1 (every constant below is monotone in
    L_R, so this is conservative)."""
    from bcd import catalogue
    from bcd.blocks import loss_scale  # c, defined once beside the V_N step that uses it

    return catalogue.build("loss", loss).lipschitz(loss_scale(reduction, n))


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
    def L_R(self) -> float | None:
        """L_R of the run's loss record (factor·c); ``None`` when R is not differentiable (hinge)."""
        return loss_lipschitz_constant(self.config.reduction, self.n, self.config.loss_record)

    def _L_R_or_raise(self) -> float:
        L_R = self.L_R
        if L_R is None:
            raise UnknownConstant(f"loss={self.config.loss!r} is not differentiable: it has no L_R, so Theorem 2's "
                                  "prox-linear V_N step (and its constants) does not apply")
        return L_R

    @property
    def L_B(self) -> float:
        """L_B without a bound B: the activation record's Lipschitz constant on all of ℝ (∞ for a polynomial of degree
        ≥ 2, which is Lipschitz on bounded sets only; :meth:`L_B_at` takes B)."""
        return self.config.activation_record.lipschitz() if self.L_B_bound is None else self.L_B_bound

    def L_B_at(self, B: float | None) -> float:
        """L_B on [−B, B] (every entry of U_i lies there when B bounds ‖U_i‖): the measured bound when given, else the
        activation record's ``lipschitz(B)`` (a polynomial: Σ_k k|c_k|B^(k−1))."""
        return self.config.activation_record.lipschitz(B) if self.L_B_bound is None else self.L_B_bound

    # ------------------------------------------------------------------ blocks solved by an inner solver

    def inner(self, block: str, layer: int) -> bool:
        """Whether (block, layer) is one of the convex blocks without a closed form, solved by the monotone inner
        solver under MATH.md §7's rule (:mod:`bcd.prox_solvers`): W_i with a non-ridge r_i, V_i (i < N) with a
        nonzero s_i.  (Algorithm 1's nonconvex blocks are a separate matter: every block there has α/2.)"""
        if block == "W":
            return self.config.r_records[layer - 1].ridge is None
        return block == "V" and layer < self.N and not self.config.s_records[layer - 1].is_zero

    @property
    def inner_blocks(self) -> tuple[tuple[str, int], ...]:
        return tuple((b, i) for i in range(1, self.N + 1) for b in ("W", "V") if self.inner(b, i))

    def block_eta(self, block: str, layer: int, rho: float | None = None) -> float:
        """η_X of an inner-solver block: the configured η capped at μ_X/4 (:func:`bcd.prox_solvers.block_eta`), with
        μ_W = α (the proximal term; α + γλ_min(ṼṼᵀ) ≥ α) and μ_V = γρ, ρ = 1 + τ_(i+1) (ResNet skip)."""
        from bcd.prox_solvers import block_eta

        if block == "W":
            return block_eta(self.config.eta, self.config.alpha)
        rho = (1.0 + self._tau_next(layer)) if rho is None else rho
        return block_eta(self.config.eta, self.config.gamma * rho)

    def _tau_next(self, layer: int) -> int:
        return self.tau[layer + 1] if layer < self.N else 0

    def a(self) -> float:
        """Sufficient-descent constant of a whole sweep: the least of the blocks' constants.

        An inner-solver V_i (i < N, three-splitting) contributes γ/2 − η_V (its constant with ρ = 1, the least over
        ρ ≥ 1: a lower bound whether or not layer i+1 has a skip); the prox-linear V_N step (2α + γ − L_R)/2."""
        g, al = self.config.gamma, self.config.alpha
        a = sufficient_descent_constant(g, al, self.variant)
        if self.prox_linear:
            a = min(a, prox_linear_block_constant(g, al, self._L_R_or_raise()))
        if self.variant != "two" and any(b == "V" for b, _ in self.inner_blocks):
            a = min(a, inner_V_block_constant(g, self.config.eta))
        return a

    def block(self, block: str, layer: int) -> float:
        """c_blk: one update of this block lowers L̄ by ≥ c_blk‖Δ‖².

        Inner-solver blocks (:meth:`inner`): W keeps α/2 from monotonicity alone (Φ_W(W⁺) ≤ Φ_W(W⁻) with the
        proximal term in Φ_W); V_i (i < N, no proximal term) has γρ/2 − η_V when the stopping rule held
        (:func:`inner_V_block_constant`)."""
        g, al = self.config.gamma, self.config.alpha
        if self.prox_linear and block == "V" and layer == self.N:
            return prox_linear_block_constant(g, al, self._L_R_or_raise())
        tau_next = self._tau_next(layer)
        if self.variant != "two" and block == "V" and self.inner("V", layer):
            return inner_V_block_constant(g, self.config.eta, 1.0 + tau_next)
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
            if not self.config.activation_record.is_identity:
                raise UnknownConstant("the relative-error constant b of Algorithm 1 with a nonsmooth σ "
                                      f"({self.config.activation}) is not derived (MATH.md §7.4: the argument needs a "
                                      "C¹ coupling): b_emp is measured, not compared with a theoretical b")
            return delta_two_splitting(g, al, B, self._L_R_or_raise() if self.prox_linear else 0.0)
        L_B = self.L_B_at(B)
        return delta_prox_linear(g, al, B, self._L_R_or_raise(), L_B) if self.prox_linear else delta(g, al, B, L_B)

    def b(self, B: float) -> float:
        """Relative-error constant b(B) = δ√(3N) for iterates bounded by B.

        ResNet [derived, loose]: a skip adds to the V_N, U_N, V_i and U_i components of g^k one more term
        of the form γ‖ΔV_{i-1}‖ or γL_B‖ΔV_{i-1}‖ (coefficient ≤ δ), so each component is a sum of at most
        twice as many δ‖Δ‖ terms and Cauchy–Schwarz gives the extra factor √2.
        Algorithm 1 (σ = Id): b = 3δ (:meth:`delta`).
        Inner-solver blocks (:meth:`inner`) [derived]: block X's optimality condition holds up to an error
        e_X ∈ ∂Φ_X(X⁺) with ‖e_X‖ ≤ η_X‖ΔX‖ (the stopping rule), which adds e_X to g^k's X component; so
        ‖e‖² = Σ_X‖e_X‖² ≤ η²‖ΔQ^k‖² (η ≥ every η_X) and b gains + η (MATH.md §7 item 2)."""
        b = 3.0 * self.delta(B) if self.variant == "two" else self.delta(B) * math.sqrt(3 * self.N) * self.skip_factor
        return b + self.config.eta if self.inner_blocks else b

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
        """Theorem 2's derived α condition for this run's loss: α > (L_R − γ)/2 (``UnknownConstant`` for a loss
        without L_R)."""
        return prox_linear_alpha_bound(self._L_R_or_raise(), self.config.gamma)
