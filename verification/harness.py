"""Run a (possibly user-defined) BCD variant through the engine's own loop with a :class:`Recorder`
and return its trace — what the pytest plugin's fixtures and the mutant tests use.

A variant is a schedule of :class:`bcd.schedule.Step` (same loop, different update functions).
"""

from __future__ import annotations

from collections.abc import Sequence

from bcd import engine
from bcd.config import BCDConfig
from bcd.engine import TrainResult
from bcd.problem import initial_state, make_problem
from bcd.schedule import Step
from verification.recorder import Recorder
from verification.trace import Trace


def run_traced(
    X,
    y,
    config: BCDConfig,
    *,
    schedule: Sequence[Step] | None = None,
    preset: str = "full",
    record_every=None,
    init_weights: list | None = None,
    n_classes: int | None = None,
) -> tuple[Trace, TrainResult]:
    """Train ``config`` on (X, y) (samples as rows) with ``schedule`` (default: the config's own
    variant) under ``Recorder(preset, record_every)`` (``record_every``: the recorder's schedule — None
    for every sweep, an integer k, or a ``verification.recorder.Schedule``); return the trace and the
    engine's result."""
    problem = make_problem(X, y, config, n_classes=n_classes)
    state = initial_state(problem, init_weights)
    recorder = Recorder(preset, record_every)
    result = engine.run(problem, state, hooks=[recorder], schedule=schedule)
    trace = recorder.trace()
    trace.meta["stop_reason"] = result.stop_reason
    return trace, result
