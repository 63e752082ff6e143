"""Engine speed and memory against the matmul floor, measured in one run.

    .venv/bin/python benchmarks/bench_engine.py                       # CPU, float32, n = 10 000
    .venv/bin/python benchmarks/bench_engine.py --device cuda --n 60000 --nets 10x600
    .venv/bin/python benchmarks/bench_engine.py --json out.json       # also write the numbers

For each network (d_0 = 784 MNIST inputs, hidden ``LxW``, 10 outputs) it reports:

* ``sweep``: median wall time of one bare sweep of Algorithm 2 (no objective, no hooks);
* ``floor``: the time the same machine needs, in the same run, for the sweep's dense products
  alone.  The products are *recorded* from one real sweep (a ``TorchFunctionMode`` logs the shape
  of every matmul/addmm and every triangular solve of the Cholesky solves), then replayed on
  fresh tensors of those shapes with plain ``torch.matmul`` and ``torch.linalg.solve_triangular``.
  ``ratio = sweep / floor`` (target ≤ 1.3 on CPU float32);
* ``memory``: peak bytes alive during a sweep (allocator events of the torch profiler on CPU,
  ``torch.cuda.max_memory_allocated`` on CUDA) over the bytes of the state W, V, U, X
  (target ≤ 1.5).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from bcd import BCDConfig, initial_state
from bcd.data import load_mnist
from bcd.engine import sweep
from bcd.inputs import make_problem
from bcd.schedule import schedule_for

MATMULS = {torch.matmul, torch.mm, torch.Tensor.__matmul__, torch.Tensor.mm}
ADDMMS = {torch.addmm, torch.Tensor.addmm, torch.Tensor.addmm_}


class ProductRecorder(TorchFunctionMode):
    """Logs (kind, shapes) of every dense product and Cholesky solve executed under it."""

    def __init__(self):
        super().__init__()
        self.products: list[tuple[str, tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in MATMULS or func in ADDMMS:
            a, b = (args[1], args[2]) if func in ADDMMS else (args[0], args[1])
            self.products.append(("matmul", (a.shape[0], a.shape[1], b.shape[1])))
        elif func is torch.linalg.solve_triangular:
            A, B = args[0], args[1]
            self.products.append(("trsm", (A.shape[0], B.numel() // A.shape[0])))
        return func(*args, **kwargs)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_median(fn, device, repeats):
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def floor_time(products, dtype, device, repeats):
    """Replay the recorded products on fresh tensors: torch.matmul for products,
    torch.linalg.solve_triangular (in place, row-major right-hand side) for triangular solves."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    calls = []
    for kind, shape in products:
        if kind == "matmul":
            m, k, n = shape
            a = torch.randn(m, k, generator=gen, dtype=dtype).to(device)
            b = torch.randn(k, n, generator=gen, dtype=dtype).to(device)
            calls.append(lambda a=a, b=b: torch.matmul(a, b))
        else:
            k, m = shape
            L = (torch.randn(k, k, generator=gen, dtype=dtype).tril_() + k * torch.eye(k, dtype=dtype)).to(device)
            B = torch.randn(k, m, generator=gen, dtype=dtype).to(device)
            calls.append(lambda L=L, B=B: torch.linalg.solve_triangular(L, B.T, upper=False, left=False, out=B.T))

    def replay():
        for c in calls:
            c()

    replay()  # warm-up
    return time_median(replay, device, repeats)


def state_bytes(state):
    tensors = [t for _, _, t in state.blocks()] + [state.V[0]]
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_sweep_bytes(state, problem, schedule):
    """Peak bytes alive during one sweep above those alive before it (allocator events)."""
    dev = problem.X.device
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        sweep(state, problem, schedule)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    # Two sweeps are profiled and only the second is measured: the blocks it frees were allocated
    # by the first, so their deallocations are visible to the profiler.
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        sweep(state, problem, schedule)
        mark = time.time_ns()
        sweep(state, problem, schedule)
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    times = np.array([t for t, _ in events])
    live = np.cumsum([b for _, b in events])
    second = times >= mark
    if not second.any():
        return 0
    before = live[~second][-1] if (~second).any() else 0
    return max(0, int(live[second].max() - before))


def bench_network(X, y, depth, width, dtype, device, repeats):
    cfg = BCDConfig(hidden=(width,) * depth, dtype=dtype, device=device, seed=0)
    problem = make_problem(X, y, cfg, n_classes=10)
    state = initial_state(problem)
    schedule = schedule_for("three", cfg.N)
    sweep(state, problem, schedule)  # warm-up (allocator, BLAS threads)
    rec = ProductRecorder()
    with rec:
        sweep(state, problem, schedule)
    t_sweep = time_median(lambda: sweep(state, problem, schedule), problem.X.device, repeats)
    t_floor = floor_time(rec.products, problem.X.dtype, problem.X.device, repeats)
    peak = peak_sweep_bytes(state, problem, schedule)
    sb = state_bytes(state)
    flops = sum(2 * s[0] * s[1] * s[2] if k == "matmul" else s[0] * s[0] * s[1] for k, s in rec.products)
    return {
        "network": f"{depth}x{width}",
        "n": problem.n,
        "dtype": dtype,
        "sweep_s": t_sweep,
        "floor_s": t_floor,
        "ratio": t_sweep / t_floor,
        "products": len(rec.products),
        "floor_gflop": flops / 1e9,
        "state_mb": sb / 2**20,
        "peak_mb": (sb + peak) / 2**20,
        "memory_ratio": (sb + peak) / sb,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="training samples (leading MNIST images)")
    p.add_argument("--nets", default="10x600,3x1500", help="comma-separated DEPTHxWIDTH hidden layouts")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    ds = load_mnist()
    X, y = ds.X_train[: args.n], ds.y_train[: args.n]
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    print(f"device: {args.device} ({device_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = []
    for spec in args.nets.split(","):
        depth, width = (int(v) for v in spec.lower().split("x"))
        rows.append(bench_network(X, y, depth, width, args.dtype, args.device, args.repeats))
        r = rows[-1]
        print(
            f"{r['network']:>7} n={r['n']} {r['dtype']}: sweep {r['sweep_s'] * 1e3:8.1f} ms | floor "
            f"{r['floor_s'] * 1e3:8.1f} ms ({r['products']} products, {r['floor_gflop']:.1f} GFLOP) | "
            f"ratio {r['ratio']:.2f} (target <= 1.3) | memory {r['peak_mb']:.0f} MB / state {r['state_mb']:.0f} MB"
            f" = {r['memory_ratio']:.2f} (target <= 1.5)",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "device_name": device_name, "torch": torch.__version__,
                       "results": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
