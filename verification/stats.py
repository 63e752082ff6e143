"""Small statistics for the checks, in plain numpy (no scipy): a least-squares line with a
t-based confidence interval for its slope."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom: ½ + ∫₀ᵗ f(x) dx by composite
    Simpson on 2000 intervals (the density is smooth; error < 1e-9 for |t| ≤ 100)."""
    if df <= 0:
        raise ValueError(f"df={df!r} is not allowed; degrees of freedom must be > 0")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x = np.linspace(0.0, abs(t), 2001)
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    h = x[1] - x[0]
    integral = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return 0.5 + math.copysign(integral, t)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on :func:`t_cdf`, to 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r} is not allowed; a probability strictly between 0 and 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-10 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class LineFit:
    """y ≈ intercept + slope·x by least squares; ``ci`` is the two-sided ``level`` interval of the
    slope, slope ± t_{(1+level)/2, n−2}·se.  (Residuals of a running average are autocorrelated,
    so the interval is optimistic; it describes the fit, it proves nothing.)"""

    slope: float
    intercept: float
    stderr: float
    ci: tuple[float, float]
    n: int
    level: float

    def to_dict(self) -> dict:
        return {"slope": self.slope, "intercept": self.intercept, "stderr": self.stderr,
                "ci": list(self.ci), "n": self.n, "level": self.level}


def fit_line(x, y, level: float = 0.95) -> LineFit:
    """Least-squares line through (x, y) with a t confidence interval for the slope (n ≥ 3)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length; got shapes {x.shape} and {y.shape}")
    n = x.size
    if n < 3:
        raise ValueError(f"a line with a confidence interval needs at least 3 points; got {n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} is not allowed; a confidence level strictly between 0 and 1")
    xm = x - x.mean()
    sxx = float(xm @ xm)
    if sxx == 0.0:
        raise ValueError("all x values are equal; the slope is undefined")
    slope = float(xm @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    resid = y - intercept - slope * x
    se = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
    half = t_quantile(0.5 + level / 2, n - 2) * se
    return LineFit(slope, intercept, se, (slope - half, slope + half), n, level)
