"""One rank of a sample-sharded run, started by tests/test_distributed.py with torch.multiprocessing (gloo, CPU)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.distributed import AllReduce, Shard
from bcd.engine import run
from bcd.inputs import make_problem
from bcd.problem import initial_state
from bcd.reduction import using
from verification.checks import verify
from verification.recorder import Recorder

N, N_CLASSES = 37, 3
VARIANTS = {
    "alg2": dict(),
    "alg2 every 2nd sweep instrumented": dict(record_every=2),
    "alg2 prox-linear mean λ": dict(vn_update="prox_linear", reduction="mean", lam=0.2, alpha=1.0),
    "alg3 resnet": dict(skip="auto"),
    "alg1 identity": dict(splitting="two", activation="identity", lam=0.1),
    # Algorithm 1's nonconvex blocks by the proximal gradient (every scalar through the reduction seam)
    "alg1 leaky ℓ1": dict(splitting="two", activation="leaky_relu(0.1)", r="l1(0.02)", alpha=1.0),
    "alg1 tanh nonneg s": dict(splitting="two", activation="tanh", s="nonneg", alpha=1.0),
    # the piecewise Newton solver (ReLU, ridge): V columns on their own rank, W̃ rows on gathered operands
    "alg1 relu ridge (Newton)": dict(splitting="two", activation="relu", lam=0.1, alpha=1.0),
}


def config(kw: dict) -> BCDConfig:
    return BCDConfig(**{"hidden": (5, 5), "gamma": 0.9, "alpha": 2.0, "sweeps": 6, "dtype": "float64",
                        "init": "kaiming", **kw})


def data():
    return gaussian_mixture(n=N, d=6, k=N_CLASSES, seed=3, n_test=23)


def rows(rank: int, world: int, n: int = N) -> slice:
    return Shard(rank, world, "gloo", None).rows(n)


def run_variant(kw: dict, X, y, X_test=None, y_test=None):
    """The full preset every sweep; the variants marked ``record_every`` also exercise the cheap (not instrumented)
    sweeps of the recorder.  Test accuracy on the (sharded) test set."""
    kw = dict(kw)
    every = kw.pop("record_every", None)
    cfg = config(kw)
    problem = make_problem(X, y, cfg, X_test=X_test, y_test=y_test, n_classes=N_CLASSES)
    state = initial_state(problem)
    rec = Recorder("full", every)
    res = run(problem, state, hooks=[rec])
    trace = rec.trace()
    return trace, verify(trace, cfg), res.state


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
    sl, st = rows(rank, world), rows(rank, world, len(d.X_test))
    try:
        with using(AllReduce()):
            for name, kw in VARIANTS.items():
                trace, verdicts, state = run_variant(kw, d.X_train[sl], d.y_train[sl], d.X_test[st], d.y_test[st])
                save(Path(out_dir) / f"rank{rank}" / name, trace, verdicts, state)
    finally:
        dist.destroy_process_group()


def inner_problem(n: int = N, settled: slice | None = None) -> dict:
    """One V_1 and one W̃_1 problem of the piecewise Newton solver (bcd.inner), ReLU, float64, with many kink entries:
    V_1 under a 4×(6+1) layer (one problem per column), W̃_1 of 6×(5+1) (one problem per row, coupling every
    sample).  ``settled``: columns whose target S makes V⁻ stationary already (S = V⁻ − Ŵᵀ[(V_2 − relu(z))·1(z>0)],
    z = ŴV⁻ + b, so the V solve starts there at its optimum): a shard holding only those columns would meet the
    rule, or see nothing decrease, at once on its own, while the whole block goes on."""
    g = torch.Generator().manual_seed(11)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    p = dict(S=r(6, n).relu(), Vn=r(4, n), Wn=r(4, 7), V_old=r(6, n), Vt=r(6, n), Vp=r(5, n), W_old=r(6, 6))
    if settled is not None:
        W_hat, b = p["Wn"][:, :-1], p["Wn"][:, -1:]
        V = p["V_old"][:, settled]
        z = W_hat @ V + b
        p["S"][:, settled] = V - W_hat.T @ ((p["Vn"][:, settled] - z.relu()) * (z > 0))
    return p


def solve_inner(p: dict, sl: slice = slice(None)) -> dict:
    """Both solves (a few iterations: the whole-block rule and the cap decide) on the columns ``sl``; their records."""
    from bcd.inner import solve_V, solve_W

    V, iv = solve_V(p["S"][:, sl], p["Vn"][:, sl], p["Wn"], p["V_old"][:, sl], gamma=1.0, alpha=0.5, max_iter=4)
    W, iw = solve_W(p["Vt"][:, sl], p["Vp"][:, sl], p["W_old"], gamma=1.0, alpha=0.5, lam=0.1, max_iter=4)
    return {"V": V.numpy(), "W": W.numpy(), "info_V": vars(iv), "info_W": vars(iw)}


def inner_problems(world: int) -> dict[str, dict]:
    """The problems the sharded solver test runs: generic, and the last rank's columns settled at their optimum."""
    return {"generic": inner_problem(), "settled": inner_problem(settled=rows(world - 1, world))}


def inner_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        for name, problem in inner_problems(world).items():
            with using(AllReduce()):
                out = solve_inner(problem, rows(rank, world))
            np.savez(Path(out_dir) / f"inner-{name}{rank}.npz", V=out["V"], W=out["W"])
            (Path(out_dir) / f"inner-{name}{rank}.json").write_text(
                json.dumps({k: out[k] for k in ("info_V", "info_W")}))
    finally:
        dist.destroy_process_group()
