"""The asymptotic checks: the O(1/T) rate (Theorem 1(c)), global convergence (Theorem 1(a),(b)) and
the KL exponent of the tail (beyond the paper).  A finite trace can bound a partial sum but can only
give *evidence* of a limit, so the evidence criteria below are heuristics with stated thresholds;
``fail`` is reserved for what a finite trace does contradict (a partial sum above its bound,
non-finite or exploding iterates, steps that are not square-summable, a tail that contradicts every
KL exponent θ < 1)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from theory import constants as tc
from verification import schema as sc
from verification.check_common import (
    MissingDataError,
    b_per_sweep,
    bound_B,
    capped_sweep_constants,
    claim_check,
    finite,
    fmt,
)
from verification.stats import fit_line
from verification.tolerance import objective_tol, objective_tol_reason, ratio_tol, ratio_tol_reason, step_floor
from verification.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

# Evidence thresholds of the convergence check (heuristics, reported in every verdict).
RHO_OBJECTIVE = 0.05  # over the last quarter of sweeps L̄ moves (Σ|ΔL̄|) by ≤ 5 % of the total decrease
RHO_LENGTH = 0.25  # the last half of sweeps adds ≤ 25 % of the path length Σ‖ΔQ^k‖
RHO_G = 0.1  # the final ‖g^k‖ is ≤ 10 % of the largest
RHO_B = 0.1  # the bound B on the iterates grows by ≤ 10 % over the last half
BLOWUP = 1e3  # B growing by more than ×1000 over the last half is divergence
MIN_SWEEPS = 6  # fewer sweeps give no tail to speak of
KL_MIN_POINTS = 4
KL_FAIL_DECADES = 2.0  # θ ≥ 1 is called a contradiction only over ≥ 2 decades of L̄ − L̄* (else: not asymptotic)


def _L0(sw) -> float:
    row = sw[sw[sc.SWEEP] == 0]
    if row.empty or not np.isfinite(row[sc.OBJECTIVE].iloc[0]):
        raise MissingDataError("L̄(Q⁰) (the sweep-0 row) is not in the trace")
    return float(row[sc.OBJECTIVE].iloc[0])


def _rate_constants(ctx, sw, a: float | None, b: float | None) -> tuple[float, np.ndarray, np.ndarray]:
    """a, and b(B_k) with B_k the running bound on the iterates, per row of ``sw``; returns (a, b_k, B_k)."""
    a = ctx.constants("the constants a and b of the rate bound").a() if a is None else a
    if not a > 0:
        raise tc.UnknownConstant(f"the sufficient-descent constant a = {a:.4g} is not positive (Theorem 2's α "
                                 "condition fails for this prox-linear step), so no rate constant C = b²(L̄⁰ − L̄*)/a "
                                 "exists")
    b_k, B = b_per_sweep(ctx, sw, b, "the constants a and b of the rate bound")
    return float(a), b_k, B


# --------------------------------------------------------------------------------------- 4. rate
@claim_check(tc.RATE, "Rate (1/T)Σ_{k≤T}‖g^k‖² ≤ C/T")
def rate(ctx, a: float | None = None, b: float | None = None, L_star: float = 0.0, level: float = 0.95) -> Verdict:
    """Theorem 1(c): sum_T = Σ_{k≤T}‖g^k‖² ≤ C = b²(L̄⁰ − L̄*)/a (so (1/T)sum_T ≤ C/T and min_k ‖g^k‖² ≤ C/T);
    L̄* = 0 conservatively (L̄ ≥ 0).  Checked at *every* T against the bound the two lemmas give directly,
    sum_T ≤ b(B_T)²Σ_{k≤T}‖ΔQ^k‖² ≤ C_T = b(B_T)²(L̄⁰ − L̄^T)/a ≤ C, B_T the running bound on the iterates (the sweeps'
    objective tolerances added to L̄⁰ − L̄^T, the ratio tolerance to b).  A sweep without a recorded ‖g^k‖ is left
    out of the sums: a sum of some of the terms is a lower bound of the whole, so a partial sum above its bound fails
    whatever is missing, while a pass with more sweeps missing than recorded is inconclusive.  A non-finite L̄ (the
    run diverged) or ‖g^k‖ = ∞ fails.  Evidence reported beside the bound: the share of sum_T added by the last half
    (a plateau), and the log-log slope of the running average sum_T/T over the last half with a ``level``
    confidence interval (−1 once sum_T has plateaued)."""
    claim, title = rate.claim, rate.title
    sw = ctx.sweeps(sc.G_NORM, sc.OBJECTIVE)
    L0 = _L0(sw)
    rows = sw[sc.SWEEP].to_numpy(dtype=int) >= 1
    k_all = sw[sc.SWEEP].to_numpy(dtype=int)[rows]
    L_all = sw[sc.OBJECTIVE].to_numpy(dtype=float)[rows]
    g_all = sw[sc.G_NORM].to_numpy(dtype=float)[rows]
    rtol = ratio_tol(ctx.dtype)
    base = dict(tolerance=rtol, tolerance_reason=ratio_tol_reason(ctx.dtype) + "; " + objective_tol_reason(ctx.dtype))
    if not finite(L_all).all():
        j = int(np.argmin(finite(L_all)))
        return Verdict(claim, title, FAIL, measured=float("inf"), relation="L̄ finite", **base,
                       worst={"level": "sweep", "sweep": int(k_all[j])}, explanation=(
                           f"L̄ is not finite at sweep {k_all[j]}: the run diverged, which the rate bound (built on "
                           "sufficient descent from L̄⁰) excludes"))
    rec = ~np.isnan(g_all)
    if not rec.any():
        raise MissingDataError(f"{sc.G_NORM} is not recorded on any sweep after Q⁰")
    a, b_rows, B_rows = _rate_constants(ctx, sw, a, b)
    b_all, B_all = b_rows[rows], B_rows[rows]
    k, g, L, bk = k_all[rec], g_all[rec], L_all[rec], b_all[rec]
    sums = np.cumsum(g * g)  # partial sums over the recorded sweeps: lower bounds of Σ_{k≤T}
    L_prev = np.concatenate([[L0], L_all[:-1]])
    slack = np.cumsum(objective_tol(ctx.dtype, L_prev, L_all))[rec]  # the sweeps' tolerances, summed to T
    C_T = bk * bk * np.maximum(L0 - L + slack, 0.0) / a
    allowed = C_T * (1 + rtol) ** 2
    T, sum_T = int(k[-1]), float(sums[-1])
    C = tc.rate_constant(a, float(bk[-1]), L0, L_star)
    half = len(k) // 2
    share = (sum_T - float(sums[half - 1])) / sum_T if half >= 1 and sum_T > 0 else None
    fit = None
    tail = slice(half, None)
    avg = sums / k
    if len(k[tail]) >= 3 and np.all(avg[tail] > 0) and np.all(np.isfinite(avg[tail])):
        fit = fit_line(np.log(k[tail]), np.log(avg[tail]), level)
    missing = len(k_all) - len(k)
    details: dict[str, Any] = {
        "T": T, "sum_g_sq": sum_T, "C": C, "a": a, "b": float(bk[-1]), "B": float(B_all[rec][-1]), "L0": L0,
        "L_star_bound": L_star, "C_with_last_L": float(C_T[-1]), "min_g_sq": float(np.min(g * g)),
        "min_g_sq_bound": C / T, "last_half_share": share, "running_average_slope": fit.to_dict() if fit else None,
        "sweeps_missing_g": missing}
    common = dict(measured=sum_T, theoretical=C, relation="Σ_{k≤T}‖g^k‖² ≤ C_T ≤ C",
                  worst={"level": "sweep", "sweep": T}, margin=C - sum_T, **base, details=details)
    moved = sum_T > 0.0
    if sc.DQ_SQ in sw and sw[sc.DQ_SQ].notna().any():  # did any step ‖ΔQ^k‖ rise above rounding?
        dq = np.sqrt(np.maximum(sw[sc.DQ_SQ].to_numpy(dtype=float)[rows], 0.0))
        moved = moved and bool(np.nanmax(dq, initial=0.0) > step_floor(ctx.dtype, float(np.nanmax(B_all))))
    if L0 - L_star <= objective_tol(ctx.dtype, L0, L_star) or not moved:
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"L̄⁰ − L̄* = {L0 - L_star:.3g} is at rounding level or no step ‖ΔQ^k‖ rose above the step floor: the run "
            "started at a critical point and the rate says nothing"))
    capped = sorted(capped_sweep_constants(ctx))  # an inner solve stopped without its rule: a and b not guaranteed
    claimed = k < capped[0] if capped else np.ones(len(k), dtype=bool)  # the bound holds up to the first such sweep
    details["first_sweep_without_rule"] = capped[0] if capped else None
    over = ~(sums <= allowed) & claimed  # NaN-safe: an infinite ‖g^k‖ is over
    if over.any():
        j = int(np.argmax(over))
        fail_at = {"level": "sweep", "sweep": int(k[j])}
        return Verdict(claim, title, FAIL, **{**common, "measured": float(sums[j]), "theoretical": float(C_T[j]),
                                              "margin": float(C_T[j] - sums[j]), "worst": fail_at}, explanation=(
            f"Σ_{{k≤{k[j]}}}‖g^k‖² = {sums[j]:.4g} exceeds C_T = b(B_T)²(L̄⁰ − L̄^T)/a = {C_T[j]:.4g} at T = {k[j]}"
            f" (C = b²(L̄⁰ − L̄*)/a = {C:.4g} at the last sweep)"
            + (f"; {missing} sweep(s) without ‖g^k‖ left out, so the true sum is larger still" if missing else "")))
    slope_txt = (f"running-average log-log slope {fit.slope:.3f} [{fit.ci[0]:.3f}, {fit.ci[1]:.3f}] "
                 f"({int(level * 100)}% CI, last {fit.n} sweeps)" if fit else "too few sweeps for a slope fit")
    share_txt = f"the last half adds {100 * share:.2g}% of the sum" if share is not None else "no plateau measure"
    if missing > len(k):
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"‖g^k‖ is not recorded on every sweep (on {len(k)} of {len(k_all)}): their sums stay within C_T at "
            f"every T (Σ = {sum_T:.4g} ≤ C = {C:.4g}), but the unrecorded terms could exceed it"))
    if missing:
        share_txt += f"; {missing} sweep(s) without ‖g^k‖ left out of the sums"
    if capped and not claimed.any():
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"an inner solve stopped without its stopping rule at sweep {capped[0]}, the first recorded one: the "
            "lemmas behind C_T (sufficient descent with a, relative error with b) are not guaranteed from there"))
    if capped:
        T_ok = int(k[claimed][-1])
        return Verdict(claim, title, PASS, **{**common, "worst": {"level": "sweep", "sweep": T_ok}}, explanation=(
            f"Σ_{{k≤T}}‖g^k‖² ≤ C_T at every T ≤ {T_ok}; from sweep {capped[0]} on an inner solve stopped without "
            f"its stopping rule, so the bound is not claimed there (at T = {T}: {sum_T:.4g} against C = {C:.4g}); "
            f"{share_txt}"))
    return Verdict(claim, title, PASS, **common, explanation=(
        f"Σ_{{k≤T}}‖g^k‖² ≤ C_T = b(B_T)²(L̄⁰ − L̄^T)/a at every T ≤ {T}; at T = {T}: {sum_T:.4g} ≤ C = {C:.4g} "
        f"(C loose by ×{C / sum_T:.3g}); {share_txt}; {slope_txt}"))


# -------------------------------------------------------------------------------- 5. convergence
@claim_check(tc.CONVERGENCE, "Global convergence: finite length, ‖g^k‖ → 0, L̄ converges, bounded iterates")
def convergence(ctx, a: float | None = None) -> Verdict:
    """Evidence for Theorem 1(a),(b) from a finite trace.  Pass needs every criterion: L̄ settled (its total
    variation Σ|ΔL̄| over the last quarter ≤ RHO_OBJECTIVE of the total decrease), finite length (last half ≤
    RHO_LENGTH of Σ‖ΔQ^k‖, and a Cauchy tail: extrapolating the last steps (:func:`cauchy_tail`) leaves a remaining
    length ≤ RHO_LENGTH of the length so far), ‖g^T‖ ≤ RHO_G·max‖g^k‖, B grew ≤ RHO_B over the last
    half.  Fail on what a finite trace contradicts: a non-finite L̄ or B, B growing ×BLOWUP over the last
    half, or a‖ΔQ‖² not summing to at most L̄⁰ − L̄^T (the square-summability the finite-length argument
    starts from)."""
    claim, title = convergence.claim, convergence.title
    sw = ctx.sweeps(sc.OBJECTIVE)
    k = sw[sc.SWEEP].to_numpy(dtype=int)
    L = sw[sc.OBJECTIVE].to_numpy(dtype=float)
    T = int(k[-1])
    thresholds = {"RHO_OBJECTIVE": RHO_OBJECTIVE, "RHO_LENGTH": RHO_LENGTH, "RHO_G": RHO_G, "RHO_B": RHO_B,
                  "BLOWUP": BLOWUP, "MIN_SWEEPS": MIN_SWEEPS}
    evidence: dict[str, Any] = {}
    failures: list[str] = []
    unmet: list[str] = []
    tol_reason = objective_tol_reason(ctx.dtype) + "; evidence thresholds " + ", ".join(
        f"{n}={v:g}" for n, v in thresholds.items())
    if not finite(L).all():
        j = int(np.argmin(finite(L)))
        return Verdict(claim, title, FAIL, measured=float("inf"), relation="L̄ finite",
                       worst={"level": "sweep", "sweep": int(k[j])}, tolerance_reason=tol_reason,
                       explanation=f"L̄ is not finite at sweep {k[j]}: the iterates diverged",
                       details={"thresholds": thresholds})
    if T < MIN_SWEEPS or len(k) < MIN_SWEEPS:
        raise MissingDataError(f"only {T} sweeps: convergence evidence needs at least {MIN_SWEEPS}")
    mid = k >= T / 2
    # L̄ converges
    tol_L = objective_tol(ctx.dtype, L[0], L[-1])
    total = L[0] - L[-1]
    late = L[k >= T - max(1, T // 4)]
    late_drop = float(late[0] - late[-1])
    late_moves = float(np.abs(np.diff(late)).sum())  # a rise is movement too, not settling
    evidence["objective"] = {"total_decrease": float(total), "last_quarter_decrease": late_drop,
                             "last_quarter_variation": late_moves}
    if not late_moves <= RHO_OBJECTIVE * abs(total) + tol_L:
        share = late_moves / abs(total) if total else float("inf")
        unmet.append(f"L̄ still moving: over the last quarter it changed by {late_moves:.3g} in all (net decrease "
                     f"{late_drop:.3g}; {share:.1%} of the total decrease)")
    # bounded iterates
    try:
        B = bound_B(sw)
    except MissingDataError as e:
        unmet.append(f"boundedness not checked: {e}")
    else:
        if not finite(B).all():
            failures.append(f"the iterates are not finite (B = {B[~finite(B)][0]}) at sweep {k[~finite(B)][0]}")
        else:
            growth = float(B[-1] / B[mid][0]) if B[mid][0] > 0 else float("inf")
            evidence["bounded"] = {"B_final": float(B[-1]), "growth_last_half": growth}
            if growth > BLOWUP:
                failures.append(f"the iterates blow up: B grew ×{growth:.3g} over the last half (> ×{BLOWUP:g})")
            elif growth > 1 + RHO_B:
                unmet.append(f"B still grows: ×{growth:.3g} over the last half")
    # finite length and square summability
    if sc.DQ_SQ in sw and sw[sc.DQ_SQ].notna().any():
        dq_sq = sw[sc.DQ_SQ].to_numpy(dtype=float)
        rec = (k >= 1) & finite(dq_sq)
        dq = np.sqrt(np.maximum(dq_sq[rec], 0.0))
        length = float(dq.sum())
        tail_share = float(dq[k[rec] >= T / 2].sum() / length) if length > 0 else 0.0
        tail = cauchy_tail(dq)
        remaining = tail["remaining_estimate"]
        evidence["finite_length"] = {"path_length": length, "last_half_share": tail_share,
                                     "complete": bool(rec.sum() == (k >= 1).sum())}
        evidence["cauchy_tail"] = tail
        if tail_share > RHO_LENGTH:
            unmet.append(f"Σ‖ΔQ^k‖ has not plateaued: the last half adds {tail_share:.0%}")
        if not remaining <= RHO_LENGTH * length:
            unmet.append(f"Cauchy tail: extrapolating the last steps (×{tail['step_ratio']:.3g} per sweep, "
                         f"power {tail['power']:.3g}) leaves Σ_{{k>T}}‖ΔQ^k‖ ≈ {remaining:.3g}, not small against "
                         f"the length so far {length:.3g}")
        if rec.sum() == (k >= 1).sum():
            if a is None and ctx.config is not None and ctx.N is not None:
                a = ctx.constants("a").a()
            if a is not None:  # a sweep with an inner solve that stopped without its rule has a smaller constant
                cap = capped_sweep_constants(ctx)
                a_k = np.array([min(a, cap.get(int(x), math.inf)) for x in k[rec]])
                lhs = float((a_k * dq_sq[rec]).sum())
                evidence["square_summable"] = {"a_sum_dQ_sq": lhs, "L0_minus_LT": float(total)}
                if lhs > total + tol_L * len(dq):
                    failures.append(f"a·Σ‖ΔQ^k‖² = {lhs:.4g} exceeds L̄⁰ − L̄^T = {total:.4g}: the steps are not "
                                    "paid for by descent")
    else:
        unmet.append(f"finite length not checked: no {sc.DQ_SQ} column")
    # ‖g^k‖ → 0
    if sc.G_NORM in sw and sw[sc.G_NORM].notna().any():
        g = sw[sc.G_NORM].to_numpy(dtype=float)
        gk = g[(k >= 1) & finite(g)]
        if len(gk):
            evidence["g_to_zero"] = {"g_last": float(gk[-1]), "g_max": float(gk.max())}
            if gk[-1] > RHO_G * gk.max():
                unmet.append(f"‖g^k‖ has not decayed: last {gk[-1]:.3g} vs max {gk.max():.3g}")
    else:
        unmet.append(f"‖g^k‖ → 0 not checked: no {sc.G_NORM} column")
    details = {"thresholds": thresholds, "evidence": evidence, "unmet": unmet, "failures": failures}
    common = dict(measured=evidence.get("finite_length", {}).get("last_half_share"), theoretical=RHO_LENGTH,
                  relation="share of Σ‖ΔQ‖ added by the last half ≤ RHO_LENGTH", worst={"level": "sweep", "sweep": T},
                  tolerance=tol_L, tolerance_reason=tol_reason, details=details)
    if failures:
        return Verdict(claim, title, FAIL, **common, explanation="; ".join(failures))
    if unmet:
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"no contradiction, but the evidence after {T} sweeps is incomplete: " + "; ".join(unmet)))
    return Verdict(claim, title, PASS, **common, explanation=(
        f"after {T} sweeps L̄ has settled, Σ‖ΔQ^k‖ plateaus (last half adds "
        f"{fmt(100 * evidence.get('finite_length', {}).get('last_half_share', float('nan')))}%), ‖g^k‖ decayed and "
        "the iterates stay bounded (evidence, not proof)"))


# ------------------------------------------------------------------------------ 6. KL exponent
def geometric_tail(x: np.ndarray) -> tuple[float, float]:
    """Fit a geometric decay to the last m = max(3, len/4) terms of a positive sequence x_k:
    r = (x_T/x_{T−m+1})^{1/(m−1)}; the sum of the terms after x_T is then x_T·r/(1−r).
    Returns (r, that remaining sum), the sum being inf when r ≥ 1 or a term is not positive."""
    x = np.asarray(x, dtype=float)
    last = x[-max(3, len(x) // 4):]
    if len(last) < 2 or not np.all(last > 0):
        return float("nan"), float("inf")
    r = float((last[-1] / last[0]) ** (1.0 / (len(last) - 1)))
    return r, (float(last[-1] * r / (1.0 - r)) if r < 1.0 else float("inf"))


def estimate_L_star(L: np.ndarray) -> tuple[float, float]:
    """L̄* ≈ L̄^T minus the geometric tail of the last decreases (:func:`geometric_tail`; 0 when they do not
    decay geometrically).  Returns (L̄*, the extrapolated remaining decrease)."""
    _, extra = geometric_tail(-np.diff(L))
    extra = extra if np.isfinite(extra) else 0.0
    return float(L[-1] - extra), extra


def cauchy_tail(x: np.ndarray) -> dict[str, float]:
    """Remaining sum Σ_{k>T} x_k of a positive sequence, extrapolated conservatively from its last
    m = max(3, len/4) terms as the larger of a geometric fit (:func:`geometric_tail`) and a power-law fit
    x_k ≈ c·k^{−p} (remaining ≈ x_T·T/(p − 1) for p > 1, inf otherwise)."""
    x = np.asarray(x, dtype=float)
    r, geo = geometric_tail(x)
    n_terms, window = len(x), max(3, len(x) // 4)
    p, power = float("nan"), float("inf")
    if n_terms > window and x[-1] > 0 and x[-window] > 0:
        p = float(-np.log(x[-1] / x[-window]) / np.log(n_terms / (n_terms - window + 1)))
        power = float(x[-1] * n_terms / (p - 1.0)) if p > 1.0 else float("inf")
    return {"step_ratio": r, "power": p, "remaining_estimate": max(geo, power)}


def kl_regime(theta: float) -> str:
    if theta < 0.05:
        return "finite (θ ≈ 0)"
    if theta <= 0.5:
        return "linear (θ ∈ (0, ½])"
    if theta < 1.0:
        return "sublinear (θ ∈ (½, 1))"
    return "outside the KL range θ ∈ [0, 1)"


@claim_check(tc.KL_EXPONENT, "KL exponent θ of the tail (estimate, beyond the paper)")
def kl_exponent(ctx, tail: float = 0.5, level: float = 0.95) -> Verdict:
    """ESTIMATE, not a theorem: near the limit |L̄^k − L̄*|^θ ≤ c‖g^k‖; θ is the slope of log‖g^k‖ against
    log(L̄^k − L̄*) over the last ``tail`` of the sweeps (L̄* from :func:`estimate_L_star`), with a
    ``level`` confidence interval.  Pass = "estimated".  Fail only when the whole interval lies at θ ≥ 1
    over at least KL_FAIL_DECADES decades of L̄ − L̄*: ‖g‖ then vanishes faster than L̄ − L̄* all along the
    tail, which no KL exponent θ < 1 allows (L̄ is semialgebraic, so one exists near the limit) — the
    recorded ‖g^k‖ does not behave like a subgradient norm of this L̄.  Over a shorter range a transient
    (a steep region left for a flat valley) can look like θ ≥ 1: inconclusive."""
    claim, title = kl_exponent.claim, kl_exponent.title
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail={tail!r} is not allowed; a fraction in (0, 1]")
    sw = ctx.sweeps(sc.OBJECTIVE, sc.G_NORM)
    sw = sw[(sw[sc.SWEEP] >= 1) & finite(sw[sc.OBJECTIVE])]
    k = sw[sc.SWEEP].to_numpy(dtype=int)
    L = sw[sc.OBJECTIVE].to_numpy(dtype=float)
    g = sw[sc.G_NORM].to_numpy(dtype=float)
    if len(k) < 2 * KL_MIN_POINTS:
        raise MissingDataError(f"only {len(k)} sweeps: the tail fit needs at least {2 * KL_MIN_POINTS}")
    L_star, extra = estimate_L_star(L)
    gap = L - L_star
    floor = 10 * objective_tol(ctx.dtype, L)
    use = (k >= k[-1] - tail * (k[-1] - k[0])) & (gap > floor) & finite(g) & (g > 0)
    details: dict[str, Any] = {"L_star": L_star, "extrapolated_tail": extra, "tail": tail, "n_points": int(use.sum()),
                               "estimate": True}
    common = dict(theoretical=None, relation="|L̄ − L̄*|^θ ≤ c‖g‖ (θ estimated)", tolerance=float(np.max(floor)),
                  tolerance_reason="points with L̄ − L̄* < 10·" + objective_tol_reason(ctx.dtype) + " are left out")
    if use.sum() < KL_MIN_POINTS or np.ptp(np.log(gap[use])) < math.log(2.0):
        return Verdict(claim, title, INCONCLUSIVE, **common, details=details, explanation=(
            f"too few tail points above the noise floor ({int(use.sum())}) or L̄ − L̄* spans less than ×2: "
            "θ cannot be estimated"))
    fit = fit_line(np.log(gap[use]), np.log(g[use]), level)
    theta = fit.slope
    details.update(fit=fit.to_dict(), regime=kl_regime(theta))
    worst = {"level": "sweep", "sweep": int(k[use][-1])}
    common.update(measured=theta, worst=worst, margin=1.0 - fit.ci[0], details=details)
    ci = f"[{fit.ci[0]:.3f}, {fit.ci[1]:.3f}]"
    decades = float(np.ptp(np.log10(gap[use])))
    details["decades"] = decades
    if fit.ci[0] >= 1.0:
        if decades >= KL_FAIL_DECADES:
            return Verdict(claim, title, FAIL, **common, explanation=(
                f"estimated θ = {theta:.3f} {ci} over {decades:.1f} decades of L̄ − L̄*: ‖g^k‖ vanishes faster "
                "than L̄ − L̄*, which no KL exponent θ < 1 allows — the recorded ‖g^k‖ does not behave like a "
                "subgradient norm of L̄"))
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"estimated θ = {theta:.3f} {ci} ≥ 1 over only {decades:.2g} decades of L̄ − L̄* (< {KL_FAIL_DECADES:g}): "
            "the tail is not yet in its asymptotic regime"))
    if fit.ci[1] < 0.0:
        return Verdict(claim, title, INCONCLUSIVE, **common, explanation=(
            f"estimated θ = {theta:.3f} {ci} < 0: ‖g^k‖ grows as L̄ → L̄*, the tail is not in its asymptotic regime"))
    return Verdict(claim, title, PASS, **common, explanation=(
        f"ESTIMATE: θ ≈ {theta:.3f} {ci} ({int(level * 100)}% CI, {fit.n} tail sweeps) → {kl_regime(theta)} local "
        "convergence; an estimate from a finite tail, not a theorem"))
