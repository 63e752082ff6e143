"""Independent float64 NumPy references for the records of :mod:`bcd.catalogue` (MATH.md §9).

Written from the math, not from the records: nothing here calls a record's methods or imports torch.  Each function
takes a record's *name and parameters* (``record.name``, ``record.params``) and NumPy float64 arrays.  Where the
records use a closed form or Newton, the references use a different method:

* elementwise loss proxes: bisection on the nondecreasing derivative (any selection of the subdifferential for the
  hinge) of v ↦ ℓ(v) + (v − z)²/(2t), to the last bit;
* the cross-entropy prox (per column): Nesterov's accelerated gradient method with constant momentum on the
  1/t-strongly convex problem, run for ~40√κ + 100 iterations (the records use Newton with Sherman–Morrison);
* regulariser proxes and every least-norm element: brute force, a dense grid on an interval that must hold the
  minimiser plus golden-section polish in the best grid cell, plus the kinks/faces as extra candidates;
* the U-prox min_u ½(a − σ(u))² + (β/2)(u − m)² (global): a bracket |u − m| ≤ √(2F₀/β), F₀ ≥ f(u*) the least value
  of f seen (at m, the kinks, fixed probes ±10^k for k ∈ [−3, 3], then three rounds of a ``SHRINK_GRID``-point grid
  on the bracket so far: a fast-growing σ with |m| ≫ 1 has a wide first bracket), then a ``GRID``-point grid on the
  last bracket and bisection on every − → + sign change of f′, with the kinks, m and every grid point as candidates.
  (The records: a 33-point grid + safeguarded Newton for smooth σ, companion-matrix roots for polynomials, closed-form
  candidates for (leaky) ReLU.)
"""

from __future__ import annotations

import math

import numpy as np

GRID = 4001  # points of the U-prox grid (on the final bracket)
PROX_GRID = 1001  # points of the brute-force grid of the 1-D convex problems


# ---------------------------------------------------------------------------------------------- 1-D tools


def bisect_increasing(fun, lo, hi, iters: int = 2200):
    """The point where a nondecreasing ``fun`` changes sign in [lo, hi] (fun(lo) ≤ 0 ≤ fun(hi) assumed), per entry,
    to the last bit (stops when every midpoint equals an end)."""
    lo, hi = np.array(lo, dtype=np.float64, copy=True), np.array(hi, dtype=np.float64, copy=True)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        done = (mid <= lo) | (mid >= hi)
        if done.all():
            break
        g = fun(mid)
        lo = np.where((g < 0) & ~done, mid, lo)
        hi = np.where((g > 0) & ~done, mid, hi)
        zero = (g == 0) & ~done
        lo, hi = np.where(zero, mid, lo), np.where(zero, mid, hi)
    return 0.5 * (lo + hi)


def grid_golden_min(fun, lo, hi, extra=(), n: int = PROX_GRID, iters: int = 100):
    """Brute-force minimiser of a convex 1-D function per entry on [lo, hi]: the best of an n-point grid,
    golden-section polish in the two cells around it, and the ``extra`` candidate points inside [lo, hi].

    ``fun(z)`` takes z with one trailing axis more than ``lo`` (candidates per entry) and broadcasts its per-entry
    data along it."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    grid = lo[..., None] + (hi - lo)[..., None] * np.linspace(0.0, 1.0, n)
    grid[..., -1] = hi

    def f(z):
        return fun(z[..., None])[..., 0]

    fg = fun(grid)
    j = np.argmin(fg, axis=-1)[..., None]
    best = np.take_along_axis(grid, j, -1)[..., 0]
    f_best = np.take_along_axis(fg, j, -1)[..., 0]
    cell = (hi - lo) / (n - 1)
    a, b = np.maximum(best - cell, lo), np.minimum(best + cell, hi)
    r = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = b - r * (b - a), a + r * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(iters):
        left = f1 <= f2  # the minimiser lies in [a, x2]
        a, b = np.where(left, a, x1), np.where(left, x2, b)
        x1n = np.where(left, b - r * (b - a), x2)
        x2n = np.where(left, x1, a + r * (b - a))
        f_new = f(np.where(left, x1n, x2n))
        f1, f2 = np.where(left, f_new, f2), np.where(left, f1, f_new)
        x1, x2 = x1n, x2n
    cands = [x1, x2, 0.5 * (a + b)]
    for e in extra:
        e = np.broadcast_to(np.asarray(e, dtype=np.float64), best.shape)
        cands.append(np.where((e >= lo) & (e <= hi), e, best))
    for c in cands:
        fc = f(c)
        better = fc < f_best
        best, f_best = np.where(better, c, best), np.where(better, fc, f_best)
    return best


# ---------------------------------------------------------------------------------------------- losses

ELEMENTWISE_LOSSES = ("squared", "logistic", "hinge")
LOSSES = (*ELEMENTWISE_LOSSES, "cross_entropy")


def signed(Y):
    """ỹ = 2Y − 1."""
    return 2.0 * np.asarray(Y, dtype=np.float64) - 1.0


def _log1pexp(x):
    """log(1 + eˣ) without overflow or the linear cut-off: max(x, 0) + log1p(e^{−|x|})."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sig(x):
    """1/(1 + e^{−x}) = e^{x}/(1 + e^{x}), written with e^{−|x|} (no overflow, full relative accuracy)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def loss_value(name: str, V, Y, c: float):
    """R per entry (elementwise losses) or per column (cross-entropy)."""
    V = np.asarray(V, dtype=np.float64)
    if name == "squared":
        return 0.5 * c * (V - Y) ** 2
    if name == "logistic":
        return c * _log1pexp(-signed(Y) * V)
    if name == "hinge":
        return c * np.maximum(0.0, 1.0 - signed(Y) * V)
    if name == "cross_entropy":
        mx = V.max(axis=0)
        lse = mx + np.log(np.exp(V - mx).sum(axis=0))
        return c * (lse - (Y * V).sum(axis=0))
    raise KeyError(f"no reference for loss {name!r}")


def loss_grad(name: str, V, Y, c: float):
    """∇R (smooth losses)."""
    V = np.asarray(V, dtype=np.float64)
    if name == "squared":
        return c * (V - Y)
    if name == "logistic":
        s = signed(Y)
        return -c * s * _sig(-s * V)
    if name == "cross_entropy":
        e = np.exp(V - V.max(axis=0))
        return c * (e / e.sum(axis=0) - Y)
    raise KeyError(f"loss {name!r} has no gradient reference")


def loss_subdifferential(name: str, V, Y, c: float):
    """∂R(V) entrywise as an interval [lo, hi] (a point for a smooth loss)."""
    if name == "hinge":
        s = signed(Y)
        w = s * np.asarray(V, dtype=np.float64)
        end = np.where(w < 1.0, -c * s, 0.0)
        end = np.where(w == 1.0, -c * s, end)  # the kink: the segment between 0 and −cỹ
        other = np.where(w == 1.0, 0.0, end)
        return np.minimum(end, other), np.maximum(end, other)
    g = loss_grad(name, V, Y, c)
    return g, g


def _loss_derivative(name: str, v, y, s, c: float):
    """A selection of ∂ℓ(v) per entry (elementwise losses)."""
    if name == "squared":
        return c * (v - y)
    if name == "logistic":
        return -c * s * _sig(-s * v)
    if name == "hinge":
        return np.where(s * v < 1.0, -c * s, 0.0)
    raise KeyError(name)


def loss_prox_objective(name: str, V, Z, t: float, Y, c: float):
    """R(V) + ‖V − Z‖²/(2t) per entry (per column for cross-entropy)."""
    q = (np.asarray(V, dtype=np.float64) - Z) ** 2 / (2.0 * t)
    if name == "cross_entropy":
        q = q.sum(axis=0)
    return loss_value(name, V, Y, c) + q


def loss_prox(name: str, Z, t: float, Y, c: float):
    """argmin_V R(V) + ‖V − Z‖²/(2t): bisection (elementwise losses), accelerated gradient (cross-entropy)."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if name in ELEMENTWISE_LOSSES:
        s = signed(Y)
        if name == "squared":
            lo, hi = np.minimum(Z, Y), np.maximum(Z, Y)
        else:  # |ℓ′| ≤ c, so |v − z| = t|ℓ′(v)| ≤ tc
            lo, hi = Z - t * c, Z + t * c
        return bisect_increasing(lambda v: _loss_derivative(name, v, Y, s, c) + (v - Z) / t, lo, hi)
    if name == "cross_entropy":
        mu, L = 1.0 / t, 1.0 / t + c  # ∇² lse ⪯ I
        kappa = L / mu
        q = (math.sqrt(kappa) - 1.0) / (math.sqrt(kappa) + 1.0)
        x = Z.copy()
        yk = Z.copy()
        for _ in range(int(40 * math.sqrt(kappa)) + 100):
            g = loss_grad("cross_entropy", yk, Y, c) + (yk - Z) / t
            x_new = yk - g / L
            yk = x_new + q * (x_new - x)
            x = x_new
        return x
    raise KeyError(f"no reference for loss {name!r}")


def least_norm_in(G, lo, hi):
    """Brute force: the least-norm element of G + [lo, hi] entrywise (minimise |G + s| over a grid on the interval,
    infinite ends cut at |G| + 1 past the other end, golden-section polish); +∞ where the interval is empty."""
    G = np.asarray(G, dtype=np.float64)
    lo, hi = np.broadcast_to(lo, G.shape).astype(np.float64), np.broadcast_to(hi, G.shape).astype(np.float64)
    empty = lo > hi
    span = np.abs(G) + 1.0
    a = np.where(np.isinf(lo), np.where(np.isinf(hi), -span, np.minimum(hi, 0.0) - span), lo)
    b = np.where(np.isinf(hi), np.maximum(a, 0.0) + span, hi)
    a, b = np.where(empty, 0.0, a), np.where(empty, 0.0, b)
    s = grid_golden_min(lambda x: np.abs(G[..., None] + x), a, b, extra=(a, b))
    return np.where(empty, np.inf, G + s)


def loss_least_norm(name: str, V, G, Y, c: float):
    """The least-norm element of G + ∂R(V), by brute force over the subdifferential interval."""
    lo, hi = loss_subdifferential(name, V, Y, c)
    return least_norm_in(G, lo, hi)


def loss_flags(name: str) -> dict:
    """What the math says about each loss: smooth (C¹ with a Lipschitz gradient), L_R/c."""
    return {"squared": {"smooth": True, "lipschitz_factor": 1.0},
            "logistic": {"smooth": True, "lipschitz_factor": 0.25},
            "cross_entropy": {"smooth": True, "lipschitz_factor": 0.5},
            "hinge": {"smooth": False, "lipschitz_factor": None}}[name]


# ---------------------------------------------------------------------------------------------- activations

ACTIVATIONS = ("relu", "leaky_relu", "identity", "sigmoid", "tanh", "softplus", "polynomial")


def _slope(name: str, params) -> float:
    return 0.0 if name == "relu" else float(params[0]) if params else 0.01


def act_value(name: str, params, u):
    u = np.asarray(u, dtype=np.float64)
    if name in ("relu", "leaky_relu"):
        return np.maximum(u, _slope(name, params) * u)
    if name == "identity":
        return u.copy()
    if name == "sigmoid":
        return _sig(u)
    if name == "tanh":
        return np.tanh(u)
    if name == "softplus":
        return _log1pexp(u)
    if name == "polynomial":
        return np.polynomial.polynomial.polyval(u, np.asarray(params, dtype=np.float64))
    raise KeyError(f"no reference for activation {name!r}")


def act_d1(name: str, params, u):
    """σ′ (at a kink: the left slope)."""
    u = np.asarray(u, dtype=np.float64)
    if name in ("relu", "leaky_relu"):
        return np.where(u > 0, 1.0, _slope(name, params))
    if name == "identity":
        return np.ones_like(u)
    with np.errstate(over="ignore"):
        if name == "sigmoid":  # e^{−|u|}/(1 + e^{−|u|})²
            e = np.exp(-np.abs(u))
            return e / (1.0 + e) ** 2
        if name == "tanh":
            return 1.0 / np.cosh(u) ** 2
        if name == "softplus":
            return _sig(u)
    if name == "polynomial":
        c = np.polynomial.polynomial.polyder(np.asarray(params, dtype=np.float64))
        return np.polynomial.polynomial.polyval(u, c)
    raise KeyError(f"no reference for activation {name!r}")


def act_d2(name: str, params, u):
    u = np.asarray(u, dtype=np.float64)
    if name in ("relu", "leaky_relu", "identity"):
        return np.zeros_like(u)
    with np.errstate(over="ignore"):
        if name == "sigmoid":  # σ″ = σ′(1 − 2σ) = −tanh(u/2)σ′
            return -np.tanh(0.5 * u) * act_d1(name, params, u)
        if name == "tanh":
            return -2.0 * np.tanh(u) / np.cosh(u) ** 2
        if name == "softplus":
            return 0.25 / np.cosh(0.5 * u) ** 2
    if name == "polynomial":
        c = np.polynomial.polynomial.polyder(np.asarray(params, dtype=np.float64), 2)
        return np.polynomial.polynomial.polyval(u, c)
    raise KeyError(f"no reference for activation {name!r}")


def act_range(name: str, params) -> tuple[float, float]:
    """inf σ and sup σ over ℝ."""
    if name == "sigmoid":
        return 0.0, 1.0
    if name == "tanh":
        return -1.0, 1.0
    if name in ("relu", "softplus"):
        return 0.0, math.inf
    return -math.inf, math.inf  # leaky ReLU, identity; polynomials: the cases need no tighter bound


def act_kinks(name: str, params) -> tuple[float, ...]:
    return (0.0,) if name in ("relu", "leaky_relu") else ()


def act_flags(name: str, params) -> dict:
    """What the math says: kink slopes (left, right) for the piecewise-linear σ, sup|σ′| on ℝ (None: unbounded)."""
    kink = (_slope(name, params), 1.0) if name in ("relu", "leaky_relu") else None
    sup = {"relu": 1.0, "leaky_relu": 1.0, "identity": 1.0, "sigmoid": 0.25, "tanh": 1.0, "softplus": 1.0}
    if name == "polynomial":
        deg = len(params) - 1
        sup_d1 = abs(params[1]) if deg == 1 else None
    else:
        sup_d1 = sup[name]
    return {"kink": kink, "smooth": name not in ("relu", "leaky_relu"), "sup_d1": sup_d1}


def act_prox_objective(name: str, params, u, a, m, beta: float):
    """f(u) = ½(a − σ(u))² + (β/2)(u − m)²."""
    return 0.5 * (a - act_value(name, params, u)) ** 2 + 0.5 * beta * (u - m) ** 2


def _act_fprime(name: str, params, u, a, m, beta: float):
    return -(a - act_value(name, params, u)) * act_d1(name, params, u) + beta * (u - m)


PROBES = np.concatenate([[0.0], np.logspace(-3.0, 3.0, 241), -np.logspace(-3.0, 3.0, 241)])
SHRINK_GRID = 257  # points of the bracket-shrinking rounds


def act_prox(name: str, params, a, m, beta: float, *, grid: int = GRID, rounds: int = 3, chunk: int = 256):
    """The global minimiser of f(u) = ½(a − σ(u))² + (β/2)(u − m)², entrywise (see the module docstring)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    m = np.asarray(m, dtype=np.float64).ravel()
    out = np.empty_like(m)
    for s in range(0, m.size, chunk):
        out[s:s + chunk] = _act_prox_chunk(name, params, a[s:s + chunk], m[s:s + chunk], beta, grid, rounds)
    return out


def _act_prox_chunk(name, params, a, m, beta, n, rounds):
    A, M = a[:, None], m[:, None]
    rows = np.arange(len(m))

    def f(u):
        return act_prox_objective(name, params, u, A, M, beta)

    def improve(points, best, f_best):
        fp = f(points)
        j = np.argmin(fp, axis=1)
        better = fp[rows, j] < f_best
        return np.where(better, points[rows, j], best), np.where(better, fp[rows, j], f_best)

    # F₀ = the least f seen (m, the kinks, fixed probes from 1e-3 to 1e3 in size) bounds f(u*)
    probes = np.concatenate([PROBES, act_kinks(name, params)])
    best, f_best = m.copy(), f(M)[:, 0]
    best, f_best = improve(np.broadcast_to(probes, (len(m), len(probes))), best, f_best)
    for k in range(rounds + 1):  # f(u*) ≤ f_best and f ≥ (β/2)(u − m)² ⇒ |u* − m| ≤ √(2 f_best/β)
        h = np.sqrt(2.0 * np.maximum(f_best, 0.0) / beta) * (1.0 + 1e-12)
        pts = M + h[:, None] * np.linspace(-1.0, 1.0, n if k == rounds else SHRINK_GRID)
        best, f_best = improve(pts, best, f_best)
    # the last grid lies on a valid bracket: bisection on each − → + sign change of f′ (a local minimum inside)
    g = _act_fprime(name, params, pts, A, M, beta)
    r, c = np.nonzero((g[:, :-1] < 0) & (g[:, 1:] >= 0))
    if r.size:
        ar, mr = a[r], m[r]
        roots = bisect_increasing(lambda u: _act_fprime(name, params, u, ar, mr, beta), pts[r, c], pts[r, c + 1])
        fr = act_prox_objective(name, params, roots, ar, mr, beta)
        order = np.argsort(fr, kind="stable")[::-1]  # the best root of a row is written last
        cand, f_cand = best.copy(), f_best.copy()
        cand[r[order]], f_cand[r[order]] = roots[order], fr[order]
        best = np.where(f_cand < f_best, cand, best)
    return best


# ---------------------------------------------------------------------------------------------- regularisers

REGULARISERS = ("none", "l2", "l1", "elastic_net", "nonneg", "box", "unit_interval")


def reg_weights(name: str, params) -> tuple[float, float]:
    """(λ₁, λ₂) of λ₁|x| + λ₂/2 x² for the non-indicator regularisers."""
    p = tuple(float(v) for v in params)
    return {"none": (0.0, 0.0), "l2": (0.0, p[0] if p else 0.0), "l1": (p[0] if p else 0.0, 0.0),
            "elastic_net": p if len(p) == 2 else (0.0, 0.0)}[name]


def reg_domain(name: str, params) -> tuple[float, float]:
    if name == "nonneg":
        return 0.0, math.inf
    if name == "unit_interval":
        return 0.0, 1.0
    if name == "box":
        return float(params[0]), float(params[1])
    if name in ("none", "l2", "l1", "elastic_net"):
        return -math.inf, math.inf
    raise KeyError(f"no reference for regulariser {name!r}")


def reg_value(name: str, params, x):
    """r per entry (+∞ off the domain)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = reg_domain(name, params)
    if name in ("nonneg", "box", "unit_interval"):
        return np.where((x >= lo) & (x <= hi), 0.0, np.inf)
    l1, l2 = reg_weights(name, params)
    return l1 * np.abs(x) + 0.5 * l2 * x * x


def reg_subdifferential(name: str, params, x):
    """∂r(x) entrywise as [lo, hi] (lo > hi: empty, off the domain)."""
    x = np.asarray(x, dtype=np.float64)
    dl, du = reg_domain(name, params)
    if name in ("nonneg", "box", "unit_interval"):  # the normal cone of [dl, du]
        lo = np.where(x == dl, -np.inf, 0.0)
        hi = np.where(x == du, np.inf, 0.0)
        off = (x < dl) | (x > du)
        return np.where(off, 1.0, lo), np.where(off, -1.0, hi)
    l1, l2 = reg_weights(name, params)
    lo = np.where(x > 0, l1, np.where(x < 0, -l1, -l1)) + l2 * x
    hi = np.where(x > 0, l1, np.where(x < 0, -l1, l1)) + l2 * x
    return lo, hi


def reg_prox_objective(name: str, params, z, x, t: float):
    """t·r(z) + ½(z − x)² per entry."""
    with np.errstate(invalid="ignore"):
        return t * reg_value(name, params, z) + 0.5 * (np.asarray(z) - x) ** 2


def reg_prox(name: str, params, x, t: float):
    """argmin_z t·r(z) + ½(z − x)² by brute force on [min(x, d) − 1, max(x, d) + 1] ∩ dom r, d the point of the
    domain nearest 0 (the minimiser lies between d, where r is least, and x), kinks and faces as extra points."""
    x = np.asarray(x, dtype=np.float64)
    dl, du = reg_domain(name, params)
    d = min(max(0.0, dl), du)
    lo = np.maximum(np.minimum(x, d) - 1.0, dl)
    hi = np.minimum(np.maximum(x, d) + 1.0, du)
    extra = tuple(v for v in (0.0, dl, du) if math.isfinite(v))
    return grid_golden_min(lambda z: reg_prox_objective(name, params, z, x[..., None], t), lo, hi, extra=extra)


def reg_least_norm(name: str, params, x, G):
    lo, hi = reg_subdifferential(name, params, x)
    return least_norm_in(G, lo, hi)


def reg_flags(name: str, params) -> dict:
    """What the math says: ridge weight of a pure quadratic (None otherwise), coercive, indicator, smooth."""
    if name in ("nonneg", "box", "unit_interval"):
        lo, hi = reg_domain(name, params)
        return {"ridge": None, "coercive": math.isfinite(lo) and math.isfinite(hi), "indicator": True,
                "smooth": False}
    l1, l2 = reg_weights(name, params)
    return {"ridge": l2 if l1 == 0 and name in ("none", "l2") else None, "coercive": l1 + l2 > 0,
            "indicator": False, "smooth": l1 == 0}
