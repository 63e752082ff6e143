"""Synthetic verification traces for the tests, built directly as DataFrames with the schema's columns."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from bcd.config import BCDConfig
from bcd.schedule import three_splitting
from theory import constants as tc
from verification import schema as sc
from verification.trace import Trace

CFG = BCDConfig(hidden=(3,), gamma=1.0, alpha=2.0, sweeps=30, dtype="float64")
A = tc.sufficient_descent_constant(CFG.gamma, CFG.alpha)  # 0.5
NAMES = [(s.block, s.layer) for s in three_splitting(CFG.N)]  # V2 U2 W2 V1 U1 W1


# ------------------------------------------------------------------------------------ builders
def make_trace(L, dq_sq=None, g=None, B=None, *, blocks=None, dtype="float64", config=CFG) -> Trace:
    """A sweep table from L̄^0..L̄^T (+ ‖ΔQ^k‖², ‖g^k‖, B for k = 1..T), in the recorder's layout."""
    L = np.asarray(L, dtype=float)
    T = len(L) - 1
    sw = pd.DataFrame({sc.SWEEP: np.arange(T + 1), sc.OBJECTIVE: L, sc.DECREASE: np.r_[np.nan, L[:-1] - L[1:]]})
    if dq_sq is not None:
        dq_sq = np.asarray(dq_sq, dtype=float)
        sw[sc.DQ_SQ] = np.r_[np.nan, dq_sq]
        sw[sc.CUM_DQ] = np.r_[0.0, np.cumsum(np.sqrt(dq_sq))]
    if g is not None:
        g = np.asarray(g, dtype=float)
        sw[sc.G_NORM] = np.r_[np.nan, g]
        sw[sc.CUM_G_SQ] = np.r_[0.0, np.cumsum(g * g)]
    sw[sc.BOUND_B] = np.maximum.accumulate(np.full(T + 1, 5.0) if B is None else np.asarray(B, dtype=float))
    cfg = {**dataclasses.asdict(config), "hidden": list(config.hidden)}
    meta = {sc.META_CONFIG: cfg, sc.META_DTYPE: dtype, sc.META_N_SAMPLES: 10, sc.META_WIDTHS: [2, 3, 2],
            sc.META_BLOCKS_ARE_UPDATES: True}
    return Trace(sw, pd.DataFrame() if blocks is None else blocks, meta)


def geometric(T=30, L_star=2.0, A0=100.0, q=0.7, rho=2.0, r=3.0):
    """L̄^k = L̄* + A0·q^k, a_emp = ρ·a, ‖g‖/‖ΔQ‖ = r: a trace every check should pass."""
    k = np.arange(T + 1)
    L = L_star + A0 * q**k
    d = L[:-1] - L[1:]
    dq_sq = d / (rho * A)
    return L, dq_sq, r * np.sqrt(dq_sq)


def split_blocks(L, ratio=1.5, residual=1e-15, config=CFG, dq_sq=None) -> pd.DataFrame:
    """Block rows whose decreases sum to each sweep's decrease; each block lowers L̄ by ratio·c_blk‖Δ‖².  With
    ``dq_sq`` the steps are instead ∝ decrease/c_blk and add up to each sweep's ‖ΔQ^k‖² (a self-consistent trace,
    as verification.consistency requires of what ``verify`` reads)."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(1, len(L)):
        parts = rng.dirichlet(np.ones(len(NAMES))) * (L[k - 1] - L[k])
        consts = [tc.block_descent_constant(b, i, config.N, config.gamma, config.alpha) for b, i in NAMES]
        steps = [d / (ratio * c) for d, c in zip(parts, consts, strict=True)]
        if dq_sq is not None:
            steps = [x * dq_sq[k - 1] / sum(steps) for x in steps]
        for step, ((b, i), d, c, x) in enumerate(zip(NAMES, parts, consts, steps, strict=True)):
            rows.append({sc.SWEEP: k, sc.STEP: step, sc.BLOCK: b, sc.LAYER: i, sc.BLOCK_DECREASE: d,
                         sc.BLOCK_DELTA_SQ: x, sc.BLOCK_CONST: c, sc.BLOCK_G_NORM: math.sqrt(max(d, 0.0)),
                         sc.BLOCK_RESIDUAL: residual})
    return pd.DataFrame(rows)


def good_trace(**kw) -> Trace:
    """Every check passes; each block lowers L̄ by 1.5·c_blk‖Δ‖² (its steps need not add up to ‖ΔQ^k‖²)."""
    L, dq_sq, g = geometric(**kw)
    return make_trace(L, dq_sq, g, blocks=split_blocks(L))


def consistent_trace(**kw) -> Trace:
    """Like :func:`good_trace`, and self-consistent (what ``verify`` reads: verification.consistency)."""
    L, dq_sq, g = geometric(**kw)
    return make_trace(L, dq_sq, g, blocks=split_blocks(L, dq_sq=dq_sq))
