"""Small synthetic traces and verdicts for the report tests, built with the schema's column names.

The numbers imitate a real run (L̄ decreasing with every term, sufficient descent with ratio > 1,
‖g‖/‖ΔQ‖ of a few units, norms levelling off) so that every figure has something to draw; a
``failing`` trace lets L̄ rise at one sweep; ``drop`` removes columns to test the skipping path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bcd.config import BCDConfig, DataConfig, RunConfig
from bcd.rundir import CONFIG, ENVIRONMENT, write_json
from theory import constants
from verification import schema
from verification.pipeline import save_verdicts
from verification.trace import Trace
from verification.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

HIDDEN = (6, 5)
WIDTHS = (4, *HIDDEN, 3)


def synthetic_trace(
    seed: int = 0,
    sweeps: int = 12,
    failing: bool = False,
    drop: tuple[str, ...] = (),
    drop_blocks: bool = False,
    alpha: float = 2.0,
) -> Trace:
    rng = np.random.default_rng(seed)
    cfg = BCDConfig(hidden=HIDDEN, gamma=1.0, alpha=alpha, sweeps=sweeps, seed=seed, eval_every=2)
    N = cfg.N
    k = np.arange(sweeps + 1)
    L = 5.0 + 400.0 / (1.0 + k) ** 1.6 * (1 + 0.05 * rng.random())
    if failing:
        L[7] = L[6] + 3.0  # an increase: monotone descent fails at sweep 7
    dec = np.r_[np.nan, L[:-1] - L[1:]]
    # block rows first: their decreases telescope to each sweep's decrease and their steps add up to ‖ΔQ‖²
    # (verification.consistency refuses a trace that breaks either identity)
    rows = []
    schedule = [("V", N), ("U", N), ("W", N)] + [(b, i) for i in range(N - 1, 0, -1) for b in ("V", "U", "W")]
    dq_sq = np.full(sweeps + 1, np.nan)
    for kk in range(1, sweeps + 1):
        parts = rng.dirichlet(np.ones(len(schedule)))
        if kk > 8:
            parts[0] = 0.0  # V_N has stopped moving
        parts = parts / parts.sum() * dec[kk]
        deltas = []
        for step, (blk, i) in enumerate(schedule):
            c = constants.block_descent_constant(blk, i, N, cfg.gamma, cfg.alpha)
            d = parts[step]
            delta = max(d, 0.0) / (c * (1.2 + rng.random()))
            deltas.append(delta)
            rows.append(
                {
                    schema.SWEEP: kk,
                    schema.STEP: step,
                    schema.BLOCK: blk,
                    schema.LAYER: i,
                    schema.BLOCK_DECREASE: d,
                    schema.BLOCK_DELTA_SQ: delta,
                    schema.BLOCK_CONST: c,
                    schema.BLOCK_G_NORM: np.sqrt(delta),
                    schema.BLOCK_RESIDUAL: 1e-15,
                }
            )
        dq_sq[kk] = sum(deltas)
    g = np.r_[np.nan, (1.0 + 3 * rng.random(sweeps)) * np.sqrt(dq_sq[1:])]
    sw = {
        schema.SWEEP: k,
        schema.OBJECTIVE: L,
        schema.DECREASE: dec,
        schema.DQ_SQ: dq_sq,
        schema.G_NORM: g,
        schema.CUM_DQ: np.r_[0.0, np.cumsum(np.sqrt(dq_sq[1:]))],
        schema.CUM_G_SQ: np.r_[0.0, np.cumsum(g[1:] ** 2)],
    }
    share = rng.dirichlet(np.ones(2 * N + 1), size=sweeps + 1)
    share[:, 2 * N - 1] = 0.0  # σ_N = Id and V_N = U_N is possible: a zero term on a log axis
    share /= share.sum(axis=1, keepdims=True)  # the terms add up to L̄
    sw[schema.LOSS] = L * share[:, 0]
    for i in range(1, N + 1):
        sw[schema.act_term(i)] = L * share[:, 2 * i - 1]
        sw[schema.aff_term(i)] = L * share[:, 2 * i]
    sw[schema.NORM_W_MAX] = 3.0 + 2.0 * (1 - np.exp(-k / 3))
    sw[schema.NORM_V_MAX] = 20.0 + 5.0 * (1 - np.exp(-k / 4))
    sw[schema.NORM_U_MAX] = 21.0 + 5.0 * (1 - np.exp(-k / 4))
    sw[schema.BOUND_B] = np.maximum.accumulate(np.maximum(sw[schema.NORM_V_MAX], sw[schema.NORM_U_MAX]))
    acc = 0.1 + 0.8 * (1 - np.exp(-k / 4))
    sw[schema.TRAIN_ACC] = np.where(k % 2 == 0, acc, np.nan)
    sw[schema.TEST_ACC] = np.where(k % 2 == 0, acc - 0.03, np.nan)
    sw[schema.TIME_ENGINE] = np.r_[0.0, 0.02 + 0.002 * rng.random(sweeps)]
    sw[schema.TIME_HOOKS] = np.r_[0.0, 0.05 + 0.005 * rng.random(sweeps)]
    sw[schema.TIME_EVAL] = 0.01 + 0.001 * rng.random(sweeps + 1)
    sweeps_df = pd.DataFrame(sw).drop(columns=list(drop))
    blocks = pd.DataFrame() if drop_blocks else pd.DataFrame(rows)
    meta = {
        "config": {**cfg.__dict__, "hidden": list(cfg.hidden)},
        "dtype": "float64",
        "n": 50,
        "widths": list(WIDTHS),
        "preset": "full",
        "source": "engine" if not (drop or drop_blocks) else "assembled",  # not the recorder's: columns may be absent
    }
    return Trace(sweeps_df, blocks, meta)


def synthetic_verdicts(trace: Trace, failing: bool = False) -> list[Verdict]:
    """Verdicts as the checks would return them for these traces (built by hand: the checks are
    tested in tests/test_verification_*)."""
    sw = trace.sweeps
    dec = sw[schema.DECREASE].to_numpy(float)[1:] if schema.DECREASE in sw else np.array([np.nan])
    worst = int(np.nanargmin(dec)) + 1
    mono = Verdict(
        constants.MONOTONE,
        "Monotone descent, every block",
        FAIL if failing else PASS,
        measured=float(np.nanmin(dec)),
        theoretical=0.0,
        relation="≥",
        worst={"sweep": worst, "block": "V3"},
        margin=float(np.nanmin(dec)),
        tolerance=1e-10,
        tolerance_reason="100·eps·max(|L̄|,1)",
        explanation="L̄ rose by 3 at sweep 7" if failing else "every block update lowered L̄",
    )
    suff = Verdict(
        constants.SUFFICIENT_DESCENT,
        "Sufficient descent",
        FAIL if failing else PASS,
        measured=1.21,
        theoretical=1.0,
        relation="≥",
        worst={"sweep": worst},
        margin=0.21,
        tolerance=1e-12,
    )
    rel = Verdict(
        constants.RELATIVE_ERROR,
        "Relative error",
        PASS,
        measured=3.9,
        theoretical=2897.0,
        relation="≤",
        worst={"sweep": 3},
        margin=2893.1,
    )
    rate = Verdict(constants.RATE, "Rate O(1/T)", PASS, measured=-1.4, theoretical=-1.0, relation="≤", worst=None)
    conv = Verdict(constants.CONVERGENCE, "Global convergence", PASS, measured=0.0, theoretical=None)
    kl = Verdict(constants.KL_EXPONENT, "KL exponent", INCONCLUSIVE, measured=None, explanation="tail too short")
    return [conv, rel, mono, suff, rate, kl]


def write_run(
    directory,
    seed: int = 0,
    failing: bool = False,
    drop: tuple[str, ...] = (),
    drop_blocks: bool = False,
    verdicts: bool = True,
    alpha: float = 2.0,
):
    """A run directory as ``bcd verify`` leaves it: config.json, environment.json, trace, verdicts.json."""
    trace = synthetic_trace(seed, failing=failing, drop=drop, drop_blocks=drop_blocks, alpha=alpha)
    trace.save(directory)
    cfg = RunConfig(DataConfig(dataset="teacher", n_train=50), trace.config, out=str(directory))
    write_json(directory / CONFIG, cfg.to_dict())
    write_json(
        directory / ENVIRONMENT,
        {
            "python": "3.11",
            "torch": "2.13.0",
            "numpy": "2",
            "pandas": "2",
            "device": "cpu",
            "device_name": "test-cpu",
            "git_commit": "abc123",
            "wall_time_s": 1.5,
            "cpu_count": 2,
            "torch_threads": 1,
            "platform": "Linux",
            "processor": "x86_64",
            "stop_reason": "max_sweeps",
        },
    )
    if verdicts:
        save_verdicts(directory, synthetic_verdicts(trace, failing))
    return directory
