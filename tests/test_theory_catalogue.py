"""theory/ reads the catalogue of Proposition 1 (bcd.catalogue): the `bcd theory` table lists every registered record,
and Assumption 1, Theorem 1 (i)–(iii), Theorem 2 and the claims are decided from the run's records."""

from __future__ import annotations

import dataclasses
import math

import pytest
import sympy as sp

from bcd import BCDConfig, catalogue
from bcd.activations import LeakyReLU
from theory import constants as tc
from theory import symbolic as sym
from theory.assumptions import FAILS, HOLDS, UNDECIDED, applicability, catalogue_entries, run_description
from theory.claims import claim, claims_for
from theory.cli import render, theory_report

S = sym.SYMBOLS
CLAIMS = (tc.BLOCK_EXACTNESS, tc.MONOTONE, tc.SUFFICIENT_DESCENT, tc.RELATIVE_ERROR, tc.RATE, tc.CONVERGENCE)


def cfg(**kw) -> BCDConfig:
    return BCDConfig(hidden=(4, 4), **kw)


def forced(vn_update: str, **kw) -> BCDConfig:
    """A configuration BCDConfig may refuse (hinge with the prox-linear step): the theory must decide it by itself."""
    try:
        return cfg(vn_update=vn_update, **kw)
    except ValueError:
        c = cfg(**kw)
        object.__setattr__(c, "vn_update", vn_update)
        return c


# ----------------------------------------------------------------------------- the catalogue table


def test_catalogue_lists_every_registered_record_with_its_classes():
    entries = catalogue_entries()
    registered = {(k, name) for k in catalogue.KINDS for name in catalogue.names(k)}
    assert {(e.kind, e.name) for e in entries} == registered and len(entries) == len(registered)
    for e, rec in zip(entries, [r for k in catalogue.KINDS for r in catalogue.records(k)], strict=True):
        assert (e.spec, e.formula, e.kl_class, e.semialgebraic, e.real_analytic, e.smooth) == \
            (rec.spec, rec.formula, rec.kl_class, rec.semialgebraic, rec.real_analytic, rec.smooth)
        assert e.supported, e  # the three-splitting engine takes every record
    by = {(e.kind, e.name): e for e in entries}
    assert "Theorem 2 (prox-linear V_N) does not apply" in by["loss", "hinge"].note
    assert "L_R = 0.5·c" in by["loss", "cross_entropy"].note and "L_R = c:" in by["loss", "squared"].note
    assert "bounded sets only" in by["activation", "polynomial"].note
    assert "no certificate" in by["activation", "sigmoid"].note
    assert by["regulariser", "nonneg"].note.count("not coercive") == 1
    assert "coercive iff lam > 0" in by["regulariser", "l1"].note
    assert "coercive (+∞ off a bounded set)" in by["regulariser", "box"].note
    assert "W step: closed form" in by["regulariser", "l2"].note


def test_a_newly_registered_record_shows_up_in_the_catalogue(monkeypatch):
    entry = catalogue.Entry("activation", "test_kink", lambda: LeakyReLU("test_kink", (), "max(u, 0) (test)", True,
                                                                         False, False, kink=(0.0, 1.0)))
    monkeypatch.setitem(catalogue.REGISTRY["activation"], "test_kink", entry)
    cached = getattr(catalogue, "_build_cached", None)  # a cache of built records, if the registry keeps one
    if cached is not None:
        monkeypatch.setattr(catalogue, "_build_cached", cached.__wrapped__)  # no stale test record after the test
    new = [e for e in catalogue_entries() if e.name == "test_kink"]
    assert len(new) == 1 and new[0].formula == "max(u, 0) (test)" and new[0].kl_class == "semialgebraic"
    app = applicability(cfg(activation="test_kink", lam=0.1))
    assert any(e.name == "test_kink" for e in app.catalogue)
    assert app.condition("A1(b)").status == HOLDS and "test_kink" in app.condition("A1(b)").reason


def test_bcd_theory_prints_the_records_and_the_whole_catalogue():
    c = cfg(loss="cross_entropy", vn_update="prox_linear", r="l1(0.01)", s="box(-1, 1)", reg_bias=False)
    out = render(theory_report(c, B=2.0))
    first = out.splitlines()[0]
    for text in ("loss cross_entropy (sum)", "σ = relu", "r_i = l1(0.01) on Ŵ_i only", "reg_bias = false",
                 "s_i = box(-1, 1)"):
        assert text in first, (text, first)
    assert "λ =" not in first
    tail = out[out.index("Proposition 1 catalogue"):]
    for k in catalogue.KINDS:
        for e in catalogue.REGISTRY[k].values():
            assert e.usage in tail, e.usage
    assert "η " in out and "W_1" in out  # the inner solver's η is a constant of this run


def test_run_description_of_the_lambda_shortcut_and_of_per_layer_specs():
    assert run_description(BCDConfig(hidden=(3,), lam=0.1)) == \
        "loss squared (sum), σ = relu, r_i = l2(0.1) = λ/2‖·‖², λ = 0.1 on W̃_i (bias included), s_i = none"
    d = dataclasses.asdict(cfg(r=("l1(0.1)", "none", "l1(0.1)"), s=("none", "nonneg", "none")))
    text = run_description(d)
    assert "r_1, r_3 = l1(0.1); r_2 = none" in text and "s_1, s_3 = none; s_2 = nonneg" in text


# ----------------------------------------------------------------------------- losses and Theorem 2


def test_cross_entropy_with_relu_and_the_prox_linear_step():
    c = cfg(loss="cross_entropy", vn_update="prox_linear", gamma=0.1, alpha=0.3, lam=0.1)
    app = applicability(c)
    lr = app.condition("T2(L_R)")
    assert lr.status == HOLDS and "L_R = 0.5·c" in lr.reason and "L_R = 0.5" in lr.reason
    assert app.condition("T2(alpha, derived)").status == HOLDS  # 0.3 > (0.5 − 0.1)/2 = 0.2
    assert "0.2" in app.condition("T2(alpha, derived)").reason
    assert app.condition("exact").status == HOLDS
    assert app.condition("A1(d)").status == HOLDS and "cross_entropy: real analytic" in app.condition("A1(d)").reason
    for cid in CLAIMS:
        assert app.guaranteed(cid), cid
    assert "L_R of R = cross_entropy" in app.claim_status(tc.SUFFICIENT_DESCENT).reason
    low = applicability(cfg(loss="cross_entropy", vn_update="prox_linear", gamma=0.1, alpha=0.15, lam=0.1))
    assert low.condition("T2(alpha, derived)").status == FAILS and not low.guaranteed(tc.SUFFICIENT_DESCENT)
    mean = applicability(cfg(loss="cross_entropy", vn_update="prox_linear", reduction="mean", gamma=0.1, alpha=0.01),
                         n=100)
    assert mean.condition("T2(alpha, derived)").status == HOLDS and "L_R = 0.005" in mean.condition("T2(L_R)").reason
    K = tc.RunConstants(c, n=10)
    assert K.L_R == 0.5 and K.alpha_bound() == pytest.approx(0.2)
    assert K.a() == pytest.approx(min(0.05, (2 * 0.3 + 0.1 - 0.5) / 2))
    k = sym.numeric_constants(c, n=10)
    assert k.L_R == 0.5 and "cross_entropy" in k.L_R_note and k.alpha_bound_derived == pytest.approx(0.2)
    blocks = claim(claims_for(c), tc.MONOTONE).details["blocks"]
    assert not blocks["V_N_prox_linear"]["tight"]  # equality only for a quadratic loss
    assert tc.loss_lipschitz_constant("sum", None, "logistic") == 0.25
    assert tc.loss_lipschitz_constant("mean", 4, "cross_entropy") == 0.125
    assert tc.loss_lipschitz_constant("sum", None, "hinge") is None


def test_hinge_with_the_prox_linear_step_fails_theorem2_with_its_reason():
    c = forced("prox_linear", loss="hinge", lam=0.1)
    app = applicability(c)
    lr = app.condition("T2(L_R)")
    assert lr.status == FAILS and "not differentiable" in lr.reason and "Theorem 2 does not apply" in lr.reason
    for cid in ("T2(alpha, seeds)", "T2(alpha, derived)"):
        assert app.condition(cid).status == UNDECIDED and "needs L_R" in app.condition(cid).reason
    assert app.condition("exact").status == FAILS
    for cid in CLAIMS:
        assert not app.guaranteed(cid), cid
    for cid in (tc.SUFFICIENT_DESCENT, tc.CONVERGENCE, tc.RATE):
        assert app.claim_status(cid).reason.startswith("Theorem 2 does not apply: R = hinge"), cid
    K = tc.RunConstants(c)
    assert K.L_R is None
    with pytest.raises(tc.UnknownConstant, match="not differentiable"):
        K.a()
    with pytest.raises(tc.UnknownConstant):
        K.alpha_bound()
    k = sym.numeric_constants(c, B=2.0, L0=10.0)
    assert k.a is None and k.L_R is None and k.C is None and k.alpha_bound_derived is None
    assert "not differentiable" in k.L_R_note
    assert claim(claims_for(c), tc.SUFFICIENT_DESCENT).constant is None


def test_hinge_with_its_exact_prox_is_covered_by_theorem1():
    app = applicability(cfg(loss="hinge", lam=0.1))
    assert not any(c.id.startswith("T2") for c in app.extra)
    assert app.condition("exact").status == HOLDS and "exact prox of R = hinge" in app.condition("exact").reason
    assert "all semialgebraic" in app.condition("A1(d)").reason
    for cid in CLAIMS:
        assert app.guaranteed(cid), cid


# ----------------------------------------------------------------------------- activations


def test_sigmoid_is_lipschitz_but_its_u_prox_has_no_certificate():
    app = applicability(cfg(activation="sigmoid", lam=0.1))
    b = app.condition("A1(b)")
    assert b.status == HOLDS and "0.25-Lipschitz on all of ℝ" in b.reason
    d = app.condition("A1(d)")
    assert d.status == HOLDS and "σ = sigmoid: real analytic" in d.reason
    assert "semialgebraic or real analytic" in d.reason
    ex = app.condition("exact")
    assert ex.status == UNDECIDED and "σ = sigmoid" in ex.reason and "without a certificate" in ex.reason
    for cid in CLAIMS:
        st = app.claim_status(cid)
        assert not st.guaranteed and "without a certificate" in st.reason, cid
    assert app.condition("T1(ii)").status == HOLDS  # coercivity does not depend on σ
    assert tc.RunConstants(cfg(activation="sigmoid")).L_B_at(7.0) == 0.25


def test_polynomial_activation_is_lipschitz_on_bounded_sets_only():
    c = cfg(activation="polynomial(0, 0, 1)", lam=0.1)
    unknown = applicability(c).condition("A1(b)")
    assert unknown.status == HOLDS and "bounded sets only" in unknown.reason and "not known" in unknown.reason
    known = applicability(c, B=3.0).condition("A1(b)")
    assert known.status == HOLDS and "B = 3" in known.reason and "L_B = 6" in known.reason
    app = applicability(c)
    assert app.condition("exact").status == HOLDS and "all real roots" in app.condition("exact").reason
    for cid in CLAIMS:
        assert app.guaranteed(cid), cid
    K = tc.RunConstants(c)
    assert math.isinf(K.L_B) and K.L_B_at(3.0) == 6.0
    assert K.delta(3.0) == tc.delta(1.0, 5.0, 3.0, 6.0)
    k_none, k_B = sym.numeric_constants(c), sym.numeric_constants(c, B=3.0)
    assert k_none.to_dict()["L_B"] is None and "needs B" in k_none.L_B_note
    assert k_B.L_B == 6.0 and k_B.delta == pytest.approx(K.delta(3.0))
    assert "L_B = 6" not in render(theory_report(c))  # without B no value is invented
    cubic = applicability(cfg(activation="polynomial(0, 1, 0, -0.5)", lam=0.1), B=2.0).condition("A1(b)")
    assert "L_B = 7" in cubic.reason  # 1 + 3·0.5·2²


# ----------------------------------------------------------------------------- regularisers, Theorem 1


def test_l1_on_the_weights_is_coercive_and_uses_the_inner_solver():
    c = cfg(r="l1(0.01)")
    app = applicability(c)
    assert app.condition("T1(ii)").status == HOLDS and "l1(0.01) is coercive" in app.condition("T1(ii)").reason
    assert app.condition("T1(iii)").status == HOLDS and app.condition("T1(i)").status == HOLDS
    assert app.condition("A1(c)").status == HOLDS and "λ‖X‖₁" in app.condition("A1(c)").reason
    assert "all semialgebraic" in app.condition("A1(d)").reason and "l1(0.01): semialgebraic" in \
        app.condition("A1(d)").reason
    ex = app.condition("exact")
    assert ex.status == HOLDS and "monotone inner solver" in ex.reason and "η_W = min(η, α/4) = 0.5" in ex.reason
    for cid in CLAIMS:
        assert app.guaranteed(cid), cid
    assert "α/2 by monotonicity alone" in app.claim_status(tc.SUFFICIENT_DESCENT).reason
    assert "b gains + η" in app.claim_status(tc.RELATIVE_ERROR).reason
    K = tc.RunConstants(c)
    assert K.inner_blocks == (("W", 1), ("W", 2), ("W", 3))
    assert K.block("W", 2) == 2.5 and K.a() == 0.5  # W keeps α/2 (monotone): a unchanged
    assert K.b(2.0) == pytest.approx(tc.relative_error_constant(1.0, 5.0, 2.0, 3) + c.eta)


def test_nonneg_and_none_are_not_coercive_and_leave_a_flat_direction():
    for spec in ("nonneg", "none"):
        app = applicability(cfg(r=spec))
        ii, iii = app.condition("T1(ii)"), app.condition("T1(iii)")
        assert ii.status == FAILS and "is not coercive" in ii.reason, spec
        assert iii.status == FAILS and "annihilates Ṽ_1" in iii.reason, spec
        assert app.condition("T1(i)").status == UNDECIDED
        assert not app.guaranteed(tc.CONVERGENCE) and "T1(ii) fails" in app.claim_status(tc.CONVERGENCE).reason
        assert app.guaranteed(tc.SUFFICIENT_DESCENT)
    assert "unbounded" in applicability(cfg(r="nonneg")).condition("T1(ii)").reason
    # σ(0) = 1/2: the direction e_j − σ(0)e_bias leaves the orthant, so no flat direction is claimed
    sig = applicability(cfg(r="nonneg", activation="sigmoid")).condition("T1(iii)")
    assert sig.status == UNDECIDED and "not decided" in sig.reason
    # r_3 ≡ 0, but 0 ∉ [0.5, 1] = dom r_2: the construction is infeasible
    mixed = applicability(cfg(r=("l1(0.1)", "box(0.5, 1)", "none")))
    assert mixed.condition("T1(ii)").reason == "r_3 = none is not coercive (r ≡ 0)"
    assert mixed.condition("T1(iii)").status == UNDECIDED


def test_box_and_unit_interval_are_coercive():
    for spec in ("box(-1, 1)", "unit_interval", "elastic_net(0, 0.1)", "l2(0.1)"):
        app = applicability(cfg(r=spec))
        assert app.condition("T1(ii)").status == HOLDS, spec
        assert app.guaranteed(tc.CONVERGENCE), spec
    assert "bounded set" in applicability(cfg(r="box(-1, 1)")).condition("T1(ii)").reason
    assert applicability(cfg(r="l2(0.1)")).config["lam"] == 0.1  # the λ shortcut: one spelling, same decision


def test_reg_bias_false_leaves_the_bias_unpenalised_so_r_is_not_coercive():
    c = cfg(lam=0.1, reg_bias=False)
    app = applicability(c)
    ii = app.condition("T1(ii)")
    assert ii.status == FAILS and "bias column" in ii.reason and "not coercive in W̃_i" in ii.reason
    assert app.condition("T1(iii)").status == UNDECIDED
    assert not app.guaranteed(tc.CONVERGENCE) and app.guaranteed(tc.SUFFICIENT_DESCENT)
    assert "Ŵ_i only" in app.condition("A1(c)").reason and "Ŵ_i only" in run_description(c)
    assert "the bias unpenalised" in app.condition("exact").reason  # still the Cholesky solve
    assert sym.w_kind(c) == "exact" and sym.run_block_constants(c)["W"].sharp == S["alpha"]
    flat = applicability(cfg(r="nonneg", reg_bias=False, activation="sigmoid")).condition("T1(iii)")
    assert flat.status == FAILS  # r_2 sees only Ŵ_2's part w e_jᵀ ≥ 0: constant


def test_box_on_the_hidden_V_uses_the_inner_solver_with_its_own_descent_constant():
    c = cfg(s="box(-1, 1)", lam=0.1)
    app = applicability(c)
    assert app.condition("A1(c)").status == HOLDS and "closed convex set" in app.condition("A1(c)").reason
    ex = app.condition("exact")
    assert ex.status == HOLDS and "V_i (i < N) with s_i = box(-1, 1): monotone inner solver" in ex.reason
    assert "then the exact prox of s_N = box(-1, 1)" in ex.reason
    reason = app.claim_status(tc.MONOTONE).reason
    assert "μ_V/2 − η_V = γ/2 − min(η, γ/4) = 0.25" in reason and "provided the rule fired" in reason
    for cid in CLAIMS:
        assert app.guaranteed(cid), cid
    K = tc.RunConstants(c)
    assert K.inner_blocks == (("V", 1), ("V", 2))  # s_N on V_N is an exact prox, not an inner solve
    assert K.block("V", 1) == 0.25 and K.block("V", 3) == 2.5 and K.a() == 0.25
    small = tc.RunConstants(cfg(s="l1(0.01)", inner_eta=0.1))
    assert small.block("V", 2) == pytest.approx(0.4) and small.a() == pytest.approx(0.4)
    res = tc.RunConstants(BCDConfig(hidden=(4, 4), skip="auto", s="box(-1, 1)"), widths=(3, 4, 4, 2))
    assert res.block("V", 1) == pytest.approx(1.0 - 0.5)  # γρ/2 − min(η, γρ/4), ρ = 2
    assert res.block("V", 2) == pytest.approx(0.25)
    blocks = claim(claims_for(BCDConfig(hidden=(4, 4), skip="auto", s="box(-1, 1)"), widths=(3, 4, 4, 2)),
                   tc.MONOTONE).details["blocks"]
    assert blocks["V_i"]["expr"] == "gamma/2 - Min(eta, gamma/4)"
    assert blocks["V_i (layer i+1 has a skip)"]["value"] == pytest.approx(0.5)


@pytest.mark.parametrize("kw", [dict(r="l1(0.01)"), dict(s="box(-1, 1)"), dict(s="l1(0.1)", inner_eta=0.05),
                                dict(loss="cross_entropy", vn_update="prox_linear", gamma=0.2, alpha=0.3),
                                dict(loss="logistic", activation="leaky_relu(0.1)", r="nonneg", reg_bias=False),
                                dict(activation="polynomial(0, 0, 1)", s="unit_interval"),
                                dict(skip="auto", r="elastic_net(0.01, 0.01)", s="nonneg")])
def test_printed_expressions_evaluate_to_the_run_constants(kw):
    """a and b as printed by ``bcd theory`` evaluate to RunConstants' numbers for any records (η included)."""
    c = cfg(**kw)
    widths = (5, 4, 4, 3) if c.skip != "none" else None
    k = sym.numeric_constants(c, B=3.0, n=50, widths=widths)
    K = tc.RunConstants(c, widths, n=50)
    subs = {S["gamma"]: c.gamma, S["alpha"]: c.alpha, S["L_R"]: K.L_R, S["B"]: 3.0, S["N"]: c.N,
            S["L_B"]: K.L_B_at(3.0), S["eta"]: c.eta}
    local = {name: S[name] for name in ("gamma", "alpha", "L_R", "B", "N", "L_B", "eta")}
    assert float(sp.sympify(k.expressions["a"], locals=local).subs(subs)) == pytest.approx(K.a(), rel=1e-12)
    assert float(sp.sympify(k.expressions["b"], locals=local).subs(subs)) == pytest.approx(K.b(3.0), rel=1e-12)
    assert k.a == pytest.approx(K.a()) and k.a_sharp >= k.a - 1e-15
    assert k.b == pytest.approx(K.b(3.0))


def test_the_classic_family_keeps_its_constants():
    c = cfg()
    assert sym.run_block_constants(c) == sym.block_constants("relu")
    assert sym.run_sufficient_descent(c) == sym.sufficient_descent("relu", "prox")
    assert tc.RunConstants(c).inner_blocks == ()
    assert applicability(cfg(lam=0.1)).claim_status(tc.BLOCK_EXACTNESS).reason == \
        "each update solves its subproblem exactly (derived and checked symbolically)"
