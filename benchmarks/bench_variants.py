"""Per-sweep cost of every algorithm on one network, interleaved in one run (ratios, not absolute times).

    .venv/bin/python benchmarks/bench_variants.py                        # 784-100-100-100-10, n = 2000, float64
    .venv/bin/python benchmarks/bench_variants.py --baseline fb14c44     # + Algorithm 2 of that git revision
    .venv/bin/python benchmarks/bench_variants.py --json out.json
    .venv/bin/python benchmarks/bench_variants.py --variants alg2,catalogue     # every catalogue solver

Each *variant* runs in its own subprocess (one thread, so that the 2-core machine's load does not leak in)
for ``--sweeps`` bare sweeps (no hooks) from the same start; the variants are interleaved ``--rounds`` times
and each variant's per-sweep time is the median over its rounds.  Reported per variant: median seconds per
sweep and the ratio to Algorithm 2 of this tree.  Variants:

* ``alg2``: Algorithm 2 (three-splitting, closed forms);
* ``alg3``: Algorithm 3 (ResNet skips on the layers with d_i = d_{i-1});
* ``alg1-identity``: Algorithm 1 with σ = Id (every block a closed form);
* ``alg1-relu``: Algorithm 1 with ReLU: the inner solvers of :mod:`bcd.inner` on W_1..W_{N−1}, V_1..V_{N−2}
  (their iterations per sweep are reported too);
* the catalogue (``--variants catalogue``): Algorithm 2 with one record changed — ``ce-newton`` (cross-entropy, its
  exact prox by Newton), ``ce-proxlinear``, ``logistic-newton``, ``hinge``, ``leaky_relu``, ``sigmoid``, ``tanh``,
  ``quadratic`` (the U-prox of each), ``l1-W-fista`` (r_i = ℓ1: monotone FISTA on every W̃_i), ``box-V-fista``
  (s_i = [0, 1]: monotone FISTA on V_i, i < N); inner iterations per sweep are reported for the FISTA variants;
* ``baseline``: Algorithm 2 of another git revision (``--baseline REV``, checked out into a temporary worktree):
  "the ratios for Algorithm 2 do not get worse" is ``baseline / alg2`` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "alg2": {"splitting": "three"},
    "alg3": {"splitting": "three", "skip": "auto"},
    "alg1-identity": {"splitting": "two", "activation": "identity"},
    "alg1-relu": {"splitting": "two"},
}
# the catalogue of Proposition 1 on Algorithm 2 (MATH.md §9): each record's solver next to the closed-form path
CATALOGUE = {
    "ce-newton": {"loss": "cross_entropy"},
    "ce-proxlinear": {"loss": "cross_entropy", "vn_update": "prox_linear"},
    "logistic-newton": {"loss": "logistic"},
    "hinge": {"loss": "hinge"},
    "leaky_relu": {"activation": "leaky_relu(0.01)"},
    "sigmoid": {"activation": "sigmoid"},
    "tanh": {"activation": "tanh"},
    "quadratic": {"activation": "quadratic"},
    "l1-W-fista": {"r": "l1(0.001)"},
    "box-V-fista": {"s": "box(0, 1)"},
}
VARIANTS.update(CATALOGUE)
DEFAULT_VARIANTS = ("alg2", "alg3", "alg1-identity", "alg1-relu")

CHILD = r"""
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from bcd import BCDConfig, initial_state
from bcd.inputs import make_problem
from bcd.data import load_mnist
from bcd.engine import sweep
from bcd.schedule import schedule_for
args = json.loads(sys.argv[1])
ds = load_mnist()
idx = np.arange(args["n"])
cfg = BCDConfig(**args["config"])
p = make_problem(ds.X_train[idx], ds.y_train[idx], cfg)
s = initial_state(p)
steps = schedule_for(cfg.splitting, cfg.N)
iters = []
class Count:
    def on_step(self, k, step, state, new, aux):
        if aux and "inner" in aux:
            iters.append(aux["inner"].iterations)
sweep(s, p, steps)  # warm-up
times = []
for _ in range(args["sweeps"]):
    hooks = [Count()] if args["count"] else []
    t0 = time.perf_counter()
    sweep(s, p, steps, hooks)
    times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "inner_iterations_per_sweep": sum(iters) / max(1, args["sweeps"])}))
"""


def _run(python: str, cwd: Path, config: dict, n: int, sweeps: int, count: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(cwd)}
    arg = json.dumps({"config": config, "n": n, "sweeps": sweeps, "count": count})
    out = subprocess.run([python, "-c", CHILD, arg], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"variant {config} failed in {cwd}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", default="100,100,100")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sweeps", type=int, default=3, help="timed sweeps per round (after one warm-up sweep)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--baseline", help="git revision whose Algorithm 2 is timed alongside (temporary worktree)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help="comma-separated subset of " + ", ".join(VARIANTS) + ", or 'catalogue' for all of "
                    + ", ".join(CATALOGUE))
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    hidden = [int(x) for x in args.hidden.split(",")]
    base = {"hidden": hidden, "dtype": args.dtype, "gamma": 1.0, "alpha": 5.0, "sweeps": 1}
    names = [w for v in args.variants.split(",") if v for w in (CATALOGUE if v == "catalogue" else [v])]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    jobs = {v: (ROOT, {**base, **VARIANTS[v]}) for v in names}
    tmp = None
    if args.baseline:
        tmp = tempfile.mkdtemp(prefix="bcd-baseline-")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp, args.baseline], check=True,
                       capture_output=True)
        if (ROOT / ".cache").exists():  # the data cache (MNIST wheel) is not tracked
            os.symlink(ROOT / ".cache", Path(tmp) / ".cache")
        jobs["baseline"] = (Path(tmp), {**base, **VARIANTS["alg2"]})
    times: dict[str, list[float]] = {v: [] for v in jobs}
    inner: dict[str, float] = {}
    try:
        for r in range(args.rounds):
            for v, (cwd, config) in jobs.items():
                count = (v == "alg1-relu" or "fista" in v) and cwd == ROOT
                res = _run(sys.executable, cwd, config, args.n, args.sweeps, count=count)
                times[v] += res["times"]
                inner[v] = res["inner_iterations_per_sweep"]
                print(f"round {r + 1}/{args.rounds} {v:<14} {statistics.median(res['times']):.3f} s/sweep", flush=True)
    finally:
        if tmp:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp], check=False,
                           capture_output=True)
    med = {v: statistics.median(t) for v, t in times.items()}
    ref = med.get("alg2")
    print(f"\n784-{args.hidden.replace(',', '-')}-10, n = {args.n}, {args.dtype}, 1 thread, "
          f"{args.rounds} rounds × {args.sweeps} sweeps, medians")
    print(f"{'variant':<14} {'s/sweep':>9} {'÷ alg2':>8} {'inner it/sweep':>15}")
    for v in jobs:
        ratio = f"{med[v] / ref:8.2f}" if ref else "       –"
        it = f"{inner[v]:15.1f}" if (v == "alg1-relu" or "fista" in v) else " " * 15
        print(f"{v:<14} {med[v]:9.3f} {ratio} {it}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": platform.platform(), "processor": platform.processor(), "network": [784, *hidden, 10],
            "n": args.n, "dtype": args.dtype, "baseline": args.baseline, "median_s_per_sweep": med,
            "ratio_to_alg2": {v: med[v] / ref for v in med} if ref else None,
            "inner_iterations_per_sweep": {v: inner[v] for v in inner if v == "alg1-relu" or "fista" in v},
            "samples": times,
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
