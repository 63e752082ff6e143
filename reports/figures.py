"""The report's figures, drawn only from saved traces (and the theory's constants).

Every figure is a function ``(runs, out_dir) -> Figure`` registered in ``FIGURES``.  Several runs
are overlaid; runs that are seeds of one configuration are drawn thin and summarised by their mean
± standard deviation band.  A column missing from a run's trace adds a warning and leaves that run
out; a figure with nothing to draw raises :class:`Skip` (the report shows the reason instead).
On log axes, entries ≤ 0 are drawn at a floor as red ▼ markers and counted in the caption.
"""

from __future__ import annotations

import dataclasses
import json
import re
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
    """What one axis' caption must say; one per axis (the floor is the axis' single floor for ≤ 0 entries)."""

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
    floor: float | None = None,
) -> PanelNotes:
    """Overlay ``series(run)`` for every run; seeds of one config get a mean ± std band.

    ``log=None`` picks a log axis when the values span more than two decades.  On a log axis entries ≤ ``floor``
    are drawn at it; without ``floor`` the axis keeps the floor ``notes`` already holds (a second series on the same
    axis), else the floor comes from these values.  Several series on one axis: give them one floor from all of
    them (:func:`shared_floor`), so every ▼ sits at the floor the caption names."""
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
    if log:
        if floor is None:
            floor = notes.floor if notes.floor is not None else style.log_floor(every)
        notes.floor = floor if notes.floor is None else min(notes.floor, floor)
    else:
        floor = None
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


def shared_floor(runs: list[RunData], *series: Series) -> float:
    """One log floor for an axis that draws several series: from the values of all of them (as plot_runs takes them)."""
    values = []
    for s in series:
        for r in runs:
            xy = s(r)
            if xy is not None:
                x, y = (np.asarray(a, dtype=float) for a in xy)
                values.append(y[np.isfinite(x)])
    return style.log_floor(np.concatenate(values) if values else np.array([]))


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
    """b (:meth:`theory.constants.RunConstants.b`) at B = the iterate bound seen (the verdict's value if it has one)."""
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


# ---------------------------------------------------------------- the theory's formulas for one run, as text
@dataclass(frozen=True)
class TheoryText:
    """The expressions of a run's constants as the theory states them for its variant and records
    (:func:`theory.claims.claims_for`, built on :func:`theory.symbolic.numeric_constants`: one source, no formula is
    written here), in readable glyphs (:func:`readable`)."""

    variant: str  # "two" | "three" | "resnet" (bcd.model.variant_name)
    a: str
    b: str  # the expression, or why there is none (theory.symbolic.NOT_DERIVED)
    b_derived: bool
    C: str
    rate_theorem: str  # "Theorem 1(c)", "Theorem 2(c)", ...
    blocks: tuple[tuple[str, str, bool, str], ...]  # (block, c_blk expression, tight, the theory's note)


VARIANT_NAMES = {
    "two": "two-splitting objective (Algorithm 1)",
    "three": "three-splitting objective (Algorithm 2)",
    "resnet": "three-splitting objective with ResNet skips (Algorithm 3)",
}

_GLYPHS = (  # names first (a superscript is a word character), "*" before the "*" of L̄*
    (r"\balpha\b", "α"),
    (r"\bgamma\b", "γ"),
    (r"\beta\b", "η"),
    (r"\blam\b", "λ"),
    (r"\bL0\b", "L̄⁰"),
    (r"\bMin\(", "min("),
    (r"\bMax\(", "max("),
    (r"\bsqrt\((\w+)\)", r"√\1"),
    (r"\bsqrt\(", "√("),
    (r"\*\*2(?!\d)", "²"),
    (r"\*\*", "^"),
    (r"\*", "·"),
    (r"\bL_star\b", "L̄*"),
    (r" - ", " − "),
    (r"(^|\(|, )-", r"\1−"),
)


def readable(expr: str) -> str:
    """A sympy expression string of :mod:`theory` in the report's glyphs (alpha → α, Min → min, sqrt(3) → √3,
    ** 2 → ², * → ·); only the notation changes."""
    for pattern, glyph in _GLYPHS:
        expr = re.sub(pattern, glyph, expr)
    return expr


_THEORY_TEXT: dict[str, TheoryText] = {}


def theory_text(run: RunData) -> TheoryText:
    """The theory's expressions of a, b, C and every c_blk for this run's configuration (cached per configuration)."""
    from bcd.model import variant_name
    from theory.claims import claim, claims_for
    from theory.symbolic import NOT_DERIVED

    cfg = run.bcd
    widths = run.trace.meta.get("widths")
    widths = tuple(int(w) for w in widths) if widths else None
    n = run.trace.meta.get("n")
    n = int(n) if n is not None else None
    key = json.dumps([dataclasses.asdict(cfg), widths, n], sort_keys=True, default=str)
    if key not in _THEORY_TEXT:
        claims = claims_for(cfg, n=n, widths=widths)
        ids = (constants.SUFFICIENT_DESCENT, constants.RELATIVE_ERROR, constants.RATE)
        a, b, rate = (claim(claims, c) for c in ids)
        blocks = claim(claims, constants.MONOTONE).details["blocks"]
        _THEORY_TEXT[key] = TheoryText(
            variant_name(cfg),
            readable(a.constant_expr),
            b.constant_expr if b.constant_expr == NOT_DERIVED else readable(b.constant_expr),
            b.constant_expr != NOT_DERIVED,
            readable(rate.constant_expr),
            rate.theorem,
            tuple((name.replace("_prox_linear", " (prox-linear step)"), readable(d["expr"]), bool(d["tight"]),
                   str(d.get("note", ""))) for name, d in blocks.items()),
        )
    return _THEORY_TEXT[key]


def by_text(runs: list[RunData], text: Callable[[RunData], str]) -> list[tuple[str, list[RunData]]]:
    """(text, the runs it belongs to) for every distinct ``text(run)``, in first-seen order."""
    out: dict[str, list[RunData]] = {}
    for r in runs:
        out.setdefault(text(r), []).append(r)
    return list(out.items())


def which(members: list[RunData], parts: int) -> str:
    """'' when every run shares the statement, else the runs it is about (for a caption listing several)."""
    return "" if parts == 1 else " (" + ", ".join(r.name for r in members) + ")"


G_DEFINITIONS = {
    schema.G_OPTIMALITY: "built from the block optimality conditions (MATH.md §5)",
    schema.G_LEAST_NORM: "the least-norm element of the limiting subdifferential (audit, or any update order)",
    "limiting_element": "an element of the limiting subdifferential, relu′(0) = 0 at kinks (two-splitting traces "
                        "before the kink QP; its norm bounds the least norm from above)",
    schema.G_BRACKET: "an element of the limiting subdifferential from the coupled kink QP (two-splitting with "
                          "ReLU); its norm bounds the least norm from above, the dashed line (‖g‖ lower) from below",
}


def g_definition(runs: list[RunData]) -> str:
    """How the traces defined g^k (trace meta), in words."""
    found = {r.trace.meta.get(schema.META_G_DEFINITION, schema.G_OPTIMALITY) for r in runs}
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
    if run.trace.meta.get(schema.META_G_DEFINITION) != schema.G_BRACKET or \
            schema.G_NORM_LOWER not in run.trace.sweeps.columns:
        return None
    return _per_dq(run, schema.G_NORM_LOWER)


def recorded_g(run: RunData) -> np.ndarray:
    """Mask of the sweeps k ≥ 1 with a recorded ‖g^k‖ (a trace recorded on a schedule has NaN on the others)."""
    return (sweeps_of(run) >= 1) & ~np.isnan(col(run, schema.G_NORM))


def running_avg_g_sq(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(1/T) Σ_{1≤k≤T} ‖g^k‖² at the sweeps T ≥ 1 with a recorded ‖g^T‖.

    A sweep without a recorded ‖g^k‖ is left out of the sums, as the rate check does (verification.checks_tail.rate):
    a partial sum over the recorded sweeps is a lower bound of Σ_{k≤T}.  The trace's running sum is used where it is
    complete (it turns NaN after the first unrecorded sweep)."""
    k, rec = sweeps_of(run), recorded_g(run)
    cum = col(run, schema.CUM_G_SQ)[rec] if schema.CUM_G_SQ in run.trace.sweeps.columns else None
    if cum is None or not np.isfinite(cum).all():
        cum = np.cumsum(col(run, schema.G_NORM)[rec] ** 2)
    T = k[rec]
    return T, cum / T


def tail_mask(T: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The points of the tail fit: finite y > 0 at T ≥ 1 in the last half of the sweeps, or the last 3 such points
    when the last half has fewer than 3 (None if there are fewer than 3 in all).  The slope the legend states and the
    line the figure draws are both fitted over this one mask."""
    T, y = np.asarray(T, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(T) & np.isfinite(y) & (y > 0) & (T >= 1)
    if ok.sum() < 3:
        return None
    tail = ok & (T[ok].max() / 2 <= T)
    if tail.sum() < 3:
        tail = np.zeros_like(ok)
        tail[np.flatnonzero(ok)[-3:]] = True
    return tail


def tail_fit(T: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """(the mask of :func:`tail_mask`, slope, intercept) of the least-squares line of log y on log T."""
    mask = tail_mask(T, y)
    if mask is None:
        return None
    slope, intercept = np.polyfit(np.log(np.asarray(T, float)[mask]), np.log(np.asarray(y, float)[mask]), 1)
    return mask, float(slope), float(intercept)


def tail_slope(T: np.ndarray, y: np.ndarray) -> float | None:
    """Least-squares slope of log y on log T over the last half of the sweeps (:func:`tail_mask`; None if < 3
    points)."""
    fit = tail_fit(T, y)
    return None if fit is None else fit[1]


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
    objectives = sorted({VARIANT_NAMES.get(r.constants.variant, f"{r.constants.variant} objective") for r in runs})
    caption = (
        f"(a) The {' and the '.join(objectives)}: L̄(Q^k) (every term, MATH.md §2) per sweep, log scale. "
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

        floor = shared_floor(runs, dec, bound)  # both series on one axis: one floor, the one the caption names
        plot_runs(
            ax1,
            runs,
            dec,
            log=True,
            floor=floor,
            notes=n1,
            label_suffix=r": $\bar{\mathcal{L}}(Q^{k-1})-\bar{\mathcal{L}}(Q^k)$",
            ylabel="per-sweep decrease",
        )
        plot_runs(
            ax1,
            runs,
            bound,
            log=True,
            floor=floor,
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
    parts = by_text(runs, lambda r: theory_text(r).a)
    a_text = "; ".join(
        f"a = {expr} = {', '.join(sorted({f'{a_const(r):g}' for r in members}))}{which(members, len(parts))}"
        for expr, members in parts
    )
    no_descent = [r.name for r in runs if not a_const(r) > 0]
    caption = (
        "Sufficient descent (MATH.md §4.2): L̄(Q^{k−1}) − L̄(Q^k) ≥ a‖ΔQ^k‖² with " + a_text
        + ". (a) both sides per sweep, (b) their ratio; the lemma holds where the ratio is ≥ 1."
        + (f" a ≤ 0 ({', '.join(no_descent)}): no sufficient descent (Theorem 2's α condition fails), so the bound "
           "is ≤ 0 (drawn at the floor) and the ratio is not drawn." if no_descent else "")
        + clip_note(n1) + clip_note(n2)
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
    parts = by_text(runs, lambda r: "; ".join(f"{b} {e}" for b, e, _, _ in theory_text(r).blocks))
    c_text = "; ".join(
        ", ".join(f"{blk}: {e}" for blk, e, _, _ in theory_text(members[0]).blocks) + which(members, len(parts))
        for _, members in parts
    )
    tight = {f"{blk}: {note}" if note else blk: None
             for r in runs for blk, _, is_tight, note in theory_text(r).blocks if is_tight}
    caption = (
        f"Every block update of {len(df)} ({len(runs)} run(s)): the decrease of L̄ it caused against "
        f"c_blk‖Δ‖² with the theory's per-block constants c_blk — {c_text} (MATH.md §4.1, §7, §8; the trace "
        "records each update's own c_blk). "
        f"{int(below.sum())} point(s) lie below the line before any tolerance"
        + (
            f" (largest shortfall {worst_gap:.1e} in absolute, {worst_rel:.1e} in relative terms; the verdict "
            "table applies the dtype's rounding tolerance). "
            if below.any()
            else ". "
        )
        + (f"Tight constants (equality is attained, so such points can lie on the line): {'; '.join(tight)}. "
           if tight else "")
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
        bracketed = [r for r in runs if g_lower_ratio(r) is not None]
        floor = shared_floor(runs, g_ratio, g_lower_ratio)  # one floor for both series of the axis
        notes = plot_runs(ax, runs, g_ratio, log=True, ylabel=style.SYM_RATIO, floor=floor)
        if bracketed:
            plot_runs(ax, bracketed, g_lower_ratio, log=True, ylabel=style.SYM_RATIO, notes=notes, floor=floor,
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
    parts = by_text(runs, lambda r: theory_text(r).b)
    b_text = "; ".join(
        (f"b = {expr}" if theory_text(members[0]).b_derived else f"no theoretical b: {expr}")
        + which(members, len(parts))
        for expr, members in parts
    )
    caption = (
        f"Ratio ‖g^k‖/‖ΔQ^k‖ per sweep, with g^k ∈ ∂L̄(Q^k) {g_definition(runs)}. "
        f"b_emp is the largest measured ratio; b the (loose) theoretical constant, {b_text}, at B = the largest "
        "‖W̃_i‖, ‖U_i‖ (where the run has U blocks), ‖Ṽ_i‖ seen, X̃ included (the largest over seeds). "
        + "; ".join(lines) + "." + clip_note(notes)
    )
    return Figure("relative_error", "Relative error ‖g^k‖/‖ΔQ^k‖", caption, paths)


def fig_rate(runs, out: style.Target, warnings: list[str]) -> Figure:
    runs = usable(runs, (schema.G_NORM, schema.OBJECTIVE), warnings, "rate")
    drawable = []
    for r in runs:
        if int(np.isfinite(running_avg_g_sq(r)[1]).sum()) < 2:
            warnings.append(f"rate: run {r.name!r} has fewer than 2 sweeps k ≥ 1 with a recorded ‖g^k‖; left out")
        else:
            drawable.append(r)
    if not drawable:
        raise Skip("fewer than 2 sweeps k ≥ 1 with a recorded ‖g^k‖: no running average to draw")
    runs = drawable
    with style.style():
        fig, (ax1, ax2) = style.new_figure(2)
        n1 = plot_runs(ax1, runs, running_avg_g_sq, log=True, logx=True, ylabel=style.SYM_RUNAVG, xlabel=style.SYM_T)
        plot_runs(ax2, runs, running_avg_g_sq, log=True, logx=True, ylabel=style.SYM_RUNAVG, xlabel=style.SYM_T)
        text = []
        tags = _tags(runs)
        for j, (g, tag) in enumerate(tags):
            T, avg = group_curve(g, running_avg_g_sq)
            if not all(a_const(r) > 0 for r in g):  # Theorem 2's α condition fails: C = b²(L̄⁰ − L̄*)/a is no bound
                text.append(f"a ≤ 0: no sufficient descent, so no rate constant{tag}")
            else:
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
                elif not consts:
                    t = theory_text(g[0])
                    text.append(f"no C{tag}: " + (f"no theoretical b ({t.b})" if not t.b_derived
                                                   else "no bound B on the iterates in the trace"))
            fit = tail_fit(T, avg)
            if fit is not None:
                mask, slope, intercept = fit  # the line drawn and the slope stated: one fit over one mask
                Tt = T[mask]
                line = np.exp(intercept) * Tt**slope
                ax2.plot(Tt, line, color="black", ls=":", lw=1.8, label=f"tail fit: slope {slope:.2f}{tag}")
                if j == 0:
                    ax2.plot(
                        Tt,
                        0.7 * line[0] * Tt[0] / Tt,
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
    partial = []
    for r in runs:
        total, rec = int((sweeps_of(r) >= 1).sum()), int(recorded_g(r).sum())
        if rec < total:
            partial.append(f"{rec} of {total} sweeps" + (f" ({r.name})" if len(runs) > 1 else ""))
    theorems = " / ".join(dict.fromkeys(theory_text(r).rate_theorem for r in runs))
    formulas = " / ".join(dict.fromkeys(theory_text(r).C for r in runs))
    caption = (
        f"Running average (1/T)Σ_{{k≤T}}‖g^k‖² on log–log axes. (a) against {theorems}'s C/T, "
        f"C = {formulas} with L̄* ≥ 0 replaced by 0 (a valid, larger C); (b) the same curve alone, with a "
        "least-squares fit over the last half of the sweeps drawn (the last 3 points when that half holds fewer; "
        "dotted) and a slope −1 line (dashed, offset below); the theory predicts slope −1 or steeper. "
        + (
            "‖g^k‖ is recorded on " + ", ".join(partial) + ": the sums run over the recorded sweeps only and are "
            "drawn at those sweeps (partial sums, so lower bounds of Σ_{k≤T}, as in the rate check). "
            if partial
            else ""
        )
        + ("; ".join(text) + "." if text else "") + clip_note(n1)
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
            same = j > 0 and labels == logs[j - 1][1]  # a panel whose rows differ from its left neighbour's: labelled
            ax.set_yticks(range(len(labels)), [""] * len(labels) if same else labels, fontsize=7.5)
            ax.set_xlabel(style.SYM_K)
            ax.grid(False)
            ax.set_title(r.name if n > 1 else r"penalty gaps $\frac{\gamma}{2}\|\cdot\|^2$ per layer", fontsize=9)
        cb = fig.colorbar(im, ax=list(axes), shrink=0.9)
        cb.set_label(r"$\log_{10}$ of the gap")
        paths = style.save(fig, out, "gaps_heatmap")
    first = dict.fromkeys(t.label for r in runs for t in r.terms if t.is_gap and t.layer == 1)
    caption = (
        "The splitting gaps of each run's objective, one row per penalty term of every layer i (row labels; layer 1: "
        + ", ".join(first) + ") over the "
        f"sweeps (columns), colour = log10 of the gap (one scale for every panel); {zeros} grey cell(s): the gap "
        "is exactly 0 (or not finite), e.g. at an initial point set by the forward pass."
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
