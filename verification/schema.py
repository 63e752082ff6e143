"""The trace schema: every column name of a verification trace is defined here, once.

Two tidy tables (one row per observation):

* the **sweep table**, one row per sweep k = 0..T (row 0 = the initial iterate Q⁰);
* the **block table**, one row per block update (sweep k, its position in the schedule).

Objective-term names come from :mod:`bcd.model` (the declared terms) (the engine logs them too) and are
re-exported here so that verification, reports and tests import them from one place.
"""

from __future__ import annotations

from bcd.engine import SWEEP, TEST_ACC, TIME_ENGINE, TIME_EVAL, TIME_HOOKS, TRAIN_ACC
from bcd.model import LOSS, OBJECTIVE, act_term, aff_term, fit_term, reg_term, sreg_term, term_names

# ---------------------------------------------------------------- sweep table (one row per sweep)
DECREASE = "decrease"  # L̄(Q^{k-1}) − L̄(Q^k)
DQ_SQ = "dQ_sq"  # ‖ΔQ^k‖² over all blocks
G_NORM = "g_norm"  # ‖g^k‖, g^k ∈ ∂L̄(Q^k): how it is built is META_G_DEFINITION (MATH.md §5)
G_NORM_LOWER = "g_norm_lower"  # certified lower bound of dist(0, ∂L̄(Q^k)) (generic path, audit); NaN on the fast path
NORM_W_MAX = "norm_W_max"  # max_i ‖W̃_i^k‖
NORM_V_MAX = "norm_V_max"  # max_i ‖V_i^k‖
NORM_U_MAX = "norm_U_max"  # max_i ‖U_i^k‖
BOUND_B = "B"  # running max over sweeps ≤ k of ‖W̃_i‖, ‖U_i‖, ‖Ṽ_i‖ (X̃ included): the B of the relative-error bound
CUM_DQ = "cum_dQ"  # Σ_{j≤k} ‖ΔQ^j‖  (finite length)
CUM_G_SQ = "cum_g_sq"  # Σ_{j≤k} ‖g^j‖²  (rate); NaN once a sweep without g^k has been passed
INSTRUMENTED = "instrumented"  # True where the preset's per-block quantities were computed (the schedule)
TIME_RECORDER = "time_recorder_s"  # seconds the recorder itself spent on this sweep (all of its hooks)

# ---------------------------------------------------------------- block table (one row per block update)
STEP = "step"  # position of the update in the sweep's schedule, 0-based
BLOCK = "block"  # "W", "V" or "U"
LAYER = "layer"  # the paper's layer index i = 1..N
BLOCK_DECREASE = "block_decrease"  # L̄ before − L̄ after this single update
BLOCK_DELTA_SQ = "delta_sq"  # ‖X⁺ − X⁻‖² of this block
BLOCK_CONST = "descent_const"  # the block's own sufficient-descent constant (MATH.md §4.1)
BLOCK_G_NORM = "g_block_norm"  # ‖g^k component of this block‖
BLOCK_RESIDUAL = "residual"  # relative stationarity residual of the block's own subproblem (closed-form updates)
BLOCK_NOISE = "decrease_noise"  # S·‖Δ‖: the size of what the decrease was formed from (verification/tolerance.py)
# inner-solver blocks (Algorithm 1's nonconvex W_i, V_i; MATH.md §7): NaN on closed-form updates
BLOCK_INNER_ITERS = "inner_iterations"  # iterations the inner solver took
BLOCK_RULE_HELD = "rule_held"  # 1 where the solver reports that its stopping rule held, 0 where it stopped otherwise
BLOCK_STATIONARITY = "stationarity"  # dist(0, ∂Φ_X(X⁺)), least-norm, recomputed by the recorder
BLOCK_RULE_TOL = "rule_tolerance"  # max(η_X‖X⁺ − X⁻‖, √eps·Σ‖summands‖), η_X = min(η, μ_X/4): stationarity ≤ this

# ---------------------------------------------------------------- trace.meta keys
META_CONFIG = "config"  # the BCDConfig as a dict
META_DTYPE = "dtype"
META_N_SAMPLES = "n"
META_WIDTHS = "widths"  # [d_0, ..., d_N]
META_PRESET = "preset"  # "cheap" | "standard" | "full" | "audit"
META_SOURCE = "source"  # "engine" (the recorder) or "audit" (iterates from any implementation)
META_SCHEDULE = "schedule"  # which sweeps carry the preset's per-block columns
META_G_DEFINITION = "g_definition"  # what G_NORM measures, one of:
G_OPTIMALITY = "optimality_conditions"  # built from the block optimality conditions (the fast path)
G_LEAST_NORM = "least_norm"  # the least-norm element of ∂L̄ (the generic path, an audit)
G_BRACKET = "least_norm_bracket"  # an element of ∂L̄, G_NORM_LOWER below the least norm (verification.subgradient)
META_BLOCKS_ARE_UPDATES = "blocks_are_updates"  # False for audit traces: block rows are per-iterate blocks
META_STOP_REASON = "stop_reason"  # why the engine stopped (engine traces)
META_FILES = "files"  # the iterate files, in order (audit traces)
META_VARIANT = "variant"  # "three" | "resnet" | "two" (bcd.model)
META_RECORDER_PATH = "recorder_path"  # "fast" (Algorithm 2's in-stream formulas) or "generic" (any order)
META_B_DEFINITION = "B_definition"  # "iterate_bound" (theory.constants.iterate_bound: ‖W̃‖, ‖U‖, ‖Ṽ‖, X̃); absent in
# traces written before 2026-12-03, whose B is the largest block norm only

# ---------------------------------------------------------------- what a recorder trace always holds
# (verification.consistency.table_problem refuses a recorded trace without them: an edited or truncated file).  Every
# preset writes every column (NaN where it does not compute one); those added after the first recorder
# (G_NORM_LOWER, BLOCK_NOISE, the inner-solver columns) are absent from older traces, so they are not required.
RECORDED_SWEEP_COLUMNS = (SWEEP, OBJECTIVE, DECREASE, DQ_SQ, G_NORM, BOUND_B, CUM_DQ, CUM_G_SQ,  # + every term of L̄
                          TRAIN_ACC, TEST_ACC, TIME_ENGINE, TIME_HOOKS, TIME_EVAL)
RECORDED_BLOCK_COLUMNS = (SWEEP, STEP, BLOCK, LAYER, BLOCK_DECREASE, BLOCK_DELTA_SQ, BLOCK_CONST, BLOCK_G_NORM,
                          BLOCK_RESIDUAL)
TEXT_COLUMNS = (BLOCK,)  # every other column of either table is numeric

__all__ = [
    "BLOCK",
    "BLOCK_CONST",
    "BLOCK_DECREASE",
    "BLOCK_DELTA_SQ",
    "BLOCK_G_NORM",
    "BLOCK_INNER_ITERS",
    "BLOCK_NOISE",
    "BLOCK_RESIDUAL",
    "BLOCK_RULE_HELD",
    "BLOCK_RULE_TOL",
    "BLOCK_STATIONARITY",
    "BOUND_B",
    "CUM_DQ",
    "CUM_G_SQ",
    "DECREASE",
    "DQ_SQ",
    "G_BRACKET",
    "G_LEAST_NORM",
    "G_NORM",
    "G_NORM_LOWER",
    "G_OPTIMALITY",
    "INSTRUMENTED",
    "LAYER",
    "LOSS",
    "META_BLOCKS_ARE_UPDATES",
    "META_B_DEFINITION",
    "META_CONFIG",
    "META_DTYPE",
    "META_FILES",
    "META_G_DEFINITION",
    "META_N_SAMPLES",
    "META_PRESET",
    "META_RECORDER_PATH",
    "META_SCHEDULE",
    "META_SOURCE",
    "META_STOP_REASON",
    "META_VARIANT",
    "META_WIDTHS",
    "NORM_U_MAX",
    "NORM_V_MAX",
    "NORM_W_MAX",
    "OBJECTIVE",
    "RECORDED_BLOCK_COLUMNS",
    "RECORDED_SWEEP_COLUMNS",
    "STEP",
    "SWEEP",
    "TEST_ACC",
    "TEXT_COLUMNS",
    "TIME_ENGINE",
    "TIME_EVAL",
    "TIME_HOOKS",
    "TIME_RECORDER",
    "TRAIN_ACC",
    "act_term",
    "aff_term",
    "fit_term",
    "reg_term",
    "sreg_term",
    "term_names",
]
