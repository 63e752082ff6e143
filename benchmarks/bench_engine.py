"""Engine speed and memory against the hardware's floor, measured interleaved in one run.

    .venv/bin/python benchmarks/bench_engine.py                 # CPU float32, n = 10 000, 1 and 2 threads
    .venv/bin/python benchmarks/bench_engine.py --authors       # also the authors' loop (peer script)
    .venv/bin/python benchmarks/bench_engine.py --device cuda --n 60000 --tf32 off,on --dtype float32,float64
    .venv/bin/python benchmarks/bench_engine.py --json out.json                  # also write the numbers
    .venv/bin/python benchmarks/bench_engine.py --threads 1 --fuse off,on        # the compiled U-prox, interleaved

For each network (d_0 = 784 MNIST inputs, hidden ``LxW``, 10 outputs), dtype, TF32 setting and thread count it
times, **interleaved round by round** (so that load drift on a shared machine hits every figure alike) and reports
as medians over the rounds:

* ``sweep``: one bare sweep of Algorithm 2 (no objective, no hooks), the engine as a user runs it;
* ``gemm``: the machine's square-GEMM rate in the same round (an s×s by s×s product, s = ``--gemm-size``);
* ``flops``: the **analytic** FLOP count of the sweep as MATH.md §3 writes it — a fixed yardstick: every product a
  full GEMM (2mkn; the Gram ṼṼᵀ too, and X̃X̃ᵀ every sweep), every solve a Cholesky (p³/3) plus two triangular
  solves (2p² per right-hand side), the V_i step in its normal-equations form; elementwise work is free.  An engine
  that does fewer FLOPs than MATH.md writes (a cached X̃X̃ᵀ, a Woodbury V step) therefore *improves* its ratio;
* ``floor = flops / gemm rate`` and ``ratio = sweep / floor`` (target ≤ 1.15 on CPU float32);
* ``replay``: the shape-aware floor — the dense products the sweep really executed (recorded from one sweep under a
  ``TorchFunctionMode``: ``@``, ``mm``, ``matmul``, ``addmm``, ``cholesky_ex``, ``solve_triangular``) replayed on
  fresh tensors of the same shapes; ``sweep / replay`` says how much time goes outside those products;
* ``authors`` (with ``--authors``): one sweep of the authors' loop at the same shapes (``benchmarks/authors_loop.py``,
  a peer written from their published algorithm) and ``speedup = authors / sweep`` (target ≥ 2);
* ``BCD_FUSE`` (with ``--fuse off,on``): a sweep under each mode of :mod:`bcd.fusion` (the U-prox eager on cache-sized
  chunks, or compiled into one kernel), each mode's compile done before the rounds, and the speedup over the first;
* ``objective``: the L̄ evaluation that ``bcd train`` runs after every sweep (:func:`bcd.objective.objective_terms`),
  and inside it the N layer products P_i = W̃_iṼ_{i-1} that the next sweep's U steps form again (the same
  iterates: neither W̃_i nor V_{i-1} changes in between).  ``share_speedup`` = (sweep + objective) /
  (sweep + objective − min(products, objective)) bounds what keeping those products for the next sweep would save
  per logged sweep (the products are timed on fresh buffers, so they can exceed the objective), and
  ``share_memory`` the extra memory that costs (the N products, the size of the U blocks) over the state;
* ``memory``: peak resident memory during a sweep above the resident memory before it (CPU: ``VmHWM`` after a
  reset through ``/proc/self/clear_refs``, with the freed heap handed back by ``malloc_trim`` first; CUDA:
  ``max_memory_allocated``), plus the state W, V, U, X, over the state's bytes (target ≤ 1.3).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from bcd import BCDConfig, initial_state
from bcd.blocks import affine
from bcd.data import load_mnist
from bcd.engine import sweep
from bcd.fusion import FUSE_MODES, fuse_mode
from bcd.inputs import make_problem
from bcd.objective import objective_terms
from bcd.schedule import schedule_for

MATMULS = {torch.matmul, torch.mm, torch.Tensor.__matmul__, torch.Tensor.mm, torch.Tensor.matmul,
           torch._C.TensorBase.matmul, torch._C.TensorBase.__matmul__, torch._C.TensorBase.mm}
ADDMMS = {torch.addmm, torch.Tensor.addmm, torch.Tensor.addmm_, torch._C.TensorBase.addmm,
          torch._C.TensorBase.addmm_}
CHOLESKY = {torch.linalg.cholesky_ex, torch.linalg.cholesky}


# ---------------------------------------------------------------------------------------------- the yardstick


def sweep_flops(widths: list[int], n: int) -> float:
    """FLOPs of one Algorithm 2 sweep as MATH.md §3 writes it (squared loss, ReLU, ridge r_i, no s_i).

    Layer i (p = d_{i-1} + 1 inputs with the ones row, q = d_i outputs):
      U_i: P = W̃_iṼ_{i-1} (2qpn);  W̃_i: ṼṼᵀ (2p²n), U_iṼᵀ (2qpn), Cholesky of (α+λ)I + γṼṼᵀ (p³/3), two triangular
      solves with q right-hand sides (2qp²);
      V_i (i < N, r = d_{i+1}): ŴᵀŴ (2q²r), ŴᵀU_{i+1} (2qrn), Cholesky of I + ŴᵀŴ (q³/3), two triangular solves with
      n right-hand sides (2q²n).
    V_N, U_N's sum and the U_i prox are elementwise (free on this yardstick)."""
    N = len(widths) - 1
    total = 0.0
    for i in range(1, N + 1):
        p, q = widths[i - 1] + 1, widths[i]
        total += 2 * q * p * n + 2 * p * p * n + 2 * q * p * n + p**3 / 3 + 2 * q * p * p
        if i < N:
            r = widths[i + 1]
            total += 2 * q * q * r + 2 * q * r * n + q**3 / 3 + 2 * q * q * n
    return total


# ---------------------------------------------------------------------------------------------- measurement


class ProductRecorder(TorchFunctionMode):
    """Logs (kind, shape) of every dense product, Cholesky factorisation and triangular solve run under it."""

    def __init__(self):
        super().__init__()
        self.products: list[tuple[str, tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in MATMULS or func in ADDMMS:
            a, b = (args[1], args[2]) if func in ADDMMS else (args[0], args[1])
            if a.dim() == 2 and b.dim() == 2:
                self.products.append(("matmul", (a.shape[0], a.shape[1], b.shape[1])))
        elif func in CHOLESKY:
            self.products.append(("cholesky", (args[0].shape[-1],)))
        elif func is torch.linalg.solve_triangular:
            A, B = args[0], args[1]
            self.products.append(("trsm", (A.shape[0], B.numel() // A.shape[0])))
        return func(*args, **kwargs)


def sweep_products(state, problem, schedule) -> list[tuple[str, tuple[int, ...]]]:
    """The dense products of one sweep of ``state`` (its second: a first, unrecorded, warms up the allocator, the BLAS
    threads and the problem's caches such as X̃X̃ᵀ), as :class:`ProductRecorder` logs them."""
    sweep(state, problem, schedule)
    rec = ProductRecorder()
    with rec:
        sweep(state, problem, schedule)
    return rec.products


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def product_flops(kind: str, shape: tuple[int, ...]) -> float:
    """FLOPs of one product recorded by :class:`ProductRecorder`: 2mkn for an m×k by k×n product, p³/3 for a
    Cholesky factorisation of order p, k²m for a triangular solve of order k with m right-hand sides."""
    if kind == "matmul":
        m, k, n = shape
        return 2 * m * k * n
    if kind == "cholesky":
        return shape[0] ** 3 / 3
    k, m = shape
    return k * k * m


def _replay(products, dtype, device):
    """A callable replaying the recorded products on fresh tensors of the same shapes (and its FLOPs)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    calls, flops = [], 0.0
    for kind, shape in products:
        if kind == "matmul":
            m, k, n = shape
            a = torch.randn(m, k, generator=gen, dtype=dtype).to(device)
            b = torch.randn(k, n, generator=gen, dtype=dtype).to(device)
            calls.append(lambda a=a, b=b: torch.matmul(a, b))
        elif kind == "cholesky":
            (p,) = shape
            A = torch.randn(p, p, generator=gen, dtype=dtype)
            M = (A @ A.T / p + torch.eye(p, dtype=dtype)).to(device)
            calls.append(lambda M=M: torch.linalg.cholesky_ex(M))
        else:
            k, m = shape
            L = (torch.randn(k, k, generator=gen, dtype=dtype).tril_() + k * torch.eye(k, dtype=dtype)).to(device)
            B = torch.randn(k, m, generator=gen, dtype=dtype).to(device)
            calls.append(lambda L=L, B=B: torch.linalg.solve_triangular(L, B.T, upper=False, left=False, out=B.T))
        flops += product_flops(kind, shape)

    def replay():
        for c in calls:
            c()

    return replay, flops


def _gemm(size: int, dtype, device):
    gen = torch.Generator(device="cpu").manual_seed(1)
    a = torch.randn(size, size, generator=gen, dtype=dtype).to(device)
    b = torch.randn(size, size, generator=gen, dtype=dtype).to(device)
    c = torch.empty(size, size, dtype=dtype, device=device)
    return lambda: torch.matmul(a, b, out=c)


def state_bytes(state) -> int:
    tensors = [t for _, _, t in state.blocks()] + [state.V[0]]
    return sum(t.numel() * t.element_size() for t in tensors)


def _proc_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_sweep_bytes(run_sweep, device: torch.device) -> int:
    """Peak memory during one sweep above the memory held before it (see the module docstring)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_sweep()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back first, so that a reused buffer counts as used
    base = _proc_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark VmHWM to the current RSS
    run_sweep()
    return max(0, _proc_kb("VmHWM") - base) * 1024


def bench_network(X, y, depth: int, width: int, dtype: str, device: str, rounds: int, gemm_size: int,
                  authors: bool, fuse: tuple[str, ...] = ()) -> dict:
    cfg = BCDConfig(hidden=(width,) * depth, dtype=dtype, device=device, seed=0)
    problem = make_problem(X, y, cfg, n_classes=10)
    state = initial_state(problem)
    schedule = schedule_for("three", cfg.N)
    dev = problem.X.device

    def run_sweep():
        sweep(state, problem, schedule)

    def fused_sweep(mode):
        def run():
            os.environ["BCD_FUSE"] = mode
            try:
                run_sweep()
            finally:
                os.environ["BCD_FUSE"] = default_mode
        return run

    default_mode = fuse_mode()
    for mode in fuse:  # untimed: each mode's compile, once per process
        fused_sweep(mode)()

    products = sweep_products(state, problem, schedule)
    replay, replay_flops = _replay(products, problem.X.dtype, dev)
    gemm = _gemm(gemm_size, problem.X.dtype, dev)
    gemm_reps = max(1, int(2e9 // (2 * gemm_size**3)) if dev.type == "cpu" else 20)
    peer = None
    if authors:
        from authors_loop import make_authors_sweep

        onehot = torch.zeros(10, problem.n, dtype=problem.X.dtype, device=dev)
        onehot[problem.labels.to(dev), torch.arange(problem.n, device=dev)] = 1.0
        peer, _ = make_authors_sweep(problem.X, onehot, list(problem.widths), gamma=cfg.gamma, alpha=cfg.alpha)
        peer()  # warm-up
    replay()
    gemm()
    def layer_products():
        return [affine(state.W[i], state.V[i - 1]) for i in range(1, cfg.N + 1)]

    times: dict[str, list[float]] = {"sweep": [], "gemm": [], "replay": [], "authors": [], "objective": [],
                                     "products": []}
    for _ in range(rounds):  # interleaved: one of each per round
        times["sweep"].append(_timed(run_sweep, dev))
        times["objective"].append(_timed(lambda: objective_terms(state, problem), dev))
        times["products"].append(_timed(layer_products, dev))
        times["gemm"].append(_timed(lambda: [gemm() for _ in range(gemm_reps)], dev) / gemm_reps)
        times["replay"].append(_timed(replay, dev))
        if peer is not None:
            times["authors"].append(_timed(peer, dev))
        for mode in fuse:
            times.setdefault(f"fuse_{mode}", []).append(_timed(fused_sweep(mode), dev))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    flops = sweep_flops(list(problem.widths), problem.n)
    rate = 2 * gemm_size**3 / med["gemm"]
    peak = peak_sweep_bytes(run_sweep, dev)
    sb = state_bytes(state)
    out = {
        "network": f"{depth}x{width}", "n": problem.n, "dtype": dtype, "threads": torch.get_num_threads(),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if dev.type == "cuda" else None,
        "rounds": rounds, "sweep_s": med["sweep"], "sweep_all_s": times["sweep"],
        "gflop": flops / 1e9, "gemm_gflops": rate / 1e9, "floor_s": flops / rate,
        "ratio": med["sweep"] / (flops / rate),
        "replay_s": med["replay"], "replay_gflop": replay_flops / 1e9, "replay_ratio": med["sweep"] / med["replay"],
        "products": len(products),
        "objective_s": med["objective"], "objective_products_s": med["products"],
        "share_speedup": (med["sweep"] + med["objective"])
        / (med["sweep"] + med["objective"] - min(med["products"], med["objective"])),
        "share_memory": sum(u.numel() * u.element_size() for u in state.U[1:]) / sb,
        "state_mb": sb / 2**20, "peak_extra_mb": peak / 2**20, "memory_ratio": (sb + peak) / sb,
    }
    if "authors" in med:
        out |= {"authors_s": med["authors"], "speedup_vs_authors": med["authors"] / med["sweep"]}
    if fuse:
        out["bcd_fuse"] = default_mode
        out["fuse_sweep_s"] = {mode: med[f"fuse_{mode}"] for mode in fuse}
        out["fuse_all_s"] = {mode: times[f"fuse_{mode}"] for mode in fuse}
        out["fuse_speedup"] = {mode: med[f"fuse_{fuse[0]}"] / med[f"fuse_{mode}"] for mode in fuse}
    return out


def _line(r: dict) -> str:
    s = (f"{r['network']:>7} n={r['n']} {r['dtype']} threads={r['threads']}"
         f"{'' if r['tf32'] is None else ' tf32=' + ('on' if r['tf32'] else 'off')}: "
         f"sweep {r['sweep_s'] * 1e3:8.1f} ms | {r['gflop']:.1f} GFLOP at {r['gemm_gflops']:.1f} GFLOP/s = floor "
         f"{r['floor_s'] * 1e3:.1f} ms | ratio {r['ratio']:.2f} (target <= 1.15) | replay {r['replay_s'] * 1e3:.1f} ms "
         f"(x{r['replay_ratio']:.2f}) | memory {r['memory_ratio']:.2f} x state {r['state_mb']:.0f} MB (target <= 1.3)"
         f" | objective {r['objective_s'] * 1e3:.1f} ms, its layer products {r['objective_products_s'] * 1e3:.1f} ms:"
         f" sharing them at most x{r['share_speedup']:.2f} per logged sweep for +{r['share_memory']:.2f} x state")
    if "authors_s" in r:
        s += f" | authors {r['authors_s'] * 1e3:.1f} ms = x{r['speedup_vs_authors']:.2f} ours (target >= 2)"
    if "fuse_sweep_s" in r:
        first = next(iter(r["fuse_sweep_s"]))
        s += " | BCD_FUSE " + ", ".join(
            f"{m} {t * 1e3:.1f} ms" + ("" if m == first else f" (x{r['fuse_speedup'][m]:.2f})")
            for m, t in r["fuse_sweep_s"].items())
    return s


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="training samples (leading MNIST images)")
    p.add_argument("--nets", default="10x600,3x1500", help="comma-separated DEPTHxWIDTH hidden layouts")
    p.add_argument("--dtype", default="float32", help="comma-separated: float32, float64")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", default="1,2", help="CPU intra-op threads to measure, comma-separated")
    p.add_argument("--tf32", default="off", help="CUDA only: comma-separated off,on")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--gemm-size", type=int, default=0, help="s of the square GEMM (default 2048 CPU, 8192 CUDA)")
    p.add_argument("--authors", action="store_true", help="also time the authors' loop (benchmarks/authors_loop.py)")
    p.add_argument("--fuse", default="", help="comma-separated BCD_FUSE modes (auto, on, off) to time a sweep under, "
                   "interleaved with the rest; speedups are against the first (e.g. off,on)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    fuse = tuple(m.strip() for m in args.fuse.split(",") if m.strip())
    bad_modes = [m for m in fuse if m not in FUSE_MODES]
    if bad_modes:
        p.error(f"--fuse {','.join(bad_modes)} is not allowed; allowed: {', '.join(FUSE_MODES)}")
    dtypes = args.dtype.split(",")
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad:
        p.error(f"--dtype {','.join(bad)} is not allowed; allowed: float32, float64")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    gemm_size = args.gemm_size or (2048 if args.device == "cpu" else 8192)
    threads = [int(t) for t in args.threads.split(",")] if args.device == "cpu" else [torch.get_num_threads()]
    tf32s = [s == "on" for s in args.tf32.split(",")] if args.device == "cuda" else [False]
    ds = load_mnist()
    X, y = ds.X_train[: args.n], ds.y_train[: args.n]
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    print(f"device: {args.device} ({device_name}), torch {torch.__version__}", flush=True)
    rows = []
    for spec in args.nets.split(","):
        depth, width = (int(v) for v in spec.lower().split("x"))
        for dtype in dtypes:
            for tf32 in tf32s:
                for t in threads:
                    torch.set_num_threads(t)
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    rows.append(bench_network(X, y, depth, width, dtype, args.device, args.rounds, gemm_size,
                                              args.authors, fuse))
                    print(_line(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "device_name": device_name, "torch": torch.__version__,
                       "gemm_size": gemm_size, "results": rows}, fh, indent=2)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # authors_loop.py beside this script
    main()
