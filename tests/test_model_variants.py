"""One model, several algorithms: the declared terms, Algorithm 3 (ResNet skips), any valid update order
through the recorder's generic path, and one constants path for verdicts, recorder and report.

References are independent of the engine: the ResNet objective L̄_res is written out from MATH.md §8 here,
each closed form is compared with L-BFGS on that objective, and per-block decreases with L̄ recomputed
in full before and after every update.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from references import lbfgs_minimise

from bcd.cli import main
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.engine import run, train
from bcd.inputs import make_problem
from bcd.model import term_names, terms_for
from bcd.objective import objective
from bcd.problem import initial_state
from bcd.schedule import Step, three_splitting
from verification import schema as S  # noqa: N812
from verification.checks import verify
from verification.recorder import Recorder
from verification.subgradient import least_norm_subgradient

torch.set_default_dtype(torch.float64)


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(n=60, d=5, k=3, seed=7, n_test=20)


def _problem(data, **kw):
    cfg = BCDConfig(**{"hidden": (5, 5, 5), "gamma": 0.8, "alpha": 1.7, "sweeps": 4, **kw})
    return make_problem(data.X_train, data.y_train, cfg)


# ------------------------------------------------------------------------------ the declared terms


def test_terms_name_their_blocks_and_the_resnet_skip():
    cfg = BCDConfig(hidden=(4, 4), skip="auto", lam=0.1)
    terms = {t.id: t for t in terms_for(cfg, (6, 4, 4, 3))}
    assert list(terms) == term_names(cfg, (6, 4, 4, 3))
    assert terms[S.act_term(2)].blocks == {("V", 2), ("U", 2), ("V", 1)}  # d_2 = d_1: a skip
    assert terms[S.act_term(1)].blocks == {("V", 1), ("U", 1)}  # d_1 ≠ d_0: none
    assert terms[S.aff_term(1)].blocks == {("U", 1), ("W", 1)}  # V_0 = X is data
    assert "V_1" in terms[S.act_term(2)].label and S.reg_term(3) in terms
    plain = terms_for(BCDConfig(hidden=(4, 4)), (6, 4, 4, 3))
    assert all(("V", 1) not in t.blocks for t in plain if t.id == S.act_term(2))


def test_skip_takes_named_values_only_and_needs_the_three_splitting():
    with pytest.raises(ValueError, match="skip='auto' needs splitting='three'"):
        BCDConfig(skip="auto", splitting="two")
    with pytest.raises(ValueError, match="skip='sometimes' is not supported; allowed: none, auto"):
        BCDConfig(skip="sometimes")


# ------------------------------------------------------------------------------ Algorithm 3: closed forms


def _Lres(W, V, U, problem):
    """L̄_res of MATH.md §8, written out (independent of bcd.model)."""
    cfg, N, tau = problem.config, problem.config.N, problem.tau
    L = 0.5 * problem.c * (V[N] - problem.Y).square().sum()
    for i in range(1, N + 1):
        sig = U[i] if (i == N or cfg.activation == "identity") else torch.relu(U[i])
        prev = problem.X if i == 1 else V[i - 1]
        skip = prev if tau[i] else 0.0
        L = L + 0.5 * cfg.gamma * (V[i] - skip - sig).square().sum()
        L = L + 0.5 * cfg.gamma * (U[i] - W[i][:, :-1] @ prev - W[i][:, -1:]).square().sum()
        L = L + 0.5 * cfg.lam * W[i].square().sum()
    return L


@pytest.mark.parametrize("vn_update", ["prox", "prox_linear"])
def test_resnet_closed_forms_are_the_minimisers_of_their_subproblems(data, vn_update):
    """Every block of Algorithm 3 (identity σ, so that every subproblem is smooth and convex) equals the L-BFGS
    minimiser of L̄_res in that block plus its proximal term; the prox-linear V_N linearises the loss."""
    p = _problem(data, skip="auto", activation="identity", lam=0.2, vn_update=vn_update)
    assert p.tau == (0, 1, 1, 1, 0)  # d_0 = d_1 = d_2 = d_3 = 5: a skip from X too
    state = initial_state(p)
    run(p, state, sweeps=2)  # a generic point
    cfg, N = p.config, p.config.N
    for step in three_splitting(N):
        b, i = step.block, step.layer
        old = state.get(b, i).clone()
        prox = 0.0 if (b == "U" and i == N) or (b == "V" and i < N) else cfg.alpha

        def f(X, b=b, i=i, old=old, prox=prox):
            W, V, U = list(state.W), list(state.V), list(state.U)
            {"W": W, "V": V, "U": U}[b][i] = X
            val = _Lres(W, V, U, p) + 0.5 * prox * (X - old).square().sum()
            if b == "V" and i == N and vn_update == "prox_linear":  # R replaced by its linearisation at V_N⁻
                R = lambda Z: 0.5 * p.c * (Z - p.Y).square().sum()  # noqa: E731
                val = val - R(X) + (p.c * (old - p.Y) * (X - old)).sum()
            return val

        new = step.update(state, p, i, None)
        ref = lbfgs_minimise(f, old, iters=300, restarts=4)
        torch.testing.assert_close(new, ref, rtol=1e-6, atol=1e-7, msg=f"{b}{i}")
        state.set(b, i, new)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(gamma=st.floats(0.1, 5.0), alpha=st.floats(0.05, 5.0), lam=st.sampled_from([0.0, 0.3]),
       width=st.integers(2, 6), depth=st.integers(2, 4), seed=st.integers(0, 10_000),
       activation=st.sampled_from(["relu", "identity"]))
def test_resnet_every_block_update_descends_by_its_constant(gamma, alpha, lam, width, depth, seed, activation):
    """Property: each Algorithm 3 update lowers L̄_res (recomputed in full, float64) by ≥ its own constant
    c_blk‖Δ‖² (V_i: γ(1 + τ_{i+1})/2), as the recorder's bookkeeping reports."""
    d = gaussian_mixture(n=24, d=width, k=3, seed=seed)
    cfg = BCDConfig(hidden=(width,) * depth, gamma=gamma, alpha=alpha, lam=lam, skip="auto", sweeps=3,
                    activation=activation, init="kaiming", seed=seed % 7)
    rec = Recorder("standard")
    res = train(d.X_train, d.y_train, cfg, hooks=[rec])
    trace = rec.trace()
    assert trace.meta[S.META_VARIANT] == "resnet" and trace.meta[S.META_RECORDER_PATH] == "generic"
    L = trace.sweeps[S.OBJECTIVE].abs().max()
    blk = trace.blocks
    margin = blk[S.BLOCK_DECREASE] - blk[S.BLOCK_CONST] * blk[S.BLOCK_DELTA_SQ]
    assert margin.min() >= -1e-10 * max(1.0, L)
    v = blk[(blk[S.BLOCK] == "V") & (blk[S.LAYER] < cfg.N)]
    tau = res.problem.tau
    expected = [gamma * (1 + tau[i + 1]) / 2 for i in v[S.LAYER]]
    np.testing.assert_allclose(v[S.BLOCK_CONST], expected)


def test_resnet_forward_pass_uses_the_skips(data):
    p = _problem(data, skip="auto")
    state = initial_state(p)
    h = p.X
    for i in range(1, p.config.N + 1):
        z = state.W[i][:, :-1] @ h + state.W[i][:, -1:]
        h = (z if i == p.config.N else torch.relu(z)) + (h if p.tau[i] else 0.0)
        torch.testing.assert_close(state.V[i], h)  # Q⁰ is the forward pass, skips included


# ------------------------------------------------------------------------------ any order, one recorder


class BruteForce:
    """L̄ recomputed in full before and after every single block update."""

    def on_run_start(self, problem, state):
        self.problem, self.decreases = problem, []

    def on_step(self, k, step, state, new, aux):
        after = state.clone()
        after.set(step.block, step.layer, new)
        self.decreases.append(objective(state, self.problem) - objective(after, self.problem))


def _orders(N):
    canonical = list(three_splitting(N))
    by_layer = {i: {s.block: s for s in canonical if s.layer == i} for i in range(1, N + 1)}
    return {
        "per layer U, V, W": [by_layer[i][b] for i in range(N, 0, -1) for b in "UVW"],
        "W first": [by_layer[i]["W"] for i in range(N, 0, -1)] + [s for s in canonical if s.block != "W"],
        "forward layer order": [by_layer[i][b] for i in range(1, N + 1) for b in "VUW"],
    }


@pytest.mark.parametrize("order", ["per layer U, V, W", "W first", "forward layer order"])
@pytest.mark.parametrize("kw", [dict(), dict(skip="auto", lam=0.1), dict(vn_update="prox_linear", gamma=0.5,
                                                                         alpha=0.3, reduction="mean")])
def test_reordered_schedules_record_exact_decreases_that_telescope(data, order, kw):
    cfg = BCDConfig(**{"hidden": (5, 5), "gamma": 0.8, "alpha": 1.7, "sweeps": 4, **kw})
    brute, rec = BruteForce(), Recorder("full")
    res = train(data.X_train, data.y_train, cfg, hooks=[rec, brute], schedule=_orders(cfg.N)[order])
    trace = rec.trace()
    assert res.stop_reason == "max_sweeps" and trace.meta[S.META_RECORDER_PATH] == "generic"
    scale = max(1.0, float(trace.sweeps[S.OBJECTIVE].abs().max()))
    np.testing.assert_allclose(trace.blocks[S.BLOCK_DECREASE], brute.decreases, rtol=0, atol=1e-11 * scale)
    per_sweep = trace.blocks.groupby(S.SWEEP)[S.BLOCK_DECREASE].sum()
    sweeps = trace.sweeps.set_index(S.SWEEP)
    np.testing.assert_allclose(per_sweep, sweeps.loc[per_sweep.index, S.DECREASE], rtol=0, atol=1e-11 * scale)
    assert trace.blocks[S.BLOCK_RESIDUAL].max() < 1e-9  # exact updates in any order
    failed = [v.claim for v in verify(trace) if v.status == "fail"]
    assert not failed


def test_generic_path_agrees_with_the_fast_path_on_algorithm_2(data):
    """The in-stream formulas (fast path) and the term bookkeeping (generic path) give the same per-block
    decreases and constants; the generic g^k is the least-norm subgradient, never larger than the fast
    path's optimality-condition g^k (equal away from kinks)."""
    cfg = BCDConfig(hidden=(6, 4), gamma=1.3, alpha=2.0, sweeps=5, lam=0.2)
    traces = {}
    for path in ("fast", "generic"):
        rec = Recorder("full", path=path)
        train(data.X_train, data.y_train, cfg, hooks=[rec])
        traces[path] = rec.trace()
    f, g = traces["fast"].blocks, traces["generic"].blocks
    scale = max(1.0, float(traces["fast"].sweeps[S.OBJECTIVE].abs().max()))
    np.testing.assert_allclose(f[S.BLOCK_DECREASE], g[S.BLOCK_DECREASE], rtol=0, atol=1e-11 * scale)
    np.testing.assert_array_equal(f[S.BLOCK_CONST], g[S.BLOCK_CONST])
    assert (g[S.BLOCK_RESIDUAL] < 1e-9).all() and (f[S.BLOCK_RESIDUAL] < 1e-9).all()
    gf, gg = traces["fast"].sweeps[S.G_NORM].iloc[1:], traces["generic"].sweeps[S.G_NORM].iloc[1:]
    assert (gg <= gf * (1 + 1e-9) + 1e-12).all()
    assert traces["generic"].meta[S.META_G_DEFINITION] == "least_norm"


def test_least_norm_subgradient_is_the_autograd_gradient_for_resnet_off_kinks(data):
    p = _problem(data, skip="auto", lam=0.1)
    state = initial_state(p)
    run(p, state, sweeps=3)
    g = least_norm_subgradient(state, p).parts
    leaves = {(b, i): t.clone().requires_grad_() for b, i, t in state.blocks()}
    N = p.config.N
    L = _Lres([None] + [leaves[("W", i)] for i in range(1, N + 1)], [p.X] + [leaves[("V", i)] for i in range(1, N + 1)],
              [None] + [leaves[("U", i)] for i in range(1, N + 1)], p)
    L.backward()
    for key, leaf in leaves.items():
        mask = state.U[key[1]] != 0 if key[0] == "U" else torch.ones_like(leaf, dtype=torch.bool)
        torch.testing.assert_close(g[key][mask], leaf.grad[mask])


# ------------------------------------------------------------------------------ refused at the start


def _noop(state, problem, i, aux):
    return state.get("V", i).clone()


@pytest.mark.parametrize(("schedule", "message"), [
    (lambda s: [*s, Step("V", 2, _noop)], r"schedule step 9 \(V2\) updates a block already updated at step 3"),
    (lambda s: s[1:], r"the schedule never updates V3"),
    (lambda s: [Step("X", 1, _noop), *s], r"schedule step 0 \(X1\) updates no block of the 'three' variant"),
    (lambda s: [Step("V", 7, _noop), *s], r"schedule step 0 \(V7\) updates no block"),
])
def test_a_schedule_the_recorder_cannot_handle_is_refused_before_the_run(data, schedule, message):
    cfg = BCDConfig(hidden=(5, 5), sweeps=3)

    class Spy:
        started = False

        def on_run_start(self, problem, state):
            Spy.started = True

    with pytest.raises(ValueError, match=message):
        train(data.X_train, data.y_train, cfg, hooks=[Spy(), Recorder("standard")],
              schedule=schedule(list(three_splitting(cfg.N))))
    assert not Spy.started


def test_forcing_the_fast_path_on_another_order_is_refused(data):
    cfg = BCDConfig(hidden=(5, 5), sweeps=1)
    with pytest.raises(ValueError, match="path='fast' needs Algorithm 2's order"):
        train(data.X_train, data.y_train, cfg, hooks=[Recorder("standard", path="fast")],
              schedule=_orders(cfg.N)["W first"])


# ------------------------------------------------------------------------------ a mutant in another order


def test_the_generic_path_catches_a_wrong_update_in_another_order(data):
    """A U_1 step that drops its proximal term, in the 'per layer U, V, W' order: its exactness residual
    and (on some blocks) its descent fall short — caught by the generic path as by the fast one."""
    from bcd.blocks import affine

    def U1_without_prox(state, problem, i, aux):
        P = affine(state.W[i], state.V[i - 1])
        return problem.activation.prox(state.V[i], P, 1.0)  # α = 0 in its subproblem: β = 1, m = P

    cfg = BCDConfig(hidden=(5, 5), gamma=1.0, alpha=3.0, sweeps=6)
    steps = [Step("U", 1, U1_without_prox) if (s.block, s.layer) == ("U", 1) else s for s in _orders(cfg.N)["W first"]]
    rec = Recorder("full")
    train(data.X_train, data.y_train, cfg, hooks=[rec], schedule=steps)
    verdicts = {v.claim: v for v in verify(rec.trace())}
    assert verdicts["block_exactness"].status == "fail"


# ------------------------------------------------------------------------------ one constants path

VARIANTS = {
    "three": dict(),
    "three, λ > 0": dict(lam=0.2),
    "resnet": dict(skip="auto"),
    "prox-linear, γ < α": dict(vn_update="prox_linear", gamma=0.5, alpha=0.3),
    "prox-linear, mean": dict(vn_update="prox_linear", reduction="mean", gamma=2.0, alpha=0.5),
    "two, σ = Id": dict(splitting="two", activation="identity"),
    "two, σ = Id, prox-linear": dict(splitting="two", activation="identity", vn_update="prox_linear", alpha=0.8),
    "two, ReLU (b not derived)": dict(splitting="two", alpha=1.0),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_report_verdicts_recorder_and_theory_show_the_same_constants(data, name, tmp_path):
    from reports.document import theory_rows
    from reports.figures import a_const, b_theory
    from reports.runs import RunData
    from theory.constants import RunConstants

    cfg = BCDConfig(**{"hidden": (5, 5), "sweeps": 4, **VARIANTS[name]})
    rec = Recorder("standard")
    res = train(data.X_train, data.y_train, cfg, hooks=[rec])
    trace = rec.trace()
    verdicts = verify(trace)
    by = {v.claim: v for v in verdicts}
    K = RunConstants(cfg, res.problem.widths, res.problem.n)
    run_data = RunData(name, trace, verdicts)
    bare = RunData(name, trace, None)  # a report drawn without verdicts computes the same numbers
    assert by["sufficient_descent"].theoretical == pytest.approx(K.a(), rel=1e-15)
    assert a_const(run_data) == a_const(bare) == pytest.approx(K.a(), rel=1e-15)
    b_verdict = by["relative_error"].theoretical
    if cfg.splitting == "two" and cfg.activation == "relu":  # MATH.md §7.4: no b anywhere, not a stale one
        assert b_verdict is None and b_theory(run_data) is None and b_theory(bare) is None
    else:
        assert b_verdict == pytest.approx(K.b(float(trace.sweeps[S.BOUND_B].max())), rel=1e-12)
        assert b_theory(run_data) == pytest.approx(b_verdict, rel=1e-12)
        assert b_theory(bare) == pytest.approx(b_verdict, rel=1e-12)
    for _, row in trace.blocks.iterrows():
        assert row[S.BLOCK_CONST] == K.block(row[S.BLOCK], int(row[S.LAYER]))
    from theory.claims import claim, claims_for

    B = float(trace.sweeps[S.BOUND_B].max())
    claims = claims_for(cfg, B=B, L0=float(trace.sweeps[S.OBJECTIVE].iloc[0]), n=res.problem.n,
                        widths=res.problem.widths)
    assert claim(claims, "sufficient_descent").constant == pytest.approx(K.a(), rel=1e-15)
    if b_verdict is None:
        assert claim(claims, "relative_error").constant is None
    else:
        assert claim(claims, "relative_error").constant == pytest.approx(b_verdict, rel=1e-12)
    text = dict(theory_rows(run_data))
    a_row = next(v for k, v in text.items() if k.startswith("a = "))
    assert float(a_row) == pytest.approx(K.a(), rel=1e-3)
    if cfg.vn_update == "prox_linear":
        assert "L_R" in next(k for k in text if k.startswith("a = "))
        assert math.isclose(K.a(), min(min(cfg.gamma, cfg.alpha) / 2, (2 * cfg.alpha + cfg.gamma - K.L_R) / 2))


# ------------------------------------------------------------------------------ real MNIST with skips


def test_bcd_verify_resnet_on_real_mnist_passes_every_guaranteed_claim(tmp_path):
    """Algorithm 3 on 1000 stratified MNIST images, 784-96-96-96-10 with skips on layers 2 and 3, 12 sweeps,
    float64, ``bcd verify --strict``.  Measured on 2026-12-01 (CPU): exit 0, test accuracy 0.740 on 2000 test
    images, a_emp = 3.04 against a = 0.5, block residuals ≤ 1e-15."""
    out = tmp_path / "resnet"
    args = ["verify", "--dataset", "mnist", "--n-train", "1000", "--n-test", "2000", "--hidden", "96,96,96",
            "--skip", "auto", "--sweeps", "12", "--gamma", "1", "--alpha", "5", "--no-progress", "--strict",
            "--figure-formats", "png", "--out", str(out)]
    assert main(args) == 0
    meta = json.loads((out / "trace_meta.json").read_text())
    assert meta[S.META_VARIANT] == "resnet" and meta[S.META_RECORDER_PATH] == "generic"
    verdicts = {v["claim"]: v for v in json.loads((out / "verdicts.json").read_text())}
    assert all(v["status"] == "pass" for v in verdicts.values() if v["guaranteed"])
    assert pd.read_parquet(out / "sweeps.parquet")["test_acc"].iloc[-1] >= 0.70
    assert (out / "figures" / "gaps_heatmap.png").exists()


def test_bcd_theory_lists_each_algorithms_own_block_constants():
    from theory.claims import claim, claims_for
    from theory.constants import RunConstants

    two = BCDConfig(hidden=(4, 4), splitting="two", alpha=3.0)
    blocks = claim(claims_for(two), "monotone_descent").details["blocks"]
    assert set(blocks) == {"V_N", "W_i", "V_i"} and all(b["value"] == 1.5 for b in blocks.values())
    res = BCDConfig(hidden=(4, 4), skip="auto", gamma=0.6)
    blocks = claim(claims_for(res, widths=(5, 4, 4, 3)), "monotone_descent").details["blocks"]
    assert blocks["V_i (layer i+1 has a skip)"]["value"] == RunConstants(res, (5, 4, 4, 3)).block("V", 1) == 0.6


@pytest.mark.parametrize("kw", [{}, {"activation": "leaky_relu(0.1)"}, {"activation": "sigmoid"},
                                {"splitting": "two"}, {"skip": "auto", "hidden": (8, 8, 8)}])
def test_the_n_sized_terms_equal_their_textbook_residuals_bit_for_bit(kw):
    """L̄'s act, aff and fit terms form their residual in the problem's scratch buffer, with the opposite sign (so that
    evaluating L̄ allocates nothing n-sized); written out here the plain way, each term is the same float, bit for
    bit, and evaluating twice (the scratch reused) changes nothing."""
    from bcd.blocks import affine
    from bcd.objective import objective_terms
    from bcd.reduction import sample_sq

    cfg = BCDConfig(**{"hidden": (7, 6), "sweeps": 2, "dtype": "float64", **kw})
    ds = gaussian_mixture(n=60, d=8, k=3, seed=1)
    problem = make_problem(ds.X_train, ds.y_train, cfg, n_classes=3)
    state = run(problem, initial_state(problem)).state
    got = objective_terms(state, problem)
    assert objective_terms(state, problem) == got
    g, V, U, W = cfg.gamma, state.V, state.U, state.W
    checked = 0
    for t in problem.terms:
        i = t.layer
        if t.kind == "act":
            want = V[i] - problem.sigma(i, U[i]) - (V[i - 1] if problem.tau[i] else 0.0)
        elif t.kind == "aff":
            want = U[i] - affine(W[i], V[i - 1])
        elif t.kind == "fit":
            want = V[i] - problem.sigma(i, affine(W[i], V[i - 1]))
        else:
            continue
        assert got[t.id] == float(0.5 * g * sample_sq(want)), t.id
        checked += 1
    assert checked >= 3
