"""Overhead of the recorder's presets over the bare engine, all measured in ONE process on ONE problem.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_instrumentation.py                 # ~2 min on CPU
    .venv/bin/python benchmarks/bench_instrumentation.py --n 20000 --hidden 1500,1500 --device cuda --json out.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_instrumentation.py --path generic --skip auto   # Algorithm 3
    .venv/bin/python benchmarks/bench_instrumentation.py --n 60000 --presets standard,full --sweeps 3 --repeats 1 \
        --warmup 2 --hidden 600,600,600,600,600,600,600,600,600,600   # 10x600 at MNIST's full n: 1 timed sweep each

The problem is MNIST-shaped (d_0 = 784 Gaussian-mixture inputs, 10 classes, squared loss, ReLU).
Runs are interleaved (bare, cheap, standard, full) × ``--repeats`` from the same initial weights, after
one untimed warm-up.  Per sweep: the bare time is the engine's ``time_engine_s`` (hooks and the
objective evaluation excluded); a preset's time is its own ``time_engine_s`` plus every second the
recorder spent (``time_recorder_s``: all of its hooks, including ``on_sweep_end``).  Sweep 0 (run
start) and the last sweep (which also completes the g^k parts that wait for a next sweep) are left
out; the reported figure is the median over the remaining sweeps and repeats ("× bare": preset median /
bare median; "× own eng": preset median / that run's own engine median, insensitive to load changing
between runs; "× (minima)": fastest preset sweep / fastest bare sweep, the least disturbed by other
processes on a shared machine; "CPU ×": whole-run process time per sweep without the objective
evaluation, preset / bare — what the sweep costs in CPU, not inflated when the CPU is taken away;
it includes the recorder's one-time run start, L̄ and accuracy at Q⁰, so it is pessimistic for few sweeps;
"faults/sw": the process's minor page faults per sweep of the run, a count that load does not disturb).
"FLOP floor": 1 + the FLOPs of the products the preset cannot do without (:func:`preset_flops`) over those the bare
sweep really runs (:func:`executed_sweep_flops`), what the preset would cost if every product ran at the sweep's own
rate and nothing else cost anything; "× floor": "× bare" over it.  ``--floors-only`` prints the floors of a shape
without timing anything (one recorded sweep).
"ok" judges the "× bare" column.  Accuracy is
evaluated by the engine only at the last sweep, so the ``full`` preset pays for its every-sweep
accuracy itself.  Targets (issue 14; issue 3 had 1.25× and 1.6×): standard ≤ 1.2×, full ≤ 1.5× the bare sweep time.

``BCD_FUSE`` (bcd/fusion.py) is read as in any run: under ``auto`` the default shape's passes run eager;
``BCD_FUSE=on`` times them compiled (the compile, once per process, happens in the untimed warm-up).

``--malloc-reuse`` (glibc only) raises malloc's mmap/trim thresholds before anything is allocated, so
that freed n-sized temporaries are reused instead of being returned to the OS and page-faulted in again
on the next allocation (what the CUDA caching allocator does on a GPU).  It applies to the bare engine
and to the recorder alike; on this CPU it changes both absolute times and ratios noticeably.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import platform

try:
    import resource
except ImportError:  # not on Windows
    resource = None
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_engine import product_flops, sweep_products  # this script's folder is on sys.path when run as documented

from bcd.cli import parse_widths
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.engine import run
from bcd.fusion import fuse_mode
from bcd.inputs import make_problem
from bcd.objective import objective_terms
from bcd.problem import initial_state
from bcd.schedule import schedule_for
from verification import schema as S  # noqa: N812
from verification.fast_path import PROBES
from verification.recorder import PRESETS, Recorder

TARGETS = {"standard": 1.2, "full": 1.5}


def executed_sweep_flops(problem) -> float:
    """FLOPs of the dense products one bare sweep of Algorithm 2 really runs (``bench_engine.sweep_products``, counted
    by ``bench_engine.product_flops``): the symmetric Gram, the cached X̃X̃ᵀ and the Woodbury V step count what they
    cost."""
    products = sweep_products(initial_state(problem), problem, schedule_for("three", problem.config.N))
    return sum(product_flops(kind, shape) for kind, shape in products)


def preset_flops(widths: list[int], n: int, preset: str, probes: int = PROBES) -> float:
    """FLOPs of the products a preset cannot do without (verification/fast_path.py), counted as
    ``bench_engine.product_flops`` counts them (layer i: p = d_{i-1} + 1 inputs with the ones row, q = d_i outputs):

    * ``standard``: g_{W̃_i} at Q^k needs FṼ_{i-1}ᵀ with F = P_i^k − U_i^k (2qpn, i ≥ 2; g_{W̃_1} = −αΔW̃_1 needs none):
      ∇_{W̃_i}L̄ at the new iterate, which no product of the engine's contains; and W̃⁻G, DG of the per-block decrease
      (2·2qp², i ≥ 2).
    * ``full``: + the forward pass for train accuracy on every sweep, layers 2..N (2qpn; layer 1 is the U_1 step's P)
      and the sketches of the residuals: of V_i (i < N) Z·A and (ZŴ_{i+1}ᵀ)F_{i+1} (2·s·q·n + 2·s·d_{i+1}·n, s =
      ``probes``, or q where q ≤ ``probes``: the residual is then exact, Z = I), of W̃_1 EX̃ᵀZ (2·``probes``·d_1·n).
      Test accuracy is left out: the benchmark's problem has no test set.
    ``cheap`` reads everything from the engine's evaluation: none."""
    N, total = len(widths) - 1, 0.0
    level = PRESETS.index(preset)
    for i in range(1, N + 1):
        p, q = widths[i - 1] + 1, widths[i]
        if level >= 1 and i >= 2:
            total += 2 * q * p * n + 4 * q * p * p
        if level >= 2:
            total += 2 * q * p * n if i >= 2 else 2 * probes * q * n
            if i < N:
                s = min(probes, q)
                total += 2 * s * q * n + 2 * s * widths[i + 1] * n
    return total


def malloc_reuse() -> bool:
    """glibc mallopt: M_MMAP_THRESHOLD (−3) and M_TRIM_THRESHOLD (−1) to 1 GiB.  False if not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(-3, 1 << 30)) and bool(libc.mallopt(-1, 1 << 30))
    except (OSError, AttributeError, TypeError):
        return False


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing): memory touched for the first time,
    e.g. a freshly allocated tensor above glibc's mmap threshold."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def measure(problem, variant: str, sweeps: int, path: str = "auto") -> tuple[list[float], list[float], float, float]:
    """Per-sweep (engine seconds, recorder seconds) of one run, sweeps 1..T−1, the run's CPU
    seconds per sweep without the engine's objective evaluation (thread time: not inflated while
    other processes hold the CPU; the evaluation's CPU time is measured once and subtracted), and its minor page
    faults per sweep (run start and evaluation included: a count, not disturbed by other processes)."""
    state = initial_state(problem)
    rec = None if variant == "bare" else Recorder(variant, path=path)
    c0, f0 = time.thread_time(), minor_faults()
    log = run(problem, state, sweeps=sweeps, hooks=[] if rec is None else [rec]).log
    cpu, faults = (time.thread_time() - c0) / sweeps, (minor_faults() - f0) / sweeps
    c0 = time.thread_time()
    objective_terms(state, problem)  # the engine's per-sweep evaluation, in CPU seconds (same every sweep)
    cpu -= (time.thread_time() - c0) * (sweeps + 1) / sweeps
    trace = None if rec is None else rec.trace()
    if trace is None:
        engine = log[S.TIME_ENGINE].tolist()[1:-1]
        return engine, [0.0] * len(engine), cpu, faults
    sw = trace.sweeps
    return sw[S.TIME_ENGINE].tolist()[1:-1], sw[S.TIME_RECORDER].tolist()[1:-1], cpu, faults


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000, help="training samples (default 3000)")
    p.add_argument("--hidden", default="400,400", help="hidden widths, e.g. 1500,1500,1500 (default 400,400)")
    p.add_argument("--sweeps", type=int, default=8, help="sweeps per run (default 8; the first and last are not timed)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of every variant (default 3)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--dtype", default="float64", help="float64 | float32")
    p.add_argument("--presets", default=",".join(PRESETS),
                   help=f"comma-separated presets to time against bare (default {','.join(PRESETS)})")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up sweeps of the last preset (default 3)")
    p.add_argument("--malloc-reuse", action="store_true", help="glibc: keep freed memory for reuse (see above)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--floors-only", action="store_true", help="print each preset's FLOP floor and exit (no timing)")
    p.add_argument("--path", default="auto", choices=("auto", "fast", "generic"),
                   help="the recorder's path (default auto: the fast one here); the FLOP floors are the fast path's")
    p.add_argument("--skip", default="none", choices=("none", "auto"),
                   help="auto: Algorithm 3, skip connections where d_i = d_{i-1} (recorded on the generic path)")
    args = p.parse_args(argv)
    if args.path == "fast" and args.skip != "none":
        p.error("--path fast records Algorithm 2 without skips only; with --skip auto use --path generic or auto")
    fast = args.path != "generic" and args.skip == "none"  # the FLOP floors and the targets are the fast path's
    reuse = malloc_reuse() if args.malloc_reuse else False
    if args.malloc_reuse and not reuse:
        print("--malloc-reuse: mallopt is not available here (not glibc); running with the default allocator")
    if args.sweeps < 3:
        raise SystemExit("--sweeps must be >= 3 (the first and the last sweep are not timed)")
    presets = tuple(x.strip() for x in args.presets.split(",") if x.strip())
    bad = [x for x in presets if x not in PRESETS]
    if bad or not presets:
        raise SystemExit(f"--presets {args.presets!r}: each must be one of {', '.join(PRESETS)}")
    hidden = parse_widths(args.hidden)
    cfg = BCDConfig(hidden=tuple(hidden), sweeps=args.sweeps, device=args.device, dtype=args.dtype,
                    eval_every=10**9, gamma=1.0, alpha=5.0, skip=args.skip)
    ds = gaussian_mixture(n=args.n, d=784, k=10, seed=0)
    problem = make_problem(ds.X_train, ds.y_train, cfg, n_classes=10)
    base = executed_sweep_flops(problem)
    floors = {v: 1.0 + preset_flops(list(problem.widths), problem.n, v) / base for v in presets}
    if args.floors_only:
        widths = "-".join(str(d) for d in problem.widths)
        print(f"network {widths}, n={problem.n}: bare sweep {base / 1e9:.1f} GFLOP; FLOP floor "
              + ", ".join(f"{v} {f:.3f}" for v, f in floors.items()))
        return 0
    variants = ("bare", *presets)
    if args.warmup > 0:
        measure(problem, variants[-1], args.warmup, args.path)  # warm-up: allocations, kernels, lazy imports
    times: dict[str, list[float]] = {v: [] for v in variants}
    engine_only: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    faults: dict[str, list[float]] = {v: [] for v in variants}
    t_start = time.perf_counter()
    for _ in range(args.repeats):
        for v in variants:
            eng, recd, cpu_s, faults_s = measure(problem, v, args.sweeps, args.path)
            faults[v].append(faults_s)
            times[v] += [e + r for e, r in zip(eng, recd, strict=True)]
            engine_only[v] += eng
            cpu[v].append(cpu_s)
    bare, bare_min = statistics.median(times["bare"]), min(times["bare"])
    rows = []
    for v in variants:
        med = statistics.median(times[v])
        eng = statistics.median(engine_only[v])
        floor = floors.get(v, 1.0) if fast else math.nan
        rows.append({"variant": v, "sweep_s": med, "engine_s": eng, "ratio_vs_bare": med / bare,
                     "flop_floor": floor, "ratio_vs_floor": med / bare / floor,
                     "ratio_vs_own_engine": med / eng, "ratio_of_minima": min(times[v]) / bare_min,
                     "cpu_ratio": statistics.median(cpu[v]) / statistics.median(cpu["bare"]),
                     "minor_faults_per_sweep": statistics.median(faults[v]),
                     "target": TARGETS.get(v) if fast else None,
                     "meets_target": None if v not in TARGETS or not fast else med / bare <= TARGETS[v]})
    widths = "-".join(str(d) for d in problem.widths)
    print(f"network {widths}, n={problem.n}, {args.dtype} on {args.device}, {args.sweeps} sweeps × {args.repeats} "
          f"repeats, torch threads {torch.get_num_threads()}, malloc reuse {reuse}, recorder path {args.path}, "
          f"skip {args.skip}, BCD_FUSE {fuse_mode()}, {time.perf_counter() - t_start:.0f}s")
    print(f"{'variant':<10}{'s/sweep':>11}{'engine s':>11}{'× bare':>9}{'FLOP floor':>12}{'× floor':>9}"
          f"{'× own eng':>11}{'× (minima)':>12}{'CPU ×':>8}{'faults/sw':>11}{'target':>8}  ok")
    for r in rows:
        tgt = "" if r["target"] is None else f"{r['target']:.2f}"
        ok = "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "NO")
        print(f"{r['variant']:<10}{r['sweep_s']:>11.4f}{r['engine_s']:>11.4f}{r['ratio_vs_bare']:>9.3f}"
              f"{r['flop_floor']:>12.3f}{r['ratio_vs_floor']:>9.3f}"
              f"{r['ratio_vs_own_engine']:>11.3f}{r['ratio_of_minima']:>12.3f}{r['cpu_ratio']:>8.3f}"
              f"{r['minor_faults_per_sweep']:>11.0f}{tgt:>8}  {ok}")
    if args.json:
        out = {"network": widths, "n": problem.n, "dtype": args.dtype, "device": args.device,
               "sweeps": args.sweeps, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
               "malloc_reuse": reuse, "path": args.path, "skip": args.skip, "bcd_fuse": fuse_mode(),
               "platform": platform.platform(), "processor": platform.processor(),
               "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor(),
               "results": rows}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
