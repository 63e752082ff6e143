"""The sympy derivations of theory.derivations against the engine's numerical block updates.

Every derived closed form is lambdified and compared with the bcd.blocks / bcd.activations function on
random float64 inputs (relative agreement ≤ 1e-10), and the derived stationarity residual is evaluated at
the engine's output (≤ 1e-10).  Each comparison is also shown to fail for a broken update.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp
import torch

from bcd import BCDConfig
from bcd.activations import get_activation, identity_prox, relu_prox
from bcd.blocks import update_U_hidden, update_U_N, update_V_hidden, update_V_N, update_V_N_prox_linear, update_W
from bcd.inputs import make_problem
from bcd.problem import initial_state
from bcd.schedule import step_V_N
from theory import derivations as der

TOL = 1e-10


def rel(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-300))


def T(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64))


@pytest.fixture
def rng():
    return np.random.default_rng(20190609)


def hyper(rng):
    return {"gamma": float(rng.uniform(0.05, 10)), "alpha": float(rng.uniform(0.05, 10))}


# ---------------------------------------------------------------- engine wrappers (numpy in, numpy out)

def engine_V_N(x):
    return update_V_N(T(x["V_N"]), T(x["U_N"]), T(x["Y"]), gamma=x["gamma"], alpha=x["alpha"], c=x["c"]).numpy()


def engine_V_N_pl(x):
    return update_V_N_prox_linear(T(x["V_N"]), T(x["U_N"]), T(x["grad_R"]), gamma=x["gamma"], alpha=x["alpha"]).numpy()


def engine_U_N(x):
    from bcd.blocks import affine

    return update_U_N(T(x["V_N"]), affine(T(x["W_N"]), T(x["V_prev"]))).numpy()


def engine_W(x):
    return update_W(T(x["W"]), T(x["U"]), T(x["V_prev"]), gamma=x["gamma"], alpha=x["alpha"], lam=x["lam"]).numpy()


def engine_V_hidden(x):
    return update_V_hidden(T(x["sigma_U"]), T(x["W_next"]), T(x["U_next"])).numpy()


def random_inputs(deriv: der.BlockDerivation, rng) -> dict:
    out = {}
    for name, s in deriv.inputs:
        if isinstance(s, sp.MatrixBase):
            out[name] = rng.normal(size=s.shape) * rng.uniform(0.3, 3)
        elif name == "lam":
            out[name] = float(rng.choice([0.0, rng.uniform(0.01, 2)]))
        elif name == "c":
            out[name] = float(rng.choice([1.0, 1.0 / rng.integers(2, 50)]))
        else:
            out[name] = float(rng.uniform(0.05, 10))
    return out


CASES = [
    ("V_N", lambda: der.derive_V_N(), engine_V_N),
    ("V_N_prox_linear", lambda: der.derive_V_N_prox_linear(), engine_V_N_pl),
    ("U_N", lambda: der.derive_U_N(), engine_U_N),
    ("W", lambda: der.derive_W(), engine_W),
    ("W_wide", lambda: der.derive_W(d_out=1, d_in=3, n=2), engine_W),  # ṼṼᵀ singular: the prox term is needed
    ("V_hidden_normal_eqs", lambda: der.derive_V_hidden(d=2, d_next=3, n=2), engine_V_hidden),
    ("V_hidden_woodbury", lambda: der.derive_V_hidden(d=3, d_next=1, n=2), engine_V_hidden),
]


@pytest.mark.parametrize(("name", "derive", "engine"), CASES, ids=[c[0] for c in CASES])
def test_engine_block_update_equals_derived_closed_form(name, derive, engine, rng):
    deriv = derive()
    for _ in range(20):
        x = random_inputs(deriv, rng)
        derived, got = deriv.solve(**x), engine(x)
        assert rel(got, derived) <= TOL, f"{name}: engine and derived closed form differ by {rel(got, derived):.2e}"
        assert deriv.relative_residual(got, **x) <= TOL, f"{name}: stationarity residual at the engine's output"


def test_woodbury_and_normal_equation_branches_are_both_exercised():
    """update_V_hidden picks Woodbury when 2·d_{i+1}d_i + d_{i+1}² < d_{i+1}d_i + d_i² (bcd.blocks)."""
    def woodbury(d, dn):
        return 2 * dn * d + dn * dn < d * dn + d * d

    assert woodbury(3, 1) and not woodbury(2, 3)


@pytest.mark.parametrize("name", ["V_N", "V_N_prox_linear", "U_N", "W", "V_hidden"])
def test_entrywise_solution_equals_the_matrix_formula_of_math_md(name):
    deriv = der.all_block_derivations()[name]
    assert der.matches_matrix_form(deriv)
    # and the identity test can fail: a matrix formula without the proximal/averaging weight is rejected
    wrong = dataclasses.replace(deriv, matrix_form=deriv.matrix_form * 2)
    assert not der.matches_matrix_form(wrong)


def test_hessians_give_the_strong_convexity_moduli(rng):
    """λ_min of the derived Hessians: V_N c+γ+α; U_N 2γ; W ≥ α+λ; V_i ≥ γ (used by theory.symbolic)."""
    for _ in range(5):
        h = hyper(rng)
        x = random_inputs(der.derive_V_N(), rng) | h
        assert der.derive_V_N().strong_convexity(**x) == pytest.approx(x["c"] + h["gamma"] + h["alpha"], rel=1e-12)
        x = random_inputs(der.derive_U_N(), rng) | {"gamma": h["gamma"]}
        assert der.derive_U_N().strong_convexity(**x) == pytest.approx(2 * h["gamma"], rel=1e-12)
        x = random_inputs(der.derive_W(), rng) | h
        assert der.derive_W().strong_convexity(**x) >= (h["alpha"] + x["lam"]) * (1 - 1e-12)
        x = random_inputs(der.derive_V_hidden(), rng)
        assert der.derive_V_hidden().strong_convexity(**x) >= x["gamma"] * (1 - 1e-12)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_engine_prox_linear_step_with_its_own_gradient_matches_the_squared_loss_derivation(reduction, rng):
    """The schedule's V_N step (it computes ∇R itself) against the derivation with ∇R derived from R."""
    deriv = der.derive_V_N_prox_linear(squared_loss=True)
    d, n = deriv.variable.shape
    config = BCDConfig(hidden=(3,), vn_update="prox_linear", reduction=reduction, gamma=0.7, alpha=1.3)
    X, Yr = rng.normal(size=(n, 4)), rng.normal(size=(n, d))
    problem = make_problem(X, Yr, config)
    state = initial_state(problem)
    state.U[2] = state.U[2] + T(rng.normal(size=(d, n)))
    got = step_V_N(state, problem, 2, {}).numpy()
    x = {"V_N": state.V[2].numpy(), "U_N": state.U[2].numpy(), "Y": problem.Y.numpy(),
         "gamma": config.gamma, "alpha": config.alpha, "c": problem.c}
    assert rel(got, deriv.solve(**x)) <= TOL
    assert deriv.relative_residual(got, **x) <= TOL


def test_block_comparison_fails_for_a_broken_update(rng):
    """A W step that drops the proximal term, and a V_N step with γ and α swapped, are caught."""
    W = der.derive_W()
    x = random_inputs(W, rng) | {"alpha": 3.0, "gamma": 0.5, "lam": 0.1}
    broken = update_W(T(x["W"]) * 0, T(x["U"]), T(x["V_prev"]), gamma=0.5, alpha=1e-9, lam=0.1).numpy()
    assert rel(broken, W.solve(**x)) > 1e-3
    assert W.relative_residual(broken, **x) > 1e-3
    V = der.derive_V_N()
    x = random_inputs(V, rng) | {"gamma": 0.3, "alpha": 4.0}
    swapped = engine_V_N(x | {"gamma": 4.0, "alpha": 0.3})
    assert rel(swapped, V.solve(**x)) > 1e-3
    assert V.relative_residual(swapped, **x) > 1e-3


# ---------------------------------------------------------------- U_i: completing the square and the prox


def test_completing_the_square_gives_m_and_beta_of_math_md():
    sq = der.complete_the_square()
    assert sp.simplify(sq.m - (der.gamma * der.p + der.alpha * der.u_old) / (der.gamma + der.alpha)) == 0
    assert sp.simplify(sq.beta - (der.gamma + der.alpha) / der.gamma) == 0


def test_relu_prox_case_analysis_reproduces_math_md():
    """θ, the branch minimisers and the three-piece solution equal MATH.md §3 (exact, sympy)."""
    r = der.derive_relu_prox()
    a, m, b = der.a, der.m, der.beta
    assert sp.simplify(r.theta - (b - sp.sqrt(b * (b + 1)))) == 0
    plus, minus = r.branches
    assert sp.simplify(plus.minimiser - sp.Max((a + b * m) / (1 + b), 0)) == 0
    assert sp.simplify(minus.minimiser - sp.Min(m, 0)) == 0
    theta = b - sp.sqrt(b * (b + 1))
    math_md = sp.Piecewise(
        (sp.Min(m, 0), a + b * m < 0),
        ((a + b * m) / (1 + b), sp.Or(m >= 0, b * m >= a * theta)),
        (m, True),
    )
    rs = np.random.default_rng(3)
    points = [(sp.Rational(int(rs.integers(-30, 30)), int(rs.integers(1, 7))),
               sp.Rational(int(rs.integers(-30, 30)), int(rs.integers(1, 7))),
               sp.Rational(int(rs.integers(1, 40)), int(rs.integers(1, 7)))) for _ in range(60)]
    points += [(sp.Integer(2), sp.Rational(-1, 2), sp.Integer(4)),  # t = a + βm = 0
               (sp.Integer(-1), sp.Integer(0), sp.Integer(3)),  # m = 0, t < 0
               (sp.Integer(1), theta.subs(b, 2) / 2, sp.Integer(2))]  # exact tie βm = aθ
    for av, mv, bv in points:
        sub = {a: av, m: mv, b: bv}
        diff = r.solution.subs(sub) - math_md.subs(sub)  # exact rationals except at the irrational tie
        assert diff == 0 or sp.simplify(diff) == 0, sub


def brute_force_is_global_min(prox, beta_values=(1.05, 1.5, 3.0, 11.0), n=400, seed=5) -> bool:
    """1-D brute force: prox(a, m, β) is no worse than the best of a fine grid (+ the exact candidates)."""
    rs = np.random.default_rng(seed)
    grid = np.linspace(-6, 6, 24001)
    for beta in beta_values:
        A, M = rs.normal(size=n) * 2, rs.normal(size=n) * 2
        u = prox(A, M, beta)
        f = 0.5 * (A - np.maximum(u, 0)) ** 2 + beta / 2 * (u - M) ** 2
        F = 0.5 * (A[:, None] - np.maximum(grid, 0)) ** 2 + beta / 2 * (grid - M[:, None]) ** 2
        if np.any(f > F.min(axis=1) + 1e-12):
            return False
    return True


def test_relu_prox_derivation_is_the_global_minimiser_and_the_brute_force_can_fail():
    r = der.derive_relu_prox()
    assert brute_force_is_global_min(r.solve)

    def only_positive_branch(A, M, beta):
        return np.maximum((A + beta * M) / (1 + beta), 0)

    assert not brute_force_is_global_min(only_positive_branch)


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_engine_U_update_equals_derivation_and_is_stationary(activation, rng):
    deriv = der.derive_U_hidden(activation)
    act = get_activation(activation)
    for _ in range(10):
        h = hyper(rng)
        V, P, U = (rng.normal(size=(7, 40)) * 2 for _ in range(3))
        got = update_U_hidden(T(V), T(P), T(U), gamma=h["gamma"], alpha=h["alpha"], activation=act).numpy()
        want = deriv.solve(V, P, U, gamma_=h["gamma"], alpha_=h["alpha"])
        assert rel(got, want) <= TOL
        m = deriv.centre(P, U, gamma_=h["gamma"], alpha_=h["alpha"])
        beta = deriv.beta_value(gamma_=h["gamma"], alpha_=h["alpha"])
        res = deriv.prox.stationarity_residual(got, V, m, beta)
        scale = beta * (np.abs(V) + np.abs(m) + np.abs(got)).max()
        assert res.max() <= TOL * scale


def test_relu_prox_engine_agrees_including_kinks_and_residual_detects_a_wrong_point(rng):
    r = der.derive_relu_prox()
    A, M = rng.normal(size=3000) * 3, rng.normal(size=3000) * 3
    A[:200], M[:200] = -np.abs(A[:200]), np.abs(M[:200]) * 0.01  # t < 0, m ≥ 0: u = 0 exactly (the kink)
    for beta in (1.01, 2.0, 7.5):
        got = relu_prox(T(A), T(M), beta).numpy()
        assert rel(got, r.solve(A, M, beta)) <= TOL
        assert np.all(r.stationarity_residual(got, A, M, beta) <= TOL * beta * (np.abs(A) + np.abs(M) + 1))
        assert np.all(r.value(got, A, M, beta) <= r.value(r.solve(A, M, beta), A, M, beta) + 1e-12)
        wrong = got + 0.05
        assert np.all(r.stationarity_residual(wrong, A, M, beta) > 1e-3)


def test_identity_prox_engine_agrees():
    r = der.derive_identity_prox()
    rs = np.random.default_rng(9)
    A, M = rs.normal(size=500), rs.normal(size=500)
    assert rel(identity_prox(T(A), T(M), 2.5).numpy(), r.solve(A, M, 2.5)) <= TOL
    assert rel(relu_prox(T(A), T(M), 2.5).numpy(), r.solve(A, M, 2.5)) > 1e-3  # the check tells them apart


def test_every_step_of_a_real_sweep_is_the_derived_minimiser_at_the_current_iterate(rng):
    """Algorithm 2 wiring: in an engine sweep (N = 2, d = (2, 3, 2), n = 3) each step's new block equals the
    derived closed form evaluated at the iterate of that moment (blocks updated earlier in the sweep are new)."""
    from bcd.blocks import affine
    from bcd.engine import sweep
    from bcd.schedule import schedule_for

    config = BCDConfig(hidden=(3,), gamma=0.8, alpha=1.7, lam=0.2, seed=1)
    problem = make_problem(rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), config)
    state = initial_state(problem)
    for i in (1, 2):  # move off the forward pass so that every block actually changes
        state.U[i] = state.U[i] + T(rng.normal(size=state.U[i].shape))
        state.V[i] = state.V[i] + T(rng.normal(size=state.V[i].shape))
    g, al, lam = config.gamma, config.alpha, config.lam
    np_ = {"gamma": g, "alpha": al}

    def derived(step, s):
        i, n = step.layer, s.V[0].shape[1]
        if step.block == "V" and i == 2:
            return der.derive_V_N(2, n).solve(V_N=s.V[2], U_N=s.U[2], Y=problem.Y, c=problem.c, **np_)
        if step.block == "U" and i == 2:
            return der.derive_U_N(2, 3, n).solve(V_N=s.V[2], W_N=s.W[2], V_prev=s.V[1], gamma=g)
        if step.block == "W":
            d_out, d_in = s.W[i].shape[0], s.W[i].shape[1] - 1
            return der.derive_W(d_out, d_in, n).solve(W=s.W[i], U=s.U[i], V_prev=s.V[i - 1], lam=lam, **np_)
        if step.block == "V":
            return der.derive_V_hidden(3, 2, n).solve(sigma_U=torch.relu(s.U[1]), W_next=s.W[2], U_next=s.U[2],
                                                      gamma=g)
        return der.derive_U_hidden("relu").solve(s.V[1], affine(s.W[1], s.V[0]), s.U[1], gamma_=g, alpha_=al)

    seen = []

    class Check:
        def on_step(self, k, step, s, new, aux):
            seen.append(step.name)
            assert rel(new.numpy(), derived(step, s)) <= TOL, f"sweep {k}, step {step.name}"

    for _ in range(2):
        sweep(state, problem, schedule_for("three", 2), [Check()])
    assert seen[:6] == ["V2", "U2", "W2", "V1", "U1", "W1"]  # Algorithm 2's backward order
