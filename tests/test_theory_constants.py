"""theory.symbolic (sympy) against theory.constants (numbers), the derived lemmas, Theorem 2's α condition
(checked on the engine's prox-linear step, where the derived block constant is exact), and claims_for."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import sympy as sp
import torch

from bcd import BCDConfig
from bcd.inputs import make_problem
from bcd.objective import objective
from bcd.problem import initial_state
from bcd.schedule import schedule_for
from theory import constants as tc
from theory import symbolic as sym
from theory.claims import claim, claims_for
from verification import schema as sc
from verification.trace import Trace

S = sym.SYMBOLS


def draws(n=40, seed=11):
    rs = np.random.default_rng(seed)
    for _ in range(n):
        yield {
            "gamma": float(rs.uniform(0.01, 20)), "alpha": float(rs.uniform(0.01, 20)),
            "lam": float(rs.choice([0.0, rs.uniform(0, 3)])), "B": float(rs.uniform(0, 50)),
            "L_B": float(rs.choice([1.0, 0.25])), "N": int(rs.integers(1, 12)), "L_R": float(rs.uniform(0.001, 5)),
            "L0": float(rs.uniform(1, 1e4)), "L_star": float(rs.uniform(0, 1)), "c": float(rs.uniform(0.001, 1)),
        }


def ev(expr, v) -> float:
    return float(expr.xreplace({S[k]: sp.Float(x, 30) for k, x in v.items()}).evalf(30))


def block_key(block, layer, N):
    if block == "W":
        return "W"
    return ("V_N" if layer == N else "V_i") if block == "V" else ("U_N" if layer == N else "U_i")


def agree(numeric, symbolic, values, rel=1e-12) -> bool:
    """The comparison used below: a numeric function equals its sympy expression at every draw."""
    return all(math.isclose(numeric(v), ev(symbolic, v), rel_tol=rel, abs_tol=1e-300) for v in values)


def test_every_numeric_constant_equals_its_sympy_expression():
    vals = list(draws())
    a_expr = sym.sufficient_descent("relu", "prox")
    assert agree(lambda v: tc.sufficient_descent_constant(v["gamma"], v["alpha"]), a_expr, vals)
    assert agree(lambda v: tc.sufficient_descent_constant(v["gamma"], v["alpha"]), sym.SUFFICIENT_DESCENT_PAPER, vals)
    for blk, layer, N in [("V", 3, 3), ("U", 3, 3), ("W", 3, 3), ("W", 1, 3), ("V", 2, 3), ("U", 1, 3)]:
        expr = sym.block_constants()[block_key(blk, layer, N)].expr
        assert agree(lambda v, b=blk, i=layer, n=N: tc.block_descent_constant(b, i, n, v["gamma"], v["alpha"]),
                     expr, vals), (blk, layer)
    assert agree(lambda v: tc.delta(v["gamma"], v["alpha"], v["B"], v["L_B"]), sym.DELTA, vals)
    assert agree(lambda v: tc.relative_error_constant(v["gamma"], v["alpha"], v["B"], v["N"], v["L_B"]),
                 sym.relative_error_constant("prox"), vals)
    b_expr, c_expr = sym.relative_error_constant("prox"), sym.rate_constant("relu", "prox")
    assert agree(lambda v: tc.rate_constant(ev(a_expr, v), ev(b_expr, v), v["L0"], v["L_star"]), c_expr, vals)
    pl = sym.prox_linear_descent()
    assert agree(lambda v: tc.prox_linear_alpha_bound(v["L_R"], v["gamma"]), pl["alpha_bound_derived"], vals)
    assert agree(lambda v: tc.seeds_prox_linear_alpha_bound(v["L_R"]), pl["alpha_bound_seeds"], vals)
    assert agree(lambda v: tc.prox_linear_block_constant(v["gamma"], v["alpha"], v["L_R"]), pl["block_constant"], vals)
    assert agree(lambda v: tc.sufficient_descent_constant_prox_linear(v["gamma"], v["alpha"], v["L_R"]),
                 sym.sufficient_descent("relu", "prox_linear"), vals)
    assert agree(lambda v: tc.delta_prox_linear(v["gamma"], v["alpha"], v["B"], v["L_R"], v["L_B"]),
                 sym.DELTA_PROX_LINEAR, vals)
    assert agree(lambda v: tc.relative_error_constant_prox_linear(v["gamma"], v["alpha"], v["B"], v["N"], v["L_R"],
                                                                  v["L_B"]), sym.relative_error_constant("prox_linear"),
                 vals)
    assert agree(lambda v: tc.delta_two_splitting(v["gamma"], v["alpha"], v["B"]), sym.DELTA_TWO, vals)
    assert agree(lambda v: tc.delta_two_splitting(v["gamma"], v["alpha"], v["B"], v["L_R"]),
                 sym.DELTA_TWO_PROX_LINEAR, vals)
    for vn in ("prox", "prox_linear"):  # Algorithm 1, σ = Id: b = 3δ, and RunConstants reads the same formula
        for v in vals[:5]:
            cfg = BCDConfig(hidden=(3,), splitting="two", activation="identity", gamma=v["gamma"], alpha=v["alpha"],
                            vn_update=vn, reduction="sum")
            expr = sym.relative_error_constant(vn, "two").subs(S["L_R"], 1)
            assert math.isclose(tc.RunConstants(cfg).b(v["B"]), ev(expr, v), rel_tol=1e-12)
    for n in (1, 7, 6000):
        assert tc.loss_lipschitz_constant("mean", n) == ev(sym.LOSS_LIPSCHITZ["mean"], {"n": n})
    assert tc.loss_lipschitz_constant("sum") == 1.0 == float(sym.LOSS_LIPSCHITZ["sum"])


def test_the_comparison_fails_for_a_wrong_numeric_constant():
    vals = list(draws(10))
    assert not agree(lambda v: min(v["gamma"], v["alpha"]), sym.sufficient_descent(), vals)
    derived = sym.prox_linear_descent()["alpha_bound_derived"]
    assert not agree(lambda v: tc.prox_linear_alpha_bound(v["L_R"], 1.0), derived, vals)  # γ forgotten


def test_descent_lemma_and_block_constants_are_derived():
    expr, p, mu = sym.descent_lemma()
    assert sp.simplify(expr - (p + mu) / 2) == 0
    bc = sym.block_constants()
    g, a, c, lam = S["gamma"], S["alpha"], S["c"], S["lam"]
    expected = {"V_N": a / 2, "U_N": g, "W": a / 2, "V_i": g / 2, "U_i": a / 2}
    for k, e in expected.items():
        assert sp.simplify(bc[k].expr - e) == 0, k
    assert sp.simplify(bc["V_N"].sharp - (a + (c + g) / 2)) == 0
    assert sp.simplify(bc["W"].sharp - (a + lam / 2)) == 0
    assert sp.simplify(sym.block_constants("identity")["U_i"].sharp - (a + g)) == 0


def test_theorem2_alpha_condition_both_forms():
    pl = sym.prox_linear_descent()
    g, a, L_R = S["gamma"], S["alpha"], S["L_R"]
    assert sp.simplify(pl["block_constant"] - (2 * a + g - L_R) / 2) == 0
    assert sp.simplify(pl["difference"].subs(g, 1)) == 0  # the two forms agree at γ = 1 ...
    assert pl["difference"].subs({g: sp.Rational(1, 10), L_R: 1}) != 0  # ... and differ otherwise
    assert "agree at γ = 1" in sym.ALPHA_CONDITION_EXPLANATION


def prox_linear_V_N_step(gamma, alpha, reduction="sum"):
    """Apply the engine's prox-linear V_N step once; return (L̄ decrease, ‖ΔV_N‖², L_R)."""
    config = BCDConfig(hidden=(4,), gamma=gamma, alpha=alpha, vn_update="prox_linear", reduction=reduction)
    rs = np.random.default_rng(4)
    problem = make_problem(rs.normal(size=(9, 3)), rs.integers(0, 3, size=9), config, n_classes=3)
    state = initial_state(problem)
    state.V[2] = state.V[2] + torch.tensor(rs.normal(size=state.V[2].shape))
    step = schedule_for("three", 2)[0]
    before = objective(state, problem)
    new = step.update(state, problem, 2, {})
    d2 = float(torch.sum((new - state.V[2]) ** 2))
    state.set("V", 2, new)
    return before - objective(state, problem), d2, problem.c


@pytest.mark.parametrize(("gamma", "alpha", "reduction"), [(0.1, 0.3, "sum"), (0.1, 0.5, "sum"), (2.0, 0.05, "sum"),
                                                           (0.5, 0.2, "mean")])
def test_prox_linear_block_constant_is_exact_on_the_engine(gamma, alpha, reduction):
    """Squared loss is quadratic: L̄ decrease = (2α + γ − L_R)/2‖ΔV_N‖² exactly (the derived constant is tight)."""
    dec, d2, L_R = prox_linear_V_N_step(gamma, alpha, reduction)
    assert dec == pytest.approx(tc.prox_linear_block_constant(gamma, alpha, L_R) * d2, rel=1e-9)


def test_seeds_condition_is_not_enough_for_the_implemented_update():
    """γ = 0.1, α = 0.3, L_R = 1: the seeds' α > 0 holds but α ≤ (L_R − γ)/2 = 0.45 and L̄ rises."""
    alpha = 0.3
    assert tc.seeds_prox_linear_alpha_bound(1.0) < alpha < tc.prox_linear_alpha_bound(1.0, 0.1)
    dec, d2, _ = prox_linear_V_N_step(0.1, 0.3)
    assert dec < 0 and d2 > 0
    dec, _, _ = prox_linear_V_N_step(0.1, 0.5)  # α above the derived bound: descent
    assert dec > 0


def test_claims_for_covers_every_claim_with_numbers_from_constants():
    config = BCDConfig(gamma=0.7, alpha=2.0, hidden=(5, 5))
    cs = claims_for(config, B=4.0, L0=123.0, n=100)
    assert {c.id for c in cs} == set(tc.CLAIM_IDS) | {tc.GLOBAL_MINIMUM}
    a, b = tc.sufficient_descent_constant(0.7, 2.0), tc.relative_error_constant(0.7, 2.0, 4.0, 3)
    assert claim(cs, tc.SUFFICIENT_DESCENT).constant == pytest.approx(a, rel=1e-14)
    assert claim(cs, tc.RELATIVE_ERROR).constant == pytest.approx(b, rel=1e-14)
    assert claim(cs, tc.RATE).constant == pytest.approx(tc.rate_constant(a, b, 123.0, 0.0), rel=1e-12)
    assert claim(cs, tc.RELATIVE_ERROR).bound == "upper bound" and not claim(cs, tc.RELATIVE_ERROR).tight
    blocks = claim(cs, tc.MONOTONE).details["blocks"]
    assert blocks["U_N"]["tight"] and blocks["U_N"]["value"] == tc.block_descent_constant("U", 3, 3, 0.7, 2.0)
    back = json.loads(json.dumps([c.to_dict() for c in cs]))
    assert back[0]["id"] == cs[0].id and isinstance(back[0]["assumptions"], list)
    unknown_B = claims_for(config)
    assert claim(unknown_B, tc.RELATIVE_ERROR).constant is None and claim(unknown_B, tc.RATE).constant is None
    with pytest.raises(ValueError, match="B="):
        claims_for(config, B=-1.0)
    with pytest.raises(ValueError, match="unknown"):
        claim(cs, "no_such_claim")


def test_prox_linear_claims_use_the_derived_block_constant():
    config = BCDConfig(vn_update="prox_linear", gamma=0.4, alpha=0.35)
    cs = claims_for(config, n=50)
    a = claim(cs, tc.SUFFICIENT_DESCENT).constant
    assert a == pytest.approx(tc.sufficient_descent_constant_prox_linear(0.4, 0.35, 1.0))
    assert a == pytest.approx(tc.prox_linear_block_constant(0.4, 0.35, 1.0))  # the V_N step is the binding one
    assert claim(cs, tc.MONOTONE).details["alpha_condition"]["derived"] == pytest.approx(0.3)


def test_theory_inputs_of_a_trace_take_B_and_L0_from_the_trace():
    config = BCDConfig(hidden=(3,), gamma=1.0, alpha=2.0)
    sweeps = pd.DataFrame({sc.SWEEP: [0, 1, 2], sc.OBJECTIVE: [10.0, 7.0, 6.0], sc.BOUND_B: [1.0, 2.5, 3.0]})
    tr = Trace(sweeps, meta={"config": {**dataclasses.asdict(config), "hidden": [3]}, "n": 20})
    k = sym.numeric_constants(tr.config, **tr.theory_inputs())
    assert k.B == 3.0 and k.L0 == 10.0
    assert k.b == pytest.approx(tc.relative_error_constant(1.0, 2.0, 3.0, 2))
    rate_C = k.C
    assert rate_C == pytest.approx(tc.rate_constant(k.a, k.b, 10.0, 0.0))


@pytest.mark.parametrize("kw", [dict(splitting="two"), dict(splitting="two", activation="identity"),
                                dict(splitting="two", vn_update="prox_linear", gamma=0.2, alpha=0.3),
                                dict(), dict(vn_update="prox_linear", gamma=0.5, alpha=0.3)])
def test_bcd_theory_shows_the_expression_of_the_constant_it_uses(kw):
    """The sympy text of a (and of b where it is derived) printed by ``bcd theory`` evaluates to RunConstants' value."""
    cfg = BCDConfig(hidden=(4, 4), **kw)
    k = sym.numeric_constants(cfg, B=3.0, n=50)
    K = tc.RunConstants(cfg, n=50)
    subs = {S["gamma"]: cfg.gamma, S["alpha"]: cfg.alpha, S["L_R"]: K.L_R, S["B"]: 3.0, S["N"]: cfg.N, S["L_B"]: 1.0}
    local = {name: S[name] for name in ("gamma", "alpha", "L_R", "B", "N", "L_B")}
    assert float(sp.sympify(k.expressions["a"], locals=local).subs(subs)) == pytest.approx(K.a(), rel=1e-12)
    assert k.a_sharp >= K.a() - 1e-15
    if cfg.splitting == "two" and cfg.activation == "relu":
        assert k.b is None and k.expressions["b"] == sym.NOT_DERIVED
    else:
        assert float(sp.sympify(k.expressions["b"], locals=local).subs(subs)) == pytest.approx(K.b(3.0), rel=1e-12)
