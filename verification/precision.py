"""Is a descent failure in float32 a rise of L̄ or rounding?  A hook that mirrors a run in float64.

:class:`Float64Mirror` keeps an exact float64 copy of every iterate of a (float32) run and, at each block update,
evaluates the block's decrease of L̄ (the terms that touch it) in float64 at the *same* iterates — the reference a
float32 recorder's decrease is compared with — and, with ``exact=True``, the float64 block minimiser from the same
neighbours (how far the float32 update is from the exact one, relative to its own step).  Used by
``benchmarks/float32_rounding.py`` and tests/test_verification_noise.py; see verification/tolerance.py, "Block noise".
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from bcd.problem import BCDState, Problem
from bcd.subproblems import subproblem_for
from verification import schema as S  # noqa: N812


class Float64Mirror:
    """Engine hook: one row per block update with ``dec64`` (the float64 decrease of the touched terms at the run's own
    iterates, upcast exactly), ``delta_sq64``, and with ``exact``: ``dec_exact64``, ``delta_sq_exact64`` (of the float64
    block minimiser from the same neighbours) and ``rel_dist`` = ‖X⁺ − X*‖/‖X* − X⁻‖.  Costs a float64 copy of the
    state and, with ``exact``, a float64 block update per step."""

    def __init__(self, exact: bool = False):
        self.exact = exact
        self.rows: list[dict[str, Any]] = []

    def on_run_start(self, problem: Problem, state: BCDState) -> None:
        cfg = dataclasses.replace(problem.config, dtype="float64")
        self.p64 = Problem(X=problem.X.double(), Y=problem.Y.double(), config=cfg, labels=problem.labels)

        def up(xs):
            return [None if x is None else x.double() for x in xs]

        self.m = BCDState(up(state.W), [self.p64.X, *up(state.V[1:])], up(state.U), state.sweep)

    def on_step(self, k: int, step, state: BCDState, new: torch.Tensor, aux) -> None:
        b, i = step.block, step.layer
        sub = subproblem_for(self.p64, b, i)

        def terms(st: BCDState) -> float:
            return float(sum(t.value(st, self.p64) for t in sub.terms))

        old, new64 = self.m.get(b, i), new.double()
        after = sub._with(self.m, new64)
        before = terms(self.m)
        row = {S.SWEEP: k, S.BLOCK: b, S.LAYER: i, "dec64": before - terms(after),
               "delta_sq64": float((new64 - old).square().sum())}
        if self.exact:
            best = step.update(self.m, self.p64, i, {})  # {}: a listened-to step allocates, never reuses the mirror's
            row["dec_exact64"] = before - terms(sub._with(self.m, best))
            row["delta_sq_exact64"] = float((best - old).square().sum())
            row["rel_dist"] = float((new64 - best).norm() / (best - old).norm().clamp_min(1e-300))
        self.rows.append(row)
        self.m = after
