"""Config in, run directory out: load data, train, write every artefact."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bcd import checkpoint, distributed
from bcd.config import RunConfig
from bcd.data import load_dataset
from bcd.distributed import collectively
from bcd.engine import TrainResult, run
from bcd.inputs import problem_inputs
from bcd.objective import OBJECTIVE
from bcd.problem import Problem, initial_state
from bcd.rundir import (
    CONFIG,
    ENVIRONMENT,
    SUMMARY,
    SWEEPS,
    WEIGHTS,
    environment,
    lock_run_dir,
    prepare_run_dir,
    save_weights,
    write_json,
    write_table,
    write_text,
)


def train_from_config(
    cfg: RunConfig,
    *,
    hooks: Iterable = (),
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int = checkpoint.EVERY,
) -> tuple[TrainResult, Path]:
    """Train as ``cfg`` says and write the run directory ``cfg.out``.

    Everything that can be wrong with the input (config values, data shapes, labels, an existing
    run in ``cfg.out``) is checked before the first file is written.  In a sharded run
    (:mod:`bcd.distributed`) each rank trains on its block of samples, rank 0 alone writes, and an error on
    any rank stops every rank with the same message.

    A checkpoint is written every ``checkpoint_every`` sweeps and at every clean stop (:mod:`bcd.checkpoint`);
    ``resume`` continues the run in ``cfg.out`` from its checkpoint (one process; the hooks, if any, are the
    verification recorder restored from the same checkpoint)."""
    ds = load_dataset(cfg.data)
    shard = distributed.join(cfg.bcd.device)
    data = (ds.X_train, ds.y_train, ds.X_test, ds.y_test)
    n_classes = ds.n_classes
    if shard is not None:
        shard.check_same("configurations", cfg.to_dict())
        n_classes = collectively(shard, _class_count, ds)  # from every label, so that every rank has the same d_N
        n, n_test = len(ds.X_train), None if ds.X_test is None else len(ds.X_test)
        data = collectively(shard, lambda: (shard.take(ds.X_train), shard.take(ds.y_train, n),
                                            None if n_test is None else shard.take(ds.X_test),
                                            None if n_test is None else shard.take(ds.y_test, n_test)))
    # validation has no collective: every rank agrees on it before the problem's first sum over samples
    fields = collectively(shard, problem_inputs, data[0], data[1], cfg.bcd, X_test=data[2], y_test=data[3],
                          n_classes=n_classes)
    problem = Problem(**fields)
    if cfg.bcd.skip == "auto" and not any(problem.tau):  # Algorithm 3 with no skip is Algorithm 2: a no-op flag
        raise ValueError(f"skip='auto' adds a skip connection to each layer with d_i = d_(i-1), but the widths "
                         f"{'-'.join(map(str, problem.widths))} have none; give two equal consecutive widths (e.g. "
                         "--hidden 64,64) or leave out skip")
    writer = shard is None or shard.writer
    out = Path(cfg.out)
    log = None
    hooks = list(hooks)
    carried = [h for h in hooks if hasattr(h, "state_dict")]  # the recorder: its carried state is checkpointed
    checkpointable = len(carried) == len(hooks) <= 1
    if resume:
        if not checkpointable or any(not hasattr(h, "on_resume") for h in hooks):
            raise ValueError("this run's hooks cannot be resumed (only the verification recorder can)")
        if writer:
            collectively(shard, lock_run_dir, out)
        else:
            collectively(shard, lambda: None)  # rank 0 locks the directory: wait for its verdict
        state, log = collectively(shard, checkpoint.load, out, problem, shard)
        if checkpoint.recorded(out) != bool(carried):
            raise ValueError(f"{str(out)!r} was checkpointed by " + ("`bcd verify` or `bcd record`: resume it with "
                             "that command" if not carried else "`bcd train`: resume it with `bcd train --resume`"))
    else:
        state = initial_state(problem)
        if writer:
            out = collectively(shard, _start_run_dir, cfg, overwrite)
        else:
            collectively(shard, lambda: None)  # rank 0 prepares the directory: wait for its verdict
    save = (lambda st, rows: checkpoint.save(out, st, rows, carried[0] if carried else None, shard)) \
        if checkpointable else None
    first_sweep = state.sweep
    if resume and writer and first_sweep >= cfg.bcd.sweeps:
        print(f"bcd: {str(out)!r} is already at its last sweep ({first_sweep} of {cfg.bcd.sweeps}): nothing left to "
              "train; its files are written again from the checkpoint", file=sys.stderr)
    t0 = time.perf_counter()
    result = run(problem, state, sweeps=max(cfg.bcd.sweeps - state.sweep, 0), hooks=hooks,
                 progress=progress and writer, log=log, checkpoint=save, checkpoint_every=checkpoint_every)
    wall = time.perf_counter() - t0
    env = environment(cfg.bcd.device)
    env.update(n_train=problem.n_total, n_test=0 if ds.X_test is None else len(ds.X_test),
               stop_reason=result.stop_reason,
               **run_segments(out if resume and writer else None, env, wall, first_sweep,
                              int(result.log["sweep"].iloc[-1])))
    if shard is not None:
        engine_s = float(result.log["time_engine_s"].sum())
        ranks = distributed.rank_record(shard, problem.n, wall, engine_s, int(result.log["sweep"].iloc[-1]))
        env["distributed"] = {"world_size": shard.world, "backend": shard.backend, "ranks": ranks}

    aborted = result.stop_reason == "interrupted" and not result.stop_detail  # stopped mid-sweep

    def write() -> None:
        if writer:
            write_table(out / SWEEPS, result.log)
            if not aborted:  # a mid-sweep state is no iterate of the log: keep the checkpoint's instead
                save_weights(out / WEIGHTS, result.weights)
            write_json(out / ENVIRONMENT, env)
            write_text(out / SUMMARY, summary_line(cfg, result, env["wall_time_s"], env["n_train"]) + "\n")

    collectively(shard, write)  # a failed write on rank 0 stops every rank (they would wait in the next collective)
    return result, out


SEGMENT_KEYS = ("torch_threads", "git_commit", "cpu_model", "device_name")


def run_segments(resumed: Path | None, env: dict, wall: float, first: int, last: int) -> dict:
    """``wall_time_s`` and ``segments`` of the environment record: one segment per process that ran sweeps
    first+1..last (its wall time, threads, commit, CPU); a resumed run keeps the earlier segments of its
    ``environment.json``, so that the wall time is the whole run's (a resume that ran no sweep adds none).  Sweeps
    run by a process killed before it wrote its environment have no segment: ``wall_time_note`` says so.  A resume
    on another thread count is warned about (bit-identity with an uninterrupted run needs the same count)."""
    earlier: list[dict] = []
    if resumed is not None:
        try:
            old = json.loads((resumed / ENVIRONMENT).read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            segs = old.get("segments")
            if isinstance(segs, list) and all(isinstance(x, dict) for x in segs):
                earlier = segs
            elif isinstance(old.get("wall_time_s"), int | float):  # written before segments were recorded
                earlier = [{"first_sweep": 0, "last_sweep": None, "wall_time_s": old["wall_time_s"],
                            **{k: old.get(k) for k in SEGMENT_KEYS}}]
    ran = [] if resumed is not None and last == first else [  # a resume with no sweep left adds no segment
        {"first_sweep": first, "last_sweep": last, "wall_time_s": wall, **{k: env.get(k) for k in SEGMENT_KEYS}}]
    segments = [*earlier, *ran]
    out: dict = {"wall_time_s": sum(float(x.get("wall_time_s") or 0.0) for x in segments), "segments": segments}
    known = first if any(x.get("last_sweep") is None for x in earlier) else \
        max((x["last_sweep"] for x in earlier), default=0)
    if first > known:
        out["wall_time_note"] = (f"sweeps 1–{first} ran in a process killed before it wrote its environment: "
                                 "their wall time is not counted")
    threads = {x.get("torch_threads") for x in earlier} - {None, env.get("torch_threads")}
    if threads:
        print(f"bcd: resumed with {env.get('torch_threads')} torch thread(s); earlier sweeps ran with "
              f"{', '.join(map(str, sorted(threads)))}: the result may differ in the last bits from an uninterrupted "
              "run", file=sys.stderr)
    return out


def _class_count(ds) -> int | None:
    """The number of classes of integer labels, from the whole training set (None for real targets)."""
    if ds.n_classes is not None:
        return ds.n_classes
    y = np.asarray(ds.y_train)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.size == 0:
        return None
    return int(y.max()) + 1


def _start_run_dir(cfg: RunConfig, overwrite: bool) -> Path:
    out = prepare_run_dir(cfg.out, overwrite)
    write_json(out / CONFIG, cfg.to_dict())
    return out


def summary_line(cfg: RunConfig, result: TrainResult, wall: float, n_train: int) -> str:
    last = result.log.iloc[-1]
    widths = "-".join(str(d) for d in result.problem.widths)
    acc = "".join(
        f" {k}={last[k]:.4f}" for k in ("train_acc", "test_acc") if k in last and last[k] == last[k]
    )
    return (
        f"{cfg.data.dataset} n={n_train} net={widths} gamma={cfg.bcd.gamma:g} alpha={cfg.bcd.alpha:g} "
        f"sweeps={int(last['sweep'])} objective={last[OBJECTIVE]:.6g}{acc} stop={result.stop_reason} wall={wall:.1f}s"
    )
