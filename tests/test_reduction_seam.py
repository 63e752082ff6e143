"""The reduction seam (MATH.md §10): every sum over samples of the engine and the objective passes through
:func:`bcd.reduction.over_samples`.

Test: a reduction that doubles every sum stands for two shards holding identical columns.  One sweep on X with it
must equal one sweep on the duplicated data [X X] in one process — any sum that bypassed the seam would make the
W blocks, the objective or the accuracy differ.  The same holds for the recorder's columns (fast and generic path):
every squared norm, inner product and count over samples it forms must pass through the seam too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.engine import run
from bcd.inputs import make_problem
from bcd.objective import accuracy, objective_terms
from bcd.problem import BCDState, initial_state
from bcd.reduction import Reduction, SampleNorms, using
from bcd.schedule import Step, schedule_for
from bcd.subproblems import subproblem_for
from verification import schema as S  # noqa: N812
from verification.recorder import Recorder


class TwoIdenticalShards(Reduction):
    def sum_(self, t):
        return t.mul_(2.0)

    def gather(self, t):
        return torch.cat([t, t], dim=-1)


@pytest.mark.parametrize("kw", [dict(), dict(skip="auto", lam=0.1), dict(splitting="two", activation="identity"),
                                dict(vn_update="prox_linear", reduction="mean"),
                                # the piecewise Newton solver: V on its own columns, W̃ on gathered operands
                                dict(splitting="two", activation="relu", lam=0.1)])
def test_a_sharded_reduction_gives_the_iterates_of_the_full_data(kw):
    d = gaussian_mixture(n=30, d=5, k=3, seed=2)
    cfg = BCDConfig(**{"hidden": (5, 5), "gamma": 0.9, "alpha": 1.5, "sweeps": 3, "dtype": "float64", **kw})
    X2, y2 = np.vstack([d.X_train, d.X_train]), np.concatenate([d.y_train, d.y_train])
    full = make_problem(X2, y2, cfg)
    s_full = initial_state(full)
    run(full, s_full)
    with using(TwoIdenticalShards()):
        shard = make_problem(d.X_train, d.y_train, cfg)
        s_shard = initial_state(shard)
        run(shard, s_shard)
        terms_shard = objective_terms(s_shard, shard)
        acc_shard = accuracy(s_shard.W, shard.X, shard.labels, shard)
    n = d.X_train.shape[0]
    for i in range(1, cfg.N + 1):
        torch.testing.assert_close(s_shard.W[i], s_full.W[i], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(s_shard.V[i], s_full.V[i][:, :n], rtol=1e-10, atol=1e-12)
    terms_full = objective_terms(s_full, full)
    for key, value in terms_full.items():
        assert terms_shard[key] == pytest.approx(value, rel=1e-10), key
    assert acc_shard == pytest.approx(accuracy(s_full.W, full.X, full.labels, full))


def _inexact(step: Step, factor: float = 1.0 + 1e-3) -> Step:
    """The step's update scaled by ``factor``: column-wise, so it commutes with duplicating the samples, and the
    exactness residuals become O(1e-3) instead of rounding noise (then they can be compared)."""
    return Step(step.block, step.layer, lambda state, problem, i, aux: step.update(state, problem, i, aux).mul(factor))


def _recorded(X, y, X_test, y_test, cfg):
    """Recorder("full") over a run of the configured schedule with every update scaled (:func:`_inexact`)."""
    problem = make_problem(X, y, cfg, X_test=X_test, y_test=y_test)
    state = initial_state(problem)
    rec = Recorder("full")
    run(problem, state, hooks=[rec], schedule=[_inexact(s) for s in schedule_for(cfg.splitting, cfg.N)])
    return rec.trace()


def _both(kw):
    """The recorder's trace on X under the doubling reduction, and on the duplicated data [X X] in one process."""
    d = gaussian_mixture(n=30, d=5, k=3, seed=2, n_test=12)
    # eval_every: the engine leaves the accuracies of sweeps 1, 2 to the recorder
    cfg = BCDConfig(**{"hidden": (5, 5), "gamma": 0.9, "alpha": 1.5, "sweeps": 3, "dtype": "float64",
                       "eval_every": 100, **kw})
    X2, y2 = np.vstack([d.X_train, d.X_train]), np.concatenate([d.y_train, d.y_train])
    Xt2, yt2 = np.vstack([d.X_test, d.X_test]), np.concatenate([d.y_test, d.y_test])
    full = _recorded(X2, y2, Xt2, yt2, cfg)
    with using(TwoIdenticalShards()):
        shard = _recorded(d.X_train, d.y_train, d.X_test, d.y_test, cfg)
    assert len(full.blocks) == cfg.sweeps * len(schedule_for(cfg.splitting, cfg.N))
    return shard, full


def _assert_columns_agree(shard, full, sweep_cols, block_cols):
    assert list(shard.sweeps.columns) == list(full.sweeps.columns)
    for frame, cols in (("sweeps", sweep_cols), ("blocks", block_cols)):
        for col in cols:
            np.testing.assert_allclose(getattr(shard, frame)[col].to_numpy(float),
                                       getattr(full, frame)[col].to_numpy(float), rtol=1e-10, atol=1e-13,
                                       err_msg=f"{frame}.{col}")


TIMING = {S.TIME_ENGINE, S.TIME_HOOKS, S.TIME_EVAL, S.TIME_RECORDER}
# g^k of the generic path (verification/subgradient.py): compared in their own test below
GENERIC_G = {S.G_NORM, S.G_NORM_LOWER, S.CUM_G_SQ, S.BLOCK_G_NORM}
BLOCK_COLUMNS = [S.BLOCK_DECREASE, S.BLOCK_DELTA_SQ, S.BLOCK_G_NORM, S.BLOCK_RESIDUAL, S.BLOCK_CONST, S.BLOCK_NOISE,
                 S.BLOCK_STATIONARITY, S.BLOCK_RULE_TOL]
GENERIC = [dict(skip="auto", lam=0.1), dict(splitting="two", activation="identity"),
           dict(splitting="two", activation="relu", lam=0.1)]  # the last: the piecewise Newton solver


@pytest.mark.parametrize(("kw", "path"), [(dict(), "fast"),
                                          (dict(vn_update="prox_linear", reduction="mean", lam=0.2), "fast"),
                                          *((kw, "generic") for kw in GENERIC)])
def test_a_sharded_reduction_gives_the_recorder_columns_of_the_full_data(kw, path):
    shard, full = _both(kw)
    assert shard.meta[S.META_RECORDER_PATH] == full.meta[S.META_RECORDER_PATH] == path
    assert shard.meta[S.META_N_SAMPLES] == full.meta[S.META_N_SAMPLES] == 60
    skip = TIMING | (GENERIC_G if path == "generic" else set())
    sweep_cols = [c for c in full.sweeps.columns if c not in skip]
    assert {S.OBJECTIVE, S.DECREASE, S.DQ_SQ, S.BOUND_B, S.NORM_V_MAX, S.NORM_U_MAX, S.NORM_W_MAX, S.CUM_DQ,
            S.TRAIN_ACC, S.TEST_ACC} <= set(sweep_cols)
    assert path == "generic" or S.G_NORM in sweep_cols
    assert (full.blocks[S.BLOCK_RESIDUAL] > 1e-6).any()  # the scaled updates: residuals above rounding noise
    _assert_columns_agree(shard, full, sweep_cols, [c for c in BLOCK_COLUMNS if c not in skip])


@pytest.mark.parametrize("kw", GENERIC)
def test_a_sharded_reduction_gives_the_generic_g_of_the_full_data(kw):
    shard, full = _both(kw)
    _assert_columns_agree(shard, full, [c for c in full.sweeps.columns if c in GENERIC_G], [S.BLOCK_G_NORM])


# ------------------------------------------------------------------ two shards that differ


class Replay(Reduction):
    """Two *different* shards for a computation whose sequence of sums does not depend on the values: run it on
    shard B first (``record``: each local sum is kept), then on shard A, where each sum adds B's in the same order."""

    def __init__(self):
        self.tape, self.at, self.recording = [], 0, True

    def sum_(self, t):
        if self.recording:
            self.tape.append(t.detach().clone())
            return t
        self.at += 1
        return t.add_(self.tape[self.at - 1])


def _columns(state, cols):
    return BCDState(list(state.W), [None if v is None else v[:, cols] for v in state.V],
                    [None if u is None else u[:, cols] for u in state.U], state.sweep)


@pytest.mark.parametrize("kw", [dict(lam=0.1), dict(vn_update="prox_linear"), dict(skip="auto")])
def test_subproblem_residuals_sum_over_shards_that_differ(kw):
    """A ratio of norms of n-sized blocks does not change under the doubling reduction; with shards A ≠ B it
    does: each residual of a candidate update on A (with B's sums replayed) must equal the one on [A B]."""
    d = gaussian_mixture(n=30, d=5, k=3, seed=4)
    cfg = BCDConfig(**{"hidden": (5, 5), "gamma": 0.9, "alpha": 1.5, "sweeps": 1, "dtype": "float64", **kw})
    full = make_problem(d.X_train, d.y_train, cfg)
    state = initial_state(full)
    run(full, state)
    shards = [slice(11, 30), slice(0, 11)]  # B (recorded), then A (B's sums replayed)
    parts = [(make_problem(d.X_train[s], d.y_train[s], cfg, n_classes=3), _columns(state, s), s) for s in shards]
    for block, i in full.variables:
        sub = subproblem_for(full, block, i)
        cand = state.get(block, i).mul(1.01).add_(0.01)  # any candidate: its residual is well above rounding
        expected = float(sub.residual(state, full, cand))
        replay = Replay()
        with using(replay):
            for problem, st, s in parts:
                local = cand if block == "W" else cand[:, s]
                got = float(sub.residual(st, problem, local))
                replay.recording = False
        assert replay.at == len(replay.tape) > 0
        assert expected > 1e-6 and got == pytest.approx(expected, rel=1e-10), (block, i)


def test_sample_norms_pass_each_tensor_through_the_seam_once():
    """The recorder's per-step memo (generic block noise): the value is the seam's sample norm, one reduction per
    tensor object however often it is asked; an equal tensor that is another object is another iterate."""
    class Counting(TwoIdenticalShards):
        calls = 0

        def sum_(self, t):
            Counting.calls += 1
            return super().sum_(t)

    a = torch.randn(3, 5, dtype=torch.float64)
    b = a.clone()
    with using(Counting()):
        norm = SampleNorms()
        first, again, squared = norm(a), norm(a), norm.sq(a)
        assert Counting.calls == 1 and again is first
        assert float(squared) == float(2 * torch.linalg.vector_norm(a).square())  # the reduced ‖·‖², not √ squared
        torch.testing.assert_close(first, squared.sqrt(), rtol=0, atol=0)
        torch.testing.assert_close(norm(b), first, rtol=1e-15, atol=0)
        assert Counting.calls == 2
