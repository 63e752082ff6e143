"""The claims of the theory as data: what is asserted, with which constant, on what grounds.

``claims_for(config, B=..., L0=...)`` returns one :class:`Claim` per claim id of
:mod:`theory.constants`, with the constant as a sympy expression (text) and, where its inputs are
known, as a number; whether the bound is tight (equality is attained, check with equality) or
only an upper/lower bound; whether it is stated in the paper or derived; the hypotheses it needs;
and whether it is *guaranteed* for this configuration (:func:`theory.assumptions.applicability`).
verification/ and reports/ read these records instead of hard-coding numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import sympy as sp

from bcd.config import BCDConfig
from bcd.rundir import json_safe
from theory import constants as tc
from theory import symbolic as sym
from theory.assumptions import Applicability, applicability

PAPER, DERIVED, PAPER_CONST_DERIVED, BEYOND = "paper", "derived", "paper; constant derived", "beyond the paper"


@dataclass(frozen=True)
class Claim:
    """One checkable statement of the theory.

    ``relation`` reads  measured RELATION constant·(scale) ; ``tight`` = the constant is attained for
    some admissible input (PEPit convention: check with equality ± tolerance where the trace allows);
    ``bound`` = "tight" | "lower bound" | "upper bound" | "qualitative"."""

    id: str
    title: str
    statement: str
    latex: str
    relation: str
    constant_name: str | None
    constant_expr: str | None
    constant: float | None
    tight: bool
    bound: str
    source: str
    theorem: str
    assumptions: tuple[str, ...]
    guaranteed: bool
    guarantee_reason: str
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["assumptions"] = list(self.assumptions)
        return json_safe(d)


def _block_details(config: BCDConfig, consts: sym.Constants) -> dict[str, Any]:
    """Per-block constants, their expressions and tightness (MATH.md §4.1; V_N replaced for Theorem 2;
    Algorithm 1: α/2 on every block, MATH.md §7; Algorithm 3: V_i before a skip layer γ(1 + τ_{i+1})/2, §8)."""
    if config.splitting == "two":
        K = tc.RunConstants(config)
        vn = "(2*alpha + gamma - L_R)/2" if config.vn_update == "prox_linear" else "alpha/2"
        try:
            vn_value: float | None = K.block("V", K.N)
        except tc.UnknownConstant:  # prox-linear with a loss that has no L_R
            vn_value = None
        rows = {"V_N": (vn, vn_value), "W_i": ("alpha/2", config.alpha / 2),
                "V_i": ("alpha/2", config.alpha / 2)}
        note = "a monotone (inner) solve of a subproblem with proximal term α/2‖X − X⁻‖² decreases L by ≥ α/2‖Δ‖²"
        return {k: {"expr": e, "value": v, "tight": False, "sharp_expr": e, "note": note} for k, (e, v) in rows.items()}
    bc = sym.run_block_constants(config)
    names = ["V_N_prox_linear" if config.vn_update == "prox_linear" else "V_N", "U_N", "W", "V_i", "U_i"]
    out = {
        k: {"expr": sp.sstr(bc[k].expr), "value": consts.block[k], "tight": bc[k].tight,
            "sharp_expr": sp.sstr(bc[k].sharp), "note": bc[k].note}
        for k in names
    }
    if config.skip != "none":
        if sym.v_inner(config):
            e, v = "gamma - Min(eta, gamma/2)", tc.inner_V_block_constant(config.gamma, config.eta, 2.0)
            note = ("Hessian γ(2I + ŴᵀŴ) ⪰ 2γI (MATH.md §8); a nonzero s_i: inner solver, μ_V/2 − η_V with μ_V = 2γ, "
                    "η_V = min(η, γ/2)")
        else:
            e, v = "gamma", config.gamma
            note = "Hessian γ(2I + ŴᵀŴ) ⪰ 2γI: the act term of layer i+1 also pulls V_i (MATH.md §8)"
        out["V_i (layer i+1 has a skip)"] = {"expr": e, "value": v, "tight": e == "gamma", "sharp_expr": e,
                                             "note": note}
    return out


def claims_for(
    config: BCDConfig,
    *,
    B: float | None = None,
    L0: float | None = None,
    L_star: float = 0.0,
    n: int | None = None,
    L_B: float | None = None,
    widths: tuple[int, ...] | None = None,
) -> list[Claim]:
    """Every claim for ``config``; B (bound on all iterates), L̄⁰ = L̄(Q⁰) and n usually come from a trace.

    L_star defaults to 0, a valid lower bound of L̄ ≥ 0 (so C is an upper bound on the rate constant)."""
    if not isinstance(config, BCDConfig):
        raise ValueError(f"config must be a BCDConfig; got {type(config).__name__}")
    if B is not None and not (isinstance(B, (int, float)) and math.isfinite(B) and B >= 0):
        raise ValueError(f"B={B!r} is not allowed; B must be a finite number >= 0 (the bound on all iterates)")
    if L0 is not None and not (isinstance(L0, (int, float)) and math.isfinite(L0)):
        raise ValueError(f"L0={L0!r} is not allowed; L0 must be a finite number (L̄ at the initial point)")
    if not (isinstance(L_star, (int, float)) and math.isfinite(L_star)):
        raise ValueError(f"L_star={L_star!r} is not allowed; L_star must be a finite number (a lower bound of L̄*)")
    app: Applicability = applicability(config, n=n)
    k = sym.numeric_constants(config, B=B, L0=L0, L_star=L_star, n=n, L_B=L_B, widths=widths)
    pl = config.vn_update == "prox_linear"
    A1 = ("A1(a)", "A1(b)", "A1(c)", "A1(d)")
    lemma_needs = ("hyper", "exact") + (("T2(L_R)", "T2(alpha, derived)") if pl else ())
    thm_needs = (*A1, "T1(i) or T1(ii) or T1(iii)", *lemma_needs)
    thm = "Theorem 2" if pl else ("Theorem 3" if config.skip != "none" else "Theorem 1")

    def g(cid: str) -> tuple[bool, str]:
        s = app.claim_status(cid)
        return s.guaranteed, s.reason

    out = []
    ok, why = g(tc.BLOCK_EXACTNESS)
    out.append(Claim(
        tc.BLOCK_EXACTNESS, "Every block update is the exact minimiser of its subproblem",
        "relative stationarity residual of each block's subproblem ≈ 0 (dtype tolerance)",
        r"0 \in \partial_X f_{\mathrm{blk}}(X^+)", "==", None, None, 0.0, True, "tight", DERIVED,
        "Algorithm 2 (MATH.md §3)", ("exact",), ok, why,
        "closed forms derived in theory.derivations (entrywise, small symbolic dimensions)",
    ))
    ok, why = g(tc.MONOTONE)
    out.append(Claim(
        tc.MONOTONE, "Per-block descent", "L̄ before − L̄ after ≥ c_blk‖X⁺ − X⁻‖² for every single block update",
        r"\bar{\mathcal L}(\ldots X^-\ldots) - \bar{\mathcal L}(\ldots X^+\ldots) \ge c_{\mathrm{blk}}\|X^+-X^-\|_F^2",
        ">=", "c_blk", "per block (details)", None, False, "lower bound", DERIVED,
        "MATH.md §4.1" + (" + Theorem 2" if pl else ""), lemma_needs, ok, why,
        "tight (equality) for U_N always, V_i when ŴΔ = 0, and the prox-linear V_N step for a quadratic loss",
        {"blocks": _block_details(config, k)},
    ))
    ok, why = g(tc.SUFFICIENT_DESCENT)
    out.append(Claim(
        tc.SUFFICIENT_DESCENT, "Sufficient descent", "L̄(Q^{k−1}) − L̄(Q^k) ≥ a‖ΔQ^k‖²",
        r"\bar{\mathcal L}(Q^{k-1}) - \bar{\mathcal L}(Q^k) \ge a\,\|Q^k - Q^{k-1}\|_F^2",
        ">=", "a", k.expressions["a"], k.a, False, "lower bound", PAPER_CONST_DERIVED,
        "Lemma (sufficient descent)" + (", Theorem 2" if pl else ""), lemma_needs, ok, why,
        "a = min over blocks of c_blk; sharp variant (exact Hessian moduli) in details",
        {"a_sharp": k.a_sharp, "a_paper_form": sp.sstr(sym.SUFFICIENT_DESCENT_PAPER)},
    ))
    ok, why = g(tc.RELATIVE_ERROR)
    out.append(Claim(
        tc.RELATIVE_ERROR, "Relative error", "‖g^k‖ ≤ b‖ΔQ^k‖ for the g^k ∈ ∂L̄(Q^k) of MATH.md §5",
        r"\|g^k\|_F \le b\,\|Q^k - Q^{k-1}\|_F", "<=", "b", k.expressions["b"], k.b, False, "upper bound",
        PAPER_CONST_DERIVED, "Lemma (relative error)", ("A1(b)", "B from the trace"), ok, why,
        "loose: measured ratios are typically 1–5 while b is 10³–10⁵" + (
            "; δ gains α + γ + L_R for the prox-linear V_N step [derived]" if pl else ""),
        {"delta": k.delta, "delta_expr": k.expressions["delta"], "B": k.B, "L_B": k.L_B},
    ))
    ok, why = g(tc.RATE)
    out.append(Claim(
        tc.RATE, "Rate O(1/T)", "(1/T)Σ_{k≤T}‖g^k‖² ≤ C/T, hence min_{k≤T}‖g^k‖² ≤ C/T",
        r"\frac1T\sum_{k=1}^T\|g^k\|_F^2 \le \frac{C}{T}", "<=", "C", k.expressions["C"], k.C, False,
        "upper bound", PAPER_CONST_DERIVED, f"{thm}(c)", thm_needs, ok, why,
        "C = b²(L̄⁰ − L̄*)/a with L̄* = L_star (0 is a valid lower bound); empirically the partial sums plateau "
        "and the running average's log-log slope tends to −1 or steeper",
        {"L0": k.L0, "L_star": k.L_star, "a": k.a, "b": k.b},
    ))
    ok, why = g(tc.CONVERGENCE)
    out.append(Claim(
        tc.CONVERGENCE, "Global convergence to a critical point",
        "L̄(Q^k) converges; Σ_k‖ΔQ^k‖ < ∞ (finite length) and ‖g^k‖ → 0",
        r"\sum_k \|Q^k - Q^{k-1}\|_F < \infty,\ \ g^k \to 0", "->", None, None, None, False, "qualitative",
        PAPER, f"{thm}(a),(b)", thm_needs, ok, why,
        "observable as plateauing partial sums Σ‖ΔQ^k‖ and bounded max‖W_i‖, ‖V_i‖, ‖U_i‖",
    ))
    ok, why = g(tc.GLOBAL_MINIMUM)
    out.append(Claim(
        tc.GLOBAL_MINIMUM, "Convergence to a global minimiser from a nearby start",
        "started close enough to a global minimiser, the limit is a global minimiser (L̄* = 0 if realisable)",
        r"\bar{\mathcal L}(Q^k) \to \min \bar{\mathcal L}", "->", None, None, None, False, "qualitative", PAPER,
        "Theorem (global minimum)", (*thm_needs, "initialisation near a global minimiser"), ok, why,
        "no value: the limit is min L̄, which is 0 only if the problem is realisable (and is unknown otherwise); "
        "testable on a realisable teacher–student problem started near the teacher",
    ))
    ok, why = g(tc.KL_EXPONENT)
    out.append(Claim(
        tc.KL_EXPONENT, "KL exponent of the limit", "|L̄(Q^k) − L̄*|^θ ≤ c‖g^k‖ near the limit; θ estimated",
        r"|\bar{\mathcal L}(Q^k) - \bar{\mathcal L}^*|^\theta \le c\,\|g^k\|", "<=", "theta", None, None, False,
        "qualitative", BEYOND, "KL property (A1(d))", ("A1(d)",), ok, why,
        "θ = 0 finite, θ ∈ (0, ½] linear, θ ∈ (½, 1) sublinear local convergence",
    ))
    if pl:
        p = sym.prox_linear_descent()
        out[1].details["alpha_condition"] = {
            "seeds_expr": sp.sstr(p["alpha_bound_seeds"]), "seeds": k.alpha_bound_seeds,
            "derived_expr": sp.sstr(p["alpha_bound_derived"]), "derived": k.alpha_bound_derived,
            "L_R": k.L_R, "L_R_note": k.L_R_note, "explanation": sym.ALPHA_CONDITION_EXPLANATION,
        }
    return out


def claim(claims: list[Claim], claim_id: str) -> Claim:
    """The claim with ``claim_id`` from a ``claims_for`` list."""
    for c in claims:
        if c.id == claim_id:
            return c
    raise ValueError(f"claim {claim_id!r} is unknown; allowed: {', '.join(c.id for c in claims)}")
