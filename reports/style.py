"""The one style module of the reports: figure sizes, colours, paper symbols, log-safe values, saving.

Every figure of :mod:`reports.figures` is drawn inside :func:`style` and saved with :func:`save`,
so a change of look happens here and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt  # the Agg backend is selected in reports/__init__.py
import numpy as np
from matplotlib import ticker

from bcd.rundir import atomic_write

# ---------------------------------------------------------------- paper symbols (mathtext)
SYM_L = r"$\bar{\mathcal{L}}$"
SYM_L_K = r"$\bar{\mathcal{L}}(Q^k)$"
SYM_L_GAP = r"$\bar{\mathcal{L}}(Q^k) - \min_j \bar{\mathcal{L}}(Q^j)$"
SYM_DQ = r"$\|\Delta Q^k\|$"
SYM_DQ_SQ = r"$\|\Delta Q^k\|^2$"
SYM_G = r"$\|g^k\|$"
SYM_RATIO = r"$\|g^k\| \,/\, \|\Delta Q^k\|$"
SYM_RUNAVG = r"$\frac{1}{T}\sum_{k\leq T}\|g^k\|^2$"
SYM_CUM_DQ = r"$\sum_{j\leq k}\|\Delta Q^j\|$"
SYM_K = r"sweep $k$"
SYM_T = r"sweep $T$"


def block_label(block: str, layer: int) -> str:
    return rf"${block}_{{{layer}}}$"



# ---------------------------------------------------------------- colours and sizes
# Okabe–Ito, readable for the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
BLOCK_COLOURS = {"W": "#0072B2", "V": "#009E73", "U": "#D55E00"}
STATUS_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700"}
THEORY_COLOUR = "#444444"
CLIPPED_COLOUR = "#cf222e"
ZERO_CELL = "#d0d0d0"  # heatmap cells whose value is exactly 0 (no colour on a log scale)
WIDE = (9.0, 3.6)
SINGLE = (6.0, 4.0)
DPI = 150
FIGURE_FORMATS = ("png", "pdf")
VECTOR_FORMATS = ("pdf", "svg")

_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10.5,
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "axes.formatter.useoffset": False,  # "+1.28e2" offsets make flat curves look like large swings
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
}


def colour(j: int) -> str:
    """The j-th series colour; black is kept for L̄ itself and never cycles into a series."""
    series = PALETTE[:-1]
    return series[j % len(series)]


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply the report's rcParams for the duration of the block."""
    with plt.rc_context(_RC):
        yield


def new_figure(ncols: int = 1, size: tuple[float, float] | None = None, nrows: int = 1):
    """A figure with constrained layout (labels never overlap the neighbouring panel)."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=size or (WIDE if ncols > 1 else SINGLE), layout="constrained", squeeze=False
    )
    return fig, axes.ravel()


@dataclass(frozen=True)
class Target:
    """Where figures go and in which formats (PNG always: the HTML embeds it)."""

    directory: Path
    formats: tuple[str, ...] = FIGURE_FORMATS

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in (*VECTOR_FORMATS, "png")]
        if bad or "png" not in self.formats:
            allowed = ", ".join(VECTOR_FORMATS)
            raise ValueError(f"figure formats {list(self.formats)!r} are not allowed; give png plus any of {allowed}")


def save(fig, target: Target, name: str) -> dict[str, Path]:
    """Write ``name.<format>`` for every format of ``target``; close the figure; return the paths."""
    target.directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in target.formats:
        path = target.directory / f"{name}.{ext}"
        atomic_write(path, lambda p, ext=ext: fig.savefig(p, format=ext))  # never through a symbolic link
        paths[ext] = path
        fig.set_layout_engine("none")  # the layout is solved once; later formats reuse it (same size in inches)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------- log axes that never crash
def log_floor(values: np.ndarray, rel: float = 1e-3) -> float:
    """The value drawn for entries ≤ 0 on a log axis: ``rel`` × the smallest positive finite entry
    (1e-300 when there is none)."""
    v = np.asarray(values, dtype=float)
    pos = v[np.isfinite(v) & (v > 0)]
    return float(pos.min() * rel) if pos.size else 1e-300


def clip_for_log(values, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(values with every finite entry ≤ floor raised to ``floor``, mask of the raised entries).

    Non-finite entries stay NaN (a gap in the line); the mask lets the caller mark clipped points."""
    v = np.asarray(values, dtype=float).copy()
    clipped = np.isfinite(v) & (v <= floor)
    v[clipped] = floor
    v[~np.isfinite(v)] = np.nan
    return v, clipped


def spans_decades(values, decades: float = 2.0) -> bool:
    """True when the positive finite values span more than ``decades`` orders of magnitude."""
    v = np.asarray(values, dtype=float)
    pos = v[np.isfinite(v) & (v > 0)]
    return bool(pos.size >= 2 and np.log10(pos.max() / pos.min()) > decades)


def mark_clipped(ax, x, y, clipped, floor: float) -> None:
    """Draw clipped points as red down-triangles on the floor so they never silently vanish."""
    x = np.asarray(x)
    if clipped.any():
        ax.scatter(
            x[clipped],
            np.full(int(clipped.sum()), floor),
            marker="v",
            s=18,
            color=CLIPPED_COLOUR,
            zorder=5,
            linewidths=0,
        )


def log_x_sweeps(ax) -> None:
    """Log x axis over sweep counts with plain tick labels 1, 2, 5, 10, 20, 50, …"""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
