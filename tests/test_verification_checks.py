"""Verifying the verifier on synthetic traces: for every check a trace built to pass, one built to
fail, and borderline / float-noise cases that must come out inconclusive (never pass)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from verification_traces import CFG, NAMES, A, consistent_trace, geometric, good_trace, make_trace, split_blocks

from theory import constants as tc
from verification import schema as sc
from verification.checks import (
    CHECKS,
    block_exactness,
    convergence,
    kl_exponent,
    monotone_descent,
    rate,
    relative_error,
    sufficient_descent,
    verify,
)
from verification.checks_tail import estimate_L_star, kl_regime
from verification.stats import fit_line, t_quantile
from verification.tolerance import (
    KAPPA_OBJECTIVE,
    dtype_name,
    machine_eps,
    objective_tol,
    residual_tol,
    step_floor,
)
from verification.verdict import FAIL, INCONCLUSIVE, PASS, Verdict


# ------------------------------------------------------------------------------- tolerances, stats
def test_tolerance_scales_with_dtype_and_magnitude():
    assert machine_eps("float32") > 1e8 * machine_eps("float64") / 1e1
    assert objective_tol("float64", 1e4) == pytest.approx(KAPPA_OBJECTIVE * machine_eps("float64") * 1e4)
    assert objective_tol("float64", 1e-6) == objective_tol("float64", 0.0)  # absolute floor max(|L̄|, 1)
    assert objective_tol("float32", 1.0) > 1e8 * objective_tol("float64", 1.0) / 1e1
    assert np.allclose(objective_tol("float64", np.array([1.0, 10.0]), np.array([20.0, 1.0])),
                       KAPPA_OBJECTIVE * machine_eps("float64") * np.array([20.0, 10.0]))
    assert residual_tol("float64") == pytest.approx(math.sqrt(machine_eps("float64")))
    assert step_floor("float64", 100.0) == pytest.approx(100 * step_floor("float64", 0.5))
    import torch

    assert dtype_name(torch.float32) == dtype_name(np.float32) == "float32"
    with pytest.raises(ValueError, match="dtype='int8' is not supported"):
        machine_eps("int8")


def test_t_quantiles_and_line_fit():
    for df, ref in [(1, 12.7062047), (2, 4.30265273), (5, 2.57058184), (30, 2.04227246)]:
        assert t_quantile(0.975, df) == pytest.approx(ref, rel=1e-7)
    assert t_quantile(0.025, 5) == pytest.approx(-t_quantile(0.975, 5))
    x = np.arange(8.0)
    fit = fit_line(x, 3.0 - 2.0 * x)
    assert fit.slope == pytest.approx(-2.0) and fit.ci[1] - fit.ci[0] < 1e-9
    noisy = fit_line(x, 3.0 - 2.0 * x + np.random.default_rng(1).normal(0, 0.5, 8))
    assert noisy.ci[0] < noisy.slope < noisy.ci[1] and noisy.ci[1] - noisy.ci[0] > 0.1
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_line([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"p=1\.5"):
        t_quantile(1.5, 3)


# ------------------------------------------------------------------------------------ 1. monotone
def test_monotone_passes_on_descent():
    v = monotone_descent(good_trace())
    assert v.status == PASS and v.details["levels"] == ["sweep", "block"]
    assert v.measured < 0 and v.tolerance > 0 and "κ_L" in v.tolerance_reason and v.guaranteed is True


def test_monotone_fails_on_a_sweep_increase_and_names_it():
    L, dq, g = geometric()
    L[12] = L[11] + 1e-3
    v = monotone_descent(make_trace(L, dq, g))
    assert v.status == FAIL
    assert v.worst == {"level": "sweep", "sweep": 12}
    assert v.measured == pytest.approx(1e-3)
    assert "sweep 12" in v.explanation and "1.000e-03" in v.explanation
    assert v.details["violations"][0]["shortfall"] == pytest.approx(1e-3)


def test_monotone_fails_on_a_single_block_increase_hidden_in_a_descending_sweep():
    L, dq, g = geometric()
    blocks = split_blocks(L)
    row = (blocks[sc.SWEEP] == 5) & (blocks[sc.STEP] == 4)  # U1 of sweep 5 rises, W1 compensates
    blocks.loc[row, sc.BLOCK_DECREASE] = -0.25
    blocks.loc[(blocks[sc.SWEEP] == 5) & (blocks[sc.STEP] == 5), sc.BLOCK_DECREASE] += 1.0
    assert (L[4] - L[5]) > 0  # the sweep as a whole still descends
    v = monotone_descent(make_trace(L, dq, g, blocks=blocks))
    assert v.status == FAIL
    assert v.worst == {"level": "block", "sweep": 5, "block": "U1", "step": 4}
    assert "block U1" in v.explanation
    assert monotone_descent(make_trace(L, dq, g, blocks=blocks), per_block=False).status != FAIL


@settings(max_examples=40, deadline=None, derandomize=True)
@given(scale=st.floats(1e-3, 1e8), factor=st.floats(0.0, 0.95), dtype=st.sampled_from(["float32", "float64"]))
def test_increase_within_the_noise_floor_is_inconclusive_never_fail_nor_pass(scale, factor, dtype):
    """L̄ moves only by float noise (< tol): the verdict is inconclusive."""
    L = np.full(11, scale)
    tol = objective_tol(dtype, scale)
    L[1::2] += factor * tol  # up and down within the noise floor
    v = monotone_descent(make_trace(L, dtype=dtype))
    assert v.status == INCONCLUSIVE, v.explanation
    assert "noise floor" in v.explanation


@settings(max_examples=40, deadline=None, derandomize=True)
@given(scale=st.floats(1e-3, 1e8), factor=st.floats(1.05, 1e3), dtype=st.sampled_from(["float32", "float64"]))
def test_increase_just_beyond_the_tolerance_fails(scale, factor, dtype):
    L = scale * (1.0 + 0.1 * 0.5 ** np.arange(11))  # resolved decreases ...
    L[6] = L[5] + factor * objective_tol(dtype, L[5], L[5] * 2)  # ... and one increase beyond tol
    v = monotone_descent(make_trace(L, dtype=dtype))
    assert v.status == FAIL and v.worst["sweep"] == 6


def test_monotone_nonfinite_objective_fails():
    L, dq, g = geometric()
    L[9] = np.nan
    v = monotone_descent(make_trace(L, dq, g))
    assert v.status == FAIL and v.worst["sweep"] == 9 and "not finite" in v.explanation


def test_monotone_without_sweeps_is_inconclusive():
    v = monotone_descent(make_trace([3.0]))
    assert v.status == INCONCLUSIVE and "no sweep after" in v.explanation


# --------------------------------------------------------------------------- 2. sufficient descent
def test_sufficient_descent_passes_with_a_emp_above_a():
    v = sufficient_descent(good_trace(rho=2.0))
    assert v.status == PASS
    assert v.theoretical == A and v.measured == pytest.approx(2 * A)
    assert set(v.details["per_block"]) == {f"{b}{i}" for b, i in NAMES}
    assert all(d["a_emp"] == pytest.approx(1.5 * d["constant"]) for d in v.details["per_block"].values())


def test_sufficient_descent_fails_when_a_emp_below_a():
    L, dq, g = geometric(rho=2.0)
    dq[7] *= 4.0  # sweep 8: decrease = a/2·‖ΔQ‖²
    v = sufficient_descent(make_trace(L, dq, g))
    assert v.status == FAIL and v.worst == {"level": "sweep", "sweep": 8}
    assert v.measured == pytest.approx(A / 2) and v.margin < 0


def test_sufficient_descent_per_block_constant():
    """Every sweep has a_emp ≥ a, but V1 falls short of its own constant γ/2."""
    L, dq, g = geometric(rho=4.0)
    blocks = split_blocks(L)
    row = (blocks[sc.SWEEP] == 3) & (blocks[sc.BLOCK] == "V") & (blocks[sc.LAYER] == 1)
    blocks.loc[row, sc.BLOCK_DELTA_SQ] *= 3.0  # ratio 1.5 → 0.5 of its constant
    v = sufficient_descent(make_trace(L, dq, g, blocks=blocks))
    assert v.status == FAIL and v.worst["block"] == "V1" and v.worst["sweep"] == 3
    assert v.details["per_block"]["V1"]["a_emp"] == pytest.approx(0.5 * CFG.gamma / 2)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rho=st.floats(0.05, 50.0), a=st.floats(0.01, 10.0), scale=st.floats(1e-2, 1e6),
       dtype=st.sampled_from(["float32", "float64"]))
def test_sufficient_descent_decides_by_the_ratio(rho, a, scale, dtype):
    """decrease = ρ·a‖ΔQ‖² on every sweep: pass for ρ ≥ 1, fail for ρ clearly below 1 (bounds resolved)."""
    L = scale * (1.0 + 0.6 ** np.arange(16))
    d = L[:-1] - L[1:]
    v = sufficient_descent(make_trace(L, d / (rho * a), dtype=dtype), a=a)
    if rho >= 1.0:
        assert v.status == PASS and v.measured == pytest.approx(rho * a, rel=1e-9)
    elif rho <= 0.99:
        assert v.status == FAIL and v.margin < 0


def test_sufficient_descent_borderline_and_noise():
    L, dq, g = geometric(rho=1.0)  # decrease = a‖ΔQ‖² exactly: passes (equality is allowed)
    assert sufficient_descent(make_trace(L, dq, g)).status == PASS
    # short by half a tolerance: still not a failure
    tol = objective_tol("float64", L[:-1], L[1:])
    dq_short = dq + 0.5 * tol / A
    assert sufficient_descent(make_trace(L, dq_short, g)).status == PASS
    dq_bad = dq.copy()
    dq_bad[3] += 3 * tol[3] / A
    assert sufficient_descent(make_trace(L, dq_bad, g)).status == FAIL
    # every bound a‖ΔQ‖² below the noise floor: inconclusive
    Lflat = np.full(8, 1e6) - np.arange(8) * 1e-11
    v = sufficient_descent(make_trace(Lflat, np.full(7, 1e-14), np.full(7, 1e-7)))
    assert v.status == INCONCLUSIVE and "noise floor" in v.explanation


def test_sufficient_descent_missing_columns_and_constant_override():
    L, _, _ = geometric()
    v = sufficient_descent(make_trace(L))
    assert v.status == INCONCLUSIVE and sc.DQ_SQ in v.explanation
    L, dq, g = geometric(rho=2.0)
    assert sufficient_descent(make_trace(L, dq, g), a=3 * A).status == FAIL  # a user-given constant


# ------------------------------------------------------------------------------ 3. relative error
def test_relative_error_pass_reports_both_constants():
    v = relative_error(good_trace(r=3.0))
    assert v.status == PASS and v.measured == pytest.approx(3.0)
    assert v.theoretical == pytest.approx(tc.relative_error_constant(CFG.gamma, CFG.alpha, 5.0, CFG.N))
    assert "loose" in v.explanation


def test_relative_error_fails_when_g_exceeds_b_dq():
    L, dq, g = geometric(r=3.0)
    b = tc.relative_error_constant(CFG.gamma, CFG.alpha, 5.0, CFG.N)
    g[10] = 2 * b * math.sqrt(dq[10])
    v = relative_error(make_trace(L, dq, g))
    assert v.status == FAIL and v.worst["sweep"] == 11 and v.measured == pytest.approx(2 * b)


def test_relative_error_below_step_floor():
    L = 1.0 + 1e-3 * np.arange(6)[::-1]
    v = relative_error(make_trace(L, np.zeros(5), np.zeros(5)))
    assert v.status == INCONCLUSIVE and "noise floor" in v.explanation
    v = relative_error(make_trace(L, np.zeros(5), np.r_[0.0, 0.0, 1.0, 0.0, 0.0]))  # g ≠ 0 with no step
    assert v.status == FAIL and v.worst["sweep"] == 3


def test_relative_error_uses_the_running_bound_B():
    L, dq, g = geometric(r=10.0)
    assert relative_error(make_trace(L, dq, g)).status == PASS  # b(5) ≈ 147 > 10
    B = np.r_[np.full(10, 1e-3), np.full(21, 5.0)]  # tiny B early: b(B_k) ≈ 7.3 < the ratio 10
    v = relative_error(make_trace(L, dq, g, B=B))
    assert tc.relative_error_constant(CFG.gamma, CFG.alpha, 1e-3, CFG.N) < 10.0
    assert v.status == FAIL and v.worst["sweep"] <= 9


def test_relative_error_missing_g_is_inconclusive():
    L, dq, _ = geometric()
    v = relative_error(make_trace(L, dq))
    assert v.status == INCONCLUSIVE and sc.G_NORM in v.explanation


def _two_splitting_trace(capped_sweep: int, shortfall: float):
    """Algorithm 1 (784-free toy: hidden (3,)), every block lowering L̄ by 1.5·(α/2)‖Δ‖², except V1 at
    ``capped_sweep``: an inner solve stopped without its rule that lowers L̄ by only ``shortfall``·(α/2)‖Δ‖², and the
    sweep's ‖ΔQ‖² raised to match."""
    cfg = dataclasses.replace(CFG, splitting="two")
    L, dq, g = geometric(rho=4.0)  # a_emp = 4·A = 2 against Algorithm 1's a = α/2 = 1
    dq = dq.copy()
    half_alpha = cfg.alpha / 2
    rows = []
    for k in range(1, len(L)):
        d = (L[k - 1] - L[k]) / 4
        for step, (b, i) in enumerate((("V", 2), ("W", 2), ("V", 1), ("W", 1))):
            capped = k == capped_sweep and (b, i) == ("V", 1)
            x = d / ((shortfall if capped else 1.5) * half_alpha)
            rows.append({sc.SWEEP: k, sc.STEP: step, sc.BLOCK: b, sc.LAYER: i, sc.BLOCK_DECREASE: d,
                         sc.BLOCK_DELTA_SQ: x, sc.BLOCK_CONST: half_alpha, sc.BLOCK_RESIDUAL: 1e-15,
                         sc.BLOCK_RULE_HELD: 0 if capped else 1})
            if capped:
                dq[k - 1] += x
    return make_trace(L, dq, g, blocks=pd.DataFrame(rows), config=cfg), cfg


def test_a_capped_algorithm1_solve_keeps_its_proximal_alpha_half():
    """A monotone inner solve on a proximal subproblem lowers L̄ by ≥ α/2‖Δ‖² even at its cap (MATH.md §7 item 1):
    Algorithm 1's capped V1 falling short of that fails, at the block and at the sweep level."""
    trace, cfg = _two_splitting_trace(capped_sweep=5, shortfall=0.01)
    v = sufficient_descent(trace)
    assert v.status == FAIL and v.worst["sweep"] == 5, v.explanation
    assert {x["level"] for x in v.details["violations"]} == {"sweep", "block"}
    ok, _ = _two_splitting_trace(capped_sweep=5, shortfall=1.2)  # within α/2 (below the rule's constant): passes
    assert sufficient_descent(ok).status == PASS
    assert tc.capped_block_constant("V", 1, cfg.N, cfg.alpha, "two") == cfg.alpha / 2
    assert tc.capped_block_constant("V", 1, cfg.N, cfg.alpha, "three") == 0.0  # Algorithm 2's V_i has no proximal term
    assert tc.capped_block_constant("W", 1, cfg.N, cfg.alpha, "three") == cfg.alpha / 2


def test_relative_error_is_not_claimed_on_a_sweep_with_a_capped_solve():
    L, dq, g = geometric()
    g = g.copy()
    g[9] = 1e4 * math.sqrt(dq[9])  # sweep 10: far above b‖ΔQ‖
    blocks = split_blocks(L)
    assert relative_error(make_trace(L, dq, g, blocks=blocks)).status == FAIL
    blocks[sc.BLOCK_RULE_HELD] = np.where((blocks[sc.SWEEP] == 10) & (blocks[sc.BLOCK] == "W"), 0, 1)
    v = relative_error(make_trace(L, dq, g, blocks=blocks))
    assert v.status == PASS and "not guaranteed" in v.explanation and v.details["over_b_where_capped"] == [10]


def test_relative_error_fail_reports_the_pair_it_compared():
    """B grows from 1 to 50: a ratio of 20 at sweep 2 exceeds b(B_2) though it is far below b(B_T).  The verdict's
    measured/theoretical pair is that sweep's, not b_emp against b(B_T)."""
    L, dq, g = geometric()
    B = np.r_[1.0, np.linspace(1.0, 50.0, 30)]
    b2 = tc.relative_error_constant(CFG.gamma, CFG.alpha, B[2], CFG.N)
    g = g.copy()
    g[1] = 2.0 * b2 * math.sqrt(dq[1])
    v = relative_error(make_trace(L, dq, g, B))
    assert v.status == FAIL and v.worst["sweep"] == 2
    assert v.measured == pytest.approx(2.0 * b2) and v.theoretical == pytest.approx(b2) and v.margin < 0


def test_relative_error_names_the_block_with_the_largest_part_of_g():
    v = relative_error(good_trace())
    blocks = good_trace().blocks
    assert set(v.details["max_block_g"]) == {f"{b}{i}" for b, i in zip(blocks[sc.BLOCK], blocks[sc.LAYER])}


# ----------------------------------------------------------------------------------------- 4. rate
def test_rate_passes_with_plateau_and_slope_minus_one():
    v = rate(good_trace(T=40, q=0.8))
    assert v.status == PASS and v.measured <= v.theoretical
    fit = v.details["running_average_slope"]
    assert fit["ci"][0] - 0.05 <= -1.0 <= fit["ci"][1] + 0.05
    assert v.details["last_half_share"] < 0.05


def test_rate_slope_of_a_non_summable_sum_is_flat():
    L = 1e6 - np.arange(41.0)
    v = rate(make_trace(L, np.full(40, 0.5), np.full(40, 0.1)))
    assert v.status == PASS  # the bound C is loose ...
    assert v.details["running_average_slope"]["slope"] == pytest.approx(0.0, abs=1e-9)  # ... but no plateau
    assert v.details["last_half_share"] == pytest.approx(0.5)


def test_rate_fails_when_the_partial_sum_exceeds_C():
    L, dq, g = geometric(L_star=0.0, A0=1.0, q=0.5)
    a, b = A, tc.relative_error_constant(CFG.gamma, CFG.alpha, 5.0, CFG.N)
    C = tc.rate_constant(a, b, L[0], 0.0)
    g = g.copy()
    g[4] = math.sqrt(2 * C)
    v = rate(make_trace(L, dq, g))
    assert v.status == FAIL and v.worst["sweep"] == 5
    # compared with C_T = b(B_T)²(L̄⁰ − L̄^T)/a of the failing T, which is at most C (L̄^T ≥ L̄* = 0)
    assert v.measured > v.theoretical and v.theoretical <= C


def test_rate_zero_gradient_is_inconclusive_and_a_sparse_record_cannot_pass():
    L = np.full(6, 2.0)
    assert rate(make_trace(L, np.zeros(5), np.zeros(5))).status == INCONCLUSIVE
    L, dq, g = geometric()
    g[5:] = np.nan  # g recorded on 5 of 30 sweeps: within its bound, but the rest could exceed it
    v = rate(make_trace(L, dq, g))
    assert v.status == INCONCLUSIVE and v.details["T"] == 5 and v.details["sweeps_missing_g"] == 25


def test_rate_fails_on_recorded_terms_above_C_whatever_is_missing():
    """A partial sum over some sweeps is a lower bound of the whole: a hole does not hide the terms after it."""
    L, dq, g = geometric()
    C = rate(make_trace(L, dq, g)).theoretical
    g[19] = np.nan
    g[20:] = math.sqrt(C)  # each of the last ten terms alone reaches C
    v = rate(make_trace(L, dq, g))
    assert v.status == FAIL and v.worst["sweep"] == 21 and "left out" in v.explanation, v.explanation
    g[20:] = np.inf
    assert rate(make_trace(L, dq, g)).status == FAIL


def test_rate_fails_on_a_diverged_run():
    L, dq, g = geometric()
    L[20:], g[19:] = np.inf, np.nan  # the recorder writes NaN for g once anything is non-finite
    with np.errstate(invalid="ignore"):  # inf − inf in the trace's decrease column
        v = rate(make_trace(L, dq, g))
    assert v.status == FAIL and v.worst["sweep"] == 20 and "diverged" in v.explanation


def test_rate_checks_every_T_against_its_own_bound():
    """Early terms above b(B_T)²(L̄⁰ − L̄^T)/a fail at that T, even when B grows later so that the bound at the last
    sweep (the paper's C) would cover the whole sum."""
    L, dq, g = geometric()
    g[:5] *= 40.0
    B = np.r_[np.full(11, 1.0), np.linspace(1.0, 50.0, 20)]
    v = rate(make_trace(L, dq, g, B))
    assert v.status == FAIL and v.worst["sweep"] <= 5 and v.measured < v.details["C"], v.explanation
    assert rate(make_trace(L, dq, geometric()[2], B)).status == PASS  # the same trace without the large terms


@pytest.mark.parametrize("a", [0.0, -0.15])
def test_rate_without_a_positive_a_is_inconclusive(a):
    """The prox-linear V_N step with α ≤ (L_R − γ)/2 has a ≤ 0: no rate constant exists (not a false fail)."""
    v = rate(good_trace(), a=a)
    assert v.status == INCONCLUSIVE and "not positive" in v.explanation


# ----------------------------------------------------------------------------------- 5. convergence
def test_convergence_pass_on_geometric_trace():
    v = convergence(good_trace(T=40))
    assert v.status == PASS, v.explanation
    assert v.details["evidence"]["finite_length"]["last_half_share"] < 0.05
    tail = v.details["evidence"]["cauchy_tail"]
    assert tail["step_ratio"] == pytest.approx(math.sqrt(0.7))  # ‖ΔQ^k‖ ∝ √(L̄^{k−1} − L̄^k) ∝ 0.7^{k/2}


def test_convergence_a_late_rise_of_the_objective_is_not_settling():
    """L̄ raised by 10% of the total decrease from sweep 26 on: the net change of the last quarter is a rise, which
    used to pass the 'settled' test (a decrease ≤ 5%); its variation does not."""
    L, dq, g = geometric()
    L = L.copy()
    L[26:] += 0.1 * (L[0] - L[-1])
    v = convergence(make_trace(L, dq, g))
    assert v.status != PASS and "L̄ still moving" in v.explanation, v.explanation
    assert convergence(make_trace(*geometric())).status == PASS


def test_convergence_cauchy_tail_of_slowly_decaying_steps():
    """Steps ‖ΔQ^k‖ ∝ 1/k (not summable) after a fast start: L̄ settles but the length does not."""
    k = np.arange(1, 41)
    dq = (1.0 / k) ** 2
    L = 10.0 - np.r_[0.0, np.cumsum(2 * A * dq)]
    v = convergence(make_trace(L, dq, 0.1 * np.sqrt(dq)))
    assert v.status == INCONCLUSIVE and "Cauchy tail" in v.explanation


def test_convergence_fails_on_nan_blowup_or_unpaid_steps():
    L, dq, g = geometric()
    L2 = L.copy()
    L2[20] = np.inf
    assert convergence(make_trace(L2, dq, g)).status == FAIL
    B = 5.0 * np.r_[np.ones(16), 10.0 ** np.arange(1, 16)]  # the iterates blow up
    v = convergence(make_trace(L, dq, g, B=B))
    assert v.status == FAIL and "blow up" in v.explanation
    v = convergence(make_trace(L, dq * 10, g))  # a·Σ‖ΔQ‖² = 2.5(L̄⁰ − L̄^T) > L̄⁰ − L̄^T
    assert v.status == FAIL and "not paid for" in v.explanation


def test_convergence_inconclusive_when_still_moving_or_short():
    L = 1e3 - np.arange(31.0)  # L̄ falls linearly, steps do not shrink
    v = convergence(make_trace(L, np.full(30, 1.0), np.full(30, 1.0)))
    assert v.status == INCONCLUSIVE and "L̄ still moving" in v.explanation and "not plateaued" in v.explanation
    assert convergence(good_trace(T=4)).status == INCONCLUSIVE


# ---------------------------------------------------------------------------------- 6. KL exponent
@pytest.mark.parametrize("theta", [0.3, 0.5, 0.75])
def test_kl_estimates_theta_and_regime(theta):
    k = np.arange(41)
    gap = 0.8**k
    L = 1.0 + gap
    g = 2.0 * gap[1:] ** theta
    v = kl_exponent(make_trace(L, g=g))
    assert v.status == PASS and v.measured == pytest.approx(theta, abs=1e-6)
    assert v.details["estimate"] is True and v.details["regime"] == kl_regime(theta)
    assert "ESTIMATE" in v.explanation and v.guaranteed is False
    assert estimate_L_star(L)[0] == pytest.approx(1.0, abs=1e-12)


def test_kl_fails_when_g_vanishes_faster_than_any_kl_exponent_allows():
    k = np.arange(41)
    gap = 0.75**k  # the tail (sweeps 20..40) spans 2.5 decades of L̄ − L̄*
    v = kl_exponent(make_trace(1.0 + gap, g=gap[1:] ** 1.5))
    assert v.status == FAIL and v.details["fit"]["ci"][0] >= 1.0 and v.details["decades"] >= 2.0


def test_kl_theta_above_one_over_a_short_range_is_a_transient():
    """g dropping faster than L̄ − L̄* over less than two decades (seen on a real run leaving a steep
    region): no contradiction can be claimed."""
    k = np.arange(41)
    gap = 0.95**k  # the tail spans ≈ 0.45 decades
    v = kl_exponent(make_trace(1.0 + gap, g=gap[1:] ** 1.5))
    assert v.status == INCONCLUSIVE and "asymptotic" in v.explanation


def test_kl_inconclusive_without_a_tail():
    assert kl_exponent(make_trace(np.full(20, 3.0), g=np.full(19, 0.1))).status == INCONCLUSIVE
    assert kl_exponent(good_trace(T=5)).status == INCONCLUSIVE
    assert [kl_regime(t) for t in (0.0, 0.4, 0.7, 1.2)] == [
        "finite (θ ≈ 0)", "linear (θ ∈ (0, ½])", "sublinear (θ ∈ (½, 1))", "outside the KL range θ ∈ [0, 1)"]


# ---------------------------------------------------------------------------- 7. block exactness
def test_block_exactness_pass_and_fail():
    L, dq, g = geometric()
    assert block_exactness(make_trace(L, dq, g, blocks=split_blocks(L))).status == PASS
    blocks = split_blocks(L)
    bad = (blocks[sc.BLOCK] == "W") & (blocks[sc.LAYER] == 1) & (blocks[sc.SWEEP] == 17)
    blocks.loc[bad, sc.BLOCK_RESIDUAL] = 3e-3
    v = block_exactness(make_trace(L, dq, g, blocks=blocks))
    assert v.status == FAIL and v.worst == {"sweep": 17, "block": "W1", "step": 5}
    assert v.details["inexact_blocks"] == ["W1"] and v.measured == pytest.approx(3e-3)


@pytest.mark.parametrize(("dtype", "factor", "status"), [("float64", 0.5, PASS), ("float64", 2.0, FAIL),
                                                          ("float32", 0.5, PASS), ("float32", 2.0, FAIL)])
def test_block_exactness_borderline(dtype, factor, status):
    L, dq, g = geometric()
    blocks = split_blocks(L, residual=factor * residual_tol(dtype))
    assert block_exactness(make_trace(L, dq, g, blocks=blocks, dtype=dtype)).status == status


def test_block_exactness_needs_update_rows():
    L, dq, g = geometric()
    assert block_exactness(make_trace(L, dq, g)).status == INCONCLUSIVE
    tr = make_trace(L, dq, g, blocks=split_blocks(L))
    tr.meta[sc.META_BLOCKS_ARE_UPDATES] = False  # an audit trace: block rows describe iterates
    v = block_exactness(tr)
    assert v.status == INCONCLUSIVE and "audit" in v.explanation
    blocks = split_blocks(L)
    blocks[sc.BLOCK_RESIDUAL] = np.nan
    assert block_exactness(make_trace(L, dq, g, blocks=blocks)).status == INCONCLUSIVE


# ---------------------------------------------------------------------------------------- verify
def test_verify_runs_every_check_and_is_json_serialisable():
    verdicts = verify(consistent_trace(T=40))
    assert [v.claim for v in verdicts] == list(tc.CLAIM_IDS) == list(CHECKS)
    assert {v.claim: v.status for v in verdicts} == dict.fromkeys(tc.CLAIM_IDS, PASS)
    for v in verdicts:
        d = json.loads(json.dumps(v.to_dict()))
        assert Verdict.from_dict(d).status == v.status and d["tolerance_reason"] and d["explanation"]
        assert v.guaranteed is not None and d["details"]["guaranteed_reason"]


def test_verify_cheap_trace_skips_with_reasons():
    L, dq, _ = geometric()
    verdicts = {v.claim: v for v in verify(make_trace(L, dq))}
    for claim in (tc.RELATIVE_ERROR, tc.RATE, tc.KL_EXPONENT, tc.BLOCK_EXACTNESS):
        assert verdicts[claim].status == INCONCLUSIVE and "not checked" in verdicts[claim].explanation
    assert verdicts[tc.MONOTONE].status == PASS and verdicts[tc.SUFFICIENT_DESCENT].status == PASS


def test_verify_config_from_argument_and_bad_input():
    L, dq, g = geometric()
    tr = make_trace(L, dq, g)
    tr.meta.pop(sc.META_CONFIG)
    v = sufficient_descent(tr)
    assert v.status == INCONCLUSIVE and "no configuration" in v.explanation and v.guaranteed is None
    assert sufficient_descent(tr, CFG).status == PASS
    assert sufficient_descent(tr, {**dataclasses.asdict(CFG), "hidden": [3]}).status == PASS
    with pytest.raises(ValueError, match="config=3 is not allowed"):
        verify(tr, 3)
    with pytest.raises(ValueError, match=r"must be a verification\.trace\.Trace"):
        verify(tr.sweeps)
    tr.meta[sc.META_DTYPE] = "int8"
    with pytest.raises(ValueError, match="int8"):
        verify(tr, CFG)


def test_every_check_passes_an_engine_run_on_each_device(device):
    """The checks read a trace recorded on the CPU or on CUDA alike: an exact float64 run of each algorithm passes
    every guaranteed claim and fails none."""
    from bcd.config import BCDConfig
    from bcd.data import gaussian_mixture
    from verification.checks import verify
    from verification.pipeline import trace_arrays

    d = gaussian_mixture(n=60, d=5, k=3, seed=2)
    for kw in ({}, {"skip": "auto", "hidden": (5, 5)}, {"splitting": "two", "alpha": 1.0}):
        cfg = BCDConfig(**({"hidden": (6, 4), "alpha": 2.0} | kw), sweeps=8, dtype="float64", device=device,
                        gamma=1.0)
        trace, _ = trace_arrays(d.X_train, d.y_train, cfg, preset="full", n_classes=3)
        verdicts = {v.claim: v for v in verify(trace, cfg)}
        assert all(v.status != FAIL for v in verdicts.values()), {k: v.explanation for k, v in verdicts.items()}
        for claim in ("monotone_descent", "sufficient_descent", "block_exactness"):
            assert verdicts[claim].status == PASS, (kw, claim, verdicts[claim].explanation)


def test_a_rule_record_without_its_columns_is_inconclusive_not_a_crash():
    """A hand-built trace with rule_held but without the stationarity it is judged by: block_exactness says what is
    missing (it raised KeyError out of verify())."""
    L, dq, g = geometric()
    blocks = split_blocks(L)
    blocks[sc.BLOCK_RULE_HELD] = 1
    v = block_exactness(make_trace(L, dq, g, blocks=blocks))
    assert v.status == INCONCLUSIVE and sc.BLOCK_STATIONARITY in v.explanation, v.explanation
