"""The report's figures, drawn only from saved traces (and the theory's constants).

Every figure is a function ``(runs, out_dir) -> Figure`` registered in ``FIGURES``.  Several runs
are overlaid; runs that are seeds of one configuration are drawn thin and summarised by their mean
± standard deviation band.  A column missing from a run's trace adds a warning and leaves that run
out; a figure with nothing to draw raises :class:`Skip` (the report shows the reason instead).
On log axes, entries ≤ 0 are drawn at a floor as red ▼ markers and counted in the caption.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reports import style
from reports.runs import RunData, group_labels, groups
from theory import constants
from verification import schema

Series = Callable[[RunData], "tuple[np.ndarray, np.ndarray] | None"]


class Skip(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """The figure cannot be drawn from these traces; the message says why."""


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    paths: dict[str, Path] = field(default_factory=dict)


@dataclass
class Skipped:
    name: str
    title: str
    reason: str


# ---------------------------------------------------------------- column availability
def _has(run: RunData, table: str, columns: tuple[str, ...]) -> list[str]:
    df = run.trace.sweeps if table == "sweeps" else run.trace.blocks
    return [c for c in columns if c not in df.columns or df[c].isna().all()]


def usable(
    runs: list[RunData], columns: tuple[str, ...], warnings: list[str], what: str, table: str = "sweeps"
) -> list[RunData]:
    """The runs whose ``table`` has every column; a warning per run left out; Skip if none is left."""
    ok = []
    for r in runs:
        missing = _has(r, table, columns)
        if missing:
            warnings.append(f"{what}: run {r.name!r} has no {table} column(s) {', '.join(missing)}; left out")
        else:
            ok.append(r)
    if not ok:
        raise Skip(f"no run has the {table} column(s) {', '.join(columns)} this figure needs")
    return ok


def col(run: RunData, name: str, table: str = "sweeps") -> np.ndarray:
    df = run.trace.sweeps if table == "sweeps" else run.trace.blocks
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


def sweeps_of(run: RunData) -> np.ndarray:
    return (
        col(run, schema.SWEEP)
        if schema.SWEEP in run.trace.sweeps.columns
        else np.arange(len(run.trace.sweeps), dtype=float)
    )


def column(name: str) -> Series:
    return lambda r: (sweeps_of(r), col(r, name))


# ---------------------------------------------------------------- one panel: runs overlaid, seed bands
@dataclass
class PanelNotes:
    clipped: int = 0
    floor: float | None = None
    banded: bool = False
    notes: list[str] = field(default_factory=list)


def plot_runs(
    ax,
    runs: list[RunData],
    series: Series,
    *,
    log: bool | None = None,
    ylabel: str = "",
    xlabel: str = style.SYM_K,
    logx: bool = False,
    notes: PanelNotes | None = None,
    label_suffix: str = "",
    linestyle: str = "-",
    colour_offset: int = 0,
) -> PanelNotes:
    """Overlay ``series(run)`` for every run; seeds of one config get a mean ± std band.

    ``log=None`` picks a log axis when the values span more than two decades."""
    notes = notes or PanelNotes()
    data = []
    for r in runs:
        xy = series(r)
        if xy is None:
            continue
        x, y = (np.asarray(a, dtype=float) for a in xy)
        keep = np.isfinite(x) & ~np.isnan(y)
        data.append((r, x[keep], y[keep]))
    if not data:
        raise Skip("no finite values to draw")
    every = np.concatenate([y for _, _, y in data])
    if log is None:
        log = style.spans_decades(every)
    floor = style.log_floor(every) if log else None
    if log:
        notes.floor = floor if notes.floor is None else min(notes.floor, floor)
    by_run = {r.name: (x, y) for r, x, y in data}
    grouped = [[r for r in g if r.name in by_run] for g in groups(runs)]
    grouped = [g for g in grouped if g]
    labels = group_labels(grouped)
    for j, (g, label) in enumerate(zip(grouped, labels, strict=True)):
        c = style.colour(j + colour_offset)
        many = len(g) > 1
        for r in g:
            x, y = by_run[r.name]
            yy, clipped = style.clip_for_log(y, floor) if log else (y, np.zeros(len(y), bool))
            notes.clipped += int(clipped.sum())
            ax.plot(
                x,
                yy,
                linestyle,
                color=c,
                lw=0.8 if many else 1.5,
                alpha=0.45 if many else 1.0,
                label=None if many else label + label_suffix,
            )
            if log:
                style.mark_clipped(ax, x, yy, clipped, floor)
        if many:
            frame = pd.concat([pd.Series(by_run[r.name][1], index=by_run[r.name][0]) for r in g], axis=1, join="inner")
            xs, mean, std = frame.index.to_numpy(float), frame.mean(axis=1).to_numpy(), frame.std(axis=1).to_numpy()
            lo, hi = mean - std, mean + std
            if log:
                lo, _ = style.clip_for_log(lo, floor)
                mean_plot, _ = style.clip_for_log(mean, floor)
                hi, _ = style.clip_for_log(hi, floor)
            else:
                mean_plot = mean
            ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
            ax.plot(xs, mean_plot, linestyle, color=c, lw=1.8, label=label + label_suffix)
            notes.banded = True
    if log:
        ax.set_yscale("log")
    if logx:
        style.log_x_sweeps(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return notes


def clip_note(notes: PanelNotes) -> str:
    parts = []
    if notes.clipped:
        parts.append(f"{notes.clipped} value(s) ≤ 0 (or below the floor) are drawn at {notes.floor:.1e} as red ▼.")
    if notes.banded:
        parts.append(
            "Thin lines: single seeds; thick line and band: mean ± standard deviation across seeds"
            " (band clipped at the floor on log axes)."
        )
    parts += notes.notes
    return " " + " ".join(parts) if parts else ""


def legend(ax, **kw) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(**kw)


# ---------------------------------------------------------------- theory numbers for one run
def a_const(run: RunData) -> float:
    """The sufficient-descent constant a of the run (the verdict's value when it has one)."""
    v = run.verdict(constants.SUFFICIENT_DESCENT)
    if v is not None and v.theoretical is not None and np.isfinite(v.theoretical):
        return float(v.theoretical)
    return run.constants.a()


def b_theory(run: RunData) -> float | None:
    """b (δ√(3N); Algorithm 1 with σ = Id: 3δ) at B = the iterate bound seen (the verdict's value when it has one)."""
    v = run.verdict(constants.RELATIVE_ERROR)
    if v is not None and v.theoretical is not None and np.isfinite(v.theoretical):
        return float(v.theoretical)
    if schema.BOUND_B in run.trace.sweeps.columns:
        B = float(np.nanmax(col(run, schema.BOUND_B)))
    else:
        norms = [
            col(run, c)
            for c in (schema.NORM_W_MAX, schema.NORM_V_MAX, schema.NORM_U_MAX)
            if c in run.trace.sweeps.columns
        ]
        if not norms:
            return None
        B = float(np.nanmax(np.concatenate(norms)))
    try:
        return run.constants.b(B)
    except constants.UnknownConstant:
        return None


G_DEFINITIONS = {
    "optimality_conditions": "built from the block optimality conditions (MATH.md §5)",
    "least_norm": "the least-norm element of the limiting subdifferential (audit, or any update order)",
    "limiting_element": "an element of the limiting subdifferential, relu′(0) = 0 at kinks (two-splitting traces "
                        "before the kink QP; its norm bounds the least norm from above)",
    "least_norm_bracket": "an element of the limiting subdifferential from the coupled kink QP (two-splitting with "
                          "ReLU); its norm bounds the least norm from above, the dashed line (‖g‖ lower) from below",
}


def g_definition(runs: list[RunData]) -> str:
    """How the traces defined g^k (trace meta), in words."""
    found = {r.trace.meta.get(schema.META_G_DEFINITION, "optimality_conditions") for r in runs}
    return "; ".join(G_DEFINITIONS.get(d, str(d)) for d in sorted(found))


def _per_dq(run: RunData, column: str) -> tuple[np.ndarray, np.ndarray]:
    """column/‖ΔQ^k‖ for k ≥ 1 (NaN where ΔQ^k = 0)."""
    k, g, dq = sweeps_of(run), col(run, column), np.sqrt(col(run, schema.DQ_SQ))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dq > 0, g / dq, np.nan)
    return k[k >= 1], ratio[k >= 1]


def g_ratio(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """‖g^k‖/‖ΔQ^k‖ for k ≥ 1 (NaN where ΔQ^k = 0)."""
    return _per_dq(run, schema.G_NORM)


def g_lower_ratio(run: RunData) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower bound of the least norm)/‖ΔQ^k‖ for runs whose g^k is a bracket (two-splitting with ReLU), else None."""
    if run.trace.meta.get(schema.META_G_DEFINITION) != "least_norm_bracket" or \
            schema.G_NORM_LOWER not in run.trace.sweeps.columns:
        return None
    return _per_dq(run, schema.G_NORM_LOWER)


def running_avg_g_sq(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(1/T) Σ_{1≤k≤T} ‖g^k‖² for T ≥ 1."""
    k = sweeps_of(run)
    sel = k >= 1
    if schema.CUM_G_SQ in run.trace.sweeps.columns and not run.trace.sweeps[schema.CUM_G_SQ].isna().all():
        cum = col(run, schema.CUM_G_SQ)[sel]
    else:
        cum = np.nancumsum(col(run, schema.G_NORM)[sel] ** 2)
    T = k[sel]
    return T, cum / T


def tail_slope(T: np.ndarray, y: np.ndarray) -> float | None:
    """Least-squares slope of log y on log T over the last half of the sweeps (None if < 3 points)."""
    ok = np.isfinite(y) & (y > 0) & (T >= 1)
    T, y = T[ok], y[ok]
    if T.size < 3:
        return None
    tail = T.max() / 2 <= T
    if tail.sum() < 3:
        tail = np.arange(T.size) >= T.size - 3
    return float(np.polyfit(np.log(T[tail]), np.log(y[tail]), 1)[0])


# ---------------------------------------------------------------- the figures
def fig_objective(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.OBJECTIVE,), warnings, "objective")
    with style.style():
        fig, (ax1, ax2) = style.new_figure(2, size=(9.5, 5.0) if len(runs) == 1 else style.WIDE)
        n1 = PanelNotes()
        if len(runs) == 1:
            r = runs[0]
            k = sweeps_of(r)
            terms = [(t.id, t.tex) for t in r.terms]
            present = [(c, lab) for c, lab in terms if c in r.trace.sweeps.columns]
            missing = [c for c, _ in terms if c not in r.trace.sweeps.columns]
            if missing:
                warnings.append(f"objective: run {r.name!r} has no term column(s) {', '.join(missing)}")
            ys = [col(r, schema.OBJECTIVE)] + [col(r, c) for c, _ in present]
            floor = style.log_floor(np.concatenate(ys))
            n1.floor = floor
            y, clipped = style.clip_for_log(ys[0], floor)
            ax1.plot(k, y, color="black", lw=2.2, label=style.SYM_L + " (total)")
            for j, ((_, lab), yt) in enumerate(zip(present, ys[1:], strict=True)):
                yt, cl = style.clip_for_log(yt, floor)
                n1.clipped += int(cl.sum())
                ax1.plot(k, yt, color=style.colour(j), lw=1.0, ls=("-", "--", ":")[j % 3], label=lab)
                style.mark_clipped(ax1, k, yt, cl, floor)
            n1.clipped += int(clipped.sum())
            ax1.set_yscale("log")
            ax1.set_xlabel(style.SYM_K)
            ax1.set_ylabel(style.SYM_L_K + " and its terms")
            ax1.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
        else:
            plot_runs(ax1, runs, column(schema.OBJECTIVE), log=None, ylabel=style.SYM_L_K, notes=n1)
            legend(ax1)
        n2 = PanelNotes()

        def gap(r):
            y = col(r, schema.OBJECTIVE)
            return sweeps_of(r), y - np.nanmin(y)

        plot_runs(ax2, runs, gap, log=True, ylabel=style.SYM_L_GAP, notes=n2)
        ax1.set_title("(a) objective and its terms" if len(runs) == 1 else "(a) objective")
        ax2.set_title("(b) distance to the best value reached")
        legend(ax2)
        paths = style.save(fig, out, "objective")
    caption = (
        "(a) The three-splitting objective L̄(Q^k) (every term, MATH.md §2) per sweep, log scale. "
        "(b) L̄(Q^k) − min_j L̄(Q^j): the sweep attaining the minimum is exactly 0 and is drawn at the floor."
        + clip_note(n1)
        + clip_note(n2)
    )
    return Figure("objective", "Objective L̄ per sweep", caption, paths)


def fig_sufficient_descent(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.DECREASE, schema.DQ_SQ), warnings, "sufficient descent")
    with style.style():
        fig, (ax1, ax2) = style.new_figure(2)
        n1, n2 = PanelNotes(), PanelNotes()

        def dec(r):
            k = sweeps_of(r)
            return k[k >= 1], col(r, schema.DECREASE)[k >= 1]

        def bound(r):
            k = sweeps_of(r)
            return k[k >= 1], a_const(r) * col(r, schema.DQ_SQ)[k >= 1]

        def ratio(r):
            k, d = dec(r)
            _, b = bound(r)
            with np.errstate(divide="ignore", invalid="ignore"):
                return k, np.where(b > 0, d / b, np.nan)

        plot_runs(
            ax1,
            runs,
            dec,
            log=True,
            notes=n1,
            label_suffix=r": $\bar{\mathcal{L}}(Q^{k-1})-\bar{\mathcal{L}}(Q^k)$",
            ylabel="per-sweep decrease",
        )
        plot_runs(
            ax1,
            runs,
            bound,
            log=True,
            notes=n1,
            linestyle="--",
            label_suffix=r": $a\|\Delta Q^k\|^2$",
            ylabel="per-sweep decrease",
        )
        plot_runs(
            ax2,
            runs,
            ratio,
            log=None,
            notes=n2,
            ylabel=r"$(\bar{\mathcal{L}}(Q^{k-1})-\bar{\mathcal{L}}(Q^k))\,/\,a\|\Delta Q^k\|^2$",
        )
        ax2.axhline(1.0, color=style.THEORY_COLOUR, ls=":", lw=1.2, label="bound (ratio = 1)")
        ax1.set_title("(a) decrease vs the Lemma's lower bound")
        ax2.set_title("(b) ratio (must stay ≥ 1)")
        legend(ax1, fontsize=7)
        legend(ax2)
        paths = style.save(fig, out, "sufficient_descent")
    a_vals = sorted({f"{a_const(r):g}" for r in runs})
    caption = (
        "Sufficient descent (MATH.md §4.2): L̄(Q^{k−1}) − L̄(Q^k) ≥ a‖ΔQ^k‖² with a = min(α, γ)/2 = "
        + ", ".join(a_vals)
        + ". (a) both sides per sweep, (b) their ratio; the lemma holds where the ratio "
        "is ≥ 1." + clip_note(n1) + clip_note(n2)
    )
    return Figure("sufficient_descent", "Sufficient descent per sweep", caption, paths)


def fig_block_descent(runs, out: style.Target, warnings: list[str]) -> Figure:
    cols = (schema.BLOCK, schema.BLOCK_DECREASE, schema.BLOCK_DELTA_SQ, schema.BLOCK_CONST)
    runs = usable(runs, cols, warnings, "per-block descent", table="blocks")
    frames = [r.trace.blocks for r in runs]
    df = pd.concat(frames, ignore_index=True)
    x = pd.to_numeric(df[schema.BLOCK_CONST], errors="coerce").to_numpy(float) * pd.to_numeric(
        df[schema.BLOCK_DELTA_SQ], errors="coerce"
    ).to_numpy(float)
    y = pd.to_numeric(df[schema.BLOCK_DECREASE], errors="coerce").to_numpy(float)
    both = np.concatenate([x, y])
    floor = style.log_floor(both)
    xs, cx = style.clip_for_log(x, floor)
    ys, cy = style.clip_for_log(y, floor)
    below = np.isfinite(x) & np.isfinite(y) & (y < x)
    with style.style():
        fig, (ax,) = style.new_figure(1, size=(6.0, 4.6))
        for blk, c in style.BLOCK_COLOURS.items():
            sel = (df[schema.BLOCK].astype(str) == blk).to_numpy()
            if sel.any():
                ax.scatter(xs[sel], ys[sel], s=10, color=c, alpha=0.6, linewidths=0, label=f"${blk}$ blocks")
        if (cy & ~cx).any() or (cx | cy).any():
            sel = cx | cy
            ax.scatter(
                xs[sel],
                ys[sel],
                s=26,
                marker="v",
                facecolors="none",
                edgecolors=style.CLIPPED_COLOUR,
                label="clipped to floor (≤ 0)",
            )
        fin = np.concatenate([xs[np.isfinite(xs)], ys[np.isfinite(ys)]])
        lo, hi = float(np.nanmin(fin)), float(np.nanmax(fin))
        ax.plot([lo, hi], [lo, hi], color=style.THEORY_COLOUR, ls="--", lw=1.2, label="decrease = bound")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"bound $c_{\mathrm{blk}}\,\|X^+ - X^-\|^2$")
        ax.set_ylabel(r"decrease of $\bar{\mathcal{L}}$ by one block update")
        ax.set_title("Per-block decrease vs its bound (points must lie on or above the line)")
        ax.legend(loc="upper left")
        paths = style.save(fig, out, "block_descent")
    clipped = cx | cy
    gap = np.where(below, x - y, 0.0)
    worst_gap = float(gap.max()) if below.any() else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        worst_rel = float(np.nanmax(np.where(below, (x - y) / np.abs(x), 0.0))) if below.any() else 0.0
    caption = (
        f"Every block update of {len(df)} ({len(runs)} run(s)): the decrease of L̄ it caused against "
        "c_blk‖Δ‖² with c_blk = α/2 for V_N, W_i, U_i (i<N), γ for U_N and γ/2 for V_i (MATH.md §4.1). "
        f"{int(below.sum())} point(s) lie below the line before any tolerance"
        + (
            f" (largest shortfall {worst_gap:.1e} in absolute, {worst_rel:.1e} in relative terms; the verdict "
            "table applies the dtype's rounding tolerance). "
            if below.any()
            else ". "
        )
        + "U_N's bound is tight (its decrease equals γ‖Δ‖² exactly), so its points lie on the line. "
        + (f"{int(clipped.sum())} value(s) ≤ 0 are drawn at the floor {floor:.1e} (red ▼)." if clipped.any() else "")
    )
    return Figure("block_descent", "Per-block decrease vs (constant)‖Δ‖²", caption, paths)


def group_curve(group: list[RunData], series: Series) -> tuple[np.ndarray, np.ndarray]:
    """The group's curve: the run's own for one run, the mean over the sweeps all runs share otherwise."""
    parts = []
    for r in group:
        x, y = series(r)
        parts.append(pd.Series(np.asarray(y, float), index=np.asarray(x, float)))
    frame = pd.concat(parts, axis=1, join="inner")
    return frame.index.to_numpy(float), frame.mean(axis=1).to_numpy(float)


def _tags(runs: list[RunData]) -> list[tuple[list[RunData], str]]:
    """(group, legend suffix) for every configuration; no suffix when there is only one."""
    grouped = groups(runs)
    if len(grouped) == 1:
        return [(grouped[0], "")]
    return [(g, f" ({lab})") for g, lab in zip(grouped, group_labels(grouped), strict=True)]


def fig_relative_error(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.G_NORM, schema.DQ_SQ), warnings, "relative error")
    with style.style():
        fig, (ax,) = style.new_figure(1, size=(6.4, 4.2))
        notes = plot_runs(ax, runs, g_ratio, log=True, ylabel=style.SYM_RATIO)
        bracketed = [r for r in runs if g_lower_ratio(r) is not None]
        if bracketed:
            plot_runs(ax, bracketed, g_lower_ratio, log=True, ylabel=style.SYM_RATIO, notes=notes,
                      label_suffix=" (least norm ≥)", linestyle="--")
        lines = []
        for j, (g, tag) in enumerate(_tags(runs)):
            ratios = np.concatenate([g_ratio(r)[1] for r in g])
            if np.isfinite(ratios).any():
                b_emp = float(np.nanmax(ratios))
                ax.axhline(b_emp, color=style.colour(j), ls=":", lw=1.2, label=rf"$b_{{emp}}$ = {b_emp:.3g}{tag}")
                lines.append(f"b_emp = {b_emp:.3g}{tag}")
            bs = [b for b in (b_theory(r) for r in g) if b is not None]
            if bs:
                b = max(bs)
                label = rf"theory $b$ = {b:.3g}{tag}"
                ax.axhline(b, color=style.THEORY_COLOUR, ls=("--", "-.", ":")[j % 3], lw=1.2, label=label)
                lines.append(f"b = {b:.3g}{tag}")
        ax.set_title(r"Relative error: $\|g^k\| \leq b\,\|\Delta Q^k\|$")
        ax.legend(fontsize=7, loc="center right")
        paths = style.save(fig, out, "relative_error")
    caption = (
        f"Ratio ‖g^k‖/‖ΔQ^k‖ per sweep, with g^k ∈ ∂L̄(Q^k) {g_definition(runs)}. "
        "b_emp is the largest measured ratio; b the (loose) theoretical constant (δ√(3N); Algorithm 1 with "
        "σ = Id: 3δ) at B = the largest ‖W̃_i‖, ‖U_i‖, ‖Ṽ_i‖ seen, X̃ included (the largest over seeds). "
        + "; ".join(lines) + "." + clip_note(notes)
    )
    return Figure("relative_error", "Relative error ‖g^k‖/‖ΔQ^k‖", caption, paths)


def fig_rate(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.G_NORM, schema.OBJECTIVE), warnings, "rate")
    with style.style():
        fig, (ax1, ax2) = style.new_figure(2)
        n1 = plot_runs(ax1, runs, running_avg_g_sq, log=True, logx=True, ylabel=style.SYM_RUNAVG, xlabel=style.SYM_T)
        n2 = plot_runs(ax2, runs, running_avg_g_sq, log=True, logx=True, ylabel=style.SYM_RUNAVG, xlabel=style.SYM_T)
        text = []
        tags = _tags(runs)
        for j, (g, tag) in enumerate(tags):
            T, avg = group_curve(g, running_avg_g_sq)
            consts = []
            for r in g:
                b = b_theory(r)
                if b is not None:
                    consts.append(constants.rate_constant(a_const(r), b, float(col(r, schema.OBJECTIVE)[0]), 0.0))
            if consts and T.size:
                Cc = max(consts)
                ax1.plot(
                    T,
                    Cc / T,
                    color=style.THEORY_COLOUR,
                    ls=("--", "-.", ":")[j % 3],
                    lw=1.2,
                    label=rf"$C/T$, C = {Cc:.2g}{tag}",
                )
                text.append(f"C = {Cc:.3g}{tag}")
            slope = tail_slope(T, avg)
            ok = np.isfinite(avg) & (avg > 0) & (T.max() / 2 <= T)
            if slope is not None and ok.sum() >= 2:
                Tt = T[ok]
                p = np.polyfit(np.log(Tt), np.log(avg[ok]), 1)
                fit = np.exp(p[1]) * Tt ** p[0]
                ax2.plot(Tt, fit, color="black", ls=":", lw=1.8, label=f"tail fit: slope {slope:.2f}{tag}")
                if j == 0:
                    ax2.plot(
                        Tt,
                        0.7 * fit[0] * Tt[0] / Tt,
                        color=style.THEORY_COLOUR,
                        ls="--",
                        lw=1.0,
                        label="slope −1 (reference)",
                    )
                text.append(f"fitted slope {slope:.2f}{tag}" + (" (of the mean over seeds)" if len(g) > 1 else ""))
        ax1.set_title(r"(a) against the theory's $C/T$")
        ax2.set_title("(b) the measured curve, with its tail fit")
        legend(ax1, fontsize=7)
        legend(ax2, fontsize=7)
        paths = style.save(fig, out, "rate")
    caption = (
        "Running average (1/T)Σ_{k≤T}‖g^k‖² on log–log axes. (a) against Theorem 1(c)'s C/T, "
        "C = b²(L̄(Q⁰) − L̄*)/a with L̄* ≥ 0 replaced by 0 (a valid, larger C); (b) the same curve alone, with a "
        "least-squares fit over the last half of the sweeps (dotted) and a slope −1 line (dashed, offset below); "
        "the theory predicts slope −1 or steeper. " + "; ".join(text) + "." + clip_note(n1) + clip_note(n2)
    )
    return Figure("rate", "Rate O(1/T) of ‖g^k‖²", caption, paths)


def fig_finite_length(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.DQ_SQ,), warnings, "finite length")

    def dq(r):
        k = sweeps_of(r)
        return k[k >= 1], np.sqrt(col(r, schema.DQ_SQ))[k >= 1]

    def cum(r):
        k, d = dq(r)
        if schema.CUM_DQ in r.trace.sweeps.columns and not r.trace.sweeps[schema.CUM_DQ].isna().all():
            return k, col(r, schema.CUM_DQ)[sweeps_of(r) >= 1]
        return k, np.nancumsum(d)

    with style.style():
        fig, (ax1, ax2) = style.new_figure(2)
        n1 = plot_runs(ax1, runs, dq, log=True, ylabel=style.SYM_DQ)
        n2 = plot_runs(ax2, runs, cum, log=False, ylabel=style.SYM_CUM_DQ)
        ax1.set_title(r"(a) step length $\|\Delta Q^k\|$")
        ax2.set_title("(b) partial sums (finite length: they plateau)")
        legend(ax2)
        paths = style.save(fig, out, "finite_length")
    caption = (
        "(a) ‖ΔQ^k‖ = ‖Q^k − Q^{k−1}‖ over all blocks; (b) its partial sums. Theorem 1(b): Σ‖ΔQ^k‖ < ∞, "
        "so the partial sums must level off." + clip_note(n1) + clip_note(n2)
    )
    return Figure("finite_length", "Finite length Σ‖ΔQ^k‖", caption, paths)


MAX_HEATMAPS = 4


def gap_matrix(r: RunData) -> tuple[np.ndarray, list[str]]:
    """One row per splitting penalty of the run's objective (γ/2‖V_i − σ_i(U_i)‖², γ/2‖U_i − W̃_iṼ_{i−1}‖², or
    the two-splitting's γ/2‖V_i − σ_i(W̃_iṼ_{i−1})‖²; those present), columns = sweeps."""
    gaps = [t for t in r.terms if t.is_gap and t.id in r.trace.sweeps.columns]
    return np.vstack([col(r, t.id) for t in gaps]), [rf"${t.gap}$" for t in gaps]


def fig_gaps_heatmap(runs, out: style.Target, warnings: list[str]) -> Figure:
    with_gaps = [r for r in runs if any(t.is_gap and t.id in r.trace.sweeps.columns for t in r.terms)]
    warnings += [f"gap heatmap: run {r.name!r} records no splitting gap; left out" for r in runs if r not in with_gaps]
    if not with_gaps:
        raise Skip("no run records a splitting gap")
    runs = with_gaps
    if len(runs) > MAX_HEATMAPS:
        warnings.append(f"gap heatmap: only the first {MAX_HEATMAPS} of {len(runs)} runs are drawn")
        runs = runs[:MAX_HEATMAPS]
    logs, zeros = [], 0
    for r in runs:
        M, labels = gap_matrix(r)
        positive = np.isfinite(M) & (M > 0)
        zeros += int((~positive).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            logs.append((np.ma.masked_where(~positive, np.log10(np.where(positive, M, 1.0))), labels))
    finite = np.concatenate([L.compressed() for L, _ in logs]) if logs else np.array([])
    if finite.size == 0:
        raise Skip("every splitting gap is exactly 0")
    norm = matplotlib.colors.Normalize(vmin=float(finite.min()), vmax=float(finite.max()))  # one scale for all runs
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=style.ZERO_CELL)
    with style.style():
        n = len(runs)
        fig, axes = style.new_figure(n, size=(min(3.6 * n + 1.6, 14.0) if n > 1 else 6.4, 4.0))
        for j, (ax, r, (L, labels)) in enumerate(zip(axes, runs, logs, strict=True)):
            k = sweeps_of(r)
            im = ax.imshow(
                L,
                aspect="auto",
                interpolation="nearest",
                cmap=cmap,
                norm=norm,
                extent=(k.min() - 0.5, k.max() + 0.5, len(labels) - 0.5, -0.5),
            )
            ax.set_yticks(range(len(labels)), labels if j == 0 else [""] * len(labels), fontsize=7.5)
            ax.set_xlabel(style.SYM_K)
            ax.grid(False)
            ax.set_title(r.name if n > 1 else r"penalty gaps $\frac{\gamma}{2}\|\cdot\|^2$ per layer", fontsize=9)
        cb = fig.colorbar(im, ax=list(axes), shrink=0.9)
        cb.set_label(r"$\log_{10}$ of the gap")
        paths = style.save(fig, out, "gaps_heatmap")
    caption = (
        "The splitting gaps γ/2‖V_i − σ_i(U_i)‖² and γ/2‖U_i − W̃_iṼ_{i−1}‖² of every layer i (rows) over the "
        f"sweeps (columns), colour = log10 of the gap (one scale for every panel); {zeros} grey cell(s): the gap "
        "is exactly 0 (or not finite), e.g. V_i = σ(U_i) at the initial point."
    )
    return Figure("gaps_heatmap", "Per-layer splitting gaps over sweeps", caption, paths)


def fig_iterate_norms(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.NORM_W_MAX, schema.NORM_V_MAX), warnings, "iterate norms")
    panels = [(schema.NORM_W_MAX, r"$\max_i\|\tilde W_i^k\|$", "(a) weights"),
              (schema.NORM_V_MAX, r"$\max_i\|V_i^k\|$", "(b) V blocks")]
    if any(not _has(r, "sweeps", (schema.NORM_U_MAX,)) for r in runs):  # the two-splitting has no U blocks
        panels.append((schema.NORM_U_MAX, r"$\max_i\|U_i^k\|$", "(c) U blocks"))
    with style.style():
        fig, axes = style.new_figure(len(panels), size=(3.7 * len(panels), 3.5))
        notes = []
        for ax, (c, lab, title) in zip(axes, panels, strict=True):
            notes.append(plot_runs(ax, runs, column(c), log=None, ylabel=lab))
            if ax.get_yscale() == "linear":
                ax.set_ylim(0, ax.get_ylim()[1] * 1.05)  # from 0: boundedness is read off the whole scale
            ax.set_title(title)
        legend(axes[0])
        paths = style.save(fig, out, "iterate_norms")
    caption = (
        "Largest block norm per sweep (Frobenius). Theorem 1(a)–(b) needs bounded iterates; when no r_i is coercive "
        "(λ = 0, r_i = none or nonneg, or the bias unpenalised) this is the evidence for it (the curves must level "
        "off, not grow)." + "".join(clip_note(n) for n in notes)
    )
    return Figure("iterate_norms", "Iterate norms (boundedness)", caption, paths)


def fig_accuracy(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.TRAIN_ACC,), warnings, "accuracy")
    has_test = [r for r in runs if not _has(r, "sweeps", (schema.TEST_ACC,))]
    with style.style():
        fig, axes = style.new_figure(2 if has_test else 1, size=style.WIDE if has_test else style.SINGLE)
        plot_runs(axes[0], runs, column(schema.TRAIN_ACC), log=False, ylabel="train accuracy")
        axes[0].set_title("(a) train accuracy")
        if has_test:
            plot_runs(axes[1], has_test, column(schema.TEST_ACC), log=False, ylabel="test accuracy")
            axes[1].set_title("(b) test accuracy")
        else:
            warnings.append("accuracy: no run has test accuracy; only the train panel is drawn")
        for ax in axes:
            ax.set_ylim(0, 1)
            for line in ax.get_lines():
                line.set_marker(".")
        legend(axes[-1], loc="lower right")
        paths = style.save(fig, out, "accuracy")
    caption = (
        "Accuracy of the forward pass argmax(W̃_N σ(⋯σ(W̃_1 X))) (never V_N), at the sweeps where it was "
        "evaluated (eval_every)."
    )
    return Figure("accuracy", "Train / test accuracy", caption, paths)


def fig_time(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.TIME_ENGINE,), warnings, "time per sweep")

    def after0(name):
        def f(r):
            k = sweeps_of(r)
            return k[k >= 1], col(r, name)[k >= 1]

        return f

    def instrumentation(r):
        k = sweeps_of(r)
        y = sum(col(r, c) if c in r.trace.sweeps.columns else 0.0 for c in (schema.TIME_HOOKS, schema.TIME_EVAL))
        return k[k >= 1], np.asarray(y, float)[k >= 1]

    with style.style():
        fig, (ax1, ax2) = style.new_figure(2)
        n1 = plot_runs(ax1, runs, after0(schema.TIME_ENGINE), log=None, ylabel="seconds")
        n2 = plot_runs(ax2, runs, instrumentation, log=None, ylabel="seconds")
        ax1.set_title("(a) engine (block updates)")
        ax2.set_title("(b) instrumentation (hooks + evaluation)")
        top = max(ax1.get_ylim()[1], ax2.get_ylim()[1])
        if ax1.get_yscale() == "linear" and ax2.get_yscale() == "linear":
            for ax in (ax1, ax2):
                ax.set_ylim(0, top)
        legend(ax1)
        paths = style.save(fig, out, "time")
    caption = (
        "Wall time per sweep: (a) the engine's block updates, (b) the verification hooks plus the per-sweep "
        "evaluation of L̄ and accuracy (excluded from the engine time)." + clip_note(n1) + clip_note(n2)
    )
    return Figure("time", "Time per sweep", caption, paths)


FIGURES = (
    ("objective", "Objective L̄ per sweep", fig_objective),
    ("block_descent", "Per-block decrease vs (constant)‖Δ‖²", fig_block_descent),
    ("sufficient_descent", "Sufficient descent per sweep", fig_sufficient_descent),
    ("relative_error", "Relative error ‖g^k‖/‖ΔQ^k‖", fig_relative_error),
    ("rate", "Rate O(1/T) of ‖g^k‖²", fig_rate),
    ("finite_length", "Finite length Σ‖ΔQ^k‖", fig_finite_length),
    ("gaps_heatmap", "Per-layer splitting gaps over sweeps", fig_gaps_heatmap),
    ("iterate_norms", "Iterate norms (boundedness)", fig_iterate_norms),
    ("accuracy", "Train / test accuracy", fig_accuracy),
    ("time", "Time per sweep", fig_time),
)


def render_figures(
    runs: list[RunData], out: Path, formats: tuple[str, ...] = style.FIGURE_FORMATS
) -> tuple[list[Figure | Skipped], list[str]]:
    """Draw every figure into ``out`` (PNG + PDF).  Returns the figures (or why each was skipped)
    and the warnings about missing columns."""
    target = style.Target(out, tuple(formats))
    warnings: list[str] = []
    result: list[Figure | Skipped] = []
    for name, title, draw in FIGURES:
        try:
            result.append(draw(runs, target, warnings))
        except Skip as exc:
            plt.close("all")
            warnings.append(f"{title}: figure skipped: {exc}")
            result.append(Skipped(name, title, str(exc)))
        except Exception as exc:  # a figure that cannot be drawn must not cost the run its report
            plt.close("all")
            reason = f"could not be drawn ({type(exc).__name__}: {exc})"
            warnings.append(f"{title}: figure skipped: {reason}")
            result.append(Skipped(name, title, reason))
    return result, warnings
