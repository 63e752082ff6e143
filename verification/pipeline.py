"""The one pipeline: train → record → save → verify (the report is drawn from what this writes).

* :func:`trace_arrays` — in memory: arrays in, (trace, engine result) out; what the pytest plugin and the mutant
  tests use.  Any schedule (a user's variant, a mutant) runs through the engine's own loop.
* :func:`record` — a :class:`bcd.config.RunConfig` in, a run directory out (``bcd record``): the run directory of
  ``bcd train`` plus the trace.
* :func:`verify_run` — :func:`record`, then every check, with the verdicts saved beside the trace (``bcd verify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bcd import distributed, engine
from bcd.checkpoint import EVERY as CHECKPOINT_EVERY
from bcd.config import BCDConfig, RunConfig
from bcd.engine import TrainResult
from bcd.inputs import make_problem
from bcd.problem import initial_state
from bcd.rundir import write_json
from bcd.schedule import Step
from verification import schema as S  # noqa: N812
from verification.recorder import Recorder, Schedule
from verification.trace import Trace
from verification.verdict import VERDICTS_FILE, Verdict


def trace_arrays(
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
    """Train ``config`` on (X, y) (samples as rows) with ``schedule`` (default: the config's own variant) under
    ``Recorder(preset, record_every)`` (``record_every``: None for every sweep, an integer k, or a
    :class:`verification.recorder.Schedule`); return the trace and the engine's result."""
    problem = make_problem(X, y, config, n_classes=n_classes)
    state = initial_state(problem, init_weights)
    recorder = Recorder(preset, record_every)
    result = engine.run(problem, state, hooks=[recorder], schedule=schedule)
    trace = recorder.trace()
    trace.meta[S.META_STOP_REASON] = result.stop_reason
    return trace, result


def record(cfg: RunConfig, *, preset: str = "standard", schedule: Schedule | int | None = None,
           progress: bool = False, overwrite: bool = False, resume: bool = False,
           checkpoint_every: int = CHECKPOINT_EVERY) -> tuple[TrainResult, Trace, Path]:
    """Train as ``cfg`` says with a :class:`Recorder` and save the trace in the run directory next to its
    ``config.json``.  Returns (engine result, trace, run directory).  ``resume``: continue the run in ``cfg.out`` from
    its checkpoint, with the recorder as it was then (its preset and schedule, not the arguments)."""
    from bcd.checkpoint import load_recorder
    from bcd.runner import train_from_config

    rank, world = distributed.launched_rank(), distributed.launched_world()
    rec = load_recorder(cfg.out, cfg.bcd.device, rank, world) if resume else Recorder(preset, schedule)
    if rec is None:
        raise ValueError(f"{cfg.out!r} was checkpointed without a recorder (a `bcd train` run): resume it with "
                         "`bcd train --resume`")
    result, out = train_from_config(cfg, hooks=[rec], progress=progress, overwrite=overwrite, resume=resume,
                                    checkpoint_every=checkpoint_every)
    trace = rec.trace()
    trace.meta[S.META_STOP_REASON] = result.stop_reason
    if _writes():  # rank 0 of a sharded run (every rank holds the same trace)
        trace.save(Path(out))
    return result, trace, Path(out)


def _writes() -> bool:
    from bcd.distributed import current

    shard = current()
    return shard is None or shard.writer


def save_verdicts(directory: str | Path, verdicts: list[Verdict]) -> Path:
    """Write ``verdicts.json`` (the list of Verdict.to_dict()) into a run directory."""
    path = Path(directory) / VERDICTS_FILE
    write_json(path, [v.to_dict() for v in verdicts])
    return path


def verify_run(cfg: RunConfig, *, preset: str = "full", schedule: Schedule | int | None = None,
               progress: bool = False, overwrite: bool = False, resume: bool = False,
               checkpoint_every: int = CHECKPOINT_EVERY) -> tuple[TrainResult, Trace, list[Verdict], Path]:
    """:func:`record`, then every check of :func:`verification.checks.verify`; the verdicts are saved."""
    from verification.checks import verify

    result, trace, out = record(cfg, preset=preset, schedule=schedule, progress=progress, overwrite=overwrite,
                                resume=resume, checkpoint_every=checkpoint_every)
    verdicts = verify(trace, cfg.bcd)
    if _writes():
        save_verdicts(out, verdicts)
    return result, trace, verdicts, out
