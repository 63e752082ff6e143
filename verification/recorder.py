"""The recorder: an engine hook that turns the block updates of Algorithm 2 into a tidy :class:`Trace`.

Sweep table (one row per sweep k = 0..T) and block table (one row per block update), column names
from :mod:`verification.schema`.  What each preset computes (every quantity is in-stream, from the
old block in ``state``, the new block, and what the step published in ``aux``):

* ``cheap``: L̄ and every term (reused from the engine's ``record``, never recomputed), the sweep
  decrease L̄^{k−1} − L̄^k, ‖ΔQ^k‖², max ‖W̃_i‖, ‖V_i‖, ‖U_i‖, B (running max of the iterate bound: block norms,
  √(‖V_i‖² + n), ‖X̃‖), Σ‖ΔQ‖.  Computed on **every** sweep, whatever the schedule.
* ``standard``: + the block table: per-block decrease of L̄, ‖Δ‖², the block's descent constant,
  ‖g^k component‖ (MATH.md §5), and ‖g^k‖, Σ‖g‖² in the sweep table.
* ``full``: + the exactness residual of every block update and train/test accuracy on every
  instrumented sweep (train accuracy reuses W̃_1X̃, which is ``aux["P"]`` of the next U_1 step).

**Schedule.** ``schedule`` (every k sweeps, or log-spaced) selects the sweeps that get the standard
and full quantities; the other sweeps keep the cheap columns (so consecutive sweep decreases are
always available) and have no block rows; their g columns are NaN, and Σ‖g‖² becomes NaN from the
first sweep without g^k onwards (a partial sum with holes would be misleading).

**Two paths.**  :meth:`Recorder.check_schedule` validates the schedule and picks one: the *fast path* for
Algorithm 2 in its own order (:mod:`verification.fast_path`: in-stream formulas, g^k from the block optimality
conditions of MATH.md §5), or the *generic path* for every other order and variant (the touched terms of each
block's subproblem before and after its update, :mod:`bcd.subproblems`; g^k the least-norm subgradient at Q^k,
:mod:`verification.subgradient`).  Both write the same columns; tests compare them on Algorithm 2.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from bcd.blocks import affine
from bcd.fusion import fuse_mode
from bcd.objective import accuracy, objective_terms
from bcd.problem import BCDState, Problem
from bcd.reduction import SampleNorms, block_norm, block_sq, over_samples, sample_sq
from bcd.schedule import Step, schedule_for
from bcd.subproblems import subproblem_for
from theory.constants import RunConstants, iterate_bound
from verification import schema as S  # noqa: N812
from verification.fast_path import G_DEFINITION, Algorithm2FastPath, fill_aux, in_layer_pass
from verification.subgradient import definition as g_definition
from verification.subgradient import least_norm_subgradient
from verification.trace import Trace

Tensor = torch.Tensor
PRESETS = ("cheap", "standard", "full")
PATHS = ("auto", "fast", "generic")  # the in-stream formulas of Algorithm 2, or the order-agnostic bookkeeping




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
    g_lower_sq: Any = math.nan  # certified lower bound of dist(0, ∂L̄(Q^k))² (generic path)




# --------------------------------------------------------------------------- the recorder


class Recorder(Algorithm2FastPath):
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
        self._fuse = fuse_mode()  # BCD_FUSE, checked before any run starts
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
        if self.path == "fast" and not problem.config.classic:
            raise ValueError("path='fast' has in-stream formulas for the squared loss, relu or identity and the ridge "
                             f"only; this run has loss={problem.config.loss!r}, activation="
                             f"{problem.config.activation!r}, r={problem.config.r!r}, s={problem.config.s!r}: use "
                             f"path='generic' or 'auto'")
        fast_ok = fast_ok and problem.config.classic
        self._generic = self.path == "generic" or not fast_ok
        self._subproblems = {key: subproblem_for(problem, *key) for key in problem.variables}

    def on_run_start(self, problem: Problem, state: BCDState) -> None:
        t0 = time.perf_counter()
        cfg = problem.config
        if self._generic is None:  # driven without check_schedule: the configured variant's own schedule
            self.check_schedule(problem, schedule_for(cfg.splitting, cfg.N))
        self._bind(problem, state)
        self.g_components = {}
        self._rows: list[dict[str, Any]] = []
        self._block_rows: list[dict[str, Any]] = []
        self._open: list[_Sweep] = []
        self._current: _Sweep | None = None
        self._carry: dict[int, dict[str, Any]] = {}
        self._P: dict[int, Tensor] = {}
        self._aff_before_V: dict[int, Tensor] = {}
        self._pending_V: dict[int, tuple[dict, Tensor, Tensor]] = {}  # V_i's row, V_i⁻, V_i⁺ until the U_i step
        self._E_sq: dict[int, Tensor] = {}  # ‖U_i⁺ − W̃_i⁻Ṽ_{i-1}⁻‖² from the U_i step for the W_i step
        self._dV_N: Tensor | None = None
        self._row_of: dict[tuple[str, int], dict[str, Any]] = {}
        self._B = 0.0
        self._acc_pending: tuple[_Sweep, list] | None = None
        self._cum_dq = 0.0
        self._cum_g_sq = 0.0
        first = _Sweep(state.sweep, True)
        for b, _i, t in state.blocks():
            first.norms[b].append(block_norm(b, t))
        rec = objective_terms(state, problem)
        rec.update(_accuracies(state, problem))
        rec.update({S.TIME_ENGINE: 0.0, S.TIME_HOOKS: 0.0, S.TIME_EVAL: 0.0})
        first.record = rec
        first.seconds = time.perf_counter() - t0
        self._open.append(first)
        self._close_ready()

    # ------------------------------------------------------------------ checkpoint and resume

    _CARRIED = ("g_components", "_rows", "_block_rows", "_open", "_current", "_carry", "_P", "_aff_before_V",
                "_pending_V", "_E_sq", "_dV_N", "_row_of", "_B", "_acc_pending", "_cum_dq", "_cum_g_sq", "_V_sq")

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs of this recorder between two sweeps: its settings and everything it carries
        (closed rows, the open sweep whose g^k parts complete in the next one, running sums) — plain containers,
        tensors and :class:`_Sweep` records, loadable with ``torch.load(weights_only=True)`` (:data:`SAFE_GLOBALS`)."""
        if self.state is None:
            raise ValueError("the recorder has not seen a run (on_run_start was never called)")
        return {"settings": {"preset": self.preset, "schedule": self.schedule.describe(), "path": self.path,
                             "keep_g": self.keep_g},
                "sweep": self.state.sweep, **{name: getattr(self, name) for name in self._CARRIED}}

    @classmethod
    def from_state_dict(cls, saved: dict[str, Any]) -> Recorder:
        """A recorder that continues from ``saved`` (its :meth:`state_dict`) when the engine resumes the run."""
        s = saved["settings"]
        rec = cls(s["preset"], Schedule(**s["schedule"]), keep_g=s["keep_g"], path=s["path"])
        rec._saved = saved
        return rec

    def _bind(self, problem: Problem, state: BCDState) -> None:
        """What a run start and a resume set alike: the problem, its constants, the caches (not carried)."""
        cfg = problem.config
        self.constants = RunConstants(cfg, problem.widths, problem.n_total)  # n over every sample shard
        self.problem, self.state = problem, state
        self.N, self.gamma, self.alpha, self.lam, self.c = cfg.N, cfg.gamma, cfg.alpha, cfg.lam, problem.c
        self._n_total = problem.n_total
        self._norm_X_tilde = math.sqrt(float(sample_sq(problem.X)) + self._n_total)  # ‖X̃‖ = ‖[X; 1ᵀ]‖
        self._probe_cache: tuple[Tensor, Tensor, Tensor] | None = None
        self._v_probe_cache: dict[int, Tensor] = {}
        self._bufs: dict[tuple[str, int], Tensor] = {}  # n-sized buffers reused from sweep to sweep (not carried)
        self._start_norms(state)

    def on_resume(self, problem: Problem, state: BCDState) -> None:
        """Continue after sweep ``state.sweep`` from the saved carried state (instead of :meth:`on_run_start`)."""
        saved = getattr(self, "_saved", None)
        if saved is None or saved["sweep"] != state.sweep:
            raise ValueError(f"the recorder's checkpoint is at sweep {None if saved is None else saved['sweep']}, "
                             f"the run's at {state.sweep}")
        self._bind(problem, state)
        for name in self._CARRIED:  # the per-step dicts are empty between sweeps: absent from older checkpoints
            if name in saved or name not in _RECOMPUTED_ON_RESUME:  # (older checkpoints: ‖V_i‖² from the state)
                setattr(self, name, saved[name] if name in saved or name not in _EMPTY_BETWEEN_SWEEPS else {})
        for i, carry in self._carry.items():  # an older checkpoint carries A = V_{i-1}⁺ − σ(U_{i-1}⁻) itself: sketch it
            if "A" in carry:
                A = carry.pop("A")
                carry["ZA"] = self._v_probes(i - 1, A)[0] @ A
        del self._saved

    def _start_norms(self, state: BCDState) -> None:
        """The fast path's per-layer norms (verification/tolerance.py, block noise): ‖V_i‖² carried from sweep to sweep
        (recomputed here at a start or resume), ‖U_i⁺‖ and the W steps' noise within a sweep. The generic path
        (Algorithms 1 and 3, and every run the fast path does not take) reads none of them: its block noise comes from
        the terms' ``rounding``."""
        self._V_sq = {} if self._generic else {i: sample_sq(state.V[i]).double() for i in range(1, state.N + 1)}
        self._U_norm: dict[int, Tensor] = {}
        self._noise_before_V: dict[int, Tensor] = {}

    def on_abort(self, state: BCDState) -> None:
        """The run was aborted mid-sweep: the sweep in progress is dropped (its blocks describe no iterate)."""
        if self._open and self._open[-1].record is None:
            dropped = self._open.pop()
            for i in [i for i, c in self._carry.items() if c["sweep"] is dropped]:
                del self._carry[i]
            if self._current is dropped:
                self._current = None

    def on_step(self, k: int, step: Step, state: BCDState, new: Tensor, aux: dict) -> None:
        t0 = time.perf_counter()
        sw = self._current
        if sw is None or sw.k != k:
            sw = self._current = _Sweep(k, self._level > 0 and self.schedule(k))
            sw.g_components = {} if self.keep_g else None
            self._open.append(sw)
        b, i = step.block, step.layer
        if not self._generic:
            fill_aux(b, i, state, aux)
        old = state.get(b, i)
        if sw.instrumented and not self._generic and in_layer_pass(b, i, self.N):
            delta = d_sq = None  # a hidden layer's V_i, U_i: ‖Δ‖² and ‖X⁺‖ come from its one pass (fast_path)
        elif sw.instrumented:  # squared sums of V, U blocks over every sample shard (W is replicated)
            delta = new - old
            d_sq = block_sq(b, delta)
        else:  # cheap columns only: ‖X⁺ − X⁻‖² without an n-sized temporary
            delta, d_sq = None, torch.dist(new, old).square()
            d_sq = d_sq if b == "W" else over_samples(d_sq)
        if d_sq is not None:
            sw.dq_sq.append(d_sq)
            sw.norms[b].append(block_norm(b, new))
            if b == "V" and not self._generic:  # ‖V_i‖², for the block noise of later steps (fast_path)
                self._V_sq[i] = sw.norms["V"][-1].double().square()
        if not self._generic and b == "U" and i in self._carry:  # P_i^{k-1} of the last sweep is this aux["P"]
            self._complete(i, aux["P"], old, state.V[i - 1], state.W[i])
        if not self._generic and b == "U" and i == 1 and self._acc_pending is not None:
            self._complete_accuracy(aux["P"])
        if sw.instrumented:
            row = {S.SWEEP: k, S.STEP: len(sw.blocks), S.BLOCK: b, S.LAYER: i,
                   S.BLOCK_DELTA_SQ: math.nan if d_sq is None else d_sq,
                   S.BLOCK_CONST: self.constants.block(b, i), S.BLOCK_DECREASE: math.nan,
                   S.BLOCK_G_NORM: math.nan, S.BLOCK_RESIDUAL: math.nan, S.BLOCK_NOISE: math.nan, "_minus": None}
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
            for key, part in g.parts.items():
                self._set_g(sw, key, part)
            sw.g_lower_sq = g.lower_sq
        if sw.instrumented and self._level >= 2 and math.isnan(rec.get(S.TRAIN_ACC, math.nan)):
            if self._generic:
                rec.update(_accuracies(state, self.problem))
            else:
                self._defer_accuracy(sw, state, rec)
        sw.record = rec
        self._close_ready()
        sw.seconds += time.perf_counter() - t0
        return None

    def _set_g(self, sw: _Sweep, key: tuple[str, int], g_part: Tensor | None, row: dict | None = None,
               factor: float = 1.0, sq: Tensor | None = None) -> None:
        """Record the g^k component factor·g_part of block ``key`` (its squared norm until the sweep closes;
        ``sq`` = ‖g_part‖² when already computed, and then ``g_part`` may be None unless ``keep_g``)."""
        row = row if row is not None else self._row_of[key]
        row[S.BLOCK_G_NORM] = (block_sq(key[0], g_part) if sq is None else sq) * (factor * factor)
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
            row[S.BLOCK_RULE_TOL] = sub.rule_tolerance(state, self.problem, new)
            row[S.BLOCK_STATIONARITY] = sub.stationarity(state, self.problem, new)
        problem = self.problem
        after_state = BCDState(list(state.W), list(state.V), list(state.U), state.sweep)
        after_state.set(b, i, new)
        before = [t.value(state, problem) for t in sub.terms]
        after = [t.value(after_state, problem) for t in sub.terms]
        row[S.BLOCK_DECREASE] = torch.stack(before).sum() - torch.stack(after).sum()
        row[S.BLOCK_NOISE] = self._generic_noise(sub, state, after_state, before, after, row[S.BLOCK_DELTA_SQ])
        if self._level >= 2 and not sub.solved_inexactly(problem):
            row[S.BLOCK_RESIDUAL] = sub.residual(state, problem, new)

    def _generic_noise(self, sub, state: BCDState, after_state: BCDState, before: list[Tensor], after: list[Tensor],
                       d_sq: Tensor) -> Tensor:
        """S·‖Δ‖ of a decrease formed as Σ_t t(before) − Σ_t t(after) (verification/tolerance.py, "Block noise"):
        the rounding sizes E of every touched term's two evaluations, plus ‖Δ‖ times the sizes G of the gradients the
        update solved for at X⁺ and the proximal term's ω(‖X⁺‖ + ‖X⁻‖) (a backward-stable update's residual).  NaN
        where a size overflows (the |L̄| tolerance alone then)."""
        problem, key = self.problem, sub.key
        step = torch.as_tensor(d_sq, dtype=before[0].dtype, device=before[0].device).sqrt()
        total = step.new_zeros(())
        norm = SampleNorms()  # the two states share every block but ``key``: each iterate's norm once
        for t, v0, v1 in zip(sub.terms, before, after, strict=True):
            E0, _ = t.rounding(state, problem, v0, key, norm)
            E1, G1 = t.rounding(after_state, problem, v1, key, norm)
            total = total + E0 + E1 + step * G1
        if sub.omega:
            size = norm if key[0] != "W" else (lambda x: block_norm("W", x))  # a W is whole on every rank: no reduction
            total = total + step * sub.omega * (size(after_state.get(*key)) + size(state.get(*key)))
        return torch.where(torch.isfinite(total), total, torch.full_like(total, math.nan))

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
        cols = (S.BLOCK_DELTA_SQ, S.BLOCK_DECREASE, S.BLOCK_G_NORM, S.BLOCK_RESIDUAL, S.BLOCK_NOISE, "_minus_scale")
        blocks = [{c: slot(r.get(c, math.nan)) for c in cols} for r in sw.blocks]  # (older checkpoints: no noise)
        train_acc = slot(sw.record.get(S.TRAIN_ACC, math.nan))
        g_lower = slot(sw.g_lower_sq)
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
        row[S.G_NORM_LOWER] = math.sqrt(max(val(g_lower), 0.0)) if complete_g else math.nan
        for b, col in (("W", S.NORM_W_MAX), ("V", S.NORM_V_MAX), ("U", S.NORM_U_MAX)):
            row[col] = max((val(s) for s in norms[b]), default=math.nan)
        self._B = max(self._B, iterate_bound(row[S.NORM_W_MAX], row[S.NORM_V_MAX], row[S.NORM_U_MAX],
                                             self._n_total, self._norm_X_tilde))
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
            if r["_minus"] is not None:  # the after-value T = γ/2‖R‖² from record: evaluated with noise ‖R‖·scale
                after = float(rec[r["_minus"]])
                out[S.BLOCK_DECREASE] -= after
                out[S.BLOCK_NOISE] += math.sqrt(max(2 * after / self.gamma, 0.0)) * out.pop("_minus_scale")
            out.pop("_minus_scale", None)
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
            S.META_N_SAMPLES: self._n_total,
            S.META_WIDTHS: list(self.problem.widths),
            S.META_PRESET: self.preset,
            S.META_SOURCE: "engine",
            S.META_SCHEDULE: self.schedule.describe(),
            S.META_G_DEFINITION: g_definition(self.problem) if self._generic else G_DEFINITION,
            S.META_VARIANT: self.problem.variant,
            S.META_RECORDER_PATH: "generic" if self._generic else "fast",
            S.META_BLOCKS_ARE_UPDATES: True,
            S.META_B_DEFINITION: "iterate_bound",
        }
        blocks = pd.DataFrame(self._block_rows, columns=_BLOCK_COLUMNS)
        return Trace(pd.DataFrame(self._rows), blocks, meta)


_EMPTY_BETWEEN_SWEEPS = ("_pending_V", "_E_sq")  # carried names that an older checkpoint may lack
_RECOMPUTED_ON_RESUME = ("_V_sq",)  # carried, and recomputed from the state where an older checkpoint lacks it
SAFE_GLOBALS = [_Sweep]  # what a recorder checkpoint holds besides containers and tensors (torch.load allow-list)

_INNER_COLUMNS = (S.BLOCK_INNER_ITERS, S.BLOCK_RULE_HELD, S.BLOCK_STATIONARITY, S.BLOCK_RULE_TOL)
_BLOCK_COLUMNS = [S.SWEEP, S.STEP, S.BLOCK, S.LAYER, S.BLOCK_CONST, S.BLOCK_DELTA_SQ, S.BLOCK_DECREASE,
                  S.BLOCK_G_NORM, S.BLOCK_RESIDUAL, S.BLOCK_NOISE, *_INNER_COLUMNS]


def _accuracies(state: BCDState, problem: Problem) -> dict[str, float]:
    out = {S.TRAIN_ACC: math.nan, S.TEST_ACC: math.nan}
    if problem.labels is not None:
        out[S.TRAIN_ACC] = accuracy(state.W, problem.X, problem.labels, problem)
        if problem.X_test is not None:
            out[S.TEST_ACC] = accuracy(state.W, problem.X_test, problem.labels_test, problem)
    return out
