"""Run a (possibly user-defined) BCD variant through the engine's own loop with a :class:`Recorder`
and return its trace — what the pytest plugin's fixtures and the mutant tests use.

A variant is a schedule of :class:`bcd.schedule.Step` (same loop, different update functions).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence

from bcd import engine
from bcd.config import BCDConfig
from bcd.engine import TrainResult
from bcd.problem import initial_state, make_problem
from bcd.schedule import Step
from verification.recorder import Recorder
from verification.trace import Trace


@contextlib.contextmanager
def _engine_schedule(schedule: Sequence[Step] | None) -> Iterator[dict]:
    """Keyword arguments that make ``engine.run`` use ``schedule``.

    ``engine.run`` takes its schedule from ``schedule_for(config.splitting, N)``; while it has no
    ``schedule=`` argument, the module-level ``schedule_for`` is swapped for the duration of the run."""
    if schedule is None:
        yield {}
        return
    steps = tuple(schedule)
    if not steps or not all(isinstance(s, Step) for s in steps):
        raise ValueError(f"schedule must be a non-empty sequence of bcd.schedule.Step; got {schedule!r}")
    if "schedule" in inspect.signature(engine.run).parameters:
        yield {"schedule": steps}
        return
    original = engine.schedule_for
    engine.schedule_for = lambda splitting, N: steps
    try:
        yield {}
    finally:
        engine.schedule_for = original


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
    with _engine_schedule(schedule) as kwargs:
        result = engine.run(problem, state, hooks=[recorder], **kwargs)
    trace = recorder.trace()
    trace.meta["stop_reason"] = result.stop_reason
    return trace, result
