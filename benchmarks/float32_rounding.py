"""Is a float32 descent failure a rise of L̄ or rounding?  The paper's network in float32, every iterate mirrored in
float64 (verification/precision.py), the recorder's decreases compared with the float64 decreases of the same iterates.

    .venv/bin/python benchmarks/float32_rounding.py                     # 784-600×10-10, MNIST n = 5000, 25 sweeps
    .venv/bin/python benchmarks/float32_rounding.py --n 1000 --sweeps 10 --no-exact --json out.json

Reports (all over every block update of the run; eps = eps(float32); L = max(|L̄⁻|, |L̄⁺|, 1) of the update):

* the rounding of the recorded decrease, |recorded − float64|, in units of eps·L (what the |L̄| tolerance allows
  κ_L = 100 of) and of the whole tolerance eps·(κ_L·L + κ_N·S·‖Δ‖) (verification/tolerance.py; ≤ 1 means covered);
* per block kind: how many float32 updates raise L̄ in float64 (dec64 < 0) or fall short of the sufficient decrease
  c_blk‖Δ‖² there, that shortfall in units of eps·S·‖Δ‖, and (``--exact``, the default) how far the float32 update is
  from the float64 block minimiser relative to the latter's step, ‖X⁺ − X*‖/‖X* − X⁻‖;
* the monotone and sufficient-descent verdicts with the trace's noise column and without it (the |L̄| term alone).
Single-threaded by default (``--threads``), so that the float32 iterates are those of one BLAS schedule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bcd import engine
from bcd.config import BCDConfig, DataConfig
from bcd.data import load_dataset
from bcd.inputs import make_problem
from bcd.problem import initial_state
from verification import schema as S  # noqa: N812
from verification.checks import monotone_descent, sufficient_descent
from verification.precision import Float64Mirror
from verification.recorder import Recorder
from verification.tolerance import machine_eps, objective_tol
from verification.trace import Trace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000, help="MNIST training samples (stratified subset)")
    p.add_argument("--sweeps", type=int, default=25)
    p.add_argument("--hidden", default=",".join(["600"] * 10))
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-exact", dest="exact", action="store_false", help="skip the float64 block minimisers")
    p.add_argument("--json", help="write the measures here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = load_dataset(DataConfig(dataset="mnist", n_train=a.n))
    cfg = BCDConfig(hidden=tuple(int(h) for h in a.hidden.split(",")), gamma=a.gamma, alpha=a.alpha, reduction="sum",
                    init="authors", dtype="float32", sweeps=a.sweeps, seed=a.seed)
    problem = make_problem(ds.X_train, ds.y_train, cfg)
    rec, mirror = Recorder("standard"), Float64Mirror(exact=a.exact)
    t0 = time.perf_counter()
    engine.run(problem, initial_state(problem), hooks=[rec, mirror])
    wall = time.perf_counter() - t0
    trace = rec.trace()
    b = trace.blocks.sort_values([S.SWEEP, S.STEP]).reset_index(drop=True)
    m = pd.DataFrame(mirror.rows)
    keys = [S.SWEEP, S.BLOCK, S.LAYER]
    if len(m) != len(b) or not (m[keys].to_numpy() == b[keys].to_numpy()).all():
        raise RuntimeError("the mirror's block updates are not the trace's, in order")
    b = pd.concat([b, m.drop(columns=keys)], axis=1)
    L = trace.sweeps.set_index(S.SWEEP)[S.OBJECTIVE]
    b["L"] = [max(abs(L[k - 1]), abs(L[k]), 1.0) for k in b[S.SWEEP]]
    eps = machine_eps("float32")
    err = (b[S.BLOCK_DECREASE] - b["dec64"]).abs()
    noise = b[S.BLOCK_NOISE]
    short64 = (b[S.BLOCK_CONST] * b["delta_sq64"] - b["dec64"]).clip(lower=0.0)
    out: dict = {
        "config": f"784-{a.hidden.replace(',', '-')}-10 ReLU, MNIST n = {a.n}, γ = {a.gamma:g}, α = {a.alpha:g}, "
                  f"float32, {a.sweeps} sweeps, seed {a.seed}, {a.threads} thread(s)",
        "wall_s": wall, "blocks": len(b),
        "max_error_over_eps_L": float((err / (eps * b["L"])).max()),
        "max_error_over_tolerance": float((err / objective_tol("float32", b["L"], noise=noise)).max()),
        "per_kind": {}, "verdicts": {},
    }
    for kind, g in b.groupby(S.BLOCK):
        s = short64[g.index]
        row = {"updates": len(g), "float64_rises": int((g["dec64"] < 0).sum()),
               "float64_shortfalls": int((s > 0).sum()),
               "max_float64_shortfall_over_eps_noise": float((s / (eps * noise[g.index])).max())}
        if a.exact:
            row["max_rel_dist_to_float64_minimiser"] = float(g["rel_dist"].max())
            row["median_rel_dist_to_float64_minimiser"] = float(g["rel_dist"].median())
            ex = (g[S.BLOCK_CONST] * g["delta_sq_exact64"] - g["dec_exact64"])
            row["float64_minimiser_shortfalls_beyond_1e-9"] = int((ex > 1e-9 * g["L"]).sum())
        out["per_kind"][kind] = row
    bare = Trace(trace.sweeps, trace.blocks.drop(columns=[S.BLOCK_NOISE]), trace.meta)
    for name, tr in (("with_noise", trace), ("L_term_only", bare)):
        out["verdicts"][name] = {v.claim: f"{v.status}: {v.explanation}" for v in
                                 (monotone_descent(tr), sufficient_descent(tr))}
    print(json.dumps(out, indent=1, ensure_ascii=False))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
