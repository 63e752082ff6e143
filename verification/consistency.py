"""A trace is checked against itself before any claim is checked on it.

Several columns of a trace are functions of others: L̄ is the sum of its terms, the sweep decrease is
L̄^{k−1} − L̄^k, the partial sums Σ‖ΔQ‖ and Σ‖g‖² accumulate their columns, and for a trace of block updates each
sweep's block decreases telescope to its sweep decrease and its block steps ‖Δ‖² add up to ‖ΔQ^k‖².  A saved trace
that breaks one of these identities (an edited file, a truncated write, two runs mixed in one directory) would
make the checks judge numbers that no run produced, so :func:`check_trace` refuses it, naming the column and the
sweep.  Tolerances are those of the checks (:mod:`verification.tolerance`), so a trace the recorder wrote passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bcd.config import BCDConfig
from bcd.model import variable_blocks, variant_name
from verification import schema as sc
from verification.tolerance import dtype_name, objective_tol, ratio_tol
from verification.trace import TRACE_BLOCKS, TRACE_META, TRACE_SWEEPS, Trace


def _fail(column: str, sweep: int, what: str) -> None:
    raise ValueError(f"the trace is inconsistent: {column} at sweep {sweep} {what}; it was not written by one run "
                     "of the recorder (edited, truncated or mixed with another run); re-record it")


def table_problem(trace: Trace) -> tuple[str, str] | None:
    """(file, why) when the trace's tables or meta are not of the shape the recorder writes, before any number is
    read: no sweep rows; a column of text where numbers belong; meta widths, dtype or config of another kind, or of
    another network or precision than each other; a recorded trace (``source`` "engine") without a column the
    recorder always writes; sweeps that are not distinct whole numbers; block rows of a block the network does not
    have, or of a sweep the sweep table lacks.  None when the shape is sound."""
    sw, bt, meta = trace.sweeps, trace.blocks, trace.meta
    if sw.empty:
        return TRACE_SWEEPS, "it has no sweep rows"
    for name, table in ((TRACE_SWEEPS, sw), (TRACE_BLOCKS, bt)):
        text = [c for c in table.columns if c not in sc.TEXT_COLUMNS and not pd.api.types.is_numeric_dtype(table[c])
                and not table[c].isna().all()]  # an empty table's columns have no dtype to speak of
        if text:
            return name, f"its column(s) {', '.join(map(repr, text))} hold {table[text[0]].dtype}, not numbers"
    why = _meta_problem(meta)
    if why is not None:
        return TRACE_META, why
    cfg = BCDConfig(**meta[sc.META_CONFIG]) if sc.META_CONFIG in meta else None  # a configuration: checked above
    widths = meta.get(sc.META_WIDTHS)
    if cfg is not None and meta.get(sc.META_SOURCE) == "engine":
        terms = sc.term_names(cfg, tuple(widths)) if widths is not None else ()
        for name, table, need in ((TRACE_SWEEPS, sw, (*sc.RECORDED_SWEEP_COLUMNS, *terms)),
                                  (TRACE_BLOCKS, bt, sc.RECORDED_BLOCK_COLUMNS)):
            missing = [c for c in need if c not in table]
            if missing:
                return name, f"it lacks the column(s) {', '.join(map(repr, missing))} the recorder always writes"
    return _rows_problem(sw, bt, cfg, widths)


def _meta_problem(meta: dict) -> str | None:
    """Why the meta's widths, dtype or config are not what the recorder writes (None when they are)."""
    widths, dtype = meta.get(sc.META_WIDTHS), meta.get(sc.META_DTYPE)
    if sc.META_WIDTHS in meta and not (isinstance(widths, list) and len(widths) >= 2 and all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)):
        return f"its {sc.META_WIDTHS!r} {widths!r} are not a list of positive integers d_0, ..., d_N"
    if sc.META_DTYPE in meta:
        try:
            dtype_name(dtype)
        except ValueError as e:
            return f"its {sc.META_DTYPE!r} {dtype!r} is not a precision: {e}"
    if sc.META_CONFIG not in meta:
        return None
    raw = meta[sc.META_CONFIG]
    if not isinstance(raw, dict):
        return f"its {sc.META_CONFIG!r} is {type(raw).__name__}, not an object of settings"
    try:
        cfg = BCDConfig(**raw)
    except (TypeError, ValueError) as e:
        return f"its {sc.META_CONFIG!r} is not a configuration: {e}"
    if widths is not None and list(widths[1:-1]) != list(cfg.hidden):
        return f"its {sc.META_CONFIG!r} has hidden widths {list(cfg.hidden)} but its {sc.META_WIDTHS!r} are {widths}"
    if dtype is not None and dtype != cfg.dtype:
        return f"its {sc.META_CONFIG!r} has dtype {cfg.dtype!r} but its {sc.META_DTYPE!r} is {dtype!r}"
    return None


def _rows_problem(sw: pd.DataFrame, bt: pd.DataFrame, cfg: BCDConfig | None,
                  widths: list[int] | None) -> tuple[str, str] | None:
    """(file, why) when a sweep number is not a whole number, a sweep has two rows, or a block row is of a sweep the
    sweep table lacks or of a block that the network (config and widths, where the meta has them) does not have."""
    for name, table in ((TRACE_SWEEPS, sw), (TRACE_BLOCKS, bt)):
        k = table.get(sc.SWEEP, pd.Series([], dtype=float))
        bad = k[~(k.notna() & (k >= 0) & (k % 1 == 0))]
        if len(bad):
            return name, f"its {sc.SWEEP!r} column holds {bad.iloc[0]}, not a sweep number 0, 1, 2, ..."
    if sc.SWEEP not in sw:
        return None
    twice = sw[sc.SWEEP].value_counts()
    twice = twice[twice > 1]
    if len(twice):
        return TRACE_SWEEPS, f"sweep {int(twice.index[0])} has {int(twice.iloc[0])} rows (one row per sweep)"
    if bt.empty or sc.SWEEP not in bt:
        return None
    orphans = sorted(set(bt[sc.SWEEP].astype(int)) - set(sw[sc.SWEEP].astype(int)))
    if orphans:
        return TRACE_BLOCKS, f"its rows of sweep {orphans[0]} have no row in {TRACE_SWEEPS}"
    if cfg is None or widths is None or sc.BLOCK not in bt or sc.LAYER not in bt:
        return None
    variant, N = variant_name(cfg), len(widths) - 1
    allowed = set(variable_blocks(variant, N))
    is_block = [(b, layer) in allowed for b, layer in zip(bt[sc.BLOCK], bt[sc.LAYER])]
    if not all(is_block):
        j = is_block.index(False)
        kinds = ", ".join(dict.fromkeys(b for b, _ in variable_blocks(variant, N)))
        return TRACE_BLOCKS, (f"its row at sweep {int(bt[sc.SWEEP].iloc[j])} has {sc.BLOCK} {bt[sc.BLOCK].iloc[j]} "
                              f"and {sc.LAYER} {bt[sc.LAYER].iloc[j]}, not a block of the {variant!r} network of {N} "
                              f"layers ({sc.BLOCK} {kinds}; {sc.LAYER} 1..{N})")
    return None


def check_trace(trace: Trace) -> None:
    """Raise ValueError (naming the column and the sweep) when the trace breaks one of its own identities."""
    problem = table_problem(trace)
    if problem is not None:
        raise ValueError(f"the trace's {problem[0]} is not as the recorder writes it: {problem[1]}")
    if sc.SWEEP not in trace.sweeps:
        raise ValueError(f"the trace's sweep table has no {sc.SWEEP!r} column; it was not written by the recorder "
                         "(edited or truncated); re-record it")
    sw = trace.sweeps.sort_values(sc.SWEEP)
    if sc.OBJECTIVE not in sw or sw.empty:
        return
    dtype = trace.meta.get(sc.META_DTYPE, "float64")
    k = sw[sc.SWEEP].to_numpy(dtype=int)
    L = sw[sc.OBJECTIVE].to_numpy(dtype=float)
    terms = [c for c in sc.term_names(trace.config, tuple(trace.meta[sc.META_WIDTHS]))
             if c in sw] if trace.meta.get(sc.META_WIDTHS) and sc.META_CONFIG in trace.meta else []
    if terms:
        total = sw[terms].to_numpy(dtype=float).sum(axis=1)
        tol = objective_tol(dtype, L) * len(terms)
        bad = np.flatnonzero(np.isfinite(L) & ~(np.abs(total - L) <= tol))
        if bad.size:
            j = bad[0]
            _fail(sc.OBJECTIVE, k[j], f"is {L[j]:.10g} but its terms sum to {total[j]:.10g}")
    if sc.DECREASE in sw and len(L) > 1:
        dec = sw[sc.DECREASE].to_numpy(dtype=float)[1:]
        expect = L[:-1] - L[1:]
        tol = objective_tol(dtype, L[:-1], L[1:])
        bad = np.flatnonzero(np.isfinite(expect) & ~(np.abs(dec - expect) <= tol))
        if bad.size:
            j = bad[0]
            _fail(sc.DECREASE, k[j + 1], f"is {dec[j]:.10g} but L̄ went from {L[j]:.10g} to {L[j + 1]:.10g}")
    for col, base, f in ((sc.CUM_DQ, sc.DQ_SQ, np.sqrt), (sc.CUM_G_SQ, sc.G_NORM, np.square)):
        if col in sw and base in sw and len(sw) > 1:
            x = f(np.maximum(sw[base].to_numpy(dtype=float)[1:], 0.0) if base == sc.DQ_SQ else
                  sw[base].to_numpy(dtype=float)[1:])
            got = sw[col].to_numpy(dtype=float)[1:]
            expect = np.cumsum(x)
            ok = ~np.isfinite(expect) | ~np.isfinite(got) | (np.abs(got - expect) <= 1e-9 * np.abs(expect) + 1e-300)
            if not ok.all():
                j = int(np.flatnonzero(~ok)[0])
                _fail(col, k[j + 1], f"is {got[j]:.10g} but the partial sum of its column is {expect[j]:.10g}")
    if trace.meta.get(sc.META_BLOCKS_ARE_UPDATES, True) and not trace.blocks.empty:
        _check_blocks(trace.blocks, sw, dtype, L, k)


def _check_blocks(bt: pd.DataFrame, sw: pd.DataFrame, dtype: str, L: np.ndarray, k: np.ndarray) -> None:
    missing = [c for c in (sc.SWEEP, sc.BLOCK, sc.LAYER) if c not in bt]
    if missing:
        raise ValueError(f"the trace's block table has no {', '.join(map(repr, missing))} column; it was not written "
                         "by the recorder (edited or truncated); re-record it")
    per = bt.groupby(sc.SWEEP)
    sweep_row = {int(s): j for j, s in enumerate(k)}
    n_blocks = int(per.size().max())
    for s, rows in per:
        j = sweep_row.get(int(s))
        if j is None or j == 0 or len(rows) < n_blocks:
            continue
        if sc.BLOCK_DECREASE in rows and sc.DECREASE in sw and rows[sc.BLOCK_DECREASE].notna().all():
            total = float(rows[sc.BLOCK_DECREASE].sum())
            dec = float(sw[sc.DECREASE].iloc[j])
            noise = float(rows[sc.BLOCK_NOISE].fillna(0.0).sum()) if sc.BLOCK_NOISE in rows else 0.0
            tol = objective_tol(dtype, L[j - 1], L[j]) * len(rows) + objective_tol(dtype, L[j - 1], L[j], noise=noise)
            if np.isfinite(dec) and not abs(total - dec) <= tol:
                _fail(sc.BLOCK_DECREASE, int(s), f"sums to {total:.10g} over the sweep's blocks but the sweep "
                      f"decrease is {dec:.10g}")
        if sc.BLOCK_DELTA_SQ in rows and sc.DQ_SQ in sw and rows[sc.BLOCK_DELTA_SQ].notna().all():
            total = float(rows[sc.BLOCK_DELTA_SQ].sum())
            dq = float(sw[sc.DQ_SQ].iloc[j])
            if np.isfinite(dq) and not abs(total - dq) <= ratio_tol(dtype) * max(abs(dq), 1e-300):
                _fail(sc.BLOCK_DELTA_SQ, int(s), f"sums to {total:.10g} over the sweep's blocks but ‖ΔQ‖² is "
                      f"{dq:.10g}")
