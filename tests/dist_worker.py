"""One rank of a sample-sharded run, started by tests/test_distributed.py with torch.multiprocessing (gloo, CPU)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.distributed import AllReduce
from bcd.reduction import using
from verification.checks import verify
from verification.pipeline import trace_arrays

N, N_CLASSES = 37, 3
VARIANTS = {
    "alg2": dict(),
    "alg2 prox-linear mean λ": dict(vn_update="prox_linear", reduction="mean", lam=0.2, alpha=1.0),
    "alg3 resnet": dict(skip="auto"),
    "alg1 identity": dict(splitting="two", activation="identity", lam=0.1),
}


def config(kw: dict) -> BCDConfig:
    return BCDConfig(**{"hidden": (5, 5), "gamma": 0.9, "alpha": 2.0, "sweeps": 6, "dtype": "float64",
                        "init": "kaiming", **kw})


def data():
    return gaussian_mixture(n=N, d=6, k=N_CLASSES, seed=3)


def rows(rank: int, world: int) -> slice:
    base, extra = divmod(N, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def run_variant(kw: dict, X, y):
    trace, res = trace_arrays(X, y, config(kw), preset="full", n_classes=N_CLASSES)
    return trace, verify(trace, config(kw)), res.state


def save(out: Path, trace, verdicts, state) -> None:
    out.mkdir(parents=True, exist_ok=True)
    trace.save(out)
    arrays = {f"{b}{i}": t.numpy() for b, i, t in state.blocks()}
    np.savez(out / "state.npz", **arrays)
    (out / "verdicts.txt").write_text("\n".join(f"{v.claim} {v.status} {v.measured!r}" for v in verdicts))


def rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    d = data()
    sl = rows(rank, world)
    try:
        with using(AllReduce()):
            for name, kw in VARIANTS.items():
                trace, verdicts, state = run_variant(kw, d.X_train[sl], d.y_train[sl])
                save(Path(out_dir) / f"rank{rank}" / name, trace, verdicts, state)
    finally:
        dist.destroy_process_group()
