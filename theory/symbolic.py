"""The constants of the theory (MATH.md §4) as sympy expressions of the hyperparameters.

* Per-block descent constants come from one derived lemma (:func:`descent_lemma`): if X⁺ minimises
  h = F + p/2‖X − X⁻‖² and h is μ_h-strongly convex, then F(X⁻) − F(X⁺) ≥ (p + μ_h)/2 ‖X⁺ − X⁻‖².
  The paper's constants use μ_h = 0 on blocks with a proximal term (valid even where F is not
  convex, as for U_i with ReLU) and the exact modulus on the others (U_N: 2γ, V_i: ≥ γ); the
  "sharp" variants use the Hessians of :mod:`theory.derivations`.
* The run's functions are catalogue records (:mod:`bcd.catalogue`): L_R from the loss record, L_B from the
  activation record (``lipschitz(B)``: a polynomial σ is Lipschitz on bounded sets only), and the regulariser
  records decide which blocks are exact and which use the inner solver (:func:`run_block_constants`).  The
  closed-form derivations (:mod:`theory.derivations`) are for the classic family (squared loss, ReLU/Id, ridge);
  for other records the constants rest on the descent lemma alone (exact prox: a convex r_i, s_i or loss only adds
  to the modulus) or, for inner-solver blocks, on strong convexity and the stopping rule (μ_X/2 − η_X).
* a = min over blocks (Lemma, sufficient descent); δ, b = δ√(3N), C = b²(L̄⁰ − L̄*)/a as in MATH.md §4.
* Theorem 2's α condition in both forms: the seeds' α > max{0, (L_R − 1)/2} and the one derived
  here for the update as implemented, α > max{0, (L_R − γ)/2} (:func:`prox_linear_descent`).

:func:`numeric_constants` evaluates everything for a configuration (B, L̄⁰ from a trace).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import sympy as sp

from bcd.config import BCDConfig
from theory.derivations import alpha, c, gamma, lam

B, L_B, L_R = sp.symbols("B L_B L_R", positive=True)
eta = sp.Symbol("eta", positive=True)  # η of the inner solver's stopping rule (BCDConfig.eta)
N = sp.Symbol("N", positive=True, integer=True)
L0, L_star = sp.symbols("L0 L_star", nonnegative=True)
n_samples = sp.Symbol("n", positive=True, integer=True)

SYMBOLS: dict[str, sp.Symbol] = {
    "gamma": gamma, "alpha": alpha, "lam": lam, "c": c, "B": B, "L_B": L_B, "L_R": L_R, "N": N,
    "L0": L0, "L_star": L_star, "n": n_samples, "eta": eta,
}


# ----------------------------------------------------------------------------- the descent lemma


@functools.cache
def descent_lemma() -> tuple[sp.Expr, sp.Symbol, sp.Symbol]:
    """Derive the per-block decrease constant (p + μ_h)/2 on the 1-D quadratic model.

    F(x) = μ_F/2·x² + qx, h = F + p/2(x − x⁻)², x⁺ = argmin h, μ_h = μ_F + p.  The ratio
    (F(x⁻) − F(x⁺))/(x⁺ − x⁻)² simplifies to (p + μ_h)/2 for every q, x⁻: the bound is attained by
    quadratics (tight).  Returns (expression in p, μ_h; p; μ_h)."""
    x, x0, q = sp.symbols("x x0 q", real=True)
    p, mu_F, mu_h = sp.symbols("p mu_F mu_h", nonnegative=True)
    F = mu_F / 2 * x**2 + q * x
    h = F + p / 2 * (x - x0) ** 2
    x_plus = sp.solve(sp.diff(h, x), x)[0]
    ratio = sp.simplify((F.subs(x, x0) - F.subs(x, x_plus)) / (x_plus - x0) ** 2)
    const = sp.simplify(ratio.subs(mu_F, mu_h - p))
    return const, p, mu_h


def lemma_constant(prox_weight: sp.Expr, modulus: sp.Expr) -> sp.Expr:
    expr, p, mu_h = descent_lemma()
    return sp.simplify(expr.subs({p: prox_weight, mu_h: modulus}, simultaneous=True))


@dataclass(frozen=True)
class BlockConstant:
    """Per-block guarantee L̄ before − L̄ after ≥ const·‖Δ‖² (MATH.md §4.1)."""

    block: str  # "V_N", "U_N", "W", "V_i", "U_i", "V_N_prox_linear"
    prox_weight: sp.Expr
    modulus: sp.Expr  # μ_h the paper's constant uses
    expr: sp.Expr
    sharp: sp.Expr  # with the exact/lower-bounded Hessian modulus
    tight: bool  # the paper's constant is attained (equality) for some admissible input
    note: str


W_KINDS = ("ridge", "exact", "inner")


def w_kind(config: BCDConfig) -> str:
    """How the run's W̃_i steps are solved: ``ridge`` — r_i = λ/2‖W̃_i‖² from ``lam`` on the whole W̃_i (the classic
    Cholesky solve, Hessian ⪰ (α + λ)I); ``exact`` — every r_i is a ridge record but not that one (per-layer weights
    or the bias unpenalised: still a Cholesky solve, Hessian ⪰ αI); ``inner`` — some r_i is not a ridge (ℓ1, elastic
    net, an indicator): the monotone inner solver of :mod:`bcd.prox_solvers`."""
    if any(r.ridge is None for r in config.r_records):
        return "inner"
    return "ridge" if config.r is None and config.reg_bias else "exact"


def v_inner(config: BCDConfig) -> bool:
    """Whether some V_i (i < N) has a nonzero s_i and so is solved by the inner solver (:mod:`bcd.prox_solvers`)."""
    return any(not s.is_zero for s in config.s_records[:-1])


@functools.cache
def block_constants(activation: str = "relu", loss: str = "squared", w: str = "ridge",
                    inner_V: bool = False) -> dict[str, BlockConstant]:
    """The per-block constants of Algorithm 2 for the given records (defaults: the classic family — squared loss,
    r_i = λ/2‖W̃_i‖², s_i = 0).  :func:`run_block_constants` picks the arguments for a configuration.

    Every constant is the descent lemma's (p + μ_h)/2 (:func:`descent_lemma`) for a block step that is an *exact*
    minimiser: a convex r_i or s_i added to a block's subproblem keeps it μ_h-strongly convex (it can only raise the
    modulus), and h(X⁻) ≥ h(X⁺) + μ_h/2‖Δ‖² at the minimiser X⁺ holds for a nonsmooth convex h as well — so the
    constants stay valid with any catalogue r_i, s_N and loss (every catalogue loss is convex).  The paper's constants
    use μ_h = 0 on blocks with a proximal term (valid even where the subproblem is nonconvex, as for U_i); the
    "sharp" ones the moduli of the Hessians.  Blocks solved by the inner solver are not exact minimisers
    (MATH.md §7): W (``w="inner"``) keeps α/2 from monotonicity alone (the proximal term is part of Φ_W), and
    with the rule dist(0, ∂Φ) ≤ η_X‖ΔX‖ strong convexity (μ_W = α + γλ_min(ṼṼᵀ) ≥ α) adds μ_W/2 − η_W;
    V_i (``inner_V``, no proximal term) has μ_V/2 − η_V = γ/2 − min(η, γ/4) (Algorithm 2: μ_V = γ), with
    η_X = min(η, μ_X/4) as the engine caps it."""
    if w not in W_KINDS:
        raise ValueError(f"w={w!r} is not allowed; allowed: {', '.join(W_KINDS)}")
    from bcd import catalogue

    act = catalogue.build("activation", activation)
    squared = catalogue.build("loss", loss).name == "squared"
    mu_U = 2 * gamma + alpha if act.is_identity else sp.Integer(0)
    if act.is_identity:
        u_note = "σ = Id: Hessian (2γ+α)I"
    elif act.kink is not None:
        u_note = (f"σ = {act.spec} (piecewise linear) makes the subproblem nonconvex: only minimality is available "
                  "(μ_h = 0)")
    else:
        u_note = f"σ = {act.spec} makes the subproblem nonconvex in general: only minimality is available (μ_h = 0)"
    if squared:
        vn = (c + gamma + alpha, "Hessian (c+γ+α)I: the decrease equals (α + (c+γ)/2)‖Δ‖² exactly (the sharp constant) "
              "when s_N = 0; the paper's α/2 uses only the minimality of the proximal subproblem")
    else:
        vn = (gamma + alpha, f"R = {loss} is convex: modulus ≥ γ + α (sharp α + γ/2, a lower bound); the paper's α/2 "
              "uses only the minimality of the proximal subproblem (the exact prox of R)")
    if w == "ridge":
        w_row = (alpha, 0, alpha + lam, False, "Hessian ⪰ (α+λ)I (equal when ṼṼᵀ is singular); the paper's α/2 uses "
                 "minimality only")
    elif w == "exact":
        w_row = (alpha, 0, alpha, False, "ridge r_i without the λ-shortcut's whole-W̃ penalty (per-layer weights or the "
                 "bias unpenalised): Hessian ⪰ αI; the paper's α/2 uses minimality only")
    else:
        w_row = (alpha, 0, None, False, "a non-ridge r_i: monotone inner solver from W̃⁻ — α/2 from monotonicity alone "
                 "(Φ_W(W⁺) ≤ Φ_W(W⁻), the proximal term inside Φ_W); with the stopping rule, strong convexity "
                 "(μ_W = α + γλ_min(ṼṼᵀ) ≥ α) gives μ_W/2 − η_W more: sharp α − min(η, α/4)")
    if inner_V:
        v_row = (0, gamma, None, False, "a nonzero s_i: monotone inner solver, no proximal term; strong convexity "
                 "(μ_V = γ: Hessian γ(I + ŴᵀŴ) ⪰ γI) and the rule dist(0, ∂Φ_V) ≤ η_V‖ΔV‖ give μ_V/2 − η_V, "
                 "η_V = min(η, γ/4) — when the rule held (at the iteration cap only monotonicity: ≥ 0)")
    else:
        v_row = (0, gamma, gamma, True, "no proximal term, Hessian γ(I + ŴᵀŴ) ⪰ γI: equality when ŴΔ = 0")
    rows = [
        ("V_N", alpha, 0, vn[0], False, vn[1]),
        ("U_N", 0, 2 * gamma, 2 * gamma, True, "no proximal term, Hessian 2γI: the decrease equals γ‖Δ‖² exactly"),
        ("W", *w_row),
        ("V_i", *v_row),
        ("U_i", alpha, 0, mu_U, False, u_note),
    ]
    out = {}
    for blk, pw, mu, mu_sharp, tight, note in rows:
        pw, mu = sp.sympify(pw), sp.sympify(mu)
        expr = lemma_constant(pw, mu)
        if blk == "V_i" and inner_V:
            expr = sharp = expr - sp.Min(eta, gamma / 4)
        elif blk == "W" and w == "inner":
            sharp = lemma_constant(pw, alpha) - sp.Min(eta, alpha / 4)
        else:
            sharp = lemma_constant(pw, sp.sympify(mu_sharp))
        out[blk] = BlockConstant(blk, pw, mu, expr, sharp, tight, note)
    pl = prox_linear_descent()
    out["V_N_prox_linear"] = BlockConstant(
        "V_N_prox_linear", alpha, alpha + gamma, pl["block_constant"], pl["block_constant"], squared,
        "descent lemma for the L_R-smooth loss (s_N convex keeps it); "
        + ("equality for a quadratic loss (the squared loss)" if squared else f"a lower bound for R = {loss}"),
    )
    return out


def run_block_constants(config: BCDConfig) -> dict[str, BlockConstant]:
    """The per-block constants of ``config``'s records (:func:`block_constants`)."""
    return block_constants(config.activation, config.loss, w_kind(config), v_inner(config))


# ----------------------------------------------------------------------------- Theorem 2 (prox-linear)


@functools.cache
def prox_linear_descent() -> dict[str, sp.Expr]:
    """Derive the V_N block decrease of the prox-linear step and Theorem 2's α condition.

    Worst case of the descent lemma R(v⁺) ≤ R(v⁻) + ⟨∇R(v⁻), Δ⟩ + L_R/2‖Δ‖²: the quadratic
    R = L_R/2(v − y)² attains it, so the ratio (F(v⁻) − F(v⁺))/Δ² with F = R + γ/2(v − u)² is the
    exact worst-case block constant: (2α + γ − L_R)/2.  Positivity gives α > (L_R − γ)/2."""
    v, v0, y, uu = sp.symbols("v v0 y u_N", real=True)
    R = L_R / 2 * (v - y) ** 2
    model = sp.diff(R, v).subs(v, v0) * (v - v0) + alpha / 2 * (v - v0) ** 2 + gamma / 2 * (v - uu) ** 2
    v_plus = sp.solve(sp.diff(model, v), v)[0]
    F = R + gamma / 2 * (v - uu) ** 2
    ratio = sp.factor(sp.simplify((F.subs(v, v0) - F.subs(v, v_plus)) / (v_plus - v0) ** 2))
    a_real = sp.Symbol("alpha_real", real=True)
    sol = sp.solve(ratio.subs(alpha, a_real) > 0, a_real)  # (L_R − γ)/2 < α
    threshold = _threshold(sol, a_real)
    derived = sp.Max(0, threshold)
    seeds = sp.Max(0, (L_R - 1) / 2)
    return {
        "block_constant": ratio,
        "alpha_bound_derived": derived,
        "alpha_bound_seeds": seeds,
        "difference": sp.simplify(derived - seeds),
    }


def _threshold(sol: Any, var: sp.Symbol) -> sp.Expr:
    """t from a solved inequality of the form t < var."""
    rel = sol
    if isinstance(sol, sp.And):
        rels = [r for r in sol.args if var in r.free_symbols and not (r.rhs == sp.oo or r.lhs == sp.oo)]
        rel = rels[0]
    if isinstance(rel, sp.StrictLessThan) and rel.rhs == var:
        return rel.lhs
    if isinstance(rel, sp.StrictGreaterThan) and rel.lhs == var:
        return rel.rhs
    raise ArithmeticError(f"unexpected form of the solved α condition: {sol}")  # pragma: no cover


ALPHA_CONDITION_EXPLANATION = (
    "The seeds state α > max{0, (L_R − 1)/2}. For the V_N update as implemented (proximal weight α "
    "on ‖V − V_N⁻‖², coupling γ/2‖V − U_N⁻‖² as in L̄) the descent lemma gives a block decrease of "
    "exactly (2α + γ − L_R)/2·‖ΔV_N‖² for a quadratic loss, hence α > (L_R − γ)/2. The two agree at "
    "γ = 1 (the seeds' form is the derived one with the γ-strong convexity of the coupling term "
    "replaced by 1); for γ < 1 the seeds' condition is weaker than what the implemented update "
    "needs (L̄ can rise at the V_N step), for γ > 1 it is stronger than needed. The seeds' display of "
    "the update also swaps α and γ (γ/2‖V − V_N⁻‖² + α/2‖V − U_N⁻‖²); we follow Algorithm 2's weights."
)


# ----------------------------------------------------------------------------- a, δ, b, C


BLOCK_NAMES = ("U_N", "W", "V_i", "U_i")


def _min_over_blocks(bc: dict[str, BlockConstant], vn_update: str, sharp: bool) -> sp.Expr:
    names = [*BLOCK_NAMES, "V_N_prox_linear" if vn_update == "prox_linear" else "V_N"]
    return sp.Min(*[(bc[k].sharp if sharp else bc[k].expr) for k in names])


@functools.cache
def sufficient_descent(activation: str = "relu", vn_update: str = "prox", sharp: bool = False) -> sp.Expr:
    """a = min over the blocks of their constants (the Lemma's a; min(α, γ)/2 for Algorithm 2), classic records."""
    return _min_over_blocks(block_constants(activation), vn_update, sharp)


def run_sufficient_descent(config: BCDConfig, sharp: bool = False) -> sp.Expr:
    """a for ``config``'s records (Algorithm 2/3: min over :func:`run_block_constants`)."""
    return _min_over_blocks(run_block_constants(config), config.vn_update, sharp)


SUFFICIENT_DESCENT_PAPER = sp.Min(alpha, gamma) / 2
DELTA = sp.Max(gamma, alpha + gamma * B, alpha + gamma * L_B, 2 * gamma * B + 2 * gamma * B**2)
# prox-linear: the V_N component of g^k gains ∇R(V⁺) − ∇R(V⁻), ‖·‖ ≤ L_R‖ΔV_N‖ [derived here]
DELTA_PROX_LINEAR = sp.Max(DELTA, alpha + gamma + L_R)
A_SYM = sp.Symbol("a", positive=True)
DELTA_SYM = sp.Symbol("delta", positive=True)
B_REL = DELTA_SYM * sp.sqrt(3 * N)  # b = δ√(3N)
B_SYM = sp.Symbol("b", positive=True)
# Algorithm 1 with σ = Id [derived, RunConstants.delta]: δ = max{α (+ L_R prox-linear), γB(2B + 1)}, b = 3δ
DELTA_TWO = sp.Max(alpha, gamma * B * (2 * B + 1))
DELTA_TWO_PROX_LINEAR = sp.Max(alpha + L_R, gamma * B * (2 * B + 1))
B_REL_TWO = 3 * DELTA_SYM
RATE_C = B_SYM**2 * (L0 - L_star) / A_SYM  # C = b²(L̄⁰ − L̄*)/a
LOSS_LIPSCHITZ = {"sum": sp.Integer(1), "mean": 1 / n_samples}  # c; L_R = c for R = (c/2)‖V − Y‖²
LOSS_SCALE = LOSS_LIPSCHITZ  # L_R of any smooth loss record = its factor × c (bcd.losses)


NOT_DERIVED = "not derived for Algorithm 1 with a nonsmooth σ (MATH.md §7.4)"


def delta_expr(vn_update: str = "prox", variant: str = "three") -> sp.Expr:
    """δ of the relative-error lemma: three-splitting/ResNet (MATH.md §4.3) or Algorithm 1 with σ = Id."""
    if variant == "two":
        return DELTA_TWO_PROX_LINEAR if vn_update == "prox_linear" else DELTA_TWO
    return DELTA_PROX_LINEAR if vn_update == "prox_linear" else DELTA


def relative_error_constant(vn_update: str = "prox", variant: str = "three") -> sp.Expr:
    """b = δ√(3N) with δ expanded (δ_prox-linear for Theorem 2's update); Algorithm 1 (σ = Id): b = 3δ."""
    return (B_REL_TWO if variant == "two" else B_REL).subs(DELTA_SYM, delta_expr(vn_update, variant))


def rate_constant(activation: str = "relu", vn_update: str = "prox") -> sp.Expr:
    """C = b²(L̄⁰ − L̄*)/a with a and b expanded."""
    return RATE_C.subs({B_SYM: relative_error_constant(vn_update), A_SYM: sufficient_descent(activation, vn_update)})


# ----------------------------------------------------------------------------- numbers for one run


@dataclass(frozen=True)
class Constants:
    """Numeric values for one configuration (None where an input such as B is not known, or where the constant does
    not exist for the run's records: L_R of the hinge loss)."""

    a: float | None
    a_sharp: float | None
    block: dict[str, float | None]
    L_R: float | None
    L_R_note: str
    L_B: float
    B: float | None
    delta: float | None
    b: float | None
    L0: float | None
    L_star: float
    C: float | None
    alpha_bound_seeds: float | None
    alpha_bound_derived: float | None
    expressions: dict[str, str] = field(default_factory=dict)
    L_B_note: str = ""
    eta: float | None = None  # η of the inner solver's rule, when some block uses it (it enters a and b)
    inner_blocks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inner_blocks"] = list(self.inner_blocks)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _num(expr: sp.Expr, values: dict[sp.Symbol, float]) -> float | None:
    needed = expr.free_symbols
    if not needed <= set(values):
        return None
    return float(expr.xreplace({s: sp.Float(values[s], 30) for s in needed}).evalf(30))


def loss_lipschitz(reduction: str, n: int | None, loss: Any = "squared") -> float | None:
    """L_R = factor·c of the loss record, c = 1 for "sum", 1/n for "mean" (None when n is unknown, or when the loss
    is not differentiable)."""
    from bcd import catalogue

    c_val = _num(LOSS_SCALE[reduction], {} if n is None else {n_samples: n})
    return None if c_val is None else catalogue.build("loss", loss).lipschitz(c_val)


def _loss_note(config: BCDConfig, n: int | None) -> tuple[float | None, str]:
    """L_R of the run's loss record and the sentence that says where it comes from."""
    rec = config.loss_record
    red = f"reduction {config.reduction!r}"
    if rec.lipschitz(1.0) is None:
        return None, (f"R = {rec.spec} is not differentiable: no L_R (Theorem 2's prox-linear step does not apply; the "
                      "exact prox is used)")
    factor = rec.lipschitz(1.0)
    what = "c" if factor == 1.0 else f"{factor:g}·c"
    L_R = loss_lipschitz(config.reduction, n, rec)
    if L_R is None:  # mean reduction, n unknown: 1/n ≤ 1 is an upper bound and every constant is monotone in it
        return factor, (f"R = {rec.spec}: L_R = {what}; n unknown: c = 1/n ≤ 1, so L_R ≤ {factor:g} used as an "
                        "upper bound (constants are conservative)")
    return L_R, f"L_R = {what} = {L_R:g} ({rec.spec} loss, {red})"


def _activation_note(config: BCDConfig, B: float | None, L_B: float | None) -> tuple[float, str]:
    """L_B on [−B, B] from the activation record (or the given measured value) and its explanation."""
    act = config.activation_record
    if L_B is not None:
        return float(L_B), f"given: L_B = {float(L_B):g} on the run's bounded set"
    everywhere = act.lipschitz(None)
    if math.isfinite(everywhere):
        return everywhere, f"σ = {act.spec} is {everywhere:g}-Lipschitz on all of ℝ"
    if B is None:
        return math.inf, (f"σ = {act.spec} is Lipschitz on bounded sets only: L_B = Σ k|c_k|B^(k−1) on [−B, B] "
                          "needs B (from a trace)")
    return act.lipschitz(B), f"σ = {act.spec} on [−B, B], B = {B:g}: L_B = Σ k|c_k|B^(k−1)"


class LStarAboveL0Error(ValueError):
    """L̄* > L̄⁰: a lower bound of L̄ above L̄(Q⁰) (the rate constant C = b²(L̄⁰ − L̄*)/a would be negative).

    Raised by :func:`numeric_constants`, the one place this rule lives (``claims_for`` reaches it); front ends catch
    it to name their own flags (``bcd theory``)."""

    def __init__(self, L_star: float, L0: float):
        self.L_star, self.L0 = L_star, L0
        super().__init__(f"L_star={L_star:g} is above L0={L0:g}: L̄* is a lower bound of L̄, so it cannot exceed "
                         "L̄(Q⁰) (the rate constant C = b²(L̄⁰ − L̄*)/a would be negative)")


def numeric_constants(
    config: BCDConfig,
    *,
    B: float | None = None,
    L0: float | None = None,
    L_star: float = 0.0,
    n: int | None = None,
    L_B: float | None = None,
    widths: tuple[int, ...] | None = None,
) -> Constants:
    """Evaluate every constant for ``config``; B (bound on all iterates) and L̄⁰ usually come from a trace.

    The numbers a, δ, b and C are those of :class:`theory.constants.RunConstants` (the one path the checks,
    recorder and reports read); the sympy expressions beside them are the derivation, and the tests check
    that they evaluate to the same numbers.  ``widths`` decide the ResNet skips.  L_R and L_B come from the
    run's loss and activation records (:mod:`bcd.catalogue`)."""
    from bcd.model import variant_name
    from theory.constants import RunConstants, UnknownConstant

    if L0 is not None and L_star > L0:
        raise LStarAboveL0Error(L_star, L0)
    S = SYMBOLS  # the parameters B, L0, L_B shadow the module's symbols of the same name
    L_Bv, L_B_note = _activation_note(config, None if B is None else float(B), L_B)
    L_Rv, L_R_note = _loss_note(config, n)
    c_val = _num(LOSS_SCALE[config.reduction], {} if n is None else {n_samples: n})
    vals: dict[sp.Symbol, float] = {S["gamma"]: config.gamma, S["alpha"]: config.alpha, S["lam"]: config.lam,
                                    S["N"]: config.N, S["L_star"]: L_star, S["eta"]: config.eta,
                                    S["c"]: 1.0 if c_val is None else c_val}
    if math.isfinite(L_Bv):
        vals[S["L_B"]] = L_Bv
    if L_Rv is not None:
        vals[S["L_R"]] = L_Rv
    if B is not None:
        vals[S["B"]] = float(B)
    if L0 is not None:
        vals[S["L0"]] = float(L0)
    variant = variant_name(config)
    K = RunConstants(config, widths, n, L_B=None if L_B is None else float(L_B))
    inner = K.inner_blocks
    if variant == "two":  # Algorithm 1: α/2 on every block (MATH.md §7 item 1); prox-linear V_N: its own
        a_expr = sp.Min(alpha / 2, prox_linear_descent()["block_constant"]) if config.vn_update == "prox_linear" \
            else alpha / 2
        a_sharp = _num(a_expr, vals)
    else:
        a_expr = run_sufficient_descent(config)
        a_sharp = _num(run_sufficient_descent(config, sharp=True), vals)
    blocks = {k: _num(v.expr, vals) for k, v in run_block_constants(config).items()}
    b_expr = relative_error_constant(config.vn_update, variant)
    d_expr = delta_expr(config.vn_update, variant)
    pl = prox_linear_descent()
    try:
        a_num: float | None = K.a()
    except UnknownConstant:  # the prox-linear step with a loss that has no L_R
        a_num = None
    try:
        b_num = None if B is None else K.b(float(B))
        delta_num = None if B is None else K.delta(float(B))
    except UnknownConstant:
        b_num = delta_num = None
    b_text = sp.sstr(b_expr) + ("*sqrt(2)" if K.skip_factor != 1.0 else "") + (" + eta" if inner else "")
    d_text = sp.sstr(d_expr)
    if variant == "two" and not config.activation_record.is_identity:  # MATH.md §7.4: no formula to show
        d_text = b_text = NOT_DERIVED
    ok_C = b_num is not None and L0 is not None and a_num is not None and a_num > 0
    return Constants(
        a=a_num,
        a_sharp=a_sharp,
        block=blocks,
        L_R=L_Rv,
        L_R_note=L_R_note,
        L_B=L_Bv,
        B=None if B is None else float(B),
        delta=delta_num,
        b=b_num,
        L0=None if L0 is None else float(L0),
        L_star=float(L_star),
        C=K.C(float(B), float(L0), L_star) if ok_C else None,
        alpha_bound_seeds=_num(pl["alpha_bound_seeds"], vals),
        alpha_bound_derived=_num(pl["alpha_bound_derived"], vals),
        expressions={
            "a": sp.sstr(a_expr), "delta": d_text, "b": b_text,
            "C": "b**2*(L0 - L_star)/a",
            "alpha_bound_seeds": sp.sstr(pl["alpha_bound_seeds"]),
            "alpha_bound_derived": sp.sstr(pl["alpha_bound_derived"]),
        },
        L_B_note=L_B_note,
        eta=config.eta if inner else None,
        inner_blocks=tuple(f"{b}_{i}" for b, i in inner),
    )
