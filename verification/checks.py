"""The theorem checks (MATH.md §4): one function per claim, each taking a :class:`Trace` (+ optional
constants) and returning a :class:`Verdict` — measured and theoretical side by side, the worst
sweep/block, the margin, the tolerance and why.  ``verify(trace, config)`` runs them all.

Every one-sided comparison goes through :mod:`verification.tolerance`: a violation larger than the
tolerance fails, a quantity below the noise floor is inconclusive (never a pass).

This module holds the per-update claims (monotone descent, sufficient descent, relative error,
block exactness); the asymptotic ones (rate, convergence, KL exponent) are in
:mod:`verification.checks_tail`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from theory import constants as tc
from verification import schema as sc
from verification.check_common import (
    MissingDataError,
    b_per_sweep,
    block_name,
    bound_B,
    capped_constants,
    capped_rows,
    capped_sweep_constants,
    claim_check,
    finite,
    fmt,
    make_context,
    rule_record,
    sweeps_without_rule,
)
from verification.checks_tail import convergence, kl_exponent, rate
from verification.consistency import check_trace
from verification.tolerance import (
    objective_tol,
    objective_tol_reason,
    ratio_tol,
    ratio_tol_reason,
    residual_tol,
    residual_tol_reason,
    step_floor,
)
from verification.trace import Trace
from verification.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

__all__ = [
    "CHECKS", "block_exactness", "bound_B", "convergence", "kl_exponent", "monotone_descent", "rate",
    "relative_error", "sufficient_descent", "sweep_decreases", "verify",
]

MAX_LISTED = 20  # violations listed in a verdict's details


# ----------------------------------------------------------------------------------- observations
def sweep_decreases(ctx) -> pd.DataFrame:
    """One row per sweep k ≥ 1 whose predecessor is in the trace: sweep, L_prev = L̄^{k−1}, L = L̄^k,
    decrease = L̄^{k−1} − L̄^k (the ``decrease`` column when recorded, else the difference), and
    ``dQ_sq`` when recorded.  Rows with a non-finite L̄ are kept (they fail every descent check).
    Raises :class:`MissingDataError` (→ inconclusive) when the trace has no sweep after Q⁰."""
    df = ctx.sweeps(sc.OBJECTIVE)
    k = df[sc.SWEEP].to_numpy(dtype=int)
    L = df[sc.OBJECTIVE].to_numpy(dtype=float)
    L_prev = np.full_like(L, np.nan)
    consecutive = k[1:] == k[:-1] + 1
    L_prev[1:][consecutive] = L[:-1][consecutive]
    d = df[sc.DECREASE].to_numpy(dtype=float) if sc.DECREASE in df else np.full_like(L, np.nan)
    d = np.where(np.isfinite(d), d, L_prev - L)
    L_prev = np.where(np.isfinite(L_prev), L_prev, L + d)
    out = pd.DataFrame({sc.SWEEP: k, "L_prev": L_prev, "L": L, "decrease": d})
    if sc.DQ_SQ in df:
        out[sc.DQ_SQ] = df[sc.DQ_SQ].to_numpy(dtype=float)
    keep = (k >= 1) & (np.isfinite(d) | ~np.isfinite(L))
    if not keep.any():
        raise MissingDataError("the trace has no sweep after Q⁰")
    return out[keep].reset_index(drop=True)


def _block_observations(ctx, sweep_tbl: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Block table rows with L_before/L_after of each single update, reconstructed exactly as
    L̄^{k−1} minus the decreases of the earlier updates of sweep k."""
    b = ctx.blocks(sc.BLOCK_DECREASE, *columns).reset_index(drop=True)
    start = dict(zip(sweep_tbl[sc.SWEEP], sweep_tbl["L_prev"], strict=True))
    fallback = float(np.nanmax(np.abs(sweep_tbl["L"]))) if len(sweep_tbl) else 1.0
    L0 = b[sc.SWEEP].map(start).astype(float).fillna(fallback).to_numpy()
    d = b[sc.BLOCK_DECREASE].to_numpy(dtype=float)
    after = L0 - b.assign(_d=d).groupby(sc.SWEEP)["_d"].cumsum().to_numpy()
    b["L_before"], b["L_after"] = after + d, after
    b["name"] = [block_name(x, i) for x, i in zip(b[sc.BLOCK], b[sc.LAYER], strict=True)]
    b["noise"] = b[sc.BLOCK_NOISE].to_numpy(dtype=float) if sc.BLOCK_NOISE in b else 0.0
    return b


def _obs_frame(level: str, sweep, name, step, decrease, tol, const=0.0, delta_sq=np.nan, resolved=None):
    """One row per observation of "decrease ≥ bound = const·delta_sq" (monotone descent: const = 0).
    ``resolved`` defaults to "the bound is above the noise floor" (for const = 0: the decrease is)."""
    obs = pd.DataFrame(
        {"level": level, "sweep": np.asarray(sweep, dtype=int), "block": name, "step": step,
         "decrease": np.asarray(decrease, dtype=float), "tol": np.asarray(tol, dtype=float),
         "const": np.broadcast_to(np.asarray(const, dtype=float), np.shape(np.asarray(sweep))),
         "delta_sq": np.broadcast_to(np.asarray(delta_sq, dtype=float), np.shape(np.asarray(sweep)))}
    )
    obs["bound"] = np.where(obs["const"] > 0, obs["const"] * obs["delta_sq"], 0.0)
    obs["resolved"] = (obs["decrease"] >= obs["tol"]) if resolved is None else np.asarray(resolved, dtype=bool)
    return obs


def _where(row: pd.Series) -> dict[str, Any]:
    w: dict[str, Any] = {"level": row["level"], "sweep": int(row["sweep"])}
    if row["level"] == "block":
        w["block"], w["step"] = row["block"], int(row["step"])
    return w


def _place(w: dict[str, Any]) -> str:
    return f"sweep {w['sweep']}" + (f", block {w['block']} (step {w['step']})" if "block" in w else " (whole sweep)")


def _violations(obs: pd.DataFrame) -> pd.DataFrame:
    """Rows whose decrease falls short of the bound by more than the tolerance (NaN L̄ counts)."""
    obs = obs.assign(shortfall=obs["bound"] - obs["decrease"])
    return obs[~(obs["shortfall"] <= obs["tol"])]


def _violation_list(viol: pd.DataFrame) -> list[dict[str, Any]]:
    rows = viol.sort_values("shortfall", ascending=False).head(MAX_LISTED)
    return [{**_where(r), "decrease": r["decrease"], "bound": r["bound"], "constant": r["const"],
             "shortfall": r["shortfall"], "tolerance": r["tol"]} for _, r in rows.iterrows()]


def _worst(obs: pd.DataFrame) -> pd.Series:
    """The observation closest to (or furthest beyond) its bound, in units of its tolerance."""
    score = ((obs["decrease"] - obs["bound"]) / obs["tol"]).fillna(-np.inf)
    return obs.loc[score.idxmin()]


def _nonfinite_verdict(claim: str, title: str, sweeps: pd.DataFrame, dtype: str) -> Verdict | None:
    bad = sweeps[~np.isfinite(sweeps["L"])]
    if bad.empty:
        return None
    k = int(bad[sc.SWEEP].iloc[0])
    return Verdict(claim, title, FAIL, measured=float("inf"), theoretical=0.0, relation="L̄ finite",
                   worst={"level": "sweep", "sweep": k}, tolerance=0.0, tolerance_reason=objective_tol_reason(dtype),
                   explanation=f"L̄ is not finite at sweep {k}: the iterates diverged",
                   details={"violations": [{"level": "sweep", "sweep": k, "decrease": float("-inf"), "bound": 0.0,
                                            "shortfall": float("inf"), "tolerance": 0.0}]})


# ---------------------------------------------------------------------------------- 1. monotone
@claim_check(tc.MONOTONE, "Monotone descent of L̄ per block update and per sweep")
def monotone_descent(ctx, per_block: bool = True) -> Verdict:
    """L̄ never increases: L̄^{k−1} − L̄^k ≥ 0 per sweep, and L̄ before − L̄ after ≥ 0 for each single
    block update (MATH.md §4.1).  Fails on an increase > tol, inconclusive if no decrease is resolved."""
    claim, title = monotone_descent.claim, monotone_descent.title
    sw = sweep_decreases(ctx)
    bad = _nonfinite_verdict(claim, title, sw, ctx.dtype)
    if bad is not None:
        return bad
    tol = objective_tol(ctx.dtype, sw["L_prev"], sw["L"])  # L̄ evaluated at both ends: the |L̄| term
    parts = [_obs_frame("sweep", sw[sc.SWEEP], "", -1, sw["decrease"], tol)]
    levels, note = ["sweep"], ""
    if per_block:
        try:
            b = _block_observations(ctx, sw)
        except MissingDataError as e:
            note = f" Per-block level not checked: {e}."
        else:
            btol = objective_tol(ctx.dtype, b["L_before"], b["L_after"], noise=b["noise"])
            d = b[sc.BLOCK_DECREASE]
            parts.append(_obs_frame("block", b[sc.SWEEP], b["name"], b[sc.STEP], d, btol))
            levels.append("block")
    obs = pd.concat(parts, ignore_index=True)
    viol = _violations(obs)
    worst = _worst(obs)
    where = _where(worst)
    n_res = int(obs["resolved"].sum())
    counts = {lv: int((obs["level"] == lv).sum()) for lv in levels}
    details = {"levels": levels, "n_observations": counts, "n_resolved": n_res,
               "n_below_noise": int(len(obs) - n_res - len(viol)), "violations": _violation_list(viol)}
    increase = -float(worst["decrease"])
    common = dict(measured=float(-obs["decrease"].min()), theoretical=0.0, relation="max increase ≤ 0 (+tol)",
                  worst=where, margin=float(obs["decrease"].min()), tolerance=float(worst["tol"]),
                  tolerance_reason=objective_tol_reason(ctx.dtype, block_noise="block" in levels), details=details)
    if len(viol):
        return Verdict(claim, title, FAIL, **common, explanation=(
            f"L̄ rose by {increase:.3e} at {_place(where)}, beyond the tolerance {worst['tol']:.3e}; "
            f"{len(viol)} increase(s) beyond tolerance in {len(obs)} observations.{note}"))
    if n_res == 0:
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"every change of L̄ is below the noise floor (|ΔL̄| < tol ≈ {float(obs['tol'].max()):.3e}): "
            f"descent cannot be resolved in {ctx.dtype} at this |L̄|.{note}"))
    return Verdict(claim, title, PASS, **common, explanation=(
        f"L̄ never rose beyond tolerance over {', '.join(f'{v} {k} observations' for k, v in counts.items())}; "
        f"{n_res} decreases resolved, {details['n_below_noise']} below the noise floor.{note}"))


# ------------------------------------------------------------------------ 2. sufficient descent
@claim_check(tc.SUFFICIENT_DESCENT, "Sufficient descent L̄^{k−1} − L̄^k ≥ a‖ΔQ^k‖²")
def sufficient_descent(ctx, a: float | None = None, per_block: bool = True) -> Verdict:
    """Sweep level: L̄^{k−1} − L̄^k ≥ a‖ΔQ^k‖², a = min(α, γ)/2; block level: each update lowers L̄ by
    ≥ c_blk‖Δ‖² with its own constant (theory.constants).  a_emp = min_k decrease/‖ΔQ^k‖² over the
    sweeps where a‖ΔQ^k‖² is above the noise floor."""
    claim, title = sufficient_descent.claim, sufficient_descent.title
    if a is None:
        a = ctx.constants("the constant a = min(α, γ)/2").a()
    sw = sweep_decreases(ctx)
    bad = _nonfinite_verdict(claim, title, sw, ctx.dtype)
    if bad is not None:
        return bad
    parts, levels, notes = [], [], []
    if sc.DQ_SQ in sw and sw[sc.DQ_SQ].notna().any():
        s = sw[sw[sc.DQ_SQ].notna()]
        tol = objective_tol(ctx.dtype, s["L_prev"], s["L"])
        a_k = np.minimum(a, s[sc.SWEEP].map(capped_sweep_constants(ctx)).fillna(np.inf).to_numpy(dtype=float))
        parts.append(_obs_frame("sweep", s[sc.SWEEP], "", -1, s["decrease"], tol, a_k, s[sc.DQ_SQ],
                                resolved=a_k * s[sc.DQ_SQ] >= tol))
        levels.append("sweep")
    else:
        notes.append(f"sweep level not checked: no {sc.DQ_SQ} column")
    if per_block:
        try:
            b = _block_observations(ctx, sw, sc.BLOCK_DELTA_SQ)
        except MissingDataError as e:
            notes.append(f"block level not checked: {e}")
        else:
            c = _block_constants(ctx, b)
            btol = objective_tol(ctx.dtype, b["L_before"], b["L_after"], noise=b["noise"])
            dsq = b[sc.BLOCK_DELTA_SQ].to_numpy(dtype=float)
            parts.append(_obs_frame("block", b[sc.SWEEP], b["name"], b[sc.STEP], b[sc.BLOCK_DECREASE], btol, c, dsq,
                                    resolved=c * dsq >= btol))
            levels.append("block")
    if not parts:
        raise MissingDataError("; ".join(notes))
    obs = pd.concat(parts, ignore_index=True)
    viol = _violations(obs)
    res = obs[obs["resolved"] & (obs["bound"] > 0)]
    ratio = res["decrease"] / res["delta_sq"]  # the empirical constant of each resolved observation
    at_sweep = res["level"] == "sweep"
    a_emp = float(ratio[at_sweep].min()) if at_sweep.any() else None
    per_blk = {name: {"a_emp": float(ratio[idx].min()), "constant": float(res.loc[idx[0], "const"])}
               for name, idx in res[~at_sweep].groupby("block").groups.items()}
    worst = _worst(obs)
    details = {"levels": levels, "a": a, "a_emp": a_emp, "per_block": per_blk, "n_resolved": len(res),
               "n_below_noise": int(len(obs) - len(res) - len(viol)), "violations": _violation_list(viol),
               "notes": notes}
    # measured: a_emp of the sweeps; with the block level only, the tightest block's ratio scaled to a
    measured = a_emp if a_emp is not None else (
        min(v["a_emp"] / v["constant"] for v in per_blk.values()) * a if per_blk else None)
    common = dict(measured=measured, theoretical=a, relation="a_emp ≥ a", worst=_where(worst),
                  margin=None if measured is None else measured - a, tolerance=float(worst["tol"]),
                  tolerance_reason=objective_tol_reason(ctx.dtype, block_noise="block" in levels), details=details)
    if len(viol):
        w = viol.loc[(viol["shortfall"] / viol["tol"]).idxmax()]
        wp = _where(w)
        ratio_w = w["decrease"] / w["delta_sq"] if w["delta_sq"] > 0 else float("nan")
        return Verdict(claim, title, FAIL, **{**common, "worst": wp, "tolerance": float(w["tol"])}, explanation=(
            f"at {_place(wp)} L̄ fell by {w['decrease']:.4g} but the bound requires {w['bound']:.4g} "
            f"(ratio {ratio_w:.4g} vs constant {w['const']:.4g}; shortfall {w['shortfall']:.3e} > tolerance "
            f"{w['tol']:.3e}); {len(viol)} violation(s)"))
    if len(res) == 0:
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            "every bound c‖Δ‖² is below the noise floor of L̄: sufficient descent cannot be resolved"))
    blk = min(per_blk.items(), key=lambda kv: kv[1]["a_emp"] / kv[1]["constant"]) if per_blk else None
    blk_txt = f"; tightest block {blk[0]}: {blk[1]['a_emp']:.4g} ≥ {blk[1]['constant']:.4g}" if blk else ""
    return Verdict(claim, title, PASS, **common, explanation=(
        f"a_emp = {fmt(a_emp)} ≥ a = {a:.4g} on {len(res)} resolved observations{blk_txt}"))


def _block_constants(ctx, b: pd.DataFrame) -> np.ndarray:
    """c_blk of every row from theory.constants (the recorder's descent_const column when no config); a row whose
    inner solve stopped without its rule gets :func:`theory.constants.capped_block_constant` instead."""
    if ctx.config is None:
        if sc.BLOCK_CONST not in b or not b[sc.BLOCK_CONST].notna().all():
            raise MissingDataError(f"no config and no {sc.BLOCK_CONST} column: the per-block constants are unknown")
        c = b[sc.BLOCK_CONST].to_numpy(dtype=float)
    else:
        K = ctx.constants("the per-block constants")
        c = np.array([K.block(x, int(i)) for x, i in zip(b[sc.BLOCK], b[sc.LAYER], strict=True)])
    off = capped_rows(b, ctx.dtype)
    return np.where(off, np.minimum(c, capped_constants(ctx, b)), c) if off.any() else c


# --------------------------------------------------------------------------- 3. relative error
@claim_check(tc.RELATIVE_ERROR, "Relative error ‖g^k‖ ≤ b‖ΔQ^k‖")
def relative_error(ctx, b: float | None = None) -> Verdict:
    """b_emp = max_k ‖g^k‖/‖ΔQ^k‖ vs b(B_k) (theory.constants.RunConstants.b: δ√(3N) for Algorithm 2, more with
    skips and inner-solver blocks), B_k the running bound on the
    iterates; sweeps with ‖ΔQ^k‖ below the step noise floor are not resolved (and fail only if
    ‖g^k‖ exceeds b times that floor)."""
    claim, title = relative_error.claim, relative_error.title
    sw = ctx.sweeps(sc.G_NORM, sc.DQ_SQ)
    unknown = None
    try:
        b_k, B = b_per_sweep(ctx, sw, b)
    except tc.UnknownConstant as e:  # no theoretical b (Algorithm 1): b_emp is still measured and reported
        unknown, b_k, B = str(e), np.full(len(sw), np.nan), bound_B(sw)
    keep = (sw[sc.SWEEP].to_numpy() >= 1) & finite(sw[sc.G_NORM]) & finite(sw[sc.DQ_SQ])
    if not keep.any():
        raise MissingDataError(f"no sweep after Q⁰ has both {sc.G_NORM} and {sc.DQ_SQ}")
    k = sw[sc.SWEEP].to_numpy(dtype=int)[keep]
    g = sw[sc.G_NORM].to_numpy(dtype=float)[keep]
    dq = np.sqrt(np.maximum(sw[sc.DQ_SQ].to_numpy(dtype=float)[keep], 0.0))
    bk, Bk = b_k[keep], B[keep]
    floor = step_floor(ctx.dtype, np.nan_to_num(Bk, nan=1.0))
    rtol = ratio_tol(ctx.dtype)
    allowed = bk * np.maximum(dq, floor) * (1 + rtol)
    capped = np.isin(k, sorted(sweeps_without_rule(ctx)))  # an inner solve stopped without its rule: not guaranteed
    above_floor = dq > floor
    resolved = above_floor & ~capped  # b_emp is measured where the bound is claimed
    over = ~(g <= allowed) & (unknown is None)
    viol = over & ~capped
    ratio = np.where(resolved, g / np.where(resolved, dq, 1.0), np.nan)
    if unknown is not None:  # rank by the ratio itself
        bk = np.ones_like(ratio)
    b_final = float(bk[-1])
    b_emp = float(np.nanmax(ratio)) if resolved.any() else None
    j = int(np.nanargmax(np.where(viol, g / allowed, ratio / bk))) if (viol.any() or resolved.any()) else 0
    details: dict[str, Any] = {"B_final": float(Bk[-1]), "b_final": b_final, "b_emp": b_emp,
                               "median_ratio": float(np.nanmedian(ratio)) if resolved.any() else None,
                               "n_resolved": int(resolved.sum()), "n_below_floor": int((~above_floor).sum()),
                               "step_floor": float(np.max(floor)),
                               "violations": [{"level": "sweep", "sweep": int(k[i]), "g_norm": float(g[i]),
                                               "dQ_norm": float(dq[i]), "b": float(bk[i]),
                                               "tolerance": float(rtol)} for i in np.flatnonzero(viol)[:MAX_LISTED]],
                               "sweeps_with_capped_solves": [int(x) for x in k[capped]],
                               "over_b_where_capped": [int(x) for x in k[over & capped]]}
    lower_note = ""
    if ctx.trace.meta.get(sc.META_G_DEFINITION) == sc.G_BRACKET and sc.G_NORM_LOWER in sw:
        lo = sw[sc.G_NORM_LOWER].to_numpy(dtype=float)[keep]
        lo_ratio = np.where(resolved, lo / np.where(resolved, dq, 1.0), np.nan)
        details["b_emp_lower"] = float(np.nanmax(lo_ratio)) if np.isfinite(lo_ratio).any() else None
        if details["b_emp_lower"] is not None:
            lower_note = (f" (g^k is an element of ∂L; with the certified lower bound of the least norm the ratio "
                          f"is ≥ {details['b_emp_lower']:.4g})")
    bt = ctx.trace.blocks
    if sc.BLOCK_G_NORM in bt and sc.BLOCK in bt and len(bt):  # which block's component of g^k is largest
        names = [block_name(x, i) for x, i in zip(bt[sc.BLOCK], bt[sc.LAYER], strict=True)]
        details["max_block_g"] = {n: float(v) for n, v in bt[sc.BLOCK_G_NORM].groupby(names).max().items()}
    common = dict(measured=b_emp, theoretical=b_final, relation="b_emp ≤ b(B)", worst={"level": "sweep",
                  "sweep": int(k[j])}, margin=None if b_emp is None else float(np.nanmin(bk - ratio)),
                  tolerance=rtol, tolerance_reason=ratio_tol_reason(ctx.dtype) +
                  f"; steps with ‖ΔQ‖ below κ_Q·eps·max(B,1) ≈ {np.max(floor):.3g} are not resolved", details=details)
    if unknown is not None:
        common.update(theoretical=None, margin=None, details={**details, "b_final": None, "violations": []})
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"b_emp = max ‖g^k‖/‖ΔQ^k‖ = {fmt(b_emp)} measured over {int(resolved.sum())} resolved sweeps"
            f"{lower_note}; not compared: {unknown}"))
    capped_note = (f"; on {int((over & capped).sum())} sweep(s) with an inner solve stopped without its rule ‖g^k‖ "
                   f"exceeds b‖ΔQ^k‖, where the bound is not guaranteed (sweeps {details['over_b_where_capped'][:5]})"
                   if (over & capped).any() else "")
    if viol.any():
        i = np.flatnonzero(viol)[np.argmax((g / allowed)[viol])]
        ratio_i = float(g[i] / max(dq[i], floor[i]))  # the pair compared at the worst sweep, not b_emp vs b(B_T)
        return Verdict(claim, title, FAIL, **{**common, "worst": {"level": "sweep", "sweep": int(k[i])},
                                              "measured": ratio_i, "theoretical": float(bk[i]),
                                              "margin": float(bk[i] - ratio_i)}, explanation=(
            f"at sweep {k[i]} ‖g^k‖ = {g[i]:.4g} exceeds b(B_k)·max(‖ΔQ^k‖, step floor) = {bk[i]:.4g}·"
            f"{max(dq[i], floor[i]):.4g} (ratio {ratio_i:.4g} > b(B_k) = {bk[i]:.4g}); {int(viol.sum())} "
            f"violation(s){capped_note}"))
    if not resolved.any():
        why = ("every step ‖ΔQ^k‖ is below the noise floor" if not (above_floor & ~capped).any() and not capped.any()
               else "no sweep has both a step ‖ΔQ^k‖ above the noise floor and every inner solve within its rule")
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"{why}: the ratio ‖g^k‖/‖ΔQ^k‖ is not resolved{capped_note}"))
    return Verdict(claim, title, PASS, **common, explanation=(
        f"b_emp = {b_emp:.4g} ≤ b(B) = {b_final:.4g} (B = {Bk[-1]:.4g}); the theoretical b is loose by "
        f"×{b_final / max(b_emp, 1e-300):.3g}{capped_note}"))


# -------------------------------------------------------------------------- 7. block exactness
@claim_check(tc.BLOCK_EXACTNESS, "Exactness of every block update (subproblem stationarity residual)")
def block_exactness(ctx) -> Verdict:
    """Closed-form updates: the relative stationarity residual of each block's own subproblem at its new value
    is ≤ √eps.  Inner-solver updates (Algorithm 1's nonconvex blocks, MATH.md §7): where the solver reports
    that its stopping rule held, the recorder's recomputed least-norm stationarity must satisfy it,
    dist(0, ∂Φ_X(X⁺)) ≤ η‖X⁺ − X⁻‖ (a solver that claims the rule falsely fails); updates that stopped at the
    iteration cap, and updates with no solver report whose recomputed stationarity misses the rule (a user's step, as
    in an audit), are listed — the relative-error claim is not guaranteed on them.  The theorems analyse exact
    (or rule-satisfying) updates; an inexact or wrong update (e.g. a Jacobi bias step) may still descend and is
    only exposed here."""
    claim, title = block_exactness.claim, block_exactness.title
    bt = ctx.blocks()
    names = np.array([block_name(x, i) for x, i in zip(bt[sc.BLOCK], bt[sc.LAYER], strict=True)])
    r = bt[sc.BLOCK_RESIDUAL].to_numpy(dtype=float) if sc.BLOCK_RESIDUAL in bt else np.full(len(bt), np.nan)
    recorded = ~np.isnan(r)
    tol = residual_tol(ctx.dtype)
    viol = recorded & ~(r <= tol)
    inner = _inner_rules(bt, names, ctx.dtype)
    if not recorded.any() and inner is None:
        raise MissingDataError(f"no {sc.BLOCK_RESIDUAL} value and no inner-solver record is in the block table")
    score = np.where(recorded, r, -np.inf)
    j = int(np.argmax(np.where(np.isinf(score) & (score > 0), np.finfo(float).max, score)))
    worst = {"sweep": int(bt[sc.SWEEP].iloc[j]), "block": str(names[j]), "step": int(bt[sc.STEP].iloc[j])}
    per_block = {n: float(np.nanmax(r[(names == n) & recorded])) for n in dict.fromkeys(names[recorded])}
    bad_blocks = sorted({str(n) for n in names[viol]})
    details = {"per_block_max": per_block, "n_updates": int(recorded.sum()), "n_unrecorded": int((~recorded).sum()),
               "inexact_blocks": bad_blocks,
               "violations": [{"sweep": int(bt[sc.SWEEP].iloc[i]), "block": str(names[i]),
                               "step": int(bt[sc.STEP].iloc[i]), "residual": float(r[i]), "tolerance": tol}
                              for i in np.flatnonzero(viol)[:MAX_LISTED]]}
    if inner is not None:
        details["inner"] = inner
    measured = float(np.nanmax(r)) if recorded.any() else None
    common = dict(measured=measured, theoretical=0.0, relation="relative residual ≤ tol", worst=worst,
                  margin=None if measured is None else tol - measured, tolerance=tol,
                  tolerance_reason=residual_tol_reason(ctx.dtype), details=details)
    inner_note = "" if inner is None else (
        f" Inner solves: {inner['n_rule_held']} of {inner['n_updates']} met their stopping rule"
        + (f"; {inner['n_cap']} stopped otherwise (relative error not guaranteed there: "
           f"{', '.join(inner['cap_blocks'])})" if inner["n_cap"] else "") + ".")
    if viol.any():
        return Verdict(claim, title, FAIL, **common, explanation=(
            f"block(s) {', '.join(bad_blocks)} are not exact minimisers: residual {measured:.3e} at sweep "
            f"{worst['sweep']}, block {worst['block']} > {tol:.2e}.{inner_note}"))
    if inner is not None and inner["false_claims"]:
        w = inner["false_claims"][0]
        return Verdict(claim, title, FAIL, **{**common, "worst": {"sweep": w["sweep"], "block": w["block"]}},
                       explanation=(f"the inner solver of {w['block']} reports its stopping rule held at sweep "
                                    f"{w['sweep']}, but dist(0, ∂Φ) = {w['stationarity']:.3e} > η‖Δ‖ = "
                                    f"{w['tolerance']:.3e}; {len(inner['false_claims'])} such update(s).{inner_note}"))
    closed = (f"every one of {int(recorded.sum())} closed-form updates solves its subproblem: max relative residual "
              f"{measured:.2e} ≤ {tol:.2e}." if recorded.any() else "")
    return Verdict(claim, title, PASS, **common, explanation=(closed + inner_note).strip())


def _inner_rules(bt: pd.DataFrame, names: np.ndarray, dtype: str) -> dict[str, Any] | None:
    """The stopping-rule record of the inner-solver rows (None when the trace has none): the rows with a solver's
    report (``rule_held``) or a recomputed stationarity.  A row with no report (a user's step or a mutant that
    publishes no ``aux["inner"]``) is judged by the recomputed stationarity alone, as an audit is: it met the rule or
    is listed with the capped ones; only a report can be false."""
    r = rule_record(bt, dtype)
    if not r.inner.any():
        return None
    missing = [c for c in (sc.BLOCK_STATIONARITY, sc.BLOCK_RULE_TOL, sc.BLOCK_INNER_ITERS) if c not in bt]
    if missing:
        raise MissingDataError(f"the trace records inner solves but not {', '.join(missing)}: their stopping rule "
                               "cannot be judged")
    rows, nm = bt[r.inner], names[r.inner]
    reported, held, stat, rtol = (x[r.inner] for x in (r.reported, r.held, r.stationarity, r.tolerance))
    false = reported & held & ~r.meets[r.inner]
    sweeps = rows[sc.SWEEP].to_numpy(dtype=int)
    return {
        "n_updates": len(rows), "n_rule_held": int(held.sum()), "n_cap": int((~held).sum()),
        "n_no_report": int((~reported).sum()),
        "cap_blocks": [f"{n} (sweep {k})" + ("" if r else ", no solver report")
                       for n, k, h, r in zip(nm, sweeps, held, reported, strict=True) if not h][:MAX_LISTED],
        "max_iterations": float(rows[sc.BLOCK_INNER_ITERS].max()),
        "false_claims": [{"sweep": int(sweeps[i]), "block": str(nm[i]), "stationarity": float(stat[i]),
                          "tolerance": float(rtol[i])} for i in np.flatnonzero(false)[:MAX_LISTED]],
    }


# ----------------------------------------------------------------------------------- verify()
CHECKS = {
    tc.MONOTONE: monotone_descent,
    tc.SUFFICIENT_DESCENT: sufficient_descent,
    tc.RELATIVE_ERROR: relative_error,
    tc.RATE: rate,
    tc.CONVERGENCE: convergence,
    tc.KL_EXPONENT: kl_exponent,
    tc.BLOCK_EXACTNESS: block_exactness,
}


def verify(trace: Trace, config: Any = None) -> list[Verdict]:
    """Run every check of MATH.md §4 (claims in theory.constants.CLAIM_IDS order) on ``trace``.

    ``config`` defaults to ``trace.meta['config']``.  A check whose columns are absent (a cheap
    preset, an audit trace) returns an inconclusive verdict saying what is missing."""
    make_context(trace, config)  # bad input fails here, once, with a clear message
    check_trace(trace)  # a trace that breaks its own identities is refused, naming the column and sweep
    return [CHECKS[c](trace, config) for c in tc.CLAIM_IDS]
