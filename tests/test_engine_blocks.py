"""Each closed-form block update equals the minimiser of its subproblem, found independently.

Smooth subproblems: L-BFGS on the subproblem written directly with autograd (float64).
The ReLU prox: brute force on a fine grid over ≥ 2000 random cases, ties and the a + βm = 0 boundary.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import lbfgs_minimise

from bcd.activations import get_activation, identity_prox, relu_prox
from bcd.blocks import (
    affine,
    update_U_hidden,
    update_U_N,
    update_V_hidden,
    update_V_N,
    update_V_N_prox_linear,
    update_W,
)

torch.set_default_dtype(torch.float64)


def sq(t):
    return (t**2).sum()


def assert_is_minimiser(f, closed, x0):
    ref = lbfgs_minimise(f, x0)
    assert float(f(closed)) <= float(f(ref)) + 1e-9 * max(1.0, abs(float(f(ref))))
    torch.testing.assert_close(closed, ref, rtol=1e-6, atol=1e-7)


@pytest.fixture
def g():
    return torch.Generator().manual_seed(1234)


@pytest.mark.parametrize("reduction_c", [1.0, 1.0 / 7])
def test_V_N_is_the_minimiser(g, reduction_c):
    gamma, alpha = 0.7, 2.5
    V, U, Y = (torch.randn(3, 7, generator=g) for _ in range(3))
    closed = update_V_N(V, U, Y, gamma=gamma, alpha=alpha, c=reduction_c)

    def f(x):
        return reduction_c / 2 * sq(x - Y) + gamma / 2 * sq(x - U) + alpha / 2 * sq(x - V)

    assert_is_minimiser(f, closed, V)


def test_V_N_prox_linear_is_the_minimiser(g):
    gamma, alpha = 1.3, 0.9
    V, U, G = (torch.randn(3, 7, generator=g) for _ in range(3))
    closed = update_V_N_prox_linear(V, U, G, gamma=gamma, alpha=alpha)

    def f(x):
        return (G * (x - V)).sum() + alpha / 2 * sq(x - V) + gamma / 2 * sq(x - U)

    assert_is_minimiser(f, closed, V)


def test_U_N_is_the_minimiser(g):
    gamma = 1.7
    V_N, W, V_prev = torch.randn(3, 9, generator=g), torch.randn(3, 5, generator=g), torch.randn(4, 9, generator=g)
    P = affine(W, V_prev)
    closed = update_U_N(V_N, P)

    def f(x):
        return gamma / 2 * sq(V_N - x) + gamma / 2 * sq(x - P)

    assert_is_minimiser(f, closed, V_N)


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_W_is_the_minimiser(g, lam):
    gamma, alpha = 1.2, 0.4
    W = torch.randn(4, 6, generator=g)
    U, V_prev = torch.randn(4, 11, generator=g), torch.randn(5, 11, generator=g)
    closed = update_W(W, U, V_prev, gamma=gamma, alpha=alpha, lam=lam)

    def f(x):
        return lam / 2 * sq(x) + gamma / 2 * sq(U - affine(x, V_prev)) + alpha / 2 * sq(x - W)

    assert_is_minimiser(f, closed, W)


@pytest.mark.parametrize("d, d_next", [(6, 3), (3, 6), (5, 5)], ids=["woodbury", "direct", "square"])
def test_V_hidden_is_the_minimiser(g, d, d_next):
    n = 8
    S = torch.relu(torch.randn(d, n, generator=g))
    W_next, U_next = torch.randn(d_next, d + 1, generator=g), torch.randn(d_next, n, generator=g)
    closed = update_V_hidden(S, W_next, U_next)

    def f(x):
        return 0.5 * sq(x - S) + 0.5 * sq(U_next - affine(W_next, x))

    assert_is_minimiser(f, closed, S)


def test_U_hidden_identity_is_the_minimiser(g):
    gamma, alpha = 0.8, 3.0
    V, P, U = (torch.randn(4, 6, generator=g) for _ in range(3))
    closed = update_U_hidden(V, P, U, gamma=gamma, alpha=alpha, activation=get_activation("identity"))

    def f(x):
        return gamma / 2 * sq(V - x) + gamma / 2 * sq(x - P) + alpha / 2 * sq(x - U)

    assert_is_minimiser(f, closed, U)


def test_U_hidden_relu_minimises_every_entry(g):
    """The ReLU U-subproblem is separable: each entry must be no worse than a fine grid's best."""
    gamma, alpha = 1.0, 5.0
    V, P, U = (torch.randn(5, 40, generator=g) for _ in range(3))
    closed = update_U_hidden(V, P, U, gamma=gamma, alpha=alpha, activation=get_activation("relu"))
    grid = torch.linspace(-6, 6, 24001)

    def f(u, v, p, u_old):
        return gamma / 2 * (v - torch.relu(u)) ** 2 + gamma / 2 * (u - p) ** 2 + alpha / 2 * (u - u_old) ** 2

    vals = f(grid[:, None], V.reshape(1, -1), P.reshape(1, -1), U.reshape(1, -1))
    best = vals.min(dim=0).values
    ours = f(closed.reshape(-1), V.reshape(-1), P.reshape(-1), U.reshape(-1))
    assert torch.all(ours <= best + 1e-12)


# ------------------------------------------------------------------------- the elementwise ReLU prox


def relu_prox_objective(u, a, m, beta):
    return 0.5 * (a - np.maximum(u, 0.0)) ** 2 + 0.5 * beta * (u - m) ** 2


def brute_force(a, m, beta):
    """Fine grid over a bracket that contains every candidate, then a local refinement."""
    lo, hi = min(m, 0.0, a) - 1.0, max(m, 0.0, a) + 1.0
    grid = np.linspace(lo, hi, 40001)
    vals = relu_prox_objective(grid, a, m, beta)
    j = int(np.argmin(vals))
    fine = np.linspace(grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)], 2001)
    fv = relu_prox_objective(fine, a, m, beta)
    return fine[int(np.argmin(fv))], float(fv.min())


def random_prox_cases(rng, n):
    a = rng.normal(scale=2.0, size=n)
    m = rng.normal(scale=2.0, size=n)
    beta = rng.choice([1.0 + 1e-3, 1.2, 2.0, 6.0, 25.0], size=n)
    # a quarter of the cases sit exactly on the branch boundary a + βm = 0
    k = n // 4
    m[:k] = -a[:k] / beta[:k]
    # and a quarter on the tie f(u₊) = f(u₋) (m < 0 < a): β(a − m)² = (1+β)a²
    a[k : 2 * k] = np.abs(a[k : 2 * k]) + 0.1
    m[k : 2 * k] = a[k : 2 * k] * (1 - np.sqrt((1 + beta[k : 2 * k]) / beta[k : 2 * k]))
    return a, m, beta


def test_relu_prox_matches_brute_force_on_2400_cases():
    rng = np.random.default_rng(7)
    a, m, beta = random_prox_cases(rng, 2400)
    ours = np.array([
        float(relu_prox(torch.tensor([ai]), torch.tensor([mi]), float(bi))[0]) for ai, mi, bi in zip(a, m, beta)
    ])
    f_ours = relu_prox_objective(ours, a, m, beta)
    for j in range(len(a)):
        u_bf, f_bf = brute_force(a[j], m[j], beta[j])
        assert f_ours[j] <= f_bf + 1e-10 * max(1.0, f_bf), (a[j], m[j], beta[j], ours[j], u_bf)


def test_relu_prox_vectorised_equals_scalar_and_closed_form():
    """The vectorised prox equals MATH.md's θ closed form on a large random batch."""
    rng = np.random.default_rng(3)
    a_all, m_all, beta_all = random_prox_cases(rng, 20000)
    for beta in np.unique(beta_all):
        a, m = a_all[beta_all == beta], m_all[beta_all == beta]
        u = relu_prox(torch.tensor(a), torch.tensor(m), float(beta)).numpy()
        theta = beta - np.sqrt(beta * (beta + 1))
        t = a + beta * m
        expected = np.where(t < 0, np.minimum(m, 0), np.where((m >= 0) | (beta * m >= a * theta), t / (1 + beta), m))
        # the two forms may pick different candidates only at exact ties, where both values agree
        f_u, f_e = relu_prox_objective(u, a, m, beta), relu_prox_objective(expected, a, m, beta)
        np.testing.assert_allclose(f_u, f_e, rtol=1e-12, atol=1e-12)


def test_relu_prox_worse_candidate_is_detected():
    """Sanity of the test itself: returning the worse candidate violates the brute-force bound."""
    a, m, beta = 1.0, -0.2, 2.0
    t = a + beta * m
    u_plus, u_minus = t / (1 + beta), min(m, 0.0)
    f = [relu_prox_objective(u, a, m, beta) for u in (u_plus, u_minus)]
    worse = (u_plus, u_minus)[int(np.argmax(f))]
    _, f_bf = brute_force(a, m, beta)
    assert relu_prox_objective(worse, a, m, beta) > f_bf + 1e-6


def test_identity_prox():
    a, m = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(identity_prox(a, m, 3.0), (a + 3.0 * m) / 4.0)


def test_updates_do_not_modify_their_arguments(g):
    V, U, Y = (torch.randn(3, 5, generator=g) for _ in range(3))
    W, Vp = torch.randn(3, 5, generator=g), torch.randn(4, 5, generator=g)
    before = [t.clone() for t in (V, U, Y, W, Vp)]
    update_V_N(V, U, Y, gamma=1.0, alpha=2.0, c=1.0)
    update_W(W, U, Vp, gamma=1.0, alpha=2.0, lam=0.1)
    update_U_hidden(V, U, Y, gamma=1.0, alpha=2.0, activation=get_activation("relu"))
    update_V_hidden(Vp, W, U)
    for b, t in zip(before, (V, U, Y, W, Vp)):
        assert torch.equal(b, t)


@pytest.mark.parametrize("d", [5, 255, 256, 601])
def test_symmetric_gram_equals_the_full_product_and_is_exactly_symmetric(d):
    """The block-triangular Gram (half the FLOPs on the CPU) against one full GEMM, in float64 and float32."""
    import bcd.blocks as blocks

    gen = torch.Generator().manual_seed(d)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        V = torch.randn(d, 300, generator=gen, dtype=dtype)
        out = torch.full((d, d), float("nan"), dtype=dtype)
        G = blocks.symmetric_gram_(V, out)
        assert G is out and torch.equal(G, G.T)
        torch.testing.assert_close(G, V @ V.T, rtol=tol, atol=tol * 300)


@pytest.mark.parametrize("name", ["relu", "leaky_relu(0.2)", "sigmoid", "identity"])
def test_the_chunked_u_step_equals_the_one_piece_u_step(name, monkeypatch):
    """update_U_hidden runs its centre and prox on CPU chunks whose edges cut rows; any chunk size gives the
    one-piece result bit for bit (the arithmetic is elementwise)."""
    import bcd.activations as activations
    import bcd.blocks as blocks
    from bcd import catalogue

    act = catalogue.build("activation", name)
    gen = torch.Generator().manual_seed(1)
    V, P, U = (torch.randn(7, 13, generator=gen) * 3 for _ in range(3))
    monkeypatch.setattr(activations, "CHUNK", 10**9)
    whole = blocks.update_U_hidden(V, P, U, gamma=1.3, alpha=0.7, activation=act)
    monkeypatch.setattr(activations, "CHUNK", 10)
    chunked = blocks.update_U_hidden(V, P, U, gamma=1.3, alpha=0.7, activation=act)
    assert torch.equal(whole, chunked)


def test_a_strided_u_block_gets_a_fresh_block_instead_of_its_storage_reused():
    """The quiet U step writes U_i⁺ over U_i⁻ only when U_i⁻ is contiguous; a user-built state with a strided U_i
    takes the fresh-block path and gets the same values."""
    from bcd import BCDConfig, initial_state
    from bcd.data import gaussian_mixture
    from bcd.engine import sweep
    from bcd.inputs import make_problem
    from bcd.schedule import schedule_for

    d = gaussian_mixture(n=30, d=4, k=3, seed=2)
    p = make_problem(d.X_train, d.y_train, BCDConfig(hidden=(5, 4), dtype="float64"))
    a, b = initial_state(p), initial_state(p)
    b.U[1] = b.U[1].T.contiguous().T  # the same values, column-major
    sweep(a, p, schedule_for("three", p.config.N))
    sweep(b, p, schedule_for("three", p.config.N))
    for (_, _, x), (_, _, y) in zip(a.blocks(), b.blocks(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
