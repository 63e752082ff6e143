"""Sample-sharded BCD: per-sweep time, peak memory and communicated bytes per rank for K processes, and a model of
the time for K up to 64.

    .venv/bin/python benchmarks/bench_sharded.py                      # K = 1, 2 on this CPU (gloo), ~2 min
    .venv/bin/python benchmarks/bench_sharded.py --ks 1 --device cuda --backend nccl   # the NCCL path on one GPU

Each K runs as K processes (torch.multiprocessing, one thread each) on the same MNIST-shaped Gaussian mixture
(d_0 = 784, 10 classes), Algorithm 2, float64; every rank holds n/K samples, W is replicated and the sums over
samples are all-reduced at the seam (bcd/distributed.py).  Per rank: the median sweep time after one warm-up
sweep, the time spent inside all-reduce, the bytes it moved per sweep, and the peak RSS above the process's
baseline.  All K are run one after the other in this one invocation (so the ratios come from one run).

**The model** (written out in the output): a sweep costs T(K) = a/K + b + C(K), with a the column-local compute (the
U and V steps, the products with X and V that the Grams and cross products need: all ∝ n/K), b the replicated
compute (the W solves' Cholesky factorisations and triangular solves, d×d, independent of K) and C(K) the
all-reduce time.  b is timed by itself (the factorisations and the d-column solves every rank repeats) and a is
the rest of the K = 1 compute time (sweep minus all-reduce); the K = 2 run checks the model.  C(K) follows the
ring all-reduce: per call 2(K − 1)·ℓ latency plus 2(K − 1)/K · bytes/β, with the calls and bytes per sweep
measured (they do not depend on K) and (ℓ, β) either measured here on the loopback (small and large all-reduces
timed by themselves) or set for a cluster link.  Assumptions: perfect load balance, no overlap of
communication and compute, the replicated part not shared out, and one process per device.  Limits: it models the
engine's sweep (5 all-reduces for 784-300-300-10; the objective's terms add one more per sweep in ``bcd train``, the
recorder more in ``bcd verify``); b is a lower bound of the replicated work (the W steps' cross products with the
updated blocks are not in it), so the large-K predictions, where b dominates, are optimistic.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rank_main(rank: int, world: int, init: str, out: str, a: dict) -> None:
    torch.set_num_threads(1)
    base_rss = _rss_mb()
    dist.init_process_group(a["backend"], init_method=f"file://{init}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    from bcd.config import BCDConfig
    from bcd.data import gaussian_mixture
    from bcd.distributed import AllReduce, Shard
    from bcd.engine import sweep
    from bcd.inputs import make_problem
    from bcd.problem import initial_state
    from bcd.reduction import using
    from bcd.schedule import schedule_for

    if a["backend"] == "nccl":
        torch.cuda.set_device(rank)
    d = gaussian_mixture(n=a["n"], d=784, k=10, seed=0)
    red = AllReduce()
    shard = Shard(rank, world, a["backend"], red)
    sl = shard.rows(a["n"])
    cfg = BCDConfig(hidden=tuple(a["hidden"]), dtype="float64", device=a["device"], sweeps=a["sweeps"])
    with using(red):
        problem = make_problem(d.X_train[sl], d.y_train[sl], cfg, n_classes=10)
        state = initial_state(problem)
        schedule = schedule_for("three", cfg.N)
        times, comm, nbytes, calls = [], [], [], []
        for k in range(a["sweeps"] + 1):
            b0, s0, c0 = red.bytes, red.seconds, red.calls
            if a["device"] == "cuda":
                torch.cuda.synchronize()
            dist.barrier()
            t0 = time.perf_counter()
            sweep(state, problem, schedule)
            if a["device"] == "cuda":
                torch.cuda.synchronize()
            if k:  # the first sweep is a warm-up
                times.append(time.perf_counter() - t0)
                comm.append(red.seconds - s0)
                nbytes.append(red.bytes - b0)
                calls.append(red.calls - c0)
    # the link, by itself: latency from 8-byte all-reduces, bandwidth from 8 MB ones
    small, large = torch.zeros(1, dtype=torch.float64), torch.zeros(2**20, dtype=torch.float64)
    if a["device"] == "cuda":
        small, large = small.cuda(), large.cuda()
    def timed(t: torch.Tensor, reps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(t)
        if a["device"] == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / reps

    # ring model per call: 2(K−1)ℓ + 2(K−1)/K·bytes/β; solve for ℓ and β from a tiny and a large all-reduce
    steps = 2 * (world - 1)
    lat, bw = [], []
    for _ in range(3):
        t_small, t_large = timed(small, 100), timed(large, 5)
        ell = t_small / steps if steps else 0.0
        lat.append(ell)
        moved = steps / world * large.numel() * 8
        bw.append(moved / max(t_large - steps * ell, 1e-12) if steps else float("inf"))
    mine = {"rank": rank, "n_local": sl.stop - sl.start, "sweep_s": statistics.median(times),
            "replicated_s": replicated_seconds(problem.widths, a["device"]),
            "allreduce_s": statistics.median(comm), "bytes_per_sweep": statistics.median(nbytes),
            "calls_per_sweep": statistics.median(calls), "peak_rss_above_baseline_mb": _rss_mb() - base_rss,
            "state_mb": sum(t.numel() * t.element_size() for _, _, t in state.blocks()) / 2**20,
            "link_latency_s": min(lat), "link_bandwidth_Bps": max(bw)}
    rows = [None] * world
    dist.all_gather_object(rows, mine)
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def replicated_seconds(widths, device: str, reps: int = 3) -> float:
    """b, timed by itself: the per-sweep work every rank repeats whatever K — the Cholesky factorisations of the W
    steps' (d_{i-1}+1)² systems with their d_i right-hand sides, and of the V steps' d_i² systems (float64)."""
    gen = torch.Generator().manual_seed(0)
    mats = []
    for i in range(1, len(widths)):
        p, q = widths[i - 1] + 1, widths[i]
        A = torch.randn(p, p, generator=gen, dtype=torch.float64)
        mats.append((A @ A.T + p * torch.eye(p, dtype=torch.float64), torch.randn(q, p, dtype=torch.float64)))
        if i < len(widths) - 1:
            B = torch.randn(q, q, generator=gen, dtype=torch.float64)
            mats.append((B @ B.T + q * torch.eye(q, dtype=torch.float64), None))
    mats = [(M.to(device), None if R is None else R.to(device)) for M, R in mats]
    best = float("inf")
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for M, R in mats:
            L = torch.linalg.cholesky(M)
            if R is not None:
                Y = torch.linalg.solve_triangular(L, R.T, upper=False)
                torch.linalg.solve_triangular(L.T, Y, upper=True)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def ring_time(K: int, calls: float, nbytes: float, latency: float, bandwidth: float) -> float:
    """Ring all-reduce time per sweep: 2(K−1)ℓ per call + 2(K−1)/K · bytes/β."""
    return 0.0 if K == 1 else calls * 2 * (K - 1) * latency + 2 * (K - 1) / K * nbytes / bandwidth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="1,2", help="process counts to run here (default 1,2)")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--hidden", default="300,300")
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="gloo")
    ap.add_argument("--cluster-latency-us", type=float, default=10.0, help="ℓ of the cluster link in the model")
    ap.add_argument("--cluster-bandwidth-gbs", type=float, default=10.0, help="β of the cluster link (GB/s)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    a = {"n": args.n, "hidden": [int(x) for x in args.hidden.split(",")], "sweeps": args.sweeps,
         "device": args.device, "backend": args.backend}
    results = {}
    for K in (int(x) for x in args.ks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            mp.start_processes(rank_main, args=(K, str(Path(tmp) / "init"), str(out), a), nprocs=K, join=True,
                               start_method="spawn")
            results[K] = json.loads(out.read_text())
    print(f"784-{args.hidden.replace(',', '-')}-10, n = {args.n}, float64, {args.device}/{args.backend}, "
          f"1 thread per rank, medians over {args.sweeps} sweeps after a warm-up")
    print(f"{'K':>3} {'rank':>4} {'n_local':>7} {'sweep s':>8} {'allreduce s':>11} {'MB/sweep':>8} {'calls':>5} "
          f"{'peak RSS MB':>11} {'state MB':>8}")
    for K, rows in results.items():
        for r in rows:
            print(f"{K:>3} {r['rank']:>4} {r['n_local']:>7} {r['sweep_s']:>8.3f} {r['allreduce_s']:>11.4f} "
                  f"{r['bytes_per_sweep'] / 2**20:>8.2f} {r['calls_per_sweep']:>5.0f} "
                  f"{r['peak_rss_above_baseline_mb']:>11.1f} {r['state_mb']:>8.1f}")
    summary = {"machine": platform.platform(), "args": a, "results": {str(k): v for k, v in results.items()}}
    if 1 in results and 2 in results:
        t1 = max(r["sweep_s"] - r["allreduce_s"] for r in results[1])
        b_rep = results[1][0]["replicated_s"]  # timed by itself (a difference of two sweep timings is mostly noise)
        a_local = t1 - b_rep
        r2 = results[2][0]
        calls, nbytes = r2["calls_per_sweep"], r2["bytes_per_sweep"]
        links = {"loopback (measured here)": (r2["link_latency_s"], r2["link_bandwidth_Bps"]),
                 "cluster (assumed)": (args.cluster_latency_us * 1e-6, args.cluster_bandwidth_gbs * 1e9)}
        t2_model = a_local / 2 + b_rep + ring_time(2, r2["calls_per_sweep"], r2["bytes_per_sweep"],
                                                   r2["link_latency_s"], r2["link_bandwidth_Bps"])
        print(f"\nmodel T(K) = a/K + b + C(K): a = {a_local:.3f} s (column-local), b = {b_rep:.4f} s (replicated, "
              f"timed alone); K = 2: model {t2_model:.3f} s, measured {max(r['sweep_s'] for r in results[2]):.3f} s; "
              f"{calls:.0f} all-reduces and {nbytes / 2**20:.2f} MB per sweep")
        print(f"speed-up K=2 measured: {results[1][0]['sweep_s'] / max(r['sweep_s'] for r in results[2]):.2f} "
              "(K processes of one thread each: K = 2 uses two cores)")
        model = {}
        for name, (lat, bw) in links.items():
            line = []
            for K in (1, 2, 4, 8, 16, 32, 64):
                T = a_local / K + b_rep + ring_time(K, calls, nbytes, lat, bw)
                line.append((K, T))
            model[name] = {"latency_s": lat, "bandwidth_Bps": bw, "T": dict(line)}
            print(f"{name:<26} ℓ = {lat * 1e6:.1f} µs, β = {bw / 1e9:.2f} GB/s: " + ", ".join(
                f"K={K}: {T:.3f} s ({line[0][1] / T:.1f}×)" for K, T in line))
        summary["model"] = {"a_s": a_local, "b_s": b_rep, "calls_per_sweep": calls, "bytes_per_sweep": nbytes,
                            "links": model}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
