"""Config in, run directory out: load data, train, write every artefact."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from bcd.config import RunConfig
from bcd.data import load_dataset
from bcd.engine import TrainResult, run
from bcd.inputs import make_problem
from bcd.objective import OBJECTIVE
from bcd.problem import initial_state
from bcd.rundir import (
    CONFIG,
    ENVIRONMENT,
    SUMMARY,
    SWEEPS,
    WEIGHTS,
    environment,
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
) -> tuple[TrainResult, Path]:
    """Train as ``cfg`` says and write the run directory ``cfg.out``.

    Everything that can be wrong with the input (config values, data shapes, labels, an existing
    run in ``cfg.out``) is checked before the first file is written."""
    ds = load_dataset(cfg.data)
    problem = make_problem(ds.X_train, ds.y_train, cfg.bcd, X_test=ds.X_test, y_test=ds.y_test, n_classes=ds.n_classes)
    state = initial_state(problem)
    out = prepare_run_dir(cfg.out, overwrite)
    write_json(out / CONFIG, cfg.to_dict())
    t0 = time.perf_counter()
    result = run(problem, state, hooks=hooks, progress=progress)
    wall = time.perf_counter() - t0
    write_table(out / SWEEPS, result.log)
    save_weights(out / WEIGHTS, result.weights)
    env = environment(cfg.bcd.device)
    env.update(wall_time_s=wall, n_train=problem.n, stop_reason=result.stop_reason)
    write_json(out / ENVIRONMENT, env)
    write_text(out / SUMMARY, summary_line(cfg, result, wall) + "\n")
    return result, out


def summary_line(cfg: RunConfig, result: TrainResult, wall: float) -> str:
    last = result.log.iloc[-1]
    widths = "-".join(str(d) for d in result.problem.widths)
    acc = "".join(
        f" {k}={last[k]:.4f}" for k in ("train_acc", "test_acc") if k in last and last[k] == last[k]
    )
    return (
        f"{cfg.data.dataset} n={result.problem.n} net={widths} gamma={cfg.bcd.gamma:g} alpha={cfg.bcd.alpha:g} "
        f"sweeps={int(last['sweep'])} objective={last[OBJECTIVE]:.6g}{acc} stop={result.stop_reason} wall={wall:.1f}s"
    )
