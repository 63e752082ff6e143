"""Audit another implementation's iterates in-process, update by update when its update order is declared.

**Why the order matters (MATH.md §11).**  Given Q^{k−1}, Q^k and the order in which a schedule updates the blocks,
the state just before block X is updated in sweep k is known exactly: the blocks earlier in the order hold their
Q^k values, the later ones their Q^{k−1} values.  So every block's subproblem can be rebuilt from the iterates
alone and judged like an update of our own engine: its exactness residual, its decrease of L̄ and its descent
constant.  The auditor does exactly that by *replaying* the foreign iterates through the recorder's generic
(order-agnostic) path (:class:`verification.recorder.Recorder`): each declared step "updates" its block to the
value the other implementation reported, and the recorder sees the old state and the new block, as it does for a
run of our engine.  That is what exposes a Jacobi bias step (it lowers L̄ but is not the block minimiser).

Without an order only the iterate-level quantities are known (L̄ and its terms, ‖ΔQ^k‖, the least-norm
subgradient at Q^k, B): the per-update claims are then *unchecked*, and :func:`unchecked_claims` says so.

Use from your own loop (numpy or torch blocks, any device; samples as rows for X, as columns for V and U)::

    aud = Auditor(X, y, BCDConfig(hidden=(300, 300), gamma=1, alpha=5), order="three-splitting")
    aud.observe(blocks_0)                # Q⁰: {"W1": ..., "V1": ..., "U1": ..., ...}
    for k in range(T):
        ...                              # your sweep
        aud.observe(blocks_k)            # after the sweep, or, block by block as you update them:
        # aud.observe_block("V3", V3); aud.observe_block("U3", U3); ...   (in the declared order)
    verdicts = aud.verify()
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bcd.config import BCDConfig
from bcd.engine import SWEEP, TEST_ACC, TIME_ENGINE, TIME_EVAL, TIME_HOOKS, TRAIN_ACC, evaluate
from bcd.inputs import labels as input_labels
from bcd.inputs import make_problem
from bcd.objective import objective_terms
from bcd.problem import BCDState, Problem
from bcd.reduction import block_norm, block_sq
from bcd.schedule import Step, schedule_for
from theory.constants import BLOCK_EXACTNESS, MONOTONE, RunConstants, iterate_bound
from verification import schema as S  # noqa: N812
from verification.subgradient import definition as g_definition
from verification.subgradient import least_norm_subgradient
from verification.trace import Trace

Tensor = torch.Tensor
ORDERS = {"three-splitting": dict(splitting="three", skip="none"), "two-splitting": dict(splitting="two", skip="none"),
          "resnet": dict(splitting="three", skip="auto")}
META_ORDER = "order"  # the declared update order (block names), or None


# --------------------------------------------------------------------------- the declared order


def read_order(order: str | Path | Sequence[str]) -> tuple[dict[str, str], list[str] | None]:
    """(config overrides, block names in update order or None for the variant's own order) of an ``order``:
    ``three-splitting`` | ``two-splitting`` | ``resnet``, a TOML file with ``blocks = ["V3", "U3", ...]`` (and
    optionally ``variant`` = one of those names; default: three-splitting when U blocks are listed, else
    two-splitting), or a sequence of block names."""
    if isinstance(order, str) and order in ORDERS:
        return dict(ORDERS[order]), None
    if isinstance(order, (str, Path)):
        path = Path(order)
        if path.suffix != ".toml":
            raise ValueError(f"order={str(order)!r} is not allowed; give {', '.join(ORDERS)} or a .toml file "
                             "with blocks = [\"V3\", \"U3\", ...] in update order")
        if not path.is_file():
            raise FileNotFoundError(f"order file {str(path)!r} does not exist")
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"order file {str(path)!r} is not valid TOML: {e}") from None
        unknown = set(data) - {"blocks", "variant"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in {path}; allowed: blocks, variant")
        names = data.get("blocks")
        if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
            raise ValueError(f"{path} needs blocks = [\"V3\", \"U3\", ...]: a non-empty list of block names")
        variant = data.get("variant", "three-splitting" if any(x.startswith("U") for x in names) else "two-splitting")
        if variant not in ORDERS:
            raise ValueError(f"variant={variant!r} in {path} is not supported; allowed: {', '.join(ORDERS)}")
        return dict(ORDERS[variant]), list(names)
    names = list(order)
    if not names or not all(isinstance(x, str) for x in names):
        raise ValueError(f"order={order!r} is not allowed; give a variant name, a .toml file or a list of block names")
    return dict(ORDERS["three-splitting" if any(x.startswith("U") for x in names) else "two-splitting"]), names


def _parse_block(name: str, j: int) -> tuple[str, int]:
    if len(name) < 2 or name[0] not in "WVU" or not name[1:].isdigit():
        raise ValueError(f"order entry {j} ({name!r}) is not a block name; expected W<i>, V<i> or U<i>, e.g. V3")
    return name[0], int(name[1:])


# --------------------------------------------------------------------------- the auditor


class Auditor:
    """Audit iterates fed one sweep (or one block) at a time; module docstring.

    ``X``: (n, d_0), samples as rows; ``y``: labels (n,) or real targets (n, d_N); ``config``: the
    hyperparameters and widths the other implementation used (``BCDConfig``; its splitting and skip are taken
    from ``order`` when that is a variant name).  ``order``: None (iterate-level checks only), a variant name,
    a TOML file or block names in update order.  ``preset``: the recorder preset of an ordered audit.
    ``labels``: integer labels for the accuracy when ``y`` holds real targets."""

    def __init__(self, X, y, config: BCDConfig, *, order: str | Path | Sequence[str] | None = None,
                 preset: str = "full", n_classes: int | None = None, labels=None,
                 files: Sequence[str] | None = None):
        if not isinstance(config, BCDConfig):
            raise ValueError(f"config must be a bcd.BCDConfig; got {type(config).__name__}")
        names = None
        if order is not None:
            overrides, names = read_order(order)
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.order = order
        self.problem: Problem = make_problem(X, y, config, n_classes=n_classes)
        if labels is not None:  # real targets y, and labels for the accuracy
            lab = input_labels("labels", labels, self.problem.n, self.problem.Y.shape[0])
            self.problem.labels = lab.to(self.problem.X.device)
        self.files = list(files) if files is not None else None
        self.preset = preset
        self.state: BCDState | None = None
        self._cursor = 0
        self._schedule: tuple[Step, ...] | None = None
        self._recorder = None
        self._rows: _IterateRows | None = None
        if self.ordered:  # refuse an order the recorder cannot handle now, before any iterate is read
            from verification.recorder import Recorder  # the recorder imports the engine; keep this module light

            N = self.config.N
            keys = ([(s.block, s.layer) for s in schedule_for(self.config.splitting, N)] if names is None
                    else [_parse_block(x, j) for j, x in enumerate(names)])
            self._schedule = tuple(Step(b, i, _never) for b, i in keys)
            self._recorder = Recorder(preset, path="generic")
            self._recorder.check_schedule(self.problem, self._schedule)  # names the step it cannot handle
        else:
            self._rows = _IterateRows(self.problem, self.files)

    # ------------------------------------------------------------------ feeding

    @property
    def ordered(self) -> bool:
        return self.order is not None

    @property
    def sweeps(self) -> int:
        """Completed sweeps observed so far (Q⁰ excluded)."""
        return 0 if self.state is None else self.state.sweep

    def observe(self, blocks: Mapping[str, Any]) -> None:
        """The first call gives Q⁰, each later one the iterate after one more sweep (every block of the variant)."""
        if self.state is None:
            self._start(self._as_state(blocks, 0))
            return
        if not self.ordered:  # one row per iterate, keeping only the previous one
            self.state = self._as_state(blocks, self.state.sweep + 1)
            self._rows.add(self.state)
            return
        if self._cursor:
            raise ValueError(f"observe() got a whole iterate in the middle of sweep {self.state.sweep + 1} "
                             f"({self._cursor} of {len(self._schedule)} blocks observed block by block)")
        checked = self._as_state(blocks, self.state.sweep + 1)
        for step in self._schedule:
            self.observe_block(step.name, checked.get(step.block, step.layer))

    def observe_block(self, name: str, value) -> None:
        """One block update, in the declared order (ordered audits only): the recorder sees the state just before
        it and the new block, exactly as for an update of our own engine."""
        if not self.ordered:
            raise ValueError("observe_block needs a declared update order (Auditor(..., order=...))")
        if self.state is None:
            raise ValueError("observe Q⁰ first (observe(blocks) with every block of the initial iterate)")
        step = self._schedule[self._cursor]
        k = self.state.sweep + 1
        if name != step.name:
            raise ValueError(f"observed block {name!r} at step {self._cursor} of sweep {k}, but the declared order "
                             f"updates {step.name} there: {', '.join(s.name for s in self._schedule)}")
        old = self.state.get(step.block, step.layer)
        new = self._as_tensor(name, value, tuple(old.shape), k)
        self._recorder.on_step(k, step, self.state, new, {})
        self.state.set(step.block, step.layer, new)
        self._cursor += 1
        if self._cursor == len(self._schedule):
            self._cursor = 0
            self.state.sweep = k
            rec = {SWEEP: k, TIME_ENGINE: math.nan, TIME_HOOKS: math.nan, TIME_EVAL: math.nan,
                   **evaluate(self.state, self.problem, with_accuracy=True)}
            self._recorder.on_sweep_end(k, self.state, rec)

    def _start(self, state: BCDState) -> None:
        self.state = state
        state.sweep = 0
        if self.ordered:
            self._recorder.on_run_start(self.problem, state)
        else:
            self._rows.add(state)

    # ------------------------------------------------------------------ conversion and validation

    def _as_tensor(self, key: str, a, shape: tuple[int, ...], k: int) -> Tensor:
        X = self.problem.X
        t = a.detach() if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
        if not (torch.is_floating_point(t) or t.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"iterate {k}: {key} has dtype {t.dtype}; allowed: a real floating or integer dtype")
        if tuple(t.shape) != shape:
            raise ValueError(f"iterate {k}: {key} has shape {tuple(t.shape)}; expected {shape} "
                             "(W: d_i×(d_(i-1)+1) with the bias last; V, U: d_i×n, samples as columns)")
        t = t.to(dtype=X.dtype, device=X.device)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"iterate {k}: {key} contains NaN or Inf; every block must be finite")
        return t.clone()

    def _as_state(self, blocks: Mapping[str, Any], k: int) -> BCDState:
        """Every block of the variant, shape- and value-checked (the keys W1..WN, V1..VN[, U1..UN])."""
        p = self.problem
        widths, n, N = p.widths, p.n, self.config.N
        expected = [f"{b}{i}" for b, i in p.variables]
        missing = [x for x in expected if x not in blocks]
        if missing:
            raise ValueError(f"iterate {k} has no block(s) {', '.join(missing)}; every iterate needs "
                             f"{', '.join(expected)}")
        extra = sorted(set(blocks) - set(expected))
        if extra:
            raise ValueError(f"iterate {k} has block(s) {', '.join(extra)} that the {p.variant!r} variant does not "
                             f"have (its blocks: {', '.join(expected)}); declare the order of the implementation "
                             "that wrote them")
        W, V, U = [None], [p.X], [None]
        for i in range(1, N + 1):
            W.append(self._as_tensor(f"W{i}", blocks[f"W{i}"], (widths[i], widths[i - 1] + 1), k))
            V.append(self._as_tensor(f"V{i}", blocks[f"V{i}"], (widths[i], n), k))
            U.append(self._as_tensor(f"U{i}", blocks[f"U{i}"], (widths[i], n), k) if ("U", i) in p.variables
                     else None)
        return BCDState(W, V, U, k)

    # ------------------------------------------------------------------ results

    def trace(self) -> Trace:
        """The audit trace: per update (ordered) or per iterate (unordered)."""
        if self.state is None:
            raise ValueError("the auditor has observed no iterate")
        if self._cursor:
            raise ValueError(f"sweep {self.state.sweep + 1} is incomplete: {self._cursor} of "
                             f"{len(self._schedule)} blocks observed")
        if self.sweeps < 1:
            raise ValueError("the audit needs at least two iterates (Q⁰ and one sweep); got one")
        if self.ordered:
            # inner-solver blocks reach an audit with no solver report (rule_held NaN): the checks judge their
            # stopping rule from the recomputed stationarity (verification.check_common.rule_record)
            tr = self._recorder.trace()
            meta = dict(tr.meta)
            meta.update({S.META_SOURCE: "audit", META_ORDER: [s.name for s in self._schedule]})
            if self.files is not None:
                meta[S.META_FILES] = self.files
            return Trace(tr.sweeps, tr.blocks, meta)
        return self._rows.trace()

    def verify(self) -> list:
        """Every check on :meth:`trace` (see :func:`verification.checks.verify`)."""
        from verification.checks import verify

        return verify(self.trace(), self.config)


def _never(state, problem, i, aux):  # a replayed step is never computed: its new block is observed
    raise RuntimeError("an audit step is replayed from observed iterates, never computed")


class _IterateRows:
    """Iterate-level rows of an audit without an order, built as the iterates arrive (only the previous one kept):
    L̄ and its terms, ‖ΔQ‖², block norms, B and the least-norm subgradient at each Q^k."""

    def __init__(self, problem: Problem, files: Sequence[str] | None) -> None:
        cfg = problem.config
        self.problem, self.files, self.n = problem, files, problem.n_total
        self.consts = RunConstants(cfg, problem.widths, self.n)
        self.order = {(s.block, s.layer): j for j, s in enumerate(schedule_for(cfg.splitting, cfg.N))}
        self.rows: list[dict[str, Any]] = []
        self.blocks: list[dict[str, Any]] = []
        self.prev: BCDState | None = None
        self.B = self.cum_dq = self.cum_g_sq = 0.0
        self.norm_X_tilde = math.sqrt(float(block_sq("V", problem.X)) + self.n)  # ‖X̃‖ = ‖[X; 1ᵀ]‖

    def add(self, state: BCDState) -> None:
        problem, prev, k = self.problem, self.prev, len(self.rows)
        terms = objective_terms(state, problem)
        g_all = least_norm_subgradient(state, problem)
        keys = [(b, i) for b, i, _ in state.blocks()]
        stats = [block_sq(b, g_all.parts[(b, i)]) for b, i in keys]
        stats += [block_norm(b, t) for b, _, t in state.blocks()]
        if prev is not None:
            stats += [block_sq(b, state.get(b, i) - prev.get(b, i)) for b, i in keys]
        host = torch.stack(stats).cpu().tolist()
        m = len(keys)
        g_sq, norms, d_sq = host[:m], host[m:2 * m], host[2 * m:]
        row: dict[str, Any] = {S.SWEEP: k, S.INSTRUMENTED: True, S.OBJECTIVE: terms[S.OBJECTIVE]}
        row.update({t.id: terms[t.id] for t in problem.terms})
        acc = evaluate(state, problem, with_accuracy=True)
        row[S.TRAIN_ACC], row[S.TEST_ACC] = acc[TRAIN_ACC], acc[TEST_ACC]
        row[S.DECREASE] = self.rows[-1][S.OBJECTIVE] - row[S.OBJECTIVE] if self.rows else math.nan
        row[S.DQ_SQ] = sum(d_sq) if prev is not None else math.nan
        row[S.G_NORM] = math.sqrt(sum(g_sq))
        row[S.G_NORM_LOWER] = math.sqrt(max(float(g_all.lower_sq), 0.0))
        for b, col in (("W", S.NORM_W_MAX), ("V", S.NORM_V_MAX), ("U", S.NORM_U_MAX)):
            row[col] = max((v for (bb, _), v in zip(keys, norms, strict=True) if bb == b), default=math.nan)
        self.B = max(self.B, iterate_bound(row[S.NORM_W_MAX], row[S.NORM_V_MAX], row[S.NORM_U_MAX], self.n,
                                           self.norm_X_tilde))
        row[S.BOUND_B] = self.B
        if prev is not None:
            self.cum_dq += math.sqrt(row[S.DQ_SQ])
            self.cum_g_sq += sum(g_sq)
        row[S.CUM_DQ], row[S.CUM_G_SQ] = self.cum_dq, self.cum_g_sq
        self.rows.append(row)
        if prev is not None:
            for j, (b, i) in enumerate(keys):
                self.blocks.append({S.SWEEP: k, S.STEP: self.order[(b, i)], S.BLOCK: b, S.LAYER: i,
                                    S.BLOCK_CONST: self.consts.block(b, i),
                                    S.BLOCK_DELTA_SQ: d_sq[j], S.BLOCK_G_NORM: math.sqrt(g_sq[j])})
        self.prev = state

    def trace(self) -> Trace:
        cfg, problem = self.problem.config, self.problem
        config = {**dataclasses.asdict(cfg), "hidden": list(cfg.hidden)}
        meta = {
            S.META_CONFIG: config, S.META_DTYPE: cfg.dtype, S.META_N_SAMPLES: self.n,
            S.META_WIDTHS: list(problem.widths), S.META_PRESET: "audit", S.META_SOURCE: "audit",
            S.META_SCHEDULE: {"every": 1}, S.META_G_DEFINITION: g_definition(problem),
            S.META_BLOCKS_ARE_UPDATES: False, META_ORDER: None, S.META_B_DEFINITION: "iterate_bound",
        }
        if self.files is not None:
            meta[S.META_FILES] = list(self.files)
        block_df = pd.DataFrame(self.blocks).sort_values([S.SWEEP, S.STEP], kind="stable").reset_index(drop=True) \
            if self.blocks else pd.DataFrame()
        return Trace(pd.DataFrame(self.rows), block_df, meta)


# --------------------------------------------------------------------------- what an audit could not check


def unchecked_claims(verdicts: list, trace: Trace) -> list[tuple[str, str]]:
    """(claim, why) for every guaranteed claim the audit left inconclusive — e.g. the per-update claims of an audit
    without a declared order, whose block rows describe iterates, not updates."""
    out = []
    for v in verdicts:
        if v.guaranteed and v.status == "inconclusive":
            why = v.explanation
            if trace.meta.get(S.META_BLOCKS_ARE_UPDATES) is False and v.claim in (MONOTONE, BLOCK_EXACTNESS):
                why = ("the update order is unknown, so the state before each block update is unknown: declare it "
                       "with --order to rebuild every block's subproblem (an inexact or wrong block update, such as a "
                       "Jacobi bias step, goes undetected without it)")
            out.append((v.claim, why))
    return out
