"""Assumption 1, Theorem 1's conditions (i)–(iii) and Theorem 2's, decided for one configuration.

``applicability(config)`` returns plain data: each item as holds / fails / undecided with its reason,
the Proposition 1 catalogue, and for every claim whether the theory *guarantees* it for this run or
whether it can only be *observed*.  No sympy here (numbers come from :mod:`theory.constants`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bcd.config import BCDConfig
from theory import constants as tc

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"
STATUSES = (HOLDS, FAILS, UNDECIDED)
GUARANTEED, OBSERVED = "guaranteed", "observed"


@dataclass(frozen=True)
class Condition:
    """One hypothesis of the theory, decided for a configuration."""

    id: str  # "A1(a)", ..., "T1(i)", "T2(L_R)", ...
    source: str  # where it is stated
    statement: str
    status: str  # holds | fails | undecided
    reason: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not allowed; allowed: {', '.join(STATUSES)}")


@dataclass(frozen=True)
class CatalogueEntry:
    """A function of Proposition 1 and its class (semialgebraic / real analytic)."""

    kind: str  # loss | activation | regulariser
    name: str
    formula: str
    semialgebraic: bool
    real_analytic: bool
    note: str
    supported: bool  # the engine implements it


@dataclass(frozen=True)
class ClaimStatus:
    claim: str
    guaranteed: bool
    basis: str  # which result would guarantee it
    reason: str


def _cat(kind: str, name: str, formula: str, sa: bool, ra: bool, note: str, supported: bool = False) -> CatalogueEntry:
    return CatalogueEntry(kind, name, formula, sa, ra, note, supported)


CATALOGUE: tuple[CatalogueEntry, ...] = (
    _cat("loss", "squared", "(c/2)‖V − Y‖²", True, True, "polynomial; ∇R is c-Lipschitz (L_R = c)", True),
    _cat("loss", "logistic", "Σ log(1 + exp(−y·v))", False, True, "real analytic; L_R = 1/4 per entry"),
    _cat("loss", "hinge", "Σ max(0, 1 − y·v)", True, False, "piecewise linear; not differentiable"),
    _cat("loss", "cross-entropy", "−Σ y·log softmax(v)", False, True, "real analytic; L_R ≤ 1 (≤ 1/n with mean)"),
    _cat("activation", "relu", "max(u, 0)", True, False, "piecewise linear, 1-Lipschitz", True),
    _cat("activation", "leaky relu", "max(u, κu), 0 < κ < 1", True, False, "piecewise linear, 1-Lipschitz"),
    _cat("activation", "sigmoid", "1/(1 + e^{−u})", False, True, "1/4-Lipschitz"),
    _cat("activation", "tanh", "tanh(u)", False, True, "1-Lipschitz"),
    _cat("activation", "linear", "u", True, True, "1-Lipschitz", True),
    _cat("activation", "polynomial", "Σ c_k u^k", True, True, "Lipschitz on bounded sets only"),
    _cat("activation", "softplus", "log(1 + e^u)", False, True, "1-Lipschitz"),
    _cat("regulariser", "squared l2", "λ/2‖W‖²", True, True, "convex; coercive iff λ > 0", True),
    _cat("regulariser", "l1", "λ‖W‖₁", True, False, "convex; coercive iff λ > 0"),
    _cat("regulariser", "elastic net", "λ₁‖W‖₁ + λ₂/2‖W‖²", True, False, "convex; coercive iff λ₁ + λ₂ > 0"),
    _cat("regulariser", "indicator of a closed convex set", "ι_C(W): orthant, box, [0,1]", True, False,
         "semialgebraic when C is (orthant, box, interval); coercive iff C is bounded"),
    _cat("regulariser", "zero", "0", True, True, "no regularisation; not coercive", True),
)

ASSUMPTION_IDS = ("A1(a)", "A1(b)", "A1(c)", "A1(d)")
THEOREM1_IDS = ("T1(i)", "T1(ii)", "T1(iii)")


@dataclass(frozen=True)
class Applicability:
    """Which hypotheses hold for ``config`` and therefore which claims are guaranteed."""

    config: dict[str, Any]
    theorem: str  # the theorem whose claims are at stake
    assumption: tuple[Condition, ...]  # Assumption 1 (a)–(d)
    conditions: tuple[Condition, ...]  # Theorem 1 (i)–(iii): one of them is needed
    extra: tuple[Condition, ...]  # α, γ > 0; exact block updates; Theorem 2's conditions
    claims: tuple[ClaimStatus, ...]
    catalogue: tuple[CatalogueEntry, ...] = CATALOGUE

    def condition(self, cid: str) -> Condition:
        for c in (*self.assumption, *self.conditions, *self.extra):
            if c.id == cid:
                return c
        known = [c.id for c in (*self.assumption, *self.conditions, *self.extra)]
        raise ValueError(f"no condition {cid!r}; known: {known}")

    def claim_status(self, claim_id: str) -> ClaimStatus:
        for s in self.claims:
            if s.claim == claim_id:
                return s
        raise ValueError(f"claim {claim_id!r} is unknown; allowed: {', '.join(s.claim for s in self.claims)}")

    def guaranteed(self, claim_id: str) -> bool:
        """True when the theory guarantees ``claim_id`` for this configuration (else it is only observed)."""
        return self.claim_status(claim_id).guaranteed

    @property
    def assumption_holds(self) -> bool:
        return all(c.status == HOLDS for c in self.assumption)

    @property
    def theorem1_condition_holds(self) -> bool:
        return any(c.status == HOLDS for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- the individual items


def _assumption(config: BCDConfig) -> tuple[Condition, ...]:
    src = "Assumption 1"
    loss = {
        "squared": (HOLDS, "R = (c/2)‖V_N − Y‖² is a finite polynomial: continuous (hence proper and lsc) and ≥ 0"),
    }
    act = {
        "relu": (HOLDS, "ReLU is 1-Lipschitz on all of ℝ"),
        "identity": (HOLDS, "the identity is 1-Lipschitz"),
    }
    cls_loss = "polynomial (semialgebraic and real analytic)"
    cls_act = {"relu": "piecewise linear (semialgebraic)", "identity": "linear (semialgebraic and real analytic)"}
    lam_txt = f"r_i = λ/2‖W̃_i‖² with λ = {config.lam:g}"
    st_loss, why_loss = loss.get(config.loss, (UNDECIDED, f"loss {config.loss!r} is not in the catalogue"))
    st_act, why_act = act.get(config.activation, (UNDECIDED, f"activation {config.activation!r} is not catalogued"))
    return (
        Condition("A1(a)", src, "the loss R is proper, lower semicontinuous and nonnegative", st_loss, why_loss),
        Condition("A1(b)", src, "each σ_i (i < N) is Lipschitz continuous on bounded sets", st_act, why_act),
        Condition(
            "A1(c)", src, "r_i and s_i are nonnegative, lsc and convex", HOLDS,
            f"{lam_txt} (λ ≥ 0: convex, continuous, ≥ 0) and s_i = 0",
        ),
        Condition(
            "A1(d)", src, "R, σ_i, r_i, s_i are real analytic or semialgebraic and continuous on their domains",
            HOLDS if config.activation in cls_act and config.loss == "squared" else UNDECIDED,
            f"loss {cls_loss}; σ {cls_act.get(config.activation, '?')}; r_i polynomial; s_i = 0 — all "
            "semialgebraic, so L̄ is semialgebraic and has the Kurdyka–Łojasiewicz property",
        ),
    )


def _theorem1(config: BCDConfig) -> tuple[Condition, ...]:
    src = "Theorem 1"
    if config.lam > 0:
        ii = Condition("T1(ii)", src, "every r_i is coercive", HOLDS,
                       f"r_i = λ/2‖W̃_i‖² with λ = {config.lam:g} > 0 is coercive: it tends to +∞ as ‖W̃_i‖ → ∞")
        iii = Condition(
            "T1(iii)", src, "L̄ is coercive", HOLDS,
            "λ > 0 bounds every W̃_i on a sublevel set; then U_1 (via ‖U_1 − W̃_1X̃‖), V_1 (via ‖V_1 − σ(U_1)‖, "
            "σ continuous), U_2, V_2, …, U_N, V_N are bounded in turn",
        )
        i = Condition(
            "T1(i)", src, "the iterates have a convergent subsequence", HOLDS,
            "implied by (iii): L̄(Q^k) ≤ L̄(Q⁰) (sufficient descent) keeps Q^k in a bounded sublevel set, "
            "so Bolzano–Weierstrass gives a convergent subsequence",
        )
        return (i, ii, iii)
    ii = Condition("T1(ii)", src, "every r_i is coercive", FAILS,
                   "λ = 0: r_i ≡ 0 is not coercive")
    iii = Condition(
        "T1(iii)", src, "L̄ is coercive", FAILS,
        "λ = 0 and N ≥ 2: at any point with row j of W̃_i, U_i and V_i − σ(0) equal to zero (i < N), the row "
        "vector e_j − σ(0)e_bias annihilates Ṽ_i, so W̃_{i+1} + t·w(e_j − σ(0)e_bias)ᵀ leaves L̄ unchanged "
        "as t → ∞: L̄ has unbounded sublevel sets",
    )
    i = Condition(
        "T1(i)", src, "the iterates have a convergent subsequence", UNDECIDED,
        "cannot be decided from the configuration (λ = 0 leaves the iterates unconstrained); a trace's "
        "max‖W_i‖, max‖V_i‖, max‖U_i‖ columns give evidence of boundedness, which no finite run can prove",
    )
    return (i, ii, iii)


def _exactness(config: BCDConfig) -> Condition:
    if config.splitting == "two" and config.activation != "identity":
        return Condition(
            "exact", "Algorithm 1 (MATH.md §7)",
            "every block update is monotone in its subproblem, and stationary up to η‖X⁺ − X⁻‖", HOLDS,
            "closed forms for V_N, W_N and V_{N-1}; the nonconvex W_i, V_i use a monotone inner solver started at "
            f"the old block that stops on dist(0, ∂Φ) ≤ η‖ΔX‖ (η = {config.eta:g}) or at {config.inner_max_iter} "
            "iterations — the trace records which; the relative-error argument needs the rule to hold",
        )
    alg = "Algorithm 1" if config.splitting == "two" else ("Algorithm 3" if config.skip != "none" else "Algorithm 2")
    return Condition(
        "exact", alg, "every block update is the exact minimiser of its subproblem", HOLDS,
        "closed forms derived in theory.derivations and MATH.md §7–§8 (Cholesky solves, exact ReLU prox); exact up "
        f"to {config.dtype} rounding",
    )


def _extra(config: BCDConfig, n: int | None) -> tuple[Condition, ...]:
    out = [
        Condition("hyper", "Theorems 1–2", "α > 0 and γ > 0", HOLDS,
                  f"α = {config.alpha:g}, γ = {config.gamma:g} (validated by BCDConfig)"),
        _exactness(config),
    ]
    if config.skip != "none":
        out.append(Condition(
            "T3(skip)", "Theorem 3 (Algorithm 3)", "a skip V_i − V_{i-1} − σ_i(U_i) only where d_i = d_{i-1}", HOLDS,
            "skip='auto' places a skip on exactly the layers with d_i = d_{i-1} (bcd.model.skips); the closed "
            "forms of MATH.md §8 are exact minimisers, and the sufficient-descent constant stays min(α, γ)/2",
        ))
    if config.vn_update == "prox_linear":
        L_R = tc.loss_lipschitz_constant(config.reduction, n)
        lr_txt = f"L_R = {L_R:g}" + (" (upper bound 1/n ≤ 1: n unknown)" if config.reduction == "mean" and n is None
                                     else "")
        out.append(Condition("T2(L_R)", "Theorem 2", "∇R is Lipschitz continuous", HOLDS,
                             f"R = (c/2)‖V − Y‖²: ∇R = c(V − Y), {lr_txt}"))
        seeds = tc.seeds_prox_linear_alpha_bound(L_R)
        derived = tc.prox_linear_alpha_bound(L_R, config.gamma)
        out.append(Condition(
            "T2(alpha, seeds)", "Theorem 2 (seeds)", "α > max{0, (L_R − 1)/2}",
            HOLDS if config.alpha > seeds else FAILS, f"α = {config.alpha:g} vs bound {seeds:g} ({lr_txt})",
        ))
        margin = tc.prox_linear_block_constant(config.gamma, config.alpha, L_R)
        out.append(Condition(
            "T2(alpha, derived)", "Theorem 2, derived for the implemented update", "α > max{0, (L_R − γ)/2}",
            HOLDS if config.alpha > derived else FAILS,
            f"α = {config.alpha:g} vs bound {derived:g}; V_N block constant (2α + γ − L_R)/2 = {margin:g} ({lr_txt})",
        ))
    return tuple(out)


def _claims(config: BCDConfig, assumption, conditions, extra) -> tuple[ClaimStatus, ...]:
    a_ok = all(c.status == HOLDS for c in assumption)
    t1 = [c.id for c in conditions if c.status == HOLDS]
    pl = config.vn_update == "prox_linear"
    pl_cond = next((c for c in extra if c.id == "T2(alpha, derived)"), None)
    pl_ok = pl_cond is None or pl_cond.status == HOLDS
    lemma_basis = "Lemma (sufficient descent)" + (" + Theorem 2's derived α condition" if pl else "")
    lemma_reason = (
        "holds for any α, γ > 0 with exact block updates" if not pl
        else ("the prox-linear V_N step decreases L̄ since α > (L_R − γ)/2" if pl_ok
              else "the prox-linear V_N step can increase L̄: α ≤ (L_R − γ)/2 (derived condition fails"
                   + (", although the seeds' condition holds)" if next(c for c in extra if c.id == "T2(alpha, seeds)")
                      .status == HOLDS else ")"))
    )
    thm = "Theorem 2" if pl else ("Theorem 3" if config.skip != "none" else "Theorem 1")
    if not a_ok:
        why_not = "Assumption 1 is not established: " + ", ".join(c.id for c in assumption if c.status != HOLDS)
    elif not t1:
        why_not = "none of Theorem 1's conditions (i)–(iii) is known to hold: " + "; ".join(
            f"{c.id} {c.status}" for c in conditions)
    elif not pl_ok:
        why_not = "Theorem 2's α condition for the implemented update fails"
    else:
        why_not = ""
    thm_ok = not why_not
    b_unknown = config.splitting == "two" and config.activation != "identity"
    thm_reason = (f"Assumption 1 holds and {', '.join(t1)} holds" + (" and α satisfies Theorem 2" if pl else "")
                  if thm_ok else why_not)
    return (
        ClaimStatus(tc.BLOCK_EXACTNESS, True, "closed forms (theory.derivations)",
                    "each update solves its subproblem exactly (derived and checked symbolically)"),
        ClaimStatus(tc.MONOTONE, pl_ok, "per-block descent (MATH.md §4.1)" + (" + Theorem 2 α" if pl else ""),
                    lemma_reason),
        ClaimStatus(tc.SUFFICIENT_DESCENT, pl_ok, lemma_basis, lemma_reason),
        ClaimStatus(tc.RELATIVE_ERROR, a_ok and not b_unknown,
                    "Lemma (relative error), B = bound of the iterates" + (
                        "; Algorithm 1 with σ = Id: b = 3δ [derived]" if config.splitting == "two" else ""),
                    B_UNKNOWN_REASON if b_unknown else
                    ("holds on any finite trace with B = the largest ‖W̃_i‖, ‖U_i‖, ‖Ṽ_i‖ (X̃ included) it "
                     "reached (A1(b))" if a_ok
                     else "needs Assumption 1(b)")),
        ClaimStatus(tc.RATE, thm_ok and not b_unknown, f"{thm}(c)", (
            "the rate constant C needs Algorithm 1's b, not derived here for a nonsmooth σ" if b_unknown else
            thm_reason + ("" if thm_ok else
                          "; the finite-T bound Σ‖g^k‖² ≤ C with B from the trace still follows from the lemmas"))),
        ClaimStatus(tc.CONVERGENCE, thm_ok, f"{thm}(a),(b)", thm_reason),
        ClaimStatus(tc.GLOBAL_MINIMUM, False, "Theorem (global minimum)",
                    "needs an initialisation sufficiently close to a global minimiser, which a configuration "
                    "cannot certify"),
        ClaimStatus(tc.KL_EXPONENT, False, "beyond the paper",
                    "A1(d) gives the KL property, so an exponent θ exists, but no result predicts its value"),
    )


B_UNKNOWN_REASON = (
    "Algorithm 1's constant b is derived here for σ = Id only (MATH.md §7.4: with a kink in σ the W_i component's "
    "factor σ′(W̃_iṼ_{i-1}) jumps when V_{i-1}, updated after W_i, flips an activation, so the simple argument fails); "
    "b_emp is observed")


def theorem_name(config: BCDConfig) -> str:
    """The result that covers the configured algorithm."""
    if config.vn_update == "prox_linear":
        return "Theorem 2 (prox-linear V_N)"
    if config.skip != "none":
        return "Theorem 3 (Algorithm 3, ResNet)"
    return "Theorem 1 (Algorithm 1)" if config.splitting == "two" else "Theorem 1 (Algorithm 2)"


def applicability(config: BCDConfig, *, n: int | None = None) -> Applicability:
    """Decide Assumption 1, Theorem 1 (i)–(iii) and Theorem 2's conditions for ``config``.

    ``n`` (number of samples) only matters for the prox-linear step with mean reduction (L_R = 1/n)."""
    if not isinstance(config, BCDConfig):
        raise ValueError(f"config must be a BCDConfig; got {type(config).__name__}")
    assumption = _assumption(config)
    conditions = _theorem1(config)
    extra = _extra(config, n)
    cfg = asdict(config)
    cfg["hidden"] = list(config.hidden)
    return Applicability(
        config=cfg,
        theorem=theorem_name(config),
        assumption=assumption,
        conditions=conditions,
        extra=extra,
        claims=_claims(config, assumption, conditions, extra),
    )
