"""The sufficient-descent constant a of theory.symbolic against real runs of bcd.train (float64).

For every run: a_emp = min_k (L̄^{k−1} − L̄^k)/‖ΔQ^k‖² ≥ a, with ΔQ^k measured by cloning the iterate
between sweeps in a hook.  A mutated engine whose W step drops the proximal term must fail the check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bcd.engine
from bcd import BCDConfig, train
from bcd.data import gaussian_mixture, teacher_student
from bcd.schedule import Step, three_splitting
from theory import constants as tc
from theory.symbolic import numeric_constants


class DeltaQ:
    """Hook: ‖Q^k − Q^{k−1}‖² over every block (W̃_i, V_i, U_i, i = 1..N) after each sweep."""

    def on_run_start(self, problem, state):
        self.prev, self.dq_sq = state.clone(), []

    def on_sweep_end(self, k, state, record):
        self.dq_sq.append(sum(float(torch.sum((x - self.prev.get(b, i)) ** 2)) for b, i, x in state.blocks()))
        self.prev = state.clone()


def empirical_descent(result, hook) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decrease_k, ‖ΔQ^k‖², noise floor_k) for k = 1..T."""
    L = result.log["objective"].to_numpy()
    dec, dq = L[:-1] - L[1:], np.array(hook.dq_sq)
    floor = 64 * np.finfo(np.float64).eps * np.maximum(np.abs(L[:-1]), 1.0)
    return dec, dq, floor


def sufficient_descent_holds(result, hook, a: float) -> tuple[bool, float]:
    """Every sweep: decrease ≥ a‖ΔQ‖² − floor.  Returns (holds, a_emp over sweeps above the floor)."""
    dec, dq, floor = empirical_descent(result, hook)
    assert len(dq) == len(dec) > 0
    ok = bool(np.all(dec >= a * dq - floor))
    informative = dq * a > floor
    a_emp = float(np.min(dec[informative] / dq[informative])) if informative.any() else float("inf")
    return ok, a_emp


def mixture(n=60, d=5, k=3, seed=0):
    ds = gaussian_mixture(n=n, d=d, k=k, seed=seed)
    return ds.X_train, ds.y_train


RUNS = [
    dict(gamma=1.0, alpha=5.0),
    dict(gamma=0.5, alpha=0.5),
    dict(gamma=3.0, alpha=0.2),
    dict(gamma=0.1, alpha=2.0),
    dict(gamma=10.0, alpha=10.0, init="kaiming"),
    dict(gamma=1.0, alpha=0.3, lam=0.05, reduction="mean"),
    dict(gamma=2.0, alpha=0.7, activation="identity"),
    dict(gamma=0.4, alpha=1.5, vn_update="prox_linear"),  # α > (L_R − γ)/2 = 0.3
]


@pytest.mark.parametrize("kw", RUNS, ids=[",".join(f"{k}={v}" for k, v in r.items()) for r in RUNS])
def test_empirical_sufficient_descent_constant_is_at_least_a(kw):
    config = BCDConfig(hidden=(6, 4), dtype="float64", sweeps=10, seed=3, **kw)
    X, y = mixture()
    hook = DeltaQ()
    result = train(X, y, config, hooks=[hook])
    a = numeric_constants(config, n=len(y)).a
    if config.vn_update == "prox_linear":
        assert a == pytest.approx(tc.sufficient_descent_constant_prox_linear(config.gamma, config.alpha, 1.0))
    else:
        assert a == pytest.approx(tc.sufficient_descent_constant(config.gamma, config.alpha))
    ok, a_emp = sufficient_descent_holds(result, hook, a)
    assert ok, f"a_emp = {a_emp:.4g} < a = {a:.4g} for {kw}"
    assert np.isfinite(a_emp) and a_emp >= a


def test_teacher_student_run_respects_a():
    ds, _teacher = teacher_student(n=50, widths=(4, 6, 2), seed=1)
    config = BCDConfig(hidden=(6,), dtype="float64", sweeps=12, gamma=0.8, alpha=0.6, seed=2)
    hook = DeltaQ()
    result = train(ds.X_train, ds.y_train, config, hooks=[hook])
    ok, a_emp = sufficient_descent_holds(result, hook, numeric_constants(config).a)
    assert ok and a_emp >= 0.3


def step_W_without_prox(state, problem, i, aux):
    """Mutant: W̃_i ← argmin_W γ/2‖U_i − WṼ_{i-1}‖² (no α/2‖W − W̃_i⁻‖², min-norm least squares)."""
    V = state.V[i - 1]
    Vt = torch.cat([V, torch.ones(1, V.shape[1], dtype=V.dtype)], dim=0)
    return torch.linalg.lstsq(Vt.T, state.U[i].T, driver="gelsd").solution.T.contiguous()


def mutant_schedule(splitting, N):
    return tuple(Step(s.block, s.layer, step_W_without_prox) if s.block == "W" else s for s in three_splitting(N))


def test_check_fails_for_an_engine_whose_W_step_drops_the_proximal_term(monkeypatch):
    config = BCDConfig(hidden=(6, 4), dtype="float64", sweeps=10, seed=3, gamma=1.0, alpha=5.0)
    X, y = mixture()
    monkeypatch.setattr(bcd.engine, "schedule_for", mutant_schedule)
    hook = DeltaQ()
    result = train(X, y, config, hooks=[hook])
    ok, a_emp = sufficient_descent_holds(result, hook, numeric_constants(config).a)
    assert not ok, f"the mutated engine passed (a_emp = {a_emp:.4g})"
