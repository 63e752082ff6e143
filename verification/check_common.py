"""Shared machinery of the checks: the context a check runs in (config, dtype, N), the
"inconclusive because data is missing" path, and the ``guaranteed`` flag from theory.assumptions."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from bcd.config import BCDConfig, RunConfig
from theory import constants as tc
from verification import schema as sc
from verification.tolerance import dtype_name, ratio_tol
from verification.trace import Trace
from verification.verdict import INCONCLUSIVE, Verdict


class MissingDataError(Exception):
    """A column, a table or the config a check needs is absent: the verdict is inconclusive."""


@dataclass(frozen=True)
class Context:
    trace: Trace
    config: BCDConfig | None
    dtype: str
    N: int | None
    n: int | None = None

    def need_config(self, why: str) -> BCDConfig:
        if self.config is None:
            raise MissingDataError(f"no configuration (neither passed nor in trace.meta['config']); needed for {why}")
        return self.config

    def constants(self, why: str) -> tc.RunConstants:
        widths = self.trace.meta.get(sc.META_WIDTHS)
        return tc.RunConstants(self.need_config(why), tuple(widths) if widths else None, self.n)

    def need_N(self) -> int:
        if self.N is None:
            raise MissingDataError("the number of layers N is unknown (no config and no trace.meta['widths'])")
        return self.N

    def sweeps(self, *columns: str) -> pd.DataFrame:
        """The sweep table sorted by sweep, with the named columns required to exist."""
        return _require(self.trace.sweeps, "sweep table", (sc.SWEEP, *columns)).sort_values(sc.SWEEP)

    def blocks(self, *columns: str) -> pd.DataFrame:
        """The block table sorted by (sweep, step), with the named columns required to exist; only for
        traces whose block rows are block *updates* (not the per-iterate rows of an audit trace)."""
        if self.trace.meta.get(sc.META_BLOCKS_ARE_UPDATES, True) is False:
            raise MissingDataError("the block rows of this trace describe iterates, not block updates (audit trace)")
        keys = (sc.SWEEP, sc.STEP, sc.BLOCK, sc.LAYER)
        return _require(self.trace.blocks, "block table", (*keys, *columns)).sort_values([sc.SWEEP, sc.STEP])


def _require(df: pd.DataFrame | None, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if df is None or len(df) == 0:
        raise MissingDataError(f"the {what} is empty")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingDataError(f"the {what} has no column(s) {missing} (a cheaper preset, or an audit trace)")
    empty = [c for c in columns if not df[c].notna().any()]
    if empty:
        raise MissingDataError(f"column(s) {empty} of the {what} hold no values (not recorded on this schedule)")
    return df


def as_config(config: Any) -> BCDConfig | None:
    if config is None or isinstance(config, BCDConfig):
        return config
    if isinstance(config, RunConfig):
        return config.bcd
    if isinstance(config, dict):
        return BCDConfig(**config)
    raise ValueError(
        f"config={config!r} is not allowed; give a BCDConfig, a RunConfig, a dict of BCDConfig fields or None"
    )


def make_context(trace: Trace, config: Any = None) -> Context:
    if not isinstance(trace, Trace):
        raise ValueError(f"trace must be a verification.trace.Trace; got {type(trace).__name__}")
    cfg = as_config(config)
    if cfg is None and trace.meta.get(sc.META_CONFIG):
        cfg = as_config(trace.meta[sc.META_CONFIG])
    raw_dtype = trace.meta.get(sc.META_DTYPE) or (cfg.dtype if cfg is not None else None)
    if raw_dtype is None:
        raise ValueError(f"the trace's dtype is unknown: set trace.meta[{sc.META_DTYPE!r}] or pass a config")
    widths = trace.meta.get(sc.META_WIDTHS)
    N = cfg.N if cfg is not None else (len(widths) - 1 if widths else None)
    n = trace.meta.get(sc.META_N_SAMPLES)
    return Context(trace, cfg, dtype_name(raw_dtype), N, int(n) if n is not None else None)


def guaranteed(config: BCDConfig | None, claim: str, n: int | None = None) -> tuple[bool | None, str]:
    """Whether the theory guarantees ``claim`` for ``config`` (theory.assumptions), and why not decided."""
    if config is None:
        return None, "no configuration: applicability not decided"
    try:
        from theory.assumptions import applicability
    except ImportError as e:
        return None, f"theory.assumptions is not available ({e}); applicability not decided"
    try:
        return bool(applicability(config, n=n).guaranteed(claim)), "theory.assumptions.applicability"
    except (KeyError, ValueError) as e:
        return None, f"theory.assumptions could not decide this claim: {e}"


def claim_check(claim: str, title: str) -> Callable:
    """Decorate ``f(ctx, **constants) -> Verdict`` into ``check(trace, config=None, **constants)``.

    Missing data becomes an inconclusive verdict stating what is missing; ``guaranteed`` is filled in."""

    def wrap(f: Callable[..., Verdict]) -> Callable[..., Verdict]:
        @functools.wraps(f)
        def check(trace: Trace, config: Any = None, **constants: Any) -> Verdict:
            ctx = make_context(trace, config)
            try:
                v = f(ctx, **constants)
            except (MissingDataError, tc.UnknownConstant) as e:
                v = Verdict(claim, title, INCONCLUSIVE, explanation=f"not checked: {e}",
                            tolerance_reason="none applied: nothing was compared")
            g, why = guaranteed(ctx.config, claim, ctx.n)
            return dataclasses.replace(v, guaranteed=g, details={**v.details, "guaranteed_reason": why})

        check.claim = claim
        check.title = title
        return check

    return wrap


def bound_B(sw: pd.DataFrame) -> np.ndarray:
    """B_k: the recorded running bound on the iterates (theory.constants.iterate_bound), else — for a trace without
    that column — the running max of the per-kind block-norm maxima (which leaves out the ones row and X̃)."""
    if sc.BOUND_B in sw and sw[sc.BOUND_B].notna().any():
        return np.fmax.accumulate(sw[sc.BOUND_B].to_numpy(dtype=float))
    cols = [c for c in (sc.NORM_W_MAX, sc.NORM_V_MAX, sc.NORM_U_MAX) if c in sw]
    if not cols:
        raise MissingDataError(f"neither {sc.BOUND_B} nor the block-norm columns are recorded: B is unknown")
    return np.fmax.accumulate(np.nanmax(sw[cols].to_numpy(dtype=float), axis=1))


def b_per_sweep(ctx: Context, sw: pd.DataFrame, b: float | None = None,
                what: str = "b(B) = δ√(3N)") -> tuple[np.ndarray, np.ndarray]:
    """(b(B_k), B_k) per row of ``sw``: B_k the running bound on the iterates (:func:`bound_B`) and b(B_k) the
    relative-error constant of theory.constants at it (NaN where B_k is not finite), or the caller's ``b`` on every
    row.  The one place the relative-error and rate checks get b from; raises tc.UnknownConstant where the theory
    gives none for this run (Algorithm 1 with a kinked σ, or a trace whose B predates the iterate bound it needs)."""
    B = bound_B(sw)
    if b is not None:
        return np.full(len(sw), float(b)), B
    K = ctx.constants(what)
    if K.variant == "two" and ctx.trace.meta.get(sc.META_B_DEFINITION) != "iterate_bound":
        raise tc.UnknownConstant("this trace's B predates the iterate bound that Algorithm 1's b needs (‖Ṽ_i‖ "
                                 "with its ones row, X̃): re-record the run to compare with b")
    return np.array([K.b(x) if np.isfinite(x) else np.nan for x in B]), B


def block_name(block: Any, layer: Any) -> str:
    return f"{block}{int(layer)}"


def finite(x: Any) -> np.ndarray:
    return np.isfinite(np.asarray(x, dtype=float))


def fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4g}"


# ------------------------------------------------------------------ inner solves that stopped without their rule
class RuleRecord(NamedTuple):
    """Per row of a trace's blocks: an inner solve, a solver reported on it (``rule_held``), the stopping rule held,
    the recomputed stationarity dist(0, ∂Φ) meets the rule's tolerance η‖Δ‖, and those two numbers (NaN where
    absent)."""

    inner: np.ndarray
    reported: np.ndarray
    held: np.ndarray
    meets: np.ndarray
    stationarity: np.ndarray
    tolerance: np.ndarray


def rule_record(b: pd.DataFrame, dtype: str) -> RuleRecord:
    """Whether each row's inner solve met its stopping rule.  A solver's report (``rule_held``) says whether the rule
    held; a row without one but with a recomputed stationarity (a user's step, a mutant that publishes no
    ``aux["inner"]``, an audit) is judged by it: the rule held where dist(0, ∂Φ) ≤ η‖Δ‖ up to the rounding of the two
    recomputed norms."""
    nan = pd.Series(np.nan, index=b.index)
    report, stat, rtol = (b.get(c, nan) for c in (sc.BLOCK_RULE_HELD, sc.BLOCK_STATIONARITY, sc.BLOCK_RULE_TOL))
    stat, rtol = stat.to_numpy(dtype=float), rtol.to_numpy(dtype=float)
    meets = stat <= rtol + rtol * ratio_tol(dtype) + np.finfo(float).tiny
    reported = report.notna().to_numpy()
    inner = reported | ~np.isnan(stat)
    held = np.where(reported, report.to_numpy(dtype=float) == 1.0, meets) & inner
    return RuleRecord(inner, reported, held, meets, stat, rtol)


def capped_rows(b: pd.DataFrame, dtype: str) -> np.ndarray:
    """Rows of an inner solve that stopped without its rule (the cap, or a stall): only monotone (MATH.md §7)."""
    r = rule_record(b, dtype)
    return r.inner & ~r.held


def capped_constants(ctx, b: pd.DataFrame) -> np.ndarray:
    """:func:`theory.constants.capped_block_constant` of every row (0 without a config: α and the variant unknown)."""
    if ctx.config is None:
        return np.zeros(len(b))
    K = ctx.constants("the constants of capped inner solves")
    return np.array([tc.capped_block_constant(x, int(i), K.config.N, K.config.alpha, K.variant)
                     for x, i in zip(b[sc.BLOCK], b[sc.LAYER], strict=True)])


def capped_sweep_constants(ctx) -> dict[int, float]:
    """{sweep: the least capped-solve constant of its blocks} over the sweeps with an inner solve that stopped without
    its rule; a sweep's constant a is then at most that (its other blocks keep theirs, which are ≥ a)."""
    try:
        bt = ctx.blocks()
    except MissingDataError:
        return {}
    off = capped_rows(bt, ctx.dtype)
    if not off.any():
        return {}
    rows = bt[off]
    return {int(k): float(c) for k, c in pd.Series(capped_constants(ctx, rows), index=rows[sc.SWEEP].to_numpy())
            .groupby(level=0).min().items()}


def sweeps_without_rule(ctx) -> set[int]:
    """Sweeps with an inner solve that stopped without its rule: relative error is not guaranteed there (MATH.md §7
    item 2(c))."""
    return set(capped_sweep_constants(ctx))
