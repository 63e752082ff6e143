"""The least-norm bracket of ∂L for Algorithm 1 with ReLU and leaky ReLU (verification.subgradient, MATH.md
§7.3–7.4), against a brute force: at points with kinks placed on purpose (convex and concave, several per row and
per column, so that the W̃_i and V_{i-1} components are coupled), the exact minima over the hull and over the
limiting set are found by enumerating active sets and concave choices, and the suite's bracket must enclose the
truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.inner import default_kink_rtol
from bcd.inputs import make_problem
from bcd.problem import initial_state
from verification import schema as S  # noqa: N812
from verification.subgradient import least_norm_subgradient

torch.set_default_dtype(torch.float64)


ACTS = ["relu", "leaky_relu(0.3)"]


def _slope(p) -> float:
    return p.activation.kink[0]


def _state_with_kinks(seed: int, activation: str = "relu", l1: float | None = None):
    """Random W̃, V (targets of both signs), then biases and one column of V_1 chosen so that Z_1, Z_2 have kink
    entries: one per row of layer 1 (bias), one per row plus a whole column of layer 2 (bias, then V_1's column).
    ``l1``: r_i = l1·‖W̃_i‖₁ instead of the ridge, with entry (0, 0) of every W̃_i at 0 (where ∂|·| is an interval)."""
    d = gaussian_mixture(n=10, d=3, k=2, seed=seed)
    reg = {"lam": 0.1} if l1 is None else {"r": f"l1({l1})"}
    cfg = BCDConfig(hidden=(3, 3), splitting="two", gamma=0.7, alpha=1.0, init="kaiming", seed=seed % 7,
                    activation=activation, **reg)
    p = make_problem(d.X_train, d.y_train, cfg)
    st = initial_state(p)
    gen = torch.Generator().manual_seed(seed)
    for i in range(1, cfg.N + 1):
        st.V[i] = torch.randn(st.V[i].shape, generator=gen)
    n = p.n
    if l1 is not None:
        for i in range(1, cfg.N + 1):
            st.W[i][0, 0] = 0.0
    for i in (1, 2):
        W = st.W[i].clone()
        cols = torch.randperm(n, generator=gen)[: W.shape[0]]
        for j, k in enumerate(cols.tolist()):
            W[j, -1] = -(W[j, :-1] @ st.V[i - 1][:, k])
        st.W[i] = W
    k_star = int(torch.randint(n, (1,), generator=gen))
    W2 = st.W[2]
    st.V[1][:, k_star] = torch.linalg.solve(W2[:, :-1], -W2[:, -1])  # a whole column of Z_2 at the kink
    return st, p


def _reference(st, p, l1: float | None = None):
    """Brute force, independently of verification.subgradient: g⁰ (every kink multiplier 0) by autograd of L written
    out, and per layer the exact minima of ‖g + γJξ‖² over the hull box and over the limiting set.  ``l1``: r_i is
    l1·‖W̃_i‖₁, whose subgradient u is l1·sign(w) at w ≠ 0 (a shift of g) and free in [−l1, l1] at w = 0 (one more
    box variable with a unit column), so every minimum is joint over ξ and u."""
    cfg, N, gamma, s = p.config, p.config.N, p.config.gamma, _slope(p)
    W = [None] + [w.clone().requires_grad_(True) for w in st.W[1:]]
    V = [p.X] + [v.clone().requires_grad_(True) for v in st.V[1:]]
    bands, L = {}, 0.5 * (V[N] - p.Y).square().sum()
    for i in range(1, N + 1):
        Vt = torch.cat([V[i - 1], torch.ones(1, p.n)])
        Z = W[i] @ Vt
        if i < N:
            scale = W[i].detach().norm(dim=1, keepdim=True) * Vt.detach().norm(dim=0, keepdim=True)
            bands[i] = Z.detach().abs() <= default_kink_rtol(Z.dtype) * scale
            Z = torch.where(bands[i], torch.zeros_like(Z), torch.maximum(Z, s * Z))  # σ(z), the kink's ξ = 0
        L = L + 0.5 * gamma * (V[i] - Z).square().sum() + 0.5 * cfg.lam * W[i].square().sum()
    leaves = [*W[1:], *V[1:]]
    grads = torch.autograd.grad(L, leaves)
    g0 = {("W", i): grads[i - 1] for i in range(1, N + 1)} | {("V", i): grads[N + i - 1] for i in range(1, N + 1)}

    def with_u(keys, g, J, lo, hi):
        """(g, J, lo, hi) with ℓ1's u on the W̃ entries of ``keys`` folded in (unchanged without ``l1``)."""
        if l1 is None:
            return g, J, lo, hi
        w = np.concatenate([st.W[k[1]].numpy().reshape(-1) if k[0] == "W" else np.full(g0[k].numel(), np.nan)
                            for k in keys])
        g = g + np.where(np.isnan(w), 0.0, l1 * np.sign(np.nan_to_num(w)))
        free = np.flatnonzero(w == 0.0)
        J = np.concatenate([J, np.eye(len(g))[:, free]], axis=1)
        return g, J, np.concatenate([lo, np.full(len(free), -l1)]), np.concatenate([hi, np.full(len(free), l1)])

    def at_zero(keys):  # min over u alone of the blocks' ‖g⁰ + u‖²
        g = torch.cat([g0[k].reshape(-1) for k in keys]).numpy()
        g, J, lo, hi = with_u(keys, g, np.zeros((len(g), 0)), np.zeros(0), np.zeros(0))
        return _box_min(g, J, lo, hi)

    total = {"s0": sum(at_zero([k]) for k in g0)}
    total["hull"] = total["limit"] = total["s0"]
    layers = {}
    for i in range(1, N):
        jj, kk = bands[i].nonzero(as_tuple=True)
        keys = [("W", i)] + ([("V", i - 1)] if i >= 2 else [])
        g = torch.cat([g0[k].reshape(-1) for k in keys]).numpy()
        cols = []
        for j, k in zip(jj.tolist(), kk.tolist(), strict=True):
            e = torch.zeros_like(st.W[i])
            e[j] = torch.cat([st.V[i - 1][:, k], torch.ones(1)]) if i >= 2 else torch.cat([p.X[:, k], torch.ones(1)])
            parts = [e.reshape(-1)]
            if i >= 2:
                f = torch.zeros_like(st.V[i - 1])
                f[:, k] = st.W[i][j, :-1]
                parts.append(f.reshape(-1))
            cols.append(gamma * torch.cat(parts))
        J = torch.stack(cols, dim=1).numpy()
        t = st.V[i][jj, kk].numpy()
        lo, hi = np.minimum(-s * t, -t), np.maximum(-s * t, -t)  # between the one-sided z-derivatives
        base = at_zero(keys)
        g, J, lo, hi = with_u(keys, g, J, lo, hi)
        hull = _box_min(g, J, lo, hi)
        concave = np.flatnonzero(t > 0)
        limit = np.inf
        for choice in itertools.product(*[(-t[c], -s * t[c]) for c in concave]):
            lo2, hi2 = lo.copy(), hi.copy()
            lo2[concave] = hi2[concave] = choice
            limit = min(limit, _box_min(g, J, lo2, hi2))
        total["hull"] += hull - base
        total["limit"] += limit - base
        layers[i] = dict(keys=keys, g=g, J=J, lo=lo, hi=hi, t=t, m=len(t))
    return total, layers


def _box_min(g, J, lo, hi) -> float:
    """min ‖g + Jξ‖² over lo ≤ ξ ≤ hi by enumerating which entries sit at lo, at hi or are free."""
    best = np.inf
    for pattern in itertools.product((0, 1, 2), repeat=len(lo)):
        p = np.array(pattern)
        xi = np.where(p == 0, lo, hi).astype(float)
        free = p == 2
        if free.any():
            r = g + J[:, ~free] @ xi[~free]
            sol, *_ = np.linalg.lstsq(J[:, free], -r, rcond=None)
            if np.any(sol < lo[free] - 1e-12) or np.any(sol > hi[free] + 1e-12):
                continue
            xi[free] = sol
        best = min(best, float(np.sum((g + J @ xi) ** 2)))
    return best


@pytest.mark.parametrize(("activation", "l1"), [(a, None) for a in ACTS] + [("relu", 0.3), ("leaky_relu(0.3)", 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bracket_encloses_the_brute_force_least_norm(seed, activation, l1):
    """With ``l1`` the bound is joint over the kink multipliers and ℓ1's subgradient (it used to be 0 there)."""
    st, p = _state_with_kinks(seed, activation, l1)
    total, layers = _reference(st, p, l1)
    assert layers[1]["m"] >= 3 and layers[2]["m"] >= 5  # coupled kinks in rows and in a column
    assert any((lay["t"] > 0).any() for lay in layers.values()) and any((lay["t"] < 0).any() for lay in layers.values())
    ln = least_norm_subgradient(st, p)
    norm_sq = sum(float(g.square().sum()) for g in ln.parts.values())
    lower_sq = float(ln.lower_sq)
    # the certified lower bound is the hull minimum (to the QP's accuracy) and never above it
    assert lower_sq <= total["hull"] * (1 + 1e-9) + 1e-12
    assert lower_sq >= total["hull"] * (1 - 1e-6) - 1e-10
    # the element is no better than the exact limiting minimum (else it would not be in the set) and, for ReLU, no
    # worse than the relu′(0) = 0 element (for leaky ReLU, ξ = 0 is not a subgradient at a kink)
    assert total["limit"] * (1 - 1e-9) - 1e-12 <= norm_sq
    if activation == "relu":
        assert norm_sq <= total["s0"] * (1 + 1e-12)
    # membership: per layer, the element is g⁰ + Jξ with ξ in the box and every concave multiplier at −t or 0
    # (with ℓ1, u at the zero entries of W̃ is the last box variables: their unit columns make ξ, u unique too)
    for lay in layers.values():
        mine = torch.cat([ln.parts[k].reshape(-1) for k in lay["keys"]]).numpy()
        xi, *_ = np.linalg.lstsq(lay["J"], mine - lay["g"], rcond=None)
        assert np.allclose(lay["J"] @ xi, mine - lay["g"], atol=1e-9)
        assert np.all(xi >= lay["lo"] - 1e-8) and np.all(xi <= lay["hi"] + 1e-8)
        xi, concave = xi[: lay["m"]], lay["t"] > 0
        at_end = np.minimum(np.abs(xi + lay["t"]), np.abs(xi + _slope(p) * lay["t"]))
        assert np.all(at_end[concave] <= 1e-8)


@pytest.mark.parametrize("activation", ACTS)
def test_without_concave_kinks_the_bracket_closes(activation):
    st, p = _state_with_kinks(5, activation)
    for i in (1, 2):  # make every target at a kink entry negative: convex kinks only
        Z = st.W[i] @ torch.cat([st.V[i - 1], torch.ones(1, p.n)])
        st.V[i] = torch.where(Z.abs() < 1e-9, -st.V[i].abs() - 0.1, st.V[i])
    ln = least_norm_subgradient(st, p)
    norm_sq = sum(float(g.square().sum()) for g in ln.parts.values())
    total, _ = _reference(st, p)
    assert total["hull"] == pytest.approx(total["limit"], rel=1e-12)
    assert float(ln.lower_sq) == pytest.approx(norm_sq, rel=1e-6)
    assert norm_sq == pytest.approx(total["limit"], rel=1e-6)
    if activation == "relu":
        assert norm_sq < total["s0"] * (1 - 1e-3)  # the QP improves on the relu′(0) = 0 element here


def test_recorder_records_the_bracket_for_algorithm_1():
    from bcd.engine import train
    from verification.recorder import Recorder

    d = gaussian_mixture(n=40, d=5, k=3, seed=11)
    cfg = BCDConfig(hidden=(5, 4), splitting="two", sweeps=4, gamma=1.0, alpha=1.0)
    rec = Recorder("standard")
    train(d.X_train, d.y_train, cfg, hooks=[rec])
    tr = rec.trace()
    assert tr.meta[S.META_G_DEFINITION] == "least_norm_bracket"
    sw = tr.sweeps[tr.sweeps[S.SWEEP] >= 1]
    assert (sw[S.G_NORM_LOWER] <= sw[S.G_NORM] * (1 + 1e-12)).all() and (sw[S.G_NORM_LOWER] > 0).all()
    from verification.checks import relative_error

    v = relative_error(tr, cfg)  # no theoretical b for ReLU (MATH.md §7.4): observed, with both ratios
    assert v.status == "inconclusive" and 0 < v.details["b_emp_lower"] <= v.measured
    assert "lower bound of the least norm" in v.explanation


def test_bracket_goes_through_the_reduction_seam():
    """Two identical shards (a reduction that doubles every sum) give the bracket of the duplicated columns: the QP's
    sums over samples (EṼᵀ, ‖R_V‖², the Frank–Wolfe gap, ‖Ṽ‖₂²) all pass through the seam."""
    from bcd.reduction import Reduction, using

    class TwoIdenticalShards(Reduction):
        def sum_(self, t):
            return t.mul_(2.0)

    st, p = _state_with_kinks(3)
    with using(TwoIdenticalShards()):
        shard = least_norm_subgradient(st, p)
    cfg = p.config
    X2 = torch.cat([p.X, p.X], dim=1).T
    y2 = torch.cat([p.labels, p.labels])
    p2 = make_problem(X2, y2, cfg, n_classes=p.Y.shape[0])
    st2 = type(st)(list(st.W), [p2.X] + [torch.cat([v, v], dim=1) for v in st.V[1:]], list(st.U))
    full = least_norm_subgradient(st2, p2)
    assert float(shard.lower_sq) == pytest.approx(float(full.lower_sq), rel=1e-9)
    for (b, i), g in full.parts.items():  # equal to the QP's accuracy (it stops on a relative gap of 1e-10)
        mine = shard.parts[(b, i)]
        torch.testing.assert_close(mine, g if b == "W" else g[:, : p.n], rtol=1e-5, atol=1e-6)
