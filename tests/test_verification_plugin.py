"""The pytest plugin ``bcd_verify``: it is registered through its entry point, its assertion helpers name
the sweep, the block, the increase and the tolerance, a user-style test file of a broken variant fails
with that message (pytester), and the project's own regression tests of the engine use it."""

from __future__ import annotations

import numpy as np
import pytest
from verification_traces import consistent_trace, geometric, make_trace, split_blocks

from verification import schema as sc
from verification.pytest_plugin import (
    assert_exact_updates,
    assert_monotone_descent,
    assert_rate,
    assert_sufficient_descent,
    assert_verified,
)
from verification.verdict import PASS

pytest_plugins = ["pytester"]


def test_plugin_is_registered_by_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("bcd_verify")


# ------------------------------------------------------------------ the project's own regression tests
@pytest.mark.parametrize(
    "changes",
    [{}, {"activation": "identity"}, {"hidden": (4, 3), "lam": 0.5}, {"vn_update": "prox_linear", "reduction": "mean"}],
    ids=["relu", "identity", "deep-lam", "prox-linear"],
)
def test_engine_regression(bcd_run, changes):
    trace = bcd_run(**changes)
    assert assert_monotone_descent(trace).status == PASS
    assert_sufficient_descent(trace)
    assert_rate(trace)
    assert_exact_updates(trace)
    assert_verified(trace)


def test_default_fixtures_run_the_configured_problem(bcd_trace, bcd_config):
    assert bcd_trace.meta[sc.META_PRESET] == "full"
    assert len(bcd_trace.sweeps) == bcd_config.sweeps + 1
    assert assert_monotone_descent(bcd_trace).details["n_resolved"] > 0


# ------------------------------------------------------------------------ helper failure messages
def test_monotone_message_names_sweep_block_increase_and_tolerance():
    L, dq, g = geometric()
    blocks = split_blocks(L)
    blocks.loc[(blocks[sc.SWEEP] == 5) & (blocks[sc.STEP] == 4), sc.BLOCK_DECREASE] = -0.25
    blocks.loc[(blocks[sc.SWEEP] == 5) & (blocks[sc.STEP] == 5), sc.BLOCK_DECREASE] += 1.0
    with pytest.raises(pytest.fail.Exception, match=r"L̄ increased at sweep 5, block U1 \(step 4\) by 0\.25 > "
                                                    r"tolerance \d\.\d+e-\d+"):
        assert_monotone_descent(make_trace(L, dq, g, blocks=blocks))
    L[12] = L[11] + 1e-3
    with pytest.raises(pytest.fail.Exception, match=r"sweep 12 \(whole sweep\) by 0\.001 > tolerance"):
        assert_monotone_descent(make_trace(L, dq, g), per_block=False)


def test_inconclusive_fails_unless_allowed():
    flat = make_trace(np.full(6, 4.0))
    with pytest.raises(pytest.fail.Exception, match="allow_inconclusive=True"):
        assert_monotone_descent(flat)
    assert assert_monotone_descent(flat, allow_inconclusive=True).status == "inconclusive"


def test_sufficient_rate_and_exactness_messages():
    L, dq, g = geometric(rho=2.0)
    dq_bad = dq.copy()
    dq_bad[7] *= 4.0
    with pytest.raises(pytest.fail.Exception, match=r"at sweep 8 \(whole sweep\): L̄ fell by .* < required .* "
                                                    r"= 0\.5·‖Δ‖² \(shortfall .* > tolerance"):
        assert_sufficient_descent(make_trace(L, dq_bad, g))
    g_bad = g.copy()
    g_bad[4] = 1e6
    with pytest.raises(pytest.fail.Exception, match=r"at sweep 5: Σ‖g\^k‖² = .* vs C = "):
        assert_rate(make_trace(L, dq, g_bad))
    blocks = split_blocks(L)
    blocks.loc[(blocks[sc.SWEEP] == 3) & (blocks[sc.STEP] == 2), sc.BLOCK_RESIDUAL] = 1e-4
    with pytest.raises(pytest.fail.Exception, match=r"inexact update at sweep 3, block W2 \(step 2\)"):
        assert_exact_updates(make_trace(L, dq, g, blocks=blocks))
    assert len(assert_verified(consistent_trace(T=40))) == 7


# ------------------------------------------------------------------------- a user's own test suite
USER_TESTS = '''
import torch
from bcd.blocks import affine
from bcd.schedule import Step, three_splitting
from verification.pytest_plugin import assert_monotone_descent

import pytest


def my_U1(state, problem, i, aux):
    """My variant of the U_1 step: a sloppy prox that keeps the worse ReLU candidate."""
    cfg = problem.config
    aux["P"] = P = affine(state.W[i], state.V[i - 1])
    m = (cfg.gamma * P + cfg.alpha * state.U[i]) / (cfg.gamma + cfg.alpha)
    beta, a = (cfg.gamma + cfg.alpha) / cfg.gamma, state.V[i]
    up, um = ((a + beta * m) / (1 + beta)).clamp(min=0), m.clamp(max=0)
    f = lambda u: 0.5 * (a - torch.relu(u)) ** 2 + 0.5 * beta * (u - m) ** 2
    return torch.where(f(up) <= f(um), um, up)


@pytest.fixture
def bcd_schedule():
    return lambda N: tuple(Step(s.block, s.layer, my_U1) if s.name == "U1" else s for s in three_splitting(N))


def test_my_variant_descends(bcd_trace):
    assert_monotone_descent(bcd_trace)


def test_reference_descends(bcd_run):
    assert_monotone_descent(bcd_run(None))
'''


def test_user_suite_catches_a_broken_variant(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Monotone descent*FAIL*",
        "*L̄ increased at sweep *, block U1 (step *) by * > tolerance *",
        "*tolerance: κ_L·eps·max*",
    ])
