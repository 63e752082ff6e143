"""The recorder's hidden-layer pass, eager against one fused kernel: is the elementwise share of ``standard`` a lever?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_layer_pass.py                  # 400×3000 float64, ~1 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_layer_pass.py --d 600 --n 60000 --dtype float32

The fast path's ``standard`` preset spends most of its time beyond the FLOP floor in one pass per hidden layer
(:func:`verification.fast_path.layer_sums`: five n-sized operands read, ten sums, the carried B written).  Timed
here, interleaved in one process and reported as medians, on random operands of one layer's shape:

- ``read``: one ``vdot`` of each of the five operands with itself, the memory traffic the pass cannot avoid;
- ``eager chunked``: ``layer_sums`` on row blocks of about ``bcd.activations.chunk_size`` entries, as the recorder
  runs it on the CPU;
- ``eager whole``: one call on all entries, as the recorder runs it on CUDA;
- ``compiled chunked``: ``torch.compile(layer_sums)`` (the same source) on row blocks of about ``FUSE_CHUNK``
  entries, one fused kernel per block, as the recorder runs it under ``BCD_FUSE``;
- ``compiled whole``: the same on all entries at once (its n-sized outputs are fresh allocations: page faults).
  The compile time, paid once per process, is reported apart; ``--no-compile`` leaves both out (they need a C++
  compiler).

The sums of every variant are compared with the chunked ones (relative difference printed).

``--pass u`` times the engine's U_i step instead (:func:`bcd.blocks.update_U_hidden`, ReLU, into a buffer, as the
engine's quiet path writes U_i⁺): ``read`` of its three operands V_i⁺, P and U_i⁻, ``eager`` (``BCD_FUSE=off``:
:func:`bcd.blocks.u_prox_piece` on cache-sized pieces) and ``compiled`` (``BCD_FUSE=on``: the same function compiled,
pieces of ``FUSE_CHUNK``), with the result's largest difference from the eager one relative to its largest entry:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_layer_pass.py --pass u --d 600 --n 10000 --dtype float32

``--pass vsolve`` times the V_i step's solve M⁻¹R, M = I + ŴᵀŴ (d×d, Ŵ = W̃_{i+1}'s weights, random with the
authors' init scale), R d×n: ``cholesky`` (:func:`bcd.blocks.solve_spd_right_`, two triangular solves, as the engine
runs it), ``inverse`` (the SPD inverse from the Cholesky factor, then one GEMM into a buffer: the lever the issue
lists) and ``gemm`` (one GEMM of the same 2d²n FLOPs, the yardstick's rate), each with its relative residual
‖MX − R‖/(‖M‖‖X‖), the exactness judge, and κ(M):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_layer_pass.py --pass vsolve --d 600 --n 10000 --dtype float32
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from bcd.activations import chunk_size, get_activation
from bcd.blocks import solve_spd_right_, update_U_hidden
from bcd.fusion import FUSE_CHUNK
from verification.fast_path import LAYER_SUMS, layer_sums


def interleaved(variants: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each variant per round, the variants taking turns within every round."""
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v, f in variants.items():
            t0 = time.perf_counter()
            f()
            times[v].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=400, help="the layer's width d_i (default 400)")
    p.add_argument("--n", type=int, default=3000, help="samples (default 3000)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    p.add_argument("--pass", dest="which", default="layer", choices=("layer", "u", "vsolve"),
                   help="layer: the recorder's hidden-layer pass (default); u: the engine's U_i step; vsolve: the "
                   "V_i step's solve, Cholesky against inverse")
    args = p.parse_args(argv)
    if args.d < 1 or args.n < 1 or args.rounds < 1:
        p.error(f"--d {args.d}, --n {args.n} and --rounds {args.rounds} must each be >= 1")
    if args.which == "u":
        return u_step(args)
    if args.which == "vsolve":
        return v_solve(args)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    V_old, V_new, U_old, U_new, P = (torch.randn(args.d, args.n, generator=gen, dtype=dtype) for _ in range(5))
    B = torch.empty_like(P)
    gamma, alpha = 1.0, 5.0

    def chunked(fn=layer_sums, chunk=None):
        rows, parts = max(1, (chunk or chunk_size(U_new)) // args.n), []
        for r0 in range(0, args.d, rows):
            sl = slice(r0, r0 + rows)
            parts.append(fn(*(t[sl].reshape(-1) for t in (V_old, V_new, U_old, U_new, P)), B[sl].view(-1),
                            torch.relu, gamma, alpha, False)[0])
        return torch.stack(parts).sum(dim=0, dtype=torch.float64)

    def whole(fn=layer_sums):
        operands = (t.view(-1) for t in (V_old, V_new, U_old, U_new, P))
        return fn(*operands, B.view(-1), torch.relu, gamma, alpha, False)[0]

    def read():
        return torch.stack([torch.vdot(t.view(-1), t.view(-1)) for t in (V_old, V_new, U_old, U_new, P)])

    variants = {"read": read, "eager chunked": chunked, "eager whole": whole}
    compile_s = None
    if not args.no_compile:
        fused = torch.compile(layer_sums)
        t0 = time.perf_counter()
        whole(fused)
        compile_s = time.perf_counter() - t0
        variants["compiled chunked"] = lambda: chunked(fused, FUSE_CHUNK)
        variants["compiled whole"] = lambda: whole(fused)
    reference = chunked()
    for f in variants.values():
        f()  # warm-up
    times = interleaved(variants, args.rounds)
    floor = statistics.median(times["read"])
    compiled = f"; compile {compile_s:.1f} s (once per process and shape)" if compile_s else ""
    print(f"layer {args.d}×{args.n} {args.dtype}, torch threads {torch.get_num_threads()}, {args.rounds} rounds, "
          f"{len(LAYER_SUMS)} sums{compiled}")
    print(f"{'variant':17s} {'ms':>9s} {'× read':>8s} {'rel. diff of sums':>18s}")
    for v, f in variants.items():
        med = statistics.median(times[v])
        out = f().to(torch.float64)
        diff = "" if v == "read" else f"{((out - reference).abs().max() / reference.abs().max()).item():.1e}"
        print(f"{v:17s} {1e3 * med:9.2f} {med / floor:8.2f} {diff:>18s}")
    return 0


def u_step(args) -> int:
    """``--pass u``: the engine's U_i step, eager against compiled, interleaved."""
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    V, P, U = (torch.randn(args.d, args.n, generator=gen, dtype=dtype) for _ in range(3))
    out, relu = torch.empty_like(U), get_activation("relu")

    def step(mode):
        def run():
            os.environ["BCD_FUSE"] = mode
            return update_U_hidden(V, P, U, gamma=1.0, alpha=1.0, activation=relu, out=out).clone()
        return run

    variants = {"read": lambda: torch.stack([torch.vdot(t.view(-1), t.view(-1)) for t in (V, P, U)]),
                "eager": step("off")}
    t0 = time.perf_counter()
    reference = variants["eager"]()
    if not args.no_compile:
        variants["compiled"] = step("on")
        t0 = time.perf_counter()
        variants["compiled"]()
    compile_s = time.perf_counter() - t0 if not args.no_compile else None
    times = interleaved(variants, args.rounds)
    floor = statistics.median(times["read"])
    compiled = f"; compile {compile_s:.1f} s" if compile_s is not None else ""
    print(f"U step {args.d}×{args.n} {args.dtype} (ReLU), torch threads {torch.get_num_threads()}, {args.rounds} rounds"
          f"{compiled}")
    print(f"{'variant':17s} {'ms':>9s} {'× read':>8s} {'rel. diff':>10s}")
    for v, f in variants.items():
        med = statistics.median(times[v])
        diff = "" if v == "read" else f"{((f() - reference).abs().max() / reference.abs().max()).item():.1e}"
        print(f"{v:17s} {1e3 * med:9.2f} {med / floor:8.2f} {diff:>10s}")
    return 0


def v_solve(args) -> int:
    """``--pass vsolve``: M⁻¹R by Cholesky and triangular solves, by the SPD inverse and a GEMM, and one GEMM."""
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    W_hat = torch.randn(args.d, args.d, generator=gen, dtype=dtype) / args.d**0.5
    M = W_hat.T @ W_hat
    M.diagonal().add_(1.0)
    R = torch.randn(args.d, args.n, generator=gen, dtype=dtype)
    X, buf = torch.empty_like(R), torch.empty_like(R)

    def cholesky():
        X.copy_(R)
        return solve_spd_right_(X.T, M).T

    def inverse():
        L, _ = torch.linalg.cholesky_ex(M)
        return torch.mm(torch.cholesky_inverse(L), R, out=buf)

    variants = {"cholesky": cholesky, "inverse": inverse, "gemm": lambda: torch.mm(M, R, out=buf)}
    for f in variants.values():
        f()  # warm-up
    times = interleaved(variants, args.rounds)
    kappa = torch.linalg.cond(M.double()).item()
    print(f"V solve M⁻¹R, M = I + ŴᵀŴ {args.d}×{args.d} (κ = {kappa:.1f}), R {args.d}×{args.n} {args.dtype}, "
          f"torch threads {torch.get_num_threads()}, {args.rounds} rounds")
    print(f"{'variant':17s} {'ms':>9s} {'× gemm':>8s} {'residual':>10s}")
    floor = statistics.median(times["gemm"])
    for v, f in variants.items():
        med = statistics.median(times[v])
        res = ""
        if v != "gemm":
            Xv = f().double()
            res = f"{((M.double() @ Xv - R.double()).norm() / (M.double().norm() * Xv.norm())).item():.1e}"
        print(f"{v:17s} {1e3 * med:9.2f} {med / floor:8.2f} {res:>10s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
