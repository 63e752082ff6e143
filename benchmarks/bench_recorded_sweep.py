"""The sweep a user waits for: engine, recorder and the evaluation after it (L̄ and train accuracy), in one run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_recorded_sweep.py            # 10x600, n = 20 000: ~2 min
    OMP_NUM_THREADS=2 PYTHONPATH=/tmp/oldtree .venv/bin/python benchmarks/bench_recorded_sweep.py --label old

``bench_instrumentation.py`` compares the recorder's presets with the bare engine and leaves the evaluation out;
this one times what ``bcd verify`` and ``bcd reproduce`` do every sweep — the engine with a recorder listening, the
recorder's hooks and the evaluation of L̄ and accuracy — and counts the process's minor page faults per sweep (memory
touched for the first time: n-sized tensors allocated afresh), a count that load on a shared machine does not
disturb.  Run it under two trees (``PYTHONPATH``) alternately to compare code; the data are a Gaussian mixture of
MNIST's shape.  Medians over the sweeps after the first.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

from bench_instrumentation import minor_faults  # this script's folder is on sys.path when run as documented

from bcd.cli import parse_widths
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.engine import TIME_ENGINE, TIME_EVAL, TIME_HOOKS, run
from bcd.inputs import make_problem
from bcd.problem import initial_state
from verification.recorder import PRESETS, Recorder


class _FaultMarks:
    """The process's minor page faults at the end of every sweep (after the engine's evaluation and the recorder's
    on_sweep_end; it has no on_step, so the engine's steps run as they do for the recorder alone)."""

    def __init__(self) -> None:
        self.at: list[int] = []

    def on_sweep_end(self, k, state, rec) -> None:
        self.at.append(minor_faults())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="training samples (default 20000)")
    p.add_argument("--hidden", default=",".join(["600"] * 10), help="hidden widths (default ten of 600)")
    p.add_argument("--preset", default="standard", choices=PRESETS, help="the recorder's preset (default standard)")
    p.add_argument("--sweeps", type=int, default=5,
                   help="sweeps (default 5, at least 3; the first is not in the medians)")
    p.add_argument("--dtype", default="float64", help="float64 | float32")
    p.add_argument("--label", default="", help="a name printed at the start of the result line")
    args = p.parse_args(argv)
    if args.sweeps < 3:
        raise SystemExit(f"--sweeps {args.sweeps}: at least 3 (the first sweep is not in the medians)")
    cfg = BCDConfig(hidden=tuple(parse_widths(args.hidden)), sweeps=args.sweeps, dtype=args.dtype, eval_every=1,
                    gamma=1.0, alpha=5.0)
    ds = gaussian_mixture(n=args.n, d=784, k=10, seed=0)
    problem = make_problem(ds.X_train, ds.y_train, cfg, n_classes=10)
    state = initial_state(problem)
    marks = _FaultMarks()
    f0, t0 = minor_faults(), time.perf_counter()
    log = run(problem, state, hooks=[Recorder(args.preset), marks]).log
    wall, faults = (time.perf_counter() - t0) / args.sweeps, (minor_faults() - f0) / args.sweeps
    steady = statistics.median(b - a for a, b in itertools.pairwise(marks.at))  # sweeps 2.., evaluation included
    med = {c: statistics.median(log[c].tolist()[2:]) for c in (TIME_ENGINE, TIME_HOOKS, TIME_EVAL)}  # row 0 is Q⁰
    widths = "-".join(str(d) for d in problem.widths)
    print(f"{args.label} {widths} n={problem.n} {args.dtype} {args.preset}: wall {wall:.2f} s/sweep (run start "
          f"included), engine {med[TIME_ENGINE]:.2f} s, hooks {med[TIME_HOOKS]:.2f} s, L̄ + accuracy "
          f"{med[TIME_EVAL]:.2f} s, minor page faults {faults:,.0f} per sweep (run start included), "
          f"{steady:,.0f} per sweep after the first", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
