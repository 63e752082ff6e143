"""The recorder: per-block decreases, g^k against autograd, exactness residuals, presets, schedule,
and traces saved next to the run's config.  Small float64 problems only (the whole file runs in seconds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bcd.activations import relu_prox, u_block_residual
from bcd.blocks import affine, augmented_gram, update_U_hidden, update_W
from bcd.config import BCDConfig, DataConfig, RunConfig
from bcd.data import gaussian_mixture
from bcd.engine import run, train
from bcd.inputs import make_problem
from bcd.objective import objective_terms
from bcd.problem import BCDState, initial_state
from bcd.schedule import Step, step_V_hidden, three_splitting
from verification import schema as S  # noqa: N812
from verification.pipeline import record, trace_arrays
from verification.recorder import Recorder, Schedule
from verification.trace import Trace

CONFIGS = [
    dict(activation="relu", lam=0.0, vn_update="prox", reduction="sum"),
    dict(activation="relu", lam=0.3, vn_update="prox_linear", reduction="mean"),
    dict(activation="identity", lam=0.1, vn_update="prox", reduction="sum"),
]


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(n=90, d=5, k=3, seed=3, n_test=30)


def _run(data, preset="standard", schedule=None, sweeps=5, keep_g=False, hooks=(), **kw):
    cfg = BCDConfig(hidden=(6, 4), gamma=1.3, alpha=2.0, sweeps=sweeps, **kw)
    rec = Recorder(preset, schedule, keep_g=keep_g)
    res = train(data.X_train, data.y_train, cfg, X_test=data.X_test, y_test=data.y_test, hooks=[rec, *hooks])
    return rec, res


class BruteForce:
    """Reference hook: L̄ evaluated in full before and after every single block update."""

    def __init__(self):
        self.decreases = []

    def on_run_start(self, problem, state):
        self.problem = problem

    def on_step(self, k, step, state, new, aux):
        after = state.clone()
        after.set(step.block, step.layer, new)
        before_L = objective_terms(state, self.problem)[S.OBJECTIVE]
        self.decreases.append(before_L - objective_terms(after, self.problem)[S.OBJECTIVE])


@pytest.mark.parametrize("kw", CONFIGS)
def test_block_decreases_match_brute_force_and_sum_to_the_sweep_decrease(data, kw, device):
    brute = BruteForce()
    rec, _ = _run(data, "standard", hooks=[brute], device=device, **kw)
    trace = rec.trace()
    blocks, sweeps = trace.blocks, trace.sweeps.set_index(S.SWEEP)
    L_scale = max(1.0, float(sweeps[S.OBJECTIVE].abs().max()))
    np.testing.assert_allclose(blocks[S.BLOCK_DECREASE].to_numpy(), brute.decreases, rtol=0, atol=1e-11 * L_scale)
    per_sweep = blocks.groupby(S.SWEEP)[S.BLOCK_DECREASE].sum()
    np.testing.assert_allclose(per_sweep.to_numpy(), sweeps.loc[per_sweep.index, S.DECREASE].to_numpy(),
                               rtol=0, atol=1e-11 * L_scale)
    # every block of the exact engine descends at least by its own constant (to rounding)
    margin = blocks[S.BLOCK_DECREASE] - blocks[S.BLOCK_CONST] * blocks[S.BLOCK_DELTA_SQ]
    assert margin.min() > -1e-11 * L_scale


def _Lbar(W, V, U, problem):
    """L̄ written out independently (autograd reference)."""
    cfg, N = problem.config, problem.config.N
    L = 0.5 * problem.c * (V[N - 1] - problem.Y).square().sum()
    prev = problem.X
    for i in range(N):
        sig = U[i] if (i == N - 1 or cfg.activation == "identity") else torch.relu(U[i])
        gap = U[i] - W[i][:, :-1] @ prev - W[i][:, -1:]
        L = L + 0.5 * cfg.gamma * ((V[i] - sig).square().sum() + gap.square().sum())
        L = L + 0.5 * cfg.lam * W[i].square().sum()
        prev = V[i]
    return L


def _autograd(state: BCDState, problem):
    leaves = {(b, i): t.clone().requires_grad_() for b, i, t in state.blocks()}
    N = state.N
    L = _Lbar([leaves[("W", i)] for i in range(1, N + 1)], [leaves[("V", i)] for i in range(1, N + 1)],
              [leaves[("U", i)] for i in range(1, N + 1)], problem)
    L.backward()
    return {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("kw", CONFIGS)
def test_g_equals_the_autograd_gradient_away_from_relu_kinks(data, kw):
    """g^k (MATH.md §5, built in-stream) = ∇L̄(Q^k) in float64, rel. error ≤ 1e-8, at every entry where L̄ is
    differentiable.  At an entry U_i = 0 (a ReLU kink, produced by the prox when m ≥ 0 > a + βm) L̄ is not
    differentiable: autograd uses ReLU′(0) = 0, i.e. the u<0 branch, while g^k carries the element of the
    limiting subdifferential selected by the prox's optimality condition — the two may differ there only."""
    sweeps = 4
    rec, res = _run(data, "standard", sweeps=sweeps, keep_g=True, **kw)
    trace = rec.trace()
    g, grad = rec.g_components[sweeps], _autograd(res.state, res.problem)
    kinks = 0
    for (b, i), ref in grad.items():
        mine = g[(b, i)]
        if b == "U" and i < res.state.N and kw["activation"] == "relu":
            at_kink = res.state.U[i] == 0
            kinks += int(at_kink.sum())
            mine, ref = mine[~at_kink], ref[~at_kink]
        assert float((mine - ref).norm() / ref.norm()) <= 1e-8, (b, i)
    # the per-block and total norms in the trace are those of these components
    last = trace.blocks[trace.blocks[S.SWEEP] == sweeps]
    for _, row in last.iterrows():
        assert row[S.BLOCK_G_NORM] == pytest.approx(float(g[(row[S.BLOCK], row[S.LAYER])].norm()), rel=1e-12)
    assert trace.sweeps[S.G_NORM].iloc[-1] == pytest.approx(math.sqrt((last[S.BLOCK_G_NORM] ** 2).sum()), rel=1e-12)
    if kw["activation"] == "identity":
        assert kinks == 0


def test_at_kinks_g_is_a_limiting_subgradient_and_autograd_differs_only_there(data):
    """A ReLU run with exact zeros in U_2 (kaiming init, γ = α = 0.5; deterministic): g^k and autograd
    agree off the kinks; at a kink u = 0 the U-entry of g^k is γ(R + s) with R = U − W̃Ṽ and s in the
    limiting subdifferential of u ↦ ½(v − relu u)² at 0: {−v, 0} if v > 0, [0, −v] if v < 0, {0} if v = 0."""
    cfg = BCDConfig(hidden=(6, 4), gamma=0.5, alpha=0.5, sweeps=3, init="kaiming")
    rec = Recorder("standard", keep_g=True)
    res = train(data.X_train, data.y_train, cfg, hooks=[rec])
    rec.trace()  # completes the last sweep's g^k from the final state
    g, grad, st = rec.g_components[3], _autograd(res.state, res.problem), res.state
    total_kinks = 0
    for i in range(1, st.N):
        at_kink = st.U[i] == 0
        total_kinks += int(at_kink.sum())
        scale = grad[("U", i)].abs().max()
        differs = (g[("U", i)] - grad[("U", i)]).abs() > 1e-9 * scale
        assert not bool((differs & ~at_kink).any())
        s = (g[("U", i)] / cfg.gamma - (st.U[i] - affine(st.W[i], st.V[i - 1])))[at_kink]
        v = st.V[i][at_kink]
        tol = 1e-9 * float(scale)
        in_set = torch.where(v > 0, torch.minimum((s + v).abs(), s.abs()) <= tol,
                             (s >= -tol) & (s <= (-v).clamp(min=0) + tol))
        assert bool(in_set.all())
    assert total_kinks > 0


def test_sweep_table_columns_are_consistent(data):
    rec, res = _run(data, "full", sweeps=6)
    trace = rec.trace()
    sw, bl = trace.sweeps, trace.blocks
    pd.testing.assert_series_equal(sw[S.OBJECTIVE].iloc[1:].reset_index(drop=True),
                                   res.log[S.OBJECTIVE].iloc[1:].reset_index(drop=True), check_names=False)
    dq = bl.groupby(S.SWEEP)[S.BLOCK_DELTA_SQ].sum()
    np.testing.assert_allclose(sw[S.DQ_SQ].iloc[1:], dq.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(sw[S.CUM_DQ].iloc[1:], np.cumsum(np.sqrt(dq.to_numpy())), rtol=1e-12)
    np.testing.assert_allclose(sw[S.CUM_G_SQ].iloc[1:], np.cumsum(sw[S.G_NORM].iloc[1:] ** 2), rtol=1e-12)
    norms = [float(t.norm()) for _, _, t in res.state.blocks()]
    assert sw[S.BOUND_B].iloc[-1] >= max(norms) - 1e-12
    assert (np.diff(sw[S.BOUND_B]) >= 0).all()
    assert sw[S.NORM_W_MAX].iloc[-1] == pytest.approx(max(float(w.norm()) for w in res.state.W[1:]), rel=1e-12)
    assert (sw[S.TIME_RECORDER].iloc[1:] > 0).all()
    # full: accuracy every sweep, equal to the forward pass of the engine's own evaluation
    assert sw[S.TRAIN_ACC].notna().all() and sw[S.TEST_ACC].notna().all()
    cfg_eval = BCDConfig(hidden=(6, 4), gamma=1.3, alpha=2.0, sweeps=6, eval_every=1)
    ref = train(data.X_train, data.y_train, cfg_eval, X_test=data.X_test, y_test=data.y_test).log
    np.testing.assert_array_equal(sw[S.TRAIN_ACC], ref[S.TRAIN_ACC])
    np.testing.assert_array_equal(sw[S.TEST_ACC], ref[S.TEST_ACC])


def test_presets_and_schedules(data):
    cheap = _run(data, "cheap", sweeps=4)[0].trace()
    assert cheap.blocks.empty and cheap.sweeps[S.G_NORM].isna().all()
    assert cheap.sweeps[S.DQ_SQ].iloc[1:].notna().all() and cheap.sweeps[S.DECREASE].iloc[1:].notna().all()
    standard = _run(data, "standard", sweeps=4)[0].trace()
    assert standard.blocks[S.BLOCK_RESIDUAL].isna().all() and standard.blocks[S.BLOCK_G_NORM].notna().all()
    full = _run(data, "full", sweeps=4)[0].trace()
    assert full.blocks[S.BLOCK_RESIDUAL].notna().all()
    # the same iterates whatever the preset
    np.testing.assert_array_equal(cheap.sweeps[S.OBJECTIVE], full.sweeps[S.OBJECTIVE])
    np.testing.assert_array_equal(cheap.sweeps[S.DQ_SQ], full.sweeps[S.DQ_SQ])

    every2 = _run(data, "standard", schedule=2, sweeps=6)[0].trace()
    assert sorted(every2.blocks[S.SWEEP].unique()) == [1, 2, 4, 6]
    sw = every2.sweeps.set_index(S.SWEEP)
    assert sw.loc[[1, 2, 4, 6], S.G_NORM].notna().all() and sw.loc[[3, 5], S.G_NORM].isna().all()
    assert sw.loc[[1, 2], S.CUM_G_SQ].notna().all() and sw.loc[3:, S.CUM_G_SQ].isna().all()
    assert sw[S.DQ_SQ].iloc[1:].notna().all()  # cheap columns on every sweep
    np.testing.assert_allclose(sw.loc[[2, 4, 6], S.G_NORM], standard_g(data, [2, 4, 6]), rtol=1e-12)

    log = Schedule.log_spaced(per_decade=4)
    picked = [k for k in range(1, 101) if log(k)]
    assert picked == [1, 2, 4, 6, 10, 18, 32, 57, 100]  # the first sweep past each 10^(j/4)
    for bad in (dict(preset="medium"), dict(schedule=0), dict(schedule="often")):
        with pytest.raises(ValueError):
            Recorder(**bad)
    with pytest.raises(ValueError):
        Schedule(every=2, per_decade=3)


def standard_g(data, ks):
    trace = _run(data, "standard", sweeps=max(ks))[0].trace()
    return trace.sweeps.set_index(S.SWEEP).loc[ks, S.G_NORM].to_numpy()


# ------------------------------------------------------------------------------ exactness residual
def _wrong_beta_U(state, problem, i, aux):
    cfg = problem.config
    aux["P"] = P = affine(state.W[i], state.V[i - 1])
    return update_U_hidden(state.V[i], P, state.U[i], gamma=cfg.gamma, alpha=2 * cfg.alpha,
                           activation=problem.activation)


def _worse_candidate_U(state, problem, i, aux):
    """The ReLU prox returning the worse of its two candidates."""
    cfg = problem.config
    g, a = cfg.gamma, cfg.alpha
    aux["P"] = P = affine(state.W[i], state.V[i - 1])
    m = (g * P + a * state.U[i]) / (g + a)
    beta, v = (g + a) / g, state.V[i]
    best = relu_prox(v, m, beta)
    u_plus, u_minus = ((v + beta * m) / (1 + beta)).clamp(min=0), m.clamp(max=0)
    return torch.where(best == u_plus, u_minus, u_plus)


def _inexact_W(state, problem, i, aux):
    """Exact W update followed by a 1e-4 relative perturbation (an inexact solver)."""
    cfg = problem.config
    aux["gram"] = G = problem.gram_X if i == 1 else augmented_gram(state.V[i - 1])
    W = update_W(state.W[i], state.U[i], state.V[i - 1], gamma=cfg.gamma, alpha=cfg.alpha, lam=cfg.lam, gram=G)
    return W * (1 + 1e-4)


def _inexact_V(state, problem, i, aux):
    """Exact V_i update followed by a 1e-4 relative perturbation: caught by the sketched V_i residual."""
    return step_V_hidden(state, problem, i, aux) * (1 + 1e-4)


def _mutate(N, block, layer, fn):
    return tuple(Step(s.block, s.layer, fn) if (s.block, s.layer) == (block, layer) else s for s in three_splitting(N))


@pytest.mark.parametrize("block,layer,fn", [("U", 1, _wrong_beta_U), ("U", 2, _worse_candidate_U),
                                            ("W", 1, _inexact_W), ("W", 2, _inexact_W),
                                            ("V", 1, _inexact_V), ("V", 2, _inexact_V)])
def test_exactness_residual_is_rounding_for_the_engine_and_large_for_a_wrong_update(data, block, layer, fn, device):
    cfg = BCDConfig(hidden=(6, 4), gamma=1.3, alpha=2.0, sweeps=4, device=device)
    exact, _ = trace_arrays(data.X_train, data.y_train, cfg, preset="full")
    assert exact.blocks[S.BLOCK_RESIDUAL].max() < 1e-13
    broken, _ = trace_arrays(data.X_train, data.y_train, cfg, preset="full", schedule=_mutate(cfg.N, block, layer, fn))
    b = broken.blocks
    mine = b[(b[S.BLOCK] == block) & (b[S.LAYER] == layer)][S.BLOCK_RESIDUAL]
    assert mine.max() > 1e-6
    others = b[~((b[S.BLOCK] == block) & (b[S.LAYER] == layer))][S.BLOCK_RESIDUAL]
    assert others.max() < 1e-12  # the residual points at the block that is wrong


class States:
    """Reference hook: a copy of the iterate at the start and after every sweep."""

    def __init__(self):
        self.states = []

    def on_run_start(self, problem, state):
        self.problem = problem
        self.states.append(state.clone())

    def on_sweep_end(self, k, state, record):
        self.states.append(state.clone())


@pytest.mark.parametrize("layer", [1, 2])
def test_the_v_residual_estimate_against_the_exact_residual_of_a_wrong_update(data, layer):
    """V_1 (40 wide) is sketched with 16 probes, V_2 (6 wide) exact: both against ‖V⁺ − σ(U⁻) + Ŵᵀ(ŴV⁺ + b − U⁺)‖
    over the fast path's scale, computed here from the iterates of every sweep."""
    cfg = BCDConfig(hidden=(40, 6), gamma=1.3, alpha=2.0, sweeps=5)
    problem = make_problem(data.X_train, data.y_train, cfg)
    rec, ref = Recorder("full"), States()
    run(problem, initial_state(problem), hooks=[rec, ref], schedule=_mutate(cfg.N, "V", layer, _inexact_V))
    b = rec.trace().blocks
    got = b[(b[S.BLOCK] == "V") & (b[S.LAYER] == layer)].set_index(S.SWEEP)[S.BLOCK_RESIDUAL]
    for k in range(1, cfg.sweeps + 1):
        prev, now = ref.states[k - 1], ref.states[k]
        W_hat, bias = now.W[layer + 1][:, :-1], now.W[layer + 1][:, -1:]
        P = W_hat @ now.V[layer] + bias
        sig = prev.U[layer].clamp(min=0)
        r = (now.V[layer] - sig + W_hat.T @ (P - now.U[layer + 1])).norm()
        scale = now.V[layer].norm() + sig.norm() + W_hat.norm() * (P.norm() + now.U[layer + 1].norm())
        exact = float(r / scale)
        assert exact > 1e-7  # the perturbation is visible
        if layer == 2:
            assert got[k] == pytest.approx(exact, rel=1e-9)
        else:
            assert exact / 3 < got[k] < 3 * exact
    exact_V1 = b[(b[S.BLOCK] == "V") & (b[S.LAYER] == 1)][S.BLOCK_RESIDUAL]
    assert layer == 1 or exact_V1.max() < 1e-13  # the sketch of an exact update (V_1 here) is at rounding level


def test_a_recorder_checkpoint_of_the_older_format_resumes_with_its_v_residual_sketched(data):
    """Checkpoints written before the sketched V residual carry A = V_i⁺ − σ(U_i⁻) itself and lack the per-step
    dicts: on resume A becomes ZA, equal to what the layer pass carries now."""
    cfg = BCDConfig(hidden=(40, 6), gamma=1.3, alpha=2.0, sweeps=3)
    problem = make_problem(data.X_train, data.y_train, cfg)
    rec, ref, state = Recorder("full"), States(), initial_state(problem)
    run(problem, state, hooks=[rec, ref])
    saved = rec.state_dict()
    old = {k: v for k, v in saved.items() if k not in ("_pending_V", "_E_sq")}
    old["_carry"] = {i: {k: v for k, v in c.items() if k != "ZA"} for i, c in saved["_carry"].items()}
    layers = sorted(i for i, c in saved["_carry"].items() if "ZA" in c)
    assert layers == [2, 3]
    for i in layers:
        old["_carry"][i]["A"] = ref.states[-1].V[i - 1] - ref.states[-2].U[i - 1].clamp(min=0)
    back = Recorder.from_state_dict(old)
    back.on_resume(problem, state)
    assert back._pending_V == {} and back._E_sq == {}
    for i in layers:
        torch.testing.assert_close(back._carry[i]["ZA"], saved["_carry"][i]["ZA"], rtol=1e-10, atol=1e-12)


def test_u_block_residual_at_ties_and_on_bad_input():
    """At an exact tie f(u₊) = f(u₋) either candidate is a global minimiser: no residual."""
    beta = 2.0
    m = torch.tensor([-1.0], dtype=torch.float64)
    # β = 2, m = −1: f(u₊) = β(a−m)²/(2(1+β)) = (a+1)²/3 equals f(u₋) = a²/2 at a = 2 + √6 (u₊ ≈ 0.82 > 0)
    a_val = 2 + math.sqrt(6)
    a = torch.tensor([a_val], dtype=torch.float64)
    u_plus = ((a + beta * m) / (1 + beta)).clamp(min=0)
    for new in (u_plus, m.clamp(max=0)):
        assert float(u_block_residual(new, a, m, beta, "relu")) < 1e-14
    assert float(u_block_residual(u_plus + 0.1, a, m, beta, "relu")) > 1e-3
    with pytest.raises(ValueError, match="sigmoid"):
        u_block_residual(u_plus, a, m, beta, "sigmoid")


# ------------------------------------------------------------------------------ saved traces
def test_trace_saved_next_to_the_config_loads_back_identically(tmp_path):
    cfg = RunConfig(data=DataConfig(dataset="mixture", n_train=60, n_test=20),
                    bcd=BCDConfig(hidden=(5, 4), sweeps=3, gamma=1.0, alpha=3.0), out=str(tmp_path / "run"))
    result, trace, out = record(cfg, preset="full")
    assert (out / "config.json").is_file()
    loaded = Trace.load(out)
    pd.testing.assert_frame_equal(loaded.sweeps, trace.sweeps)
    pd.testing.assert_frame_equal(loaded.blocks, trace.blocks)
    assert loaded.meta == trace.meta
    assert loaded.config == cfg.bcd
    assert trace.meta[S.META_SOURCE] == "engine" and trace.meta["stop_reason"] == result.stop_reason


def test_trace_before_a_run_is_an_error():
    with pytest.raises(ValueError, match="on_run_start"):
        Recorder().trace()


def test_bcd_record_command_writes_the_trace_next_to_the_config(tmp_path, capsys):
    from bcd.cli import main as bcd_main

    out = tmp_path / "run"
    argv = ["record", "--dataset", "mixture", "--n-train", "60", "--hidden", "5,4", "--sweeps", "5",
            "--out", str(out), "--no-progress", "--preset", "standard", "--every", "2"]
    assert bcd_main(argv) == 0
    trace = Trace.load(out)
    assert (out / "config.json").is_file() and trace.meta[S.META_PRESET] == "standard"
    assert sorted(trace.blocks[S.SWEEP].unique()) == [1, 2, 4]
    assert bcd_main(argv) == 2  # an existing run is never overwritten silently
    assert "already holds a run" in capsys.readouterr().err
