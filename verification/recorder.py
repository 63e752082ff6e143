"""The recorder: an engine hook that turns the block updates of Algorithm 2 into a tidy :class:`Trace`.

Sweep table (one row per sweep k = 0..T) and block table (one row per block update), column names
from :mod:`verification.schema`.  What each preset computes (every quantity is in-stream, from the
old block in ``state``, the new block, and what the step published in ``aux``):

* ``cheap``: L̄ and every term (reused from the engine's ``record``, never recomputed), the sweep
  decrease L̄^{k−1} − L̄^k, ‖ΔQ^k‖², max ‖W̃_i‖, ‖V_i‖, ‖U_i‖, B (running max of block norms),
  Σ‖ΔQ‖.  Computed on **every** sweep, whatever the schedule.
* ``standard``: + the block table: per-block decrease of L̄, ‖Δ‖², the block's descent constant,
  ‖g^k component‖ (MATH.md §5), and ‖g^k‖, Σ‖g‖² in the sweep table.
* ``full``: + the exactness residual of every block update and train/test accuracy on every
  instrumented sweep (train accuracy reuses W̃_1X̃, which is ``aux["P"]`` of the next U_1 step).

**Schedule.** ``schedule`` (every k sweeps, or log-spaced) selects the sweeps that get the standard
and full quantities; the other sweeps keep the cheap columns (so consecutive sweep decreases are
always available) and have no block rows; their g columns are NaN, and Σ‖g‖² becomes NaN from the
first sweep without g^k onwards (a partial sum with holes would be misleading).

**Per-block decrease** of L̄ = (terms of L̄ that depend on the block, before) − (after); the
proximal terms are not part of L̄.  V_N, U_N, U_i: elementwise norms.  W_i: the aff term is a
quadratic in W̃ evaluated from E = U_i⁺ − P_i⁻ (P_i⁻ = W̃_i⁻Ṽ_{i-1}⁻ is ``aux["P"]`` of the U_i step),
EṼᵀ and the Gram ṼṼᵀ (``aux["gram"]``):  with D = W̃⁺ − W̃⁻,
    ‖U⁺ − W̃⁺Ṽ⁻‖² = ‖E‖² − 2⟨EṼᵀ, D⟩ + ⟨DṼṼᵀ, D⟩,
so the decrease γ/2(2⟨EṼᵀ,D⟩ − ⟨DṼṼᵀ,D⟩) + λ/2(‖W̃⁻‖² − ‖W̃⁺‖²) is formed from small quantities
(no cancellation of two large norms).  The "after" value of the aff term is also the "before"
value of the V_{i-1} update.  Where a block's "after" value is a term the engine evaluates at the
end of the sweep anyway (the V_i update: γ/2‖U_{i+1}⁺ − W̃_{i+1}⁺Ṽ_i⁺‖²; the W_1 update:
γ/2‖U_1⁺ − W̃_1⁺X̃‖², both untouched by later steps of the sweep) it is taken from ``record``.
A sweep's block decreases sum to L̄^{k−1} − L̄^k (telescoping; tested in float64).

**g^k** (MATH.md §5), component by component, with ΔX = X^k − X^{k−1} and P_i = W̃_iṼ_{i-1}:
    V_N: −γΔU_N − αΔV_N  (prox-linear V_N: −γΔU_N − (α − c)ΔV_N, from its own optimality condition)
    U_N: γ(P_N^{k−1} − P_N^k)        U_i: γ(P_i^{k−1} − P_i^k) − αΔU_i       V_i: γ(σ(U_i^{k−1}) − σ(U_i^k))
    W_i: γ(P_i^k − U_i^k)Ṽ_{i-1}^kᵀ − γ(W̃_i^kṼ_{i-1}^{k−1} − U_i^k)Ṽ_{i-1}^{k−1}ᵀ − αΔW̃_i   (W_1: −αΔW̃_1)
P_i^k = W̃_i^kṼ_{i-1}^k is exactly ``aux["P"]`` of the U_i step of sweep k+1 (neither W̃_i nor V_{i-1}
changes in between), so the U_i and W_i components are completed there — one d_i×n buffer per
layer (γP_i^{k−1} − αΔU_i) is carried across the sweep boundary, no copy of the iterate — and for
the last sweep from the final state when :meth:`Recorder.trace` is called.  The second W term is
−γ(DṼṼᵀ − EṼᵀ) with the quantities above.  For exact block updates g^k is the gradient of L̄ at
Q^k wherever L̄ is differentiable (away from ReLU kinks; tested against autograd in float64); at a
kink U_i^k = 0 the prox optimality condition selects an element of the limiting subdifferential
while autograd's ReLU′(0) = 0 selects another (see verification/audit.py for the least-norm one).

**Exactness residual** (``full``) of a block update: ‖Σ_j t_j‖ / Σ_j ‖t_j‖, where Σ_j t_j = 0 is the
subproblem's optimality condition written as a sum of uncancelled summands (e.g. for V_N:
(c+γ+α)V⁺ − cY − γU_N⁻ − αV⁻).  It is ≈ eps for an exact update, O(relative error) for a wrong one.

* W̃_i: the normwise backward error of the linear system W̃M = γUṼᵀ + αW̃⁻, M = γṼṼᵀ + (α+λ)I:
  ‖r‖/(‖M‖_F(‖W̃⁺‖ + ‖W̃⁻‖) + γ‖EṼᵀ‖), the right-hand side's norm bounded through UṼᵀ = W̃⁻ṼṼᵀ + EṼᵀ;
  ≈ eps for a backward-stable Cholesky solve.  For W̃_1 the products with X̃ (d_0 wide) are not
  otherwise computed and would cost more than the update itself, so ‖r‖_F and ‖EX̃ᵀ‖_F are
  estimated from 16 fixed Gaussian probes as ‖rZ‖_F/4 (relative standard error ≈ 18%, irrelevant
  next to the gap between ≈ eps for an exact update and ≳ 1e-6 for a wrong one).
* V_i (i<N): t = V⁺, −σ(U_i⁻), Ŵᵀ(P_{i+1}⁺ − U_{i+1}⁺), the last completed in the next sweep; its size
  is bounded by ‖Ŵ‖_F(‖P⁺‖ + ‖U⁺‖).  This needs one more d_i×n buffer per layer in ``full``.
* U_i (i<N): elementwise and, for ReLU, nonconvex: per entry f(u) = ½(a − σ(u))² + (β/2)(u − m)²
  (a = V_i⁺, m = (γP⁻ + αU⁻)/(γ + α), β = (γ + α)/γ).  Its global minimisers are computed
  independently of the engine's prox (the better of u₊ = max((a + βm)/(1 + β), 0) and u₋ = min(m, 0),
  both at a tie up to rounding) and the residual entry is (1 + β)·dist(u_new, argmin f) — |f′(u_new)|
  up to the branch curvature on the minimiser's branch, and positive for a stationary but worse
  candidate, which a stationarity test alone would miss — relative to ‖a‖ + ‖σ(u)‖ + β‖u‖ + β‖m‖.
* U_N, V_N: the closed-form conditions, e.g. γ(2U⁺ − V_N⁺ − P_N⁻) for U_N.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from bcd.activations import u_block_residual
from bcd.blocks import affine, augmented_cross, augmented_gram
from bcd.objective import accuracy, objective_terms
from bcd.problem import BCDState, Problem
from bcd.schedule import Step, schedule_for
from bcd.subproblems import subproblem_for
from theory.constants import RunConstants
from verification import schema as S  # noqa: N812
from verification.subgradient import definition as g_definition
from verification.subgradient import least_norm_subgradient
from verification.trace import Trace

Tensor = torch.Tensor
PRESETS = ("cheap", "standard", "full")
PATHS = ("auto", "fast", "generic")  # the in-stream formulas of Algorithm 2, or the order-agnostic bookkeeping
PROBES = 16  # Gaussian probes of the sketched W̃_1 residual (relative standard error ≈ 1/√(2·16) ≈ 18%)
PROBE_SEED = 0
G_DEFINITION = "optimality_conditions"


def _fill_aux(block: str, i: int, state: BCDState, aux: dict) -> None:
    """The products the engine's own steps publish (P for U steps; the Gram ṼṼᵀ and UṼᵀ for W steps,
    with the updated U_i); a user's step may not publish them, so compute what is missing."""
    if block == "U" and "P" not in aux:
        aux["P"] = affine(state.W[i], state.V[i - 1])
    elif block == "W":
        if "gram" not in aux:
            aux["gram"] = augmented_gram(state.V[i - 1])
        if "cross" not in aux:
            aux["cross"] = augmented_cross(state.U[i], state.V[i - 1])


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """Which sweeps get the standard/full quantities: sweep 1 and every ``every``-th sweep, or, with
    ``per_decade`` = p > 0, log-spaced sweeps (the first sweep past each 10^(j/p): every sweep early
    on, then about p per decade)."""

    every: int = 1
    per_decade: int = 0

    def __post_init__(self) -> None:
        for name in ("every", "per_decade"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if name == "every" else 0):
                bound = ">= 1" if name == "every" else ">= 0"
                raise ValueError(f"schedule {name}={v!r} is not allowed; it must be an integer {bound}")
        if self.per_decade and self.every != 1:
            raise ValueError("a schedule is either every k sweeps or log-spaced (per_decade), not both")

    @classmethod
    def log_spaced(cls, per_decade: int = 10) -> Schedule:
        if not isinstance(per_decade, int) or per_decade < 1:
            raise ValueError(f"per_decade={per_decade!r} is not allowed; it must be an integer >= 1")
        return cls(per_decade=per_decade)

    def __call__(self, k: int) -> bool:
        if k <= 1:
            return True
        if self.per_decade:
            p = self.per_decade
            return math.floor(p * math.log10(k) + 1e-12) > math.floor(p * math.log10(k - 1) + 1e-12)
        return k % self.every == 0

    def describe(self) -> dict[str, Any]:
        return {"per_decade": self.per_decade} if self.per_decade else {"every": self.every}


def as_schedule(schedule: Schedule | int | None) -> Schedule:
    if schedule is None:
        return Schedule()
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, int) and not isinstance(schedule, bool):
        return Schedule(every=schedule)
    raise ValueError(f"schedule={schedule!r} is not allowed; give None, an integer k (every k sweeps) or a Schedule")


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class _Sweep:
    """Everything recorded for one sweep until it can be written as rows (values may be 0-d tensors)."""

    k: int
    instrumented: bool
    dq_sq: list = field(default_factory=list)
    norms: dict = field(default_factory=lambda: {"W": [], "V": [], "U": []})
    blocks: list = field(default_factory=list)
    record: dict | None = None
    pending: int = 0
    seconds: float = 0.0
    g_components: dict | None = None


def _sq(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t).square()


def _norm(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.vdot(a.reshape(-1), b.reshape(-1))


def _ratio(r: Tensor, scale: Tensor) -> Tensor:
    return torch.where(scale > 0, r / scale.clamp_min(torch.finfo(scale.dtype).tiny), torch.zeros_like(r))


# --------------------------------------------------------------------------- the recorder


class Recorder:
    """Engine hook producing a verification :class:`Trace` (call :meth:`trace` after the run).

    ``preset``: ``cheap`` | ``standard`` | ``full`` (module docstring); ``schedule``: None (every
    sweep), an integer k (every k sweeps) or a :class:`Schedule`.  ``keep_g=True`` additionally
    keeps every g^k component tensor (``g_components[k][(block, i)]``) — a full copy of the
    iterate per sweep, for tests only.
    """

    def __init__(self, preset: str = "standard", schedule: Schedule | int | None = None, *, keep_g: bool = False,
                 path: str = "auto"):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is not supported; allowed: {', '.join(PRESETS)}")
        if path not in PATHS:
            raise ValueError(f"path={path!r} is not supported; allowed: {', '.join(PATHS)}")
        self.path = path
        self._generic: bool | None = None  # decided by check_schedule
        self.preset = preset
        self.schedule = as_schedule(schedule)
        self.keep_g = keep_g
        self.g_components: dict[int, dict[tuple[str, int], Tensor]] = {}
        self._level = PRESETS.index(preset)
        self.problem: Problem | None = None
        self.state: BCDState | None = None

    # ------------------------------------------------------------------ hooks

    def check_schedule(self, problem: Problem, schedule) -> None:
        """Validate the schedule before the run starts, and choose the path.

        Every step must update a block of the problem's variant, each block exactly once per sweep
        (so that each block has one update, one decrease and one g^k component per sweep).  The fast
        path (in-stream formulas) serves the three-splitting in Algorithm 2's own order; every other
        variant or order takes the generic path, which evaluates the touched terms of each block's
        subproblem before and after its update, and g^k as the least-norm subgradient at Q^k."""
        names = [f"{s.block}{s.layer}" for s in schedule]
        seen: dict[tuple[str, int], int] = {}
        valid = set(problem.variables)
        for j, step in enumerate(schedule):
            key = (step.block, step.layer)
            if key not in valid:
                allowed = ", ".join(f"{b}{i}" for b, i in problem.variables)
                raise ValueError(f"schedule step {j} ({names[j]}) updates no block of the {problem.variant!r} "
                                 f"variant; the recorder can handle the blocks {allowed}")
            if key in seen:
                raise ValueError(f"schedule step {j} ({names[j]}) updates a block already updated at step "
                                 f"{seen[key]} of the same sweep; the recorder needs each block updated once per sweep")
            seen[key] = j
        missing = [f"{b}{i}" for b, i in problem.variables if (b, i) not in seen]
        if missing:
            raise ValueError(f"the schedule never updates {', '.join(missing)}; every block of the "
                             f"{problem.variant!r} variant must be updated once per sweep")
        canonical = [(s.block, s.layer) for s in schedule_for(problem.config.splitting, problem.config.N)]
        fast_ok = problem.variant == "three" and [(s.block, s.layer) for s in schedule] == canonical
        if self.path == "fast" and not fast_ok:
            raise ValueError(f"path='fast' needs Algorithm 2's order without skips; this schedule is {names} "
                             f"on the {problem.variant!r} variant: use path='generic' or 'auto'")
        self._generic = self.path == "generic" or not fast_ok
        self._subproblems = {key: subproblem_for(problem, *key) for key in problem.variables}

    def on_run_start(self, problem: Problem, state: BCDState) -> None:
        t0 = time.perf_counter()
        cfg = problem.config
        if self._generic is None:  # driven without check_schedule: the configured variant's own schedule
            self.check_schedule(problem, schedule_for(cfg.splitting, cfg.N))
        self.constants = RunConstants(cfg, problem.widths, problem.n)
        self.problem, self.state = problem, state
        self.g_components = {}
        self.N, self.gamma, self.alpha, self.lam, self.c = cfg.N, cfg.gamma, cfg.alpha, cfg.lam, problem.c
        self._rows: list[dict[str, Any]] = []
        self._block_rows: list[dict[str, Any]] = []
        self._open: list[_Sweep] = []
        self._current: _Sweep | None = None
        self._carry: dict[int, dict[str, Any]] = {}
        self._P: dict[int, Tensor] = {}
        self._aff_before_V: dict[int, Tensor] = {}
        self._act_V: dict[int, tuple[Tensor, Tensor]] = {}
        self._dV_N: Tensor | None = None
        self._row_of: dict[tuple[str, int], dict[str, Any]] = {}
        self._B = 0.0
        self._probe_cache: tuple[Tensor, Tensor, Tensor] | None = None
        self._acc_pending: tuple[_Sweep, list] | None = None
        self._cum_dq = 0.0
        self._cum_g_sq = 0.0
        first = _Sweep(state.sweep, True)
        for b, _i, t in state.blocks():
            first.norms[b].append(_norm(t))
        rec = objective_terms(state, problem)
        rec.update(_accuracies(state, problem))
        rec.update({S.TIME_ENGINE: 0.0, S.TIME_HOOKS: 0.0, S.TIME_EVAL: 0.0})
        first.record = rec
        first.seconds = time.perf_counter() - t0
        self._open.append(first)
        self._close_ready()

    def on_step(self, k: int, step: Step, state: BCDState, new: Tensor, aux: dict) -> None:
        t0 = time.perf_counter()
        sw = self._current
        if sw is None or sw.k != k:
            sw = self._current = _Sweep(k, self._level > 0 and self.schedule(k))
            sw.g_components = {} if self.keep_g else None
            self._open.append(sw)
        b, i = step.block, step.layer
        if not self._generic:
            _fill_aux(b, i, state, aux)
        old = state.get(b, i)
        if sw.instrumented:
            delta = new - old
            d_sq = _sq(delta)
        else:  # cheap columns only: ‖X⁺ − X⁻‖² without an n-sized temporary
            delta, d_sq = None, torch.dist(new, old).square()
        sw.dq_sq.append(d_sq)
        sw.norms[b].append(_norm(new))
        if not self._generic and b == "U" and i in self._carry:  # P_i^{k-1} of the last sweep is this aux["P"]
            self._complete(i, aux["P"], old, state.V[i - 1], state.W[i])
        if not self._generic and b == "U" and i == 1 and self._acc_pending is not None:
            self._complete_accuracy(aux["P"])
        if sw.instrumented:
            row = {S.SWEEP: k, S.STEP: len(sw.blocks), S.BLOCK: b, S.LAYER: i, S.BLOCK_DELTA_SQ: d_sq,
                   S.BLOCK_CONST: self.constants.block(b, i), S.BLOCK_DECREASE: math.nan,
                   S.BLOCK_G_NORM: math.nan, S.BLOCK_RESIDUAL: math.nan, "_minus": None}
            sw.blocks.append(row)
            self._row_of[(b, i)] = row
            if self._generic:
                self._step_generic(row, b, i, state, old, new, aux)
            else:
                getattr(self, f"_step_{b}")(sw, row, i, state, old, new, delta, aux)
        sw.seconds += time.perf_counter() - t0

    def on_sweep_end(self, k: int, state: BCDState, record: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        sw = self._current
        if sw is None or sw.k != k:  # a sweep with no steps
            sw = self._current = _Sweep(k, False)
            self._open.append(sw)
        rec = dict(record)
        if self._generic and sw.instrumented and sw.blocks:
            g = least_norm_subgradient(state, self.problem)
            for key, part in g.items():
                self._set_g(sw, key, part)
        if sw.instrumented and self._level >= 2 and math.isnan(rec.get(S.TRAIN_ACC, math.nan)):
            if self._generic:
                rec.update(_accuracies(state, self.problem))
            else:
                self._defer_accuracy(sw, state, rec)
        sw.record = rec
        self._close_ready()
        sw.seconds += time.perf_counter() - t0
        return None

    # ------------------------------------------------------------------ per-block work (standard/full)

    # Decreases use x⁻² − x⁺² = −Δ(x⁻ + x⁺) entrywise, e.g. ‖o − Y‖² − ‖n − Y‖² = −⟨Δ, o + n − 2Y⟩ with Δ = n − o:
    # one temporary, and no cancellation between two large sums.  σ(·) may return its argument (identity):
    # its result is never modified in place.

    def _step_V(self, sw, row, i, state, old, new, delta, aux) -> None:
        g, N, full = self.gamma, self.N, self._level >= 2
        if i == N:
            U, Y, c, a = state.U[N], self.problem.Y, self.c, self.alpha
            t = torch.add(old, new).mul_(c + g).sub_(Y, alpha=2 * c).sub_(U, alpha=2 * g)
            row[S.BLOCK_DECREASE] = -0.5 * _dot(delta, t)
            self._dV_N = delta
            if full:
                if self.problem.config.vn_update == "prox_linear":
                    r = torch.sub(old, Y, out=t).mul_(c).add_(new, alpha=a + g).sub_(old, alpha=a).sub_(U, alpha=g)
                    scale = c * (_norm(old) + _norm(Y)) + (a + g) * _norm(new) + a * _norm(old) + g * _norm(U)
                else:
                    r = torch.mul(new, c + g + a, out=t).sub_(Y, alpha=c).sub_(U, alpha=g).sub_(old, alpha=a)
                    scale = (c + g + a) * _norm(new) + c * _norm(Y) + g * _norm(U) + a * _norm(old)
                row[S.BLOCK_RESIDUAL] = _ratio(_norm(r), scale)
            return
        sig = self.problem.sigma(i, state.U[i])  # σ(U_i^{k-1}): U_i is updated after V_i
        A = torch.sub(new, sig)  # V_i⁺ − σ(U_i⁻); ‖V⁻ − σ‖² − ‖V⁺ − σ‖² = −⟨Δ, 2A − Δ⟩
        row[S.BLOCK_DECREASE] = -g * _dot(delta, A) + 0.5 * g * row[S.BLOCK_DELTA_SQ] + self._aff_before_V.pop(i)
        row["_minus"] = S.aff_term(i + 1)  # after-value γ/2‖U_{i+1}⁺ − W̃_{i+1}⁺Ṽ_i⁺‖², from record
        self._act_V[i] = (sig, A)  # reused by the U_i step, next
        if full:
            carry = self._carry[i + 1]
            carry["A"] = A
            carry["A_scale"] = _norm(new) + _norm(sig)
            carry["A_row"] = row

    def _step_U(self, sw, row, i, state, old, new, delta, aux) -> None:
        g, a, N, full = self.gamma, self.alpha, self.N, self._level >= 2
        P = aux["P"]
        self._P[i] = P
        V = state.V[i]  # V_i⁺
        if i == N:  # ‖V−o‖² − ‖V−n‖² + ‖o−P‖² − ‖n−P‖² = 2⟨Δ, V + P − o − n⟩
            t = torch.add(V, P).sub_(old).sub_(new)
            row[S.BLOCK_DECREASE] = g * _dot(delta, t)
            coef = a - (self.c if self.problem.config.vn_update == "prox_linear" else 0.0)
            g_V = torch.mul(delta, -g, out=t).sub_(self._dV_N, alpha=coef)
            self._dV_N = None
            self._set_g(sw, ("V", N), g_V)
            self._carry[i] = {"sweep": sw, "B": P.mul(g)}
            if full:
                r = torch.mul(new, 2.0, out=t).sub_(V).sub_(P)
                row[S.BLOCK_RESIDUAL] = _ratio(_norm(r), 2 * _norm(new) + _norm(V) + _norm(P))
        else:
            s_old, A = self._act_V.pop(i)  # σ(U_i⁻) and A = V_i⁺ − σ(U_i⁻) from the V_i step
            s_new = self.problem.sigma(i, new)
            d_sig = s_new.sub_(s_old) if s_new is not new else torch.sub(new, s_old)  # σ(U⁺) − σ(U⁻)
            d_sq = _sq(d_sig)
            act = 2 * _dot(d_sig, A) - d_sq  # ‖V−σo‖² − ‖V−σn‖² = ⟨d, 2A − d⟩
            self._set_g(sw, ("V", i), d_sig, factor=-g, sq=d_sq)  # g_{V_i} = γ(σ(U⁻) − σ(U⁺))
            aff = _dot(delta, torch.add(old, new, out=d_sig).sub_(P, alpha=2.0))  # −(‖o−P‖² − ‖n−P‖²)
            row[S.BLOCK_DECREASE] = 0.5 * g * (act - aff)
            self._carry[i] = {"sweep": sw, "B": P.mul(g).sub_(delta, alpha=a)}
            if full:
                row[S.BLOCK_RESIDUAL] = u_block_residual(new, V, None, (g + a) / g, self.problem.config.activation,
                                                         m_parts=(P, old, g, a))
        sw.pending += 1
        self._carry[i]["U_row"] = row

    def _step_W(self, sw, row, i, state, old, new, delta, aux) -> None:
        g, a, lam, full = self.gamma, self.alpha, self.lam, self._level >= 2
        P, G = self._P.pop(i), aux["gram"]
        E = state.U[i] - P  # U_i⁺ − W̃_i⁻Ṽ_{i-1}⁻
        E_sq = _sq(E)
        reg_dec = -0.5 * lam * (2 * _dot(old, delta) + _sq(delta)) if lam > 0 else 0.0
        if i >= 2:
            EV = aux["cross"] - old @ G  # EṼ⁻ᵀ = U⁺Ṽ⁻ᵀ − W̃⁻Ṽ⁻Ṽ⁻ᵀ from the step's products
            DG = delta @ G
            inner = 2 * _dot(EV, delta) - _dot(DG, delta)  # ‖E‖² − ‖U⁺ − W̃⁺Ṽ⁻‖²
        if i >= 2:
            row[S.BLOCK_DECREASE] = 0.5 * g * inner + reg_dec
            self._aff_before_V[i - 1] = 0.5 * g * (E_sq - inner)
            carry = self._carry[i]
            carry["S"] = (DG - EV).mul_(-g).sub_(delta, alpha=a)
            carry["W_row"] = row
        else:  # Ṽ_0 = X̃ is fixed: g_W1 = −αΔW̃_1, after-value of the aff term from record
            row[S.BLOCK_DECREASE] = 0.5 * g * E_sq + reg_dec
            row["_minus"] = S.aff_term(1)
            self._set_g(sw, ("W", 1), delta.mul(-a))
        if full:  # r = W̃⁺M − (γUṼᵀ + αW̃⁻), M = γṼṼᵀ + (α+λ)I, written as γ(DṼṼᵀ − EṼᵀ) + λW̃⁺ + αD
            c = a + lam  # ‖γG + cI‖_F² = γ²‖G‖² + 2γc·tr G + c²(d+1)
            norm_M = (g * g * _sq(G) + 2 * g * c * G.diagonal().sum() + c * c * G.shape[0]).sqrt()
            if i >= 2:  # the products are there already: exact
                r = (DG - EV).mul_(g).add_(delta, alpha=a)
                if lam > 0:
                    r.add_(new, alpha=lam)
                r_norm, EV_norm = _norm(r), _norm(EV)
            else:  # W̃_1: Ṽ_0 = X̃ is fixed, sketch with fixed probes Z: ‖r‖_F ≈ ‖rZ‖_F/√s
                Z, GZ, XtZ = self._probes(G, state.V[0])
                EVZ = E @ XtZ
                rZ = (delta @ GZ).sub_(EVZ).mul_(g).add_(delta @ Z, alpha=a)
                if lam > 0:
                    rZ.add_(new @ Z, alpha=lam)
                r_norm, EV_norm = _norm(rZ) / math.sqrt(PROBES), _norm(EVZ) / math.sqrt(PROBES)
            scale = norm_M * (_norm(new) + _norm(old)) + g * EV_norm
            row[S.BLOCK_RESIDUAL] = _ratio(r_norm, scale)

    def _probes(self, G: Tensor, X: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fixed Gaussian probes Z ∈ R^{(d_0+1)×s} for the W̃_1 residual, with X̃ᵀ-side products cached."""
        if self._probe_cache is None:
            gen = torch.Generator().manual_seed(PROBE_SEED)
            Z = torch.randn(G.shape[0], PROBES, generator=gen, dtype=torch.float64).to(G)
            self._probe_cache = (Z, G @ Z, torch.addmm(Z[-1:], X.T, Z[:-1]))
        return self._probe_cache

    def _complete(self, i: int, P: Tensor, U: Tensor, V_prev: Tensor, W: Tensor) -> None:
        """Finish the layer-i parts of g^{k} (and the V_{i-1} residual) with P = P_i^k = W̃_i^kṼ_{i-1}^k."""
        carry = self._carry.pop(i)
        sw: _Sweep = carry["sweep"]
        g = self.gamma
        self._set_g(sw, ("U", i), carry["B"].sub_(P, alpha=g), carry["U_row"])
        if "S" in carry or "A" in carry:
            F = P - U  # W̃_i^kṼ_{i-1}^k − U_i^k
            if "S" in carry:
                self._set_g(sw, ("W", i), augmented_cross(F, V_prev).mul_(g).add_(carry["S"]), carry["W_row"])
            if "A" in carry:
                W_hat = W[:, :-1]
                r = carry["A"].addmm_(W_hat.T, F)
                scale = carry["A_scale"] + _norm(W_hat) * (_norm(P) + _norm(U))
                carry["A_row"][S.BLOCK_RESIDUAL] = _ratio(_norm(r), scale)
        sw.pending -= 1

    def _defer_accuracy(self, sw: _Sweep, state: BCDState, rec: dict[str, Any]) -> None:
        """Test accuracy now; train accuracy at the next U_1 step, whose aux["P"] = W̃_1^kX̃ is the first
        layer of the forward pass (the weights W̃_i^k are kept by reference: the engine replaces blocks)."""
        problem = self.problem
        if problem.labels is None:
            return
        if problem.X_test is not None:
            rec[S.TEST_ACC] = accuracy(state.W, problem.X_test, problem.labels_test, problem)
        self._acc_pending = (sw, list(state.W))
        sw.pending += 1

    def _complete_accuracy(self, P_1: Tensor) -> None:
        sw, W = self._acc_pending
        self._acc_pending = None
        h = self.problem.layer_output(1, P_1, self.problem.X)
        for i in range(2, len(W)):
            h = self.problem.layer_output(i, affine(W[i], h), h)
        sw.record[S.TRAIN_ACC] = (h.argmax(dim=0) == self.problem.labels).to(torch.float64).mean()
        sw.pending -= 1

    def _set_g(self, sw: _Sweep, key: tuple[str, int], g_part: Tensor, row: dict | None = None,
               factor: float = 1.0, sq: Tensor | None = None) -> None:
        """Record the g^k component factor·g_part of block ``key`` (its squared norm until the sweep closes;
        ``sq`` = ‖g_part‖² when already computed)."""
        row = row if row is not None else self._row_of[key]
        row[S.BLOCK_G_NORM] = (_sq(g_part) if sq is None else sq) * (factor * factor)
        if sw.g_components is not None:
            sw.g_components[key] = g_part.mul(factor)

    def _step_generic(self, row: dict, b: str, i: int, state: BCDState, old: Tensor, new: Tensor, aux) -> None:
        """Order-agnostic bookkeeping of one update: the decrease of L̄ is the drop of the terms that touch
        the block (the others do not change); ``full`` adds the optimality residual of its subproblem, or for
        an inner-solver block (Algorithm 1) its stopping-rule record, with the least-norm stationarity
        recomputed here rather than taken from the solver."""
        sub = self._subproblems[(b, i)]
        if sub.solved_inexactly(self.problem):
            info = (aux or {}).get("inner")
            row[S.BLOCK_INNER_ITERS] = math.nan if info is None else float(info.iterations)
            row[S.BLOCK_RULE_HELD] = math.nan if info is None else float(info.rule_held)
            row[S.BLOCK_RULE_TOL] = self.problem.config.eta * float(torch.linalg.vector_norm(new - old))
            row[S.BLOCK_STATIONARITY] = sub.stationarity(state, self.problem, new)
        problem = self.problem
        after_state = BCDState(list(state.W), list(state.V), list(state.U), state.sweep)
        after_state.set(b, i, new)
        before = torch.stack([t.value(state, problem) for t in sub.terms]).sum()
        after = torch.stack([t.value(after_state, problem) for t in sub.terms]).sum()
        row[S.BLOCK_DECREASE] = before - after
        if self._level >= 2 and not sub.solved_inexactly(problem):
            row[S.BLOCK_RESIDUAL] = sub.residual(state, problem, new)

    # ------------------------------------------------------------------ rows

    def _close_ready(self) -> None:
        while self._open and self._open[0].record is not None and self._open[0].pending == 0:
            self._close(self._open.pop(0))

    def _close(self, sw: _Sweep) -> None:
        """Turn a finished sweep into its rows (one host sync for all its tensor values)."""
        tensors: list[Tensor] = []

        def slot(v):
            if isinstance(v, Tensor):
                tensors.append(v.reshape(()).to(torch.float64))
                return ("t", len(tensors) - 1)
            return ("f", float(v))

        dq = [slot(v) for v in sw.dq_sq]
        norms = {b: [slot(v) for v in vs] for b, vs in sw.norms.items()}
        cols = (S.BLOCK_DELTA_SQ, S.BLOCK_DECREASE, S.BLOCK_G_NORM, S.BLOCK_RESIDUAL)
        blocks = [{c: slot(r[c]) for c in cols} for r in sw.blocks]
        train_acc = slot(sw.record.get(S.TRAIN_ACC, math.nan))
        host = torch.stack(tensors).cpu().tolist() if tensors else []

        def val(s):
            return host[s[1]] if s[0] == "t" else s[1]

        rec = sw.record
        row: dict[str, Any] = {S.SWEEP: sw.k, S.INSTRUMENTED: bool(sw.instrumented and sw.k > 0)}
        for key in (S.TIME_ENGINE, S.TIME_HOOKS, S.TIME_EVAL):
            row[key] = float(rec.get(key, math.nan))
        row[S.TIME_RECORDER] = sw.seconds
        row[S.OBJECTIVE] = float(rec[S.OBJECTIVE])
        for name in (t.id for t in self.problem.terms):
            row[name] = float(rec[name])
        row[S.TRAIN_ACC] = val(train_acc)
        row[S.TEST_ACC] = float(rec.get(S.TEST_ACC, math.nan))
        prev = self._rows[-1] if self._rows else None
        row[S.DECREASE] = prev[S.OBJECTIVE] - row[S.OBJECTIVE] if prev is not None else math.nan
        row[S.DQ_SQ] = sum(val(s) for s in dq) if prev is not None else math.nan
        g_sq = [val(b[S.BLOCK_G_NORM]) for b in blocks]
        complete_g = bool(blocks) and all(math.isfinite(x) for x in g_sq)
        row[S.G_NORM] = math.sqrt(sum(g_sq)) if complete_g else math.nan
        for b, col in (("W", S.NORM_W_MAX), ("V", S.NORM_V_MAX), ("U", S.NORM_U_MAX)):
            row[col] = max((val(s) for s in norms[b]), default=math.nan)
        self._B = max(self._B, row[S.NORM_W_MAX], row[S.NORM_V_MAX], row[S.NORM_U_MAX])
        row[S.BOUND_B] = self._B
        if prev is not None:
            self._cum_dq += math.sqrt(row[S.DQ_SQ])
            self._cum_g_sq += row[S.G_NORM] ** 2 if complete_g else math.nan
        row[S.CUM_DQ] = self._cum_dq
        row[S.CUM_G_SQ] = self._cum_g_sq if self._level > 0 else math.nan
        self._rows.append(row)
        for r, b in zip(sw.blocks, blocks, strict=True):
            out = {c: r[c] for c in (S.SWEEP, S.STEP, S.BLOCK, S.LAYER, S.BLOCK_CONST)}
            for c in cols:
                out[c] = val(b[c])
            if r["_minus"] is not None:
                out[S.BLOCK_DECREASE] -= float(rec[r["_minus"]])
            out[S.BLOCK_G_NORM] = math.sqrt(out[S.BLOCK_G_NORM])
            for c in _INNER_COLUMNS:
                out[c] = r.get(c, math.nan)
            self._block_rows.append(out)
        if sw.g_components is not None:
            self.g_components[sw.k] = sw.g_components

    # ------------------------------------------------------------------ output

    def finish(self) -> None:
        """Complete what waits for the next sweep (the last sweep's U_i, W_i parts of g) from the final
        state, and close every sweep.  Called by :meth:`trace`; safe to call more than once."""
        if self.state is None:
            raise ValueError("the recorder has not seen a run (on_run_start was never called)")
        t0 = time.perf_counter()
        state, last = self.state, self._open[-1] if self._open else None
        for i in sorted(self._carry):
            self._complete(i, affine(state.W[i], state.V[i - 1]), state.U[i], state.V[i - 1], state.W[i])
        if self._acc_pending is not None:
            self._complete_accuracy(affine(self._acc_pending[1][1], self.problem.X))
        if last is not None and last.record is None:  # the engine stopped before on_sweep_end
            last.record = {**objective_terms(state, self.problem), S.TRAIN_ACC: math.nan, S.TEST_ACC: math.nan}
        if last is not None:
            last.seconds += time.perf_counter() - t0
        self._close_ready()

    def trace(self) -> Trace:
        """The trace so far (sweep table, block table, meta)."""
        self.finish()
        cfg = self.problem.config
        config = dataclasses.asdict(cfg)
        config["hidden"] = list(cfg.hidden)
        meta = {
            S.META_CONFIG: config,
            S.META_DTYPE: cfg.dtype,
            S.META_N_SAMPLES: self.problem.n,
            S.META_WIDTHS: list(self.problem.widths),
            S.META_PRESET: self.preset,
            S.META_SOURCE: "engine",
            S.META_SCHEDULE: self.schedule.describe(),
            S.META_G_DEFINITION: g_definition(self.problem) if self._generic else G_DEFINITION,
            S.META_VARIANT: self.problem.variant,
            S.META_RECORDER_PATH: "generic" if self._generic else "fast",
            S.META_BLOCKS_ARE_UPDATES: True,
        }
        blocks = pd.DataFrame(self._block_rows, columns=_BLOCK_COLUMNS)
        return Trace(pd.DataFrame(self._rows), blocks, meta)


_INNER_COLUMNS = (S.BLOCK_INNER_ITERS, S.BLOCK_RULE_HELD, S.BLOCK_STATIONARITY, S.BLOCK_RULE_TOL)
_BLOCK_COLUMNS = [S.SWEEP, S.STEP, S.BLOCK, S.LAYER, S.BLOCK_CONST, S.BLOCK_DELTA_SQ, S.BLOCK_DECREASE,
                  S.BLOCK_G_NORM, S.BLOCK_RESIDUAL, *_INNER_COLUMNS]


def _accuracies(state: BCDState, problem: Problem) -> dict[str, float]:
    out = {S.TRAIN_ACC: math.nan, S.TEST_ACC: math.nan}
    if problem.labels is not None:
        out[S.TRAIN_ACC] = accuracy(state.W, problem.X, problem.labels, problem)
        if problem.X_test is not None:
            out[S.TEST_ACC] = accuracy(state.W, problem.X_test, problem.labels_test, problem)
    return out
