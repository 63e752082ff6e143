"""Every tolerance the checks use, in one place (MATH.md §6).

One-sided checks compare two floating-point numbers that each carry rounding error, so a
claim "x ≥ 0" is decided in three ways, never two:

* ``x ≥ +tol``  → the claim is resolved and holds (pass),
* ``x < −tol``  → the claim is violated beyond rounding (fail),
* ``|x| < tol`` → below the noise floor: neither can be told apart (inconclusive).

**Objective tolerance.**  L̄ is a sum of at most 4N+1 terms (squared Frobenius norms, the catalogue's losses and
regularisers), each a reduction over up to n·d entries; a reduction of m terms in floating point has a relative
error of at most about log₂(m)·eps (pairwise / blocked summation, as torch does), and each entry carries a few
more roundings (the product W̃Ṽ, the difference, the square).  A change of L̄ is the difference
of two such sums, so its absolute rounding error is bounded by

    tol(L⁻, L⁺) = κ_L · eps(dtype) · max(|L⁻|, |L⁺|, 1),       κ_L = 100,

where κ_L covers log₂(m) ≤ 40 for every problem that fits in memory plus a factor ≈ 2 per
evaluation; the ``max(…, 1)`` keeps an absolute floor for L̄ → 0, where the cancellation in
‖U − W̃Ṽ‖² is bounded by eps·‖U‖·‖U − W̃Ṽ‖ rather than by eps·L̄.  The no-false-alarm test
(tests/test_verification_mutants.py) measures the rounding error of the recorded decreases as
|Σ block decreases − (L̄^{k−1} − L̄^k)| (zero in exact arithmetic): ≤ 2.4·eps·max(|L̄|, 1) on its 32
random float64 configurations, and it asserts < κ_L/10.

**Block noise.**  A single block update's decrease is formed from products whose entries can be far larger than
L̄ (with ‖W̃‖ in the hundreds, W̃Ṽ and the Gram ṼṼᵀ dwarf the residuals whose squares L̄ sums), so its rounding
error is not bounded by eps·|L̄|.  The recorder's fast path writes beside each decrease its noise scale S·‖Δ‖
(``decrease_noise``): ‖Δ‖ times the coefficient-weighted norms of the operands the decrease was formed from — for a
W̃_i step (i ≥ 2) γ(‖UṼᵀ‖ + ‖W̃⁻ṼṼᵀ‖ + 2‖ΔṼṼᵀ‖) + (α+λ)‖W̃⁺‖ + α‖W̃⁻‖, norms of the products the step formed; for
an elementwise step the norms of the blocks in its differences, a product P = W̃Ṽ counted as ‖W̃‖‖Ṽ‖ (its rounding
included); a value taken from the evaluation of L̄ adds ‖R‖ times the size of what its residual R was formed from.
A rounding error of relative size eps in any operand moves ⟨Δ, operand⟩ by at most eps·S·‖Δ‖; and an update computed
in floating point solves its subproblem only up to a residual r of about eps times the same sizes (a backward-stable
solve), which lowers its decrease by about ‖r‖·‖Δ‖ to first order: that is the W̃ steps' share of S.  So the
tolerance of a *block* observation is

    tol = eps · (κ_L · max(|L⁻|, |L⁺|, 1) + κ_N · S·‖Δ‖),       κ_N = 10,

κ_N smaller than κ_L because S·‖Δ‖ is a normwise bound already.  A *sweep* observation keeps the |L̄| term alone:
L̄^{k−1} − L̄^k is L̄ evaluated at both ends, no block formula enters it, so a rise of L̄ over a sweep is resolved at
κ_L·eps·|L̄| however large a block's S is.  (The trace's own identity Σ block decreases = L̄^{k−1} − L̄^k does add the
blocks' S·‖Δ‖: verification/consistency.py.)  Measured on the paper's 784-600×10-10 ReLU network on MNIST in float32
(n = 5000, γ = α = 1, 25 sweeps, every iterate mirrored exactly in float64: ``python benchmarks/float32_rounding.py``,
benchmarks/results/float32_rounding_cpu_2026-12-07.json): the recorded decreases differ from the float64 decreases
of the same iterates by up to 795·eps·max(|L̄⁻|, |L̄⁺|, 1), so the |L̄| term alone raised 11 monotone and 91
sufficient-descent failures, but by at most 0.38 of the block tolerance above; the float32 W̃ iterates, up to 10⁴
times the float64 step ‖X* − X⁻‖ away from the float64 block minimiser X*, fall short of the float64 sufficient
decrease by at most 1.1·eps·S·‖Δ‖ (the float64 minimisers never do).  In float64 the term stays below 10⁻⁹ on
the tests' problems, the mutant table (verification/MUTANTS.md) is unchanged, and so is every mutant's verdict in
float32 on the same problems.

The recorder's generic path (Algorithms 1 and 3, and every run the fast path does not take: README, "the generic path")
forms a block's decrease as Σ_t t(X⁻) − Σ_t t(X⁺) over the touched terms, so its S·‖Δ‖ is the sizes each term's rounding
scales with (``Term.rounding`` in bcd/model.py, one per kind of term): for both evaluations, coef·‖R‖ times the size of
the computed operands of R that change with the block (a product W̃Ṽ, σ(U); an operand that does not change is computed
twice from the same numbers and cancels to first order), plus ‖Δ‖ times the size of the gradient in the block (the
solve's residual) and the proximal term's ω(‖X⁺‖ + ‖X⁻‖).  On the test problem of tests/test_verification_noise.py (8
layers of 100, float32, inputs ×3000; `pytest tests/test_verification_noise.py -s -k "covers or resolves"` prints these
figures) it resolves about as many decreases as the fast path on Algorithm 2 (monotone 390, sufficient 339 of 840
observations, against 372 and 336; the median ratio of the two noises is 0.86), every rounding is within 0.03 of the
tolerance (0.014 on the fast path), and on Algorithm 3, where 240 of the 270 float32 W̃ updates (and 66 V updates) raise
L̄ in float64, by up to 3.7·10⁻³, both checks pass that the |L̄| term alone failed (float32 figures vary a little with
the thread count).  The mutants of verification/MUTANTS.md on the generic path fail the same checks with and without
it, in float64 and in float32.
Rows without a noise value use the |L̄| term alone: older traces, and a generic-path block where a size overflows.

**Ratio tolerance.**  A computed ratio (b_emp, a_emp) or a computed sum compared with a theoretical
constant carries a relative rounding error of a few eps; we allow κ_R · eps, κ_R = 1000.

**Step noise floor.**  ‖ΔQ^k‖ is a difference of iterates of size ≤ B, so below κ_Q·eps·max(B, 1)
(κ_Q = 100) it is indistinguishable from rounding and ratios that divide by it are not resolved.

**Block-residual tolerance.**  The stationarity residual of a block subproblem, relative to the
size of its terms, is ≈ eps·cond for an exact Cholesky solve (backward stable) and 0 for the
elementwise closed forms; we flag residuals above √eps (1.5e-8 in float64, 3.5e-4 in float32),
i.e. we accept condition numbers up to ≈ 1/√eps before calling an update inexact.  A wrong or
inexact update (a Jacobi bias, a wrong β) leaves residuals of order 1e-3 … 1.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

KAPPA_OBJECTIVE = 100.0
KAPPA_RATIO = 1000.0
KAPPA_STEP = 100.0
KAPPA_NOISE = 10.0  # on a block's S·‖Δ‖, a normwise bound already (the measurements: module docstring)

_EPS = {
    "float64": float(np.finfo(np.float64).eps),
    "float32": float(np.finfo(np.float32).eps),
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,
}


def dtype_name(dtype: Any) -> str:
    """'float64' for 'float64', torch.float64, np.float64, np.dtype('float64')."""
    name = str(dtype).removeprefix("torch.")
    if name not in _EPS:
        with contextlib.suppress(TypeError):
            name = np.dtype(dtype).name
    if name not in _EPS:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: {', '.join(_EPS)}")
    return name


def machine_eps(dtype: Any) -> float:
    """Unit roundoff ×2 (the spacing of floats at 1) of ``dtype``."""
    return _EPS[dtype_name(dtype)]


def objective_tol(dtype: Any, *values: Any, noise: Any = 0.0) -> Any:
    """eps(dtype) · (κ_L · max(|values|…, 1) + κ_N · noise), elementwise over array arguments; ``noise``: the decrease's
    S·‖Δ‖ (``decrease_noise``; block observations only), NaN or absent counted as 0."""
    scale: Any = 1.0
    for v in values:
        scale = np.maximum(scale, np.abs(np.asarray(v, dtype=float)))
    noise = np.nan_to_num(np.abs(np.asarray(noise, dtype=float)), nan=0.0, posinf=np.inf)
    out = machine_eps(dtype) * (KAPPA_OBJECTIVE * scale + KAPPA_NOISE * noise)
    return float(out) if np.ndim(out) == 0 else out


def objective_tol_reason(dtype: Any, block_noise: bool = False) -> str:
    """Why the objective tolerance is what it is; ``block_noise``: the check adds the blocks' S·‖Δ‖."""
    base = (f"κ_L·eps·max(|L̄⁻|,|L̄⁺|,1) with κ_L={KAPPA_OBJECTIVE:g}, eps({dtype_name(dtype)})="
            f"{machine_eps(dtype):.3g}: rounding of a difference of two sums of squared norms")
    if block_noise:
        base += (f"; per block update + κ_N·eps·S·‖Δ‖ with κ_N={KAPPA_NOISE:g}, S·‖Δ‖ the size of the products its "
                 "decrease was formed from, where the trace records it")
    return base + " (verification/tolerance.py)"


def ratio_tol(dtype: Any) -> float:
    """Relative slack κ_R·eps when a computed quantity is compared with a theoretical constant."""
    return KAPPA_RATIO * machine_eps(dtype)


def ratio_tol_reason(dtype: Any) -> str:
    return (
        f"relative slack κ_R·eps = {ratio_tol(dtype):.3g} (κ_R={KAPPA_RATIO:g}, {dtype_name(dtype)}): "
        "rounding of computed norms compared with a constant"
    )


def step_floor(dtype: Any, B: Any = 1.0) -> Any:
    """‖ΔQ‖ below κ_Q·eps·max(B, 1) is rounding noise of iterates of size ≤ B."""
    out = KAPPA_STEP * machine_eps(dtype) * np.maximum(np.abs(np.asarray(B, dtype=float)), 1.0)
    return float(out) if np.ndim(out) == 0 else out


def residual_tol(dtype: Any) -> float:
    """√eps(dtype): largest relative block-subproblem residual accepted as an exact minimiser."""
    return math.sqrt(machine_eps(dtype))


def residual_tol_reason(dtype: Any) -> str:
    return (
        f"√eps({dtype_name(dtype)}) = {residual_tol(dtype):.3g}: a backward-stable solve leaves ≈ eps·cond; "
        "condition numbers up to 1/√eps are accepted"
    )
