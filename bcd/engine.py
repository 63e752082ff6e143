"""The sweep loop shared by every variant, and the public ``train`` entry point.

One sweep applies the variant's schedule in order; each step's new block replaces the old one.
Hooks (the verification recorder, user callbacks) see every step *before* its assignment —
old iterate in ``state``, new block in ``new`` — and every finished sweep; a hook returning
``True`` from ``on_sweep_end`` stops the run.  Time spent in hooks is measured separately and
excluded from the engine time (``time_engine_s``).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import torch

from bcd.config import BCDConfig
from bcd.fusion import fuse_mode
from bcd.inputs import make_problem
from bcd.objective import OBJECTIVE, accuracy, objective_terms
from bcd.problem import BCDState, Problem, initial_state
from bcd.reduction import over_samples
from bcd.schedule import Step, schedule_for

Tensor = torch.Tensor

SWEEP = "sweep"
TIME_ENGINE = "time_engine_s"
TIME_HOOKS = "time_hooks_s"
TIME_EVAL = "time_eval_s"
TRAIN_ACC = "train_acc"
TEST_ACC = "test_acc"


class Hook(Protocol):
    """Any subset of these methods may be defined (``check_schedule`` raises ValueError to refuse a run)."""

    def check_schedule(self, problem: Problem, schedule: Sequence[Step]) -> None: ...
    def on_run_start(self, problem: Problem, state: BCDState) -> None: ...
    def on_step(self, k: int, step: Step, state: BCDState, new: Tensor, aux: dict) -> None: ...
    def on_sweep_end(self, k: int, state: BCDState, record: dict[str, Any]) -> bool | None: ...


@dataclass
class TrainResult:
    """Final iterate, per-sweep log (row 0 = the initial point Q⁰) and why the run stopped."""

    state: BCDState
    log: pd.DataFrame
    stop_reason: str
    problem: Problem
    stop_detail: str = ""  # e.g. which block first became non-finite

    @property
    def weights(self) -> list[Tensor]:
        """W̃_1..W̃_N (bias as last column)."""
        return [w for w in self.state.W[1:]]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sweep(state: BCDState, problem: Problem, schedule: Iterable[Step], hooks: Iterable[Hook] = ()) -> float:
    """Apply one sweep in place of ``state`` (each block replaced by its step's new value).

    Returns the seconds spent inside hooks."""
    k = state.sweep + 1
    on_step = [h.on_step for h in hooks if hasattr(h, "on_step")]
    hook_time = 0.0
    for step in schedule:
        aux: dict[str, Tensor] | None = {} if on_step else None
        new = step.update(state, problem, step.layer, aux)
        if on_step:
            t0 = time.perf_counter()
            for f in on_step:
                f(k, step, state, new, aux)
            hook_time += time.perf_counter() - t0
            if step.block != "W":  # the replaced block and the spent product, for a later step to recycle
                problem.pool.give(state.get(step.block, step.layer))
                problem.pool.give(aux.get("P"))
        state.set(step.block, step.layer, new)
    state.sweep = k
    return hook_time


def evaluate(state: BCDState, problem: Problem, with_accuracy: bool) -> dict[str, float]:
    """L̄ and its terms, and (optionally) train/test accuracy of the forward pass."""
    rec: dict[str, float] = objective_terms(state, problem)
    nan = float("nan")
    rec[TRAIN_ACC] = rec[TEST_ACC] = nan
    if with_accuracy and problem.labels is not None:
        rec[TRAIN_ACC] = accuracy(state.W, problem.X, problem.labels, problem)
        if problem.X_test is not None:
            rec[TEST_ACC] = accuracy(state.W, problem.X_test, problem.labels_test, problem)
    return rec


def run(
    problem: Problem,
    state: BCDState,
    *,
    sweeps: int | None = None,
    hooks: Iterable[Hook] = (),
    progress: bool = False,
    schedule: Sequence[Step] | None = None,
    log: Sequence[dict[str, Any]] | None = None,
    checkpoint: Callable[[BCDState, list[dict[str, Any]]], None] | None = None,
    checkpoint_every: int = 0,
) -> TrainResult:
    """Run ``sweeps`` sweeps (default ``config.sweeps``) from ``state``; log every sweep.

    ``schedule`` replaces the configured variant's steps (a user's own variant, a mutant).  ``log``: the rows of the
    sweeps already run (a resumed run continues them).  ``checkpoint(state, rows)`` is called every
    ``checkpoint_every`` sweeps and at every clean stop, always between two sweeps.  SIGINT or SIGTERM finishes the
    sweep in progress and stops (``stop_reason = "interrupted"``); a second one aborts at once, leaving a state that is
    no iterate (with no hook listening a block may be half written: the steps reuse the old blocks' storage)."""
    cfg = problem.config
    sweeps = cfg.sweeps if sweeps is None else sweeps
    hooks = list(hooks)
    fuse_mode()  # a bad BCD_FUSE is refused before anything runs
    schedule = schedule_for(cfg.splitting, cfg.N) if schedule is None else _checked_schedule(schedule)
    for h in hooks:  # a hook that cannot handle the schedule refuses it here, before anything runs
        if hasattr(h, "check_schedule"):
            h.check_schedule(problem, schedule)
    for h in hooks:  # a resumed run (``log``) continues a hook that can (on_resume) instead of restarting it
        if log and hasattr(h, "on_resume"):
            h.on_resume(problem, state)
        elif hasattr(h, "on_run_start"):
            h.on_run_start(problem, state)
    rows = list(log) if log else [_record(state, problem, 0.0, 0.0)]
    bar = _progress(sweeps, progress)
    stop, detail = "max_sweeps", ""
    try:
        with _GracefulStop() as signals:
            for _ in range(sweeps):
                _sync(problem.X.device)
                t0 = time.perf_counter()
                hook_time = sweep(state, problem, schedule, hooks)
                _sync(problem.X.device)
                elapsed = time.perf_counter() - t0
                rec = _record(state, problem, elapsed - hook_time, hook_time)
                rows.append(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(_postfix(rec))
                if not math.isfinite(rec[OBJECTIVE]):
                    stop, detail = "non_finite_objective", _non_finite(state, schedule)
                    break
                if any(h.on_sweep_end(state.sweep, state, rec) for h in hooks if hasattr(h, "on_sweep_end")):
                    stop = "stopped_by_hook"
                    break
                if signals.stop_requested():
                    stop, detail = "interrupted", f"stopped by a signal after sweep {state.sweep}"
                    break
                if checkpoint is not None and checkpoint_every and state.sweep % checkpoint_every == 0:
                    checkpoint(state, rows)
    except KeyboardInterrupt:
        from bcd.distributed import current

        if current() is not None:  # the ranks would stop at different sweeps and wait for each other
            raise
        stop = "interrupted"  # mid-sweep: the state is no logged iterate
        for h in hooks:
            if hasattr(h, "on_abort"):
                h.on_abort(state)
    finally:
        problem.pool.clear()  # the recycled blocks of a listened-to run are not kept past it
        if bar is not None:
            bar.close()
    clean = stop in ("max_sweeps", "stopped_by_hook") or (stop == "interrupted" and bool(detail))
    if checkpoint is not None and clean:
        checkpoint(state, rows)  # a clean stop: the state is that of the last logged sweep (an abort's may not be)
    return TrainResult(state, pd.DataFrame(rows), stop, problem, detail)


class _GracefulStop:
    """SIGINT / SIGTERM during a run ask it to stop after the sweep in progress (so the state is always a logged
    sweep's); a second signal aborts at once.  In a sharded run the request is all-reduced at every sweep end, so
    every rank stops after the same sweep.  Only the main thread can install the handlers; elsewhere a no-op."""

    def __enter__(self) -> _GracefulStop:
        self.requested = False
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("bcd: stopping after the sweep in progress (send the signal again to abort at once)", file=sys.stderr)

    def stop_requested(self) -> bool:
        from bcd.distributed import current

        if current() is None:
            return self.requested
        flag = torch.tensor(float(self.requested), dtype=torch.float64, device=current_device())
        return bool(over_samples(flag).item() > 0)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def current_device() -> torch.device:
    """The device of the sharded run's collectives (CUDA under NCCL)."""
    from bcd.distributed import current

    shard = current()
    return torch.device("cuda", torch.cuda.current_device()) if shard is not None and shard.backend == "nccl" \
        else torch.device("cpu")


class RunIncomplete(Exception):  # noqa: N818 (a state of the run, not a caller's error)
    """The run could not be completed (it diverged, or a sharded run lost a rank): exit code 3, files kept."""


def _non_finite(state: BCDState, schedule: Sequence[Step]) -> str:
    """Which block of the last sweep first holds NaN or Inf, in update order (one host sync, after the sweep)."""
    bad = [s for s in schedule if not bool(torch.isfinite(state.get(s.block, s.layer)).all())]
    where = f"{bad[0].name} was the first block updated to NaN/Inf" if bad else "every block is finite but L̄ is not"
    return f"L̄ became non-finite at sweep {state.sweep}: {where}"


def _checked_schedule(schedule: Sequence[Step]) -> tuple[Step, ...]:
    steps = tuple(schedule)
    if not steps or not all(isinstance(s, Step) for s in steps):
        raise ValueError(f"schedule must be a non-empty sequence of bcd.schedule.Step; got {schedule!r}")
    return steps


def _record(state: BCDState, problem: Problem, engine_s: float, hooks_s: float) -> dict[str, Any]:
    k = state.sweep
    every = problem.config.eval_every
    t0 = time.perf_counter()
    rec = evaluate(state, problem, with_accuracy=(k % every == 0 or k == problem.config.sweeps))
    return {SWEEP: k, TIME_ENGINE: engine_s, TIME_HOOKS: hooks_s, TIME_EVAL: time.perf_counter() - t0, **rec}


def _postfix(rec: dict[str, Any]) -> dict[str, str]:
    out = {"L̄": f"{rec[OBJECTIVE]:.6g}"}
    for key in (TRAIN_ACC, TEST_ACC):
        if not math.isnan(rec[key]):
            out[key] = f"{rec[key]:.4f}"
    return out


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="sweep", dynamic_ncols=True)


def train(
    X,
    y,
    config: BCDConfig | None = None,
    *,
    X_test=None,
    y_test=None,
    n_classes: int | None = None,
    init_weights: list | None = None,
    hooks: Iterable[Hook] = (),
    progress: bool = False,
    schedule: Sequence[Step] | None = None,
) -> TrainResult:
    """Train with the configured algorithm (``cfg.splitting``, ``cfg.skip``: Algorithm 1, 2 or 3), or with
    ``schedule``, a variant given as its steps.

    ``X``: (n, d_0) array, **samples as rows**; ``y``: integer labels (n,) or real targets (n, d_N).
    ``init_weights``: optional W̃_1..W̃_N, each (d_i, d_{i-1}+1) with the bias as the last column,
    to start from the same point as another implementation.  Returns a :class:`TrainResult`
    with the final blocks and the per-sweep log.
    """
    config = config or BCDConfig()
    problem = make_problem(X, y, config, X_test=X_test, y_test=y_test, n_classes=n_classes)
    state = initial_state(problem, init_weights)
    return run(problem, state, hooks=hooks, progress=progress, schedule=schedule)
