"""The constants of the theory (MATH.md §4) as sympy expressions of the hyperparameters.

* Per-block descent constants come from one derived lemma (:func:`descent_lemma`): if X⁺ minimises
  h = F + p/2‖X − X⁻‖² and h is μ_h-strongly convex, then F(X⁻) − F(X⁺) ≥ (p + μ_h)/2 ‖X⁺ − X⁻‖².
  The paper's constants use μ_h = 0 on blocks with a proximal term (valid even where F is not
  convex, as for U_i with ReLU) and the exact modulus on the others (U_N: 2γ, V_i: ≥ γ); the
  "sharp" variants use the Hessians of :mod:`theory.derivations`.
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
N = sp.Symbol("N", positive=True, integer=True)
L0, L_star = sp.symbols("L0 L_star", nonnegative=True)
n_samples = sp.Symbol("n", positive=True, integer=True)

SYMBOLS: dict[str, sp.Symbol] = {
    "gamma": gamma, "alpha": alpha, "lam": lam, "c": c, "B": B, "L_B": L_B, "L_R": L_R, "N": N,
    "L0": L0, "L_star": L_star, "n": n_samples,
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


@functools.cache
def block_constants(activation: str = "relu") -> dict[str, BlockConstant]:
    """The per-block constants for Algorithm 2 (squared loss, r_i = λ/2‖·‖², s_i = 0)."""
    mu_U = 2 * gamma + alpha if activation == "identity" else sp.Integer(0)
    rows = [
        ("V_N", alpha, 0, c + gamma + alpha, False,
         "Hessian (c+γ+α)I: the decrease equals (α + (c+γ)/2)‖Δ‖² exactly (the sharp constant); "
         "the paper's α/2 uses only the minimality of the proximal subproblem"),
        ("U_N", 0, 2 * gamma, 2 * gamma, True,
         "no proximal term, Hessian 2γI: the decrease equals γ‖Δ‖² exactly"),
        ("W", alpha, 0, alpha + lam, False,
         "Hessian ⪰ (α+λ)I (equal when ṼṼᵀ is singular); the paper's α/2 uses minimality only"),
        ("V_i", 0, gamma, gamma, True,
         "no proximal term, Hessian γ(I + ŴᵀŴ) ⪰ γI: equality when ŴΔ = 0"),
        ("U_i", alpha, 0, mu_U, False,
         "σ = ReLU makes the subproblem nonconvex: only minimality is available (μ_h = 0)"
         if activation != "identity" else "σ = Id: Hessian (2γ+α)I"),
    ]
    out = {}
    for blk, pw, mu, mu_sharp, tight, note in rows:
        pw, mu, mu_sharp = sp.sympify(pw), sp.sympify(mu), sp.sympify(mu_sharp)
        out[blk] = BlockConstant(blk, pw, mu, lemma_constant(pw, mu), lemma_constant(pw, mu_sharp), tight, note)
    pl = prox_linear_descent()
    out["V_N_prox_linear"] = BlockConstant(
        "V_N_prox_linear", alpha, alpha + gamma, pl["block_constant"], pl["block_constant"], True,
        "descent lemma for the L_R-smooth loss; equality for a quadratic loss (the squared loss)",
    )
    return out


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


@functools.cache
def sufficient_descent(activation: str = "relu", vn_update: str = "prox", sharp: bool = False) -> sp.Expr:
    """a = min over the blocks of their constants (the Lemma's a; min(α, γ)/2 for Algorithm 2)."""
    bc = block_constants(activation)
    names = ["U_N", "W", "V_i", "U_i", "V_N_prox_linear" if vn_update == "prox_linear" else "V_N"]
    return sp.Min(*[(bc[k].sharp if sharp else bc[k].expr) for k in names])


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
LOSS_LIPSCHITZ = {"sum": sp.Integer(1), "mean": 1 / n_samples}  # L_R = c for R = (c/2)‖V − Y‖²


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


def lipschitz_of_activation(activation: str) -> float:
    """L_B: Lipschitz constant of σ on bounded sets (ReLU and Id: 1 on all of ℝ)."""
    table = {"relu": 1.0, "identity": 1.0, "leaky_relu": 1.0, "tanh": 1.0, "sigmoid": 0.25, "softplus": 1.0}
    if activation not in table:
        raise ValueError(f"activation={activation!r} has no Lipschitz constant here; allowed: {', '.join(table)}")
    return table[activation]


# ----------------------------------------------------------------------------- numbers for one run


@dataclass(frozen=True)
class Constants:
    """Numeric values for one configuration (None where an input such as B is not known)."""

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _num(expr: sp.Expr, values: dict[sp.Symbol, float]) -> float | None:
    needed = expr.free_symbols
    if not needed <= set(values):
        return None
    return float(expr.xreplace({s: sp.Float(values[s], 30) for s in needed}).evalf(30))


def loss_lipschitz(reduction: str, n: int | None) -> float | None:
    """L_R = c: 1 for "sum", 1/n for "mean" (None when n is unknown)."""
    expr = LOSS_LIPSCHITZ[reduction]
    return _num(expr, {} if n is None else {n_samples: n})


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
    that they evaluate to the same numbers.  ``widths`` decide the ResNet skips."""
    S = SYMBOLS  # the parameters B, L0, L_B shadow the module's symbols of the same name
    L_Bv = lipschitz_of_activation(config.activation) if L_B is None else float(L_B)
    L_Rv = loss_lipschitz(config.reduction, n)
    L_R_note = f"L_R = c = {L_Rv:g} (squared loss, reduction {config.reduction!r})" if L_Rv is not None else ""
    if L_Rv is None:  # mean reduction, n unknown: 1/n ≤ 1 is an upper bound and every constant is monotone in it
        L_Rv, L_R_note = 1.0, "n unknown: L_R = 1/n ≤ 1 used as an upper bound (constants are conservative)"
    vals: dict[sp.Symbol, float] = {S["gamma"]: config.gamma, S["alpha"]: config.alpha, S["lam"]: config.lam,
                                    S["L_B"]: L_Bv, S["N"]: config.N, S["L_star"]: L_star}
    if L_Rv is not None:
        vals[S["L_R"]] = vals[S["c"]] = L_Rv
    if B is not None:
        vals[S["B"]] = float(B)
    if L0 is not None:
        vals[S["L0"]] = float(L0)
    a_expr = sufficient_descent(config.activation, config.vn_update)
    a_sharp = _num(sufficient_descent(config.activation, config.vn_update, sharp=True), vals)
    if config.splitting == "two":  # Algorithm 1: α/2 on every block (MATH.md §7 item 1); prox-linear V_N: its own
        a_expr = sp.Min(alpha / 2, prox_linear_descent()["block_constant"]) if config.vn_update == "prox_linear" \
            else alpha / 2
        a_sharp = _num(a_expr, vals)
    blocks = {k: _num(v.expr, vals) for k, v in block_constants(config.activation).items()}
    from bcd.model import variant_name

    variant = variant_name(config)
    b_expr = relative_error_constant(config.vn_update, variant)
    d_expr = delta_expr(config.vn_update, variant)
    pl = prox_linear_descent()
    from theory.constants import RunConstants, UnknownConstant

    K = RunConstants(config, widths, n, L_B=None if L_B is None else float(L_B))
    a_num = K.a()
    try:
        b_num = None if B is None else K.b(float(B))
        delta_num = None if B is None else K.delta(float(B))
    except UnknownConstant:
        b_num = delta_num = None
    b_text = sp.sstr(b_expr) + ("*sqrt(2)" if K.skip_factor != 1.0 else "")
    d_text = sp.sstr(d_expr)
    if variant == "two" and config.activation != "identity":  # MATH.md §7.4: no formula to show
        d_text = b_text = NOT_DERIVED
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
        C=K.C(float(B), float(L0), L_star) if (b_num is not None and L0 is not None and a_num > 0) else None,
        alpha_bound_seeds=_num(pl["alpha_bound_seeds"], vals),
        alpha_bound_derived=_num(pl["alpha_bound_derived"], vals),
        expressions={
            "a": sp.sstr(a_expr), "delta": d_text, "b": b_text,
            "C": "b**2*(L0 - L_star)/a",
            "alpha_bound_seeds": sp.sstr(pl["alpha_bound_seeds"]),
            "alpha_bound_derived": sp.sstr(pl["alpha_bound_derived"]),
        },
    )
