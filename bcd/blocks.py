"""The block updates of Algorithms 2 and 3 as pure functions (MATH.md §3, §8).

Samples are columns.  A weight block is the augmented W̃_i = [Ŵ_i  b_i] ∈ R^{d_i×(d_{i-1}+1)}
acting on Ṽ_{i-1} = [V_{i-1}; 1ᵀ]; the ones row is never materialised: W̃Ṽ = ŴV + b1ᵀ is one
``addmm`` and ṼṼᵀ, UṼᵀ are assembled from VVᵀ, UVᵀ and row sums.  Every function returns the
exact global minimiser of its subproblem and never modifies its arguments, except that a caller
may hand over a temporary it no longer needs (``overwrite_P=True``) so its storage is reused.
"""

from __future__ import annotations

import torch

from bcd.activations import Activation, chunk_size
from bcd.fusion import fuse_mode, pass_function
from bcd.reduction import over_samples

Tensor = torch.Tensor


def affine(W: Tensor, V_prev: Tensor, out: Tensor | None = None) -> Tensor:
    """W̃Ṽ = ŴV + b1ᵀ (the pre-activation product P), into ``out`` when given."""
    return torch.addmm(W[:, -1:], W[:, :-1], V_prev, out=out)


GRAM_BLOCKS = 4  # row blocks of the symmetric Gram on the CPU (measured: 4–6 blocks cost 0.70× the full GEMM)


def symmetric_gram_(V: Tensor, out: Tensor) -> Tensor:
    """VVᵀ into ``out`` (d×d) at about (k+1)/(2k) of the full product's FLOPs: the upper block triangle by k row-block
    GEMMs (block a against blocks a..k−1; on CUDA and for small d one GEMM), then the strict upper triangle mirrored,
    so ``out`` is exactly symmetric (a GEMM need not sum (i, j) and (j, i) alike: MKL on AVX-512 does not)."""
    d = V.shape[0]
    k = GRAM_BLOCKS if V.device.type == "cpu" and d >= 64 * GRAM_BLOCKS else 1
    edges = [d * j // k for j in range(k + 1)]
    for a in range(k):
        rows = slice(edges[a], edges[a + 1])
        torch.matmul(V[rows], V[edges[a]:].T, out=out[rows, edges[a]:])
    i, j = torch.triu_indices(d, d, 1, device=out.device)
    out[j, i] = out[i, j]
    return out


def augmented_gram(V_prev: Tensor) -> Tensor:
    """ṼṼᵀ ∈ R^{(d+1)×(d+1)} for Ṽ = [V; 1ᵀ] (a sum over samples: through the reduction seam)."""
    d, n = V_prev.shape
    G = V_prev.new_empty(d + 1, d + 1)
    symmetric_gram_(V_prev, G[:d, :d])
    s = V_prev.sum(dim=1)
    G[:d, d] = s
    G[d, :d] = s
    G[d, d] = n
    return over_samples(G)


def augmented_cross(U: Tensor, V_prev: Tensor) -> Tensor:
    """UṼᵀ = [UVᵀ  U1] ∈ R^{d_i×(d_{i-1}+1)} (a sum over samples: through the reduction seam)."""
    d_out, d_in = U.shape[0], V_prev.shape[0]
    C = U.new_empty(d_out, d_in + 1)
    torch.matmul(U, V_prev.T, out=C[:, :d_in])
    C[:, d_in] = U.sum(dim=1)
    return over_samples(C)


def solve_spd_right_(B: Tensor, M: Tensor) -> Tensor:
    """Overwrite B with B M⁻¹ for symmetric positive definite M = LLᵀ (Cholesky; no inverse formed).

    Two right-sided triangular solves, X Lᵀ = B then Y L = X, written in place: on a transposed
    (column-major) view of a row-major d×n matrix this is the left solve M⁻¹R without any layout copy.
    ``cholesky_ex`` does not inspect its ``info`` flag, so no host–device sync happens inside a sweep
    (M = ρI + ŴᵀŴ, ρI + ŴŴᵀ or diag(α+λ) + γṼṼᵀ, ρ ≥ 1, is positive definite by construction)."""
    L, _info = torch.linalg.cholesky_ex(M)
    torch.linalg.solve_triangular(L.T, B, upper=True, left=False, out=B)
    torch.linalg.solve_triangular(L, B, upper=False, left=False, out=B)
    return B


def loss_scale(reduction: str, n: int | None = None) -> float:
    """c, the loss's weight (R = (c/2)‖V − Y‖² for the squared loss): 1 for ``sum``, 1/n for ``mean`` (n unknown:
    the upper bound 1)."""
    if reduction == "sum":
        return 1.0
    if reduction == "mean":
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"n={n!r} is not allowed; n must be an integer >= 1")
        return 1.0 if n is None else 1.0 / n
    raise ValueError(f"reduction={reduction!r} is not supported; allowed: sum, mean")


def update_V_N(V_N: Tensor, U_N: Tensor, Y: Tensor, *, gamma: float, alpha: float, c: float) -> Tensor:
    """V_N⁺ = argmin_V (c/2)‖V − Y‖² + γ/2‖V − U_N⁻‖² + α/2‖V − V_N⁻‖²
    = (cY + γU_N⁻ + αV_N⁻)/(c + γ + α)  (first in the sweep: every neighbour is old).
    Optimality: c(V − Y) + γ(V − U_N⁻) + α(V − V_N⁻) = 0."""
    out = torch.add(V_N, U_N, alpha=gamma / alpha).mul_(alpha)
    return out.add_(Y, alpha=c).div_(c + gamma + alpha)


def update_V_N_prox_linear(
    V_N: Tensor, U_N: Tensor, grad_R: Tensor, *, gamma: float, alpha: float
) -> Tensor:
    """Prox-linear step of Theorem 2:
    V_N⁺ = argmin_V ⟨∇R(V_N⁻), V − V_N⁻⟩ + α/2‖V − V_N⁻‖² + γ/2‖V − U_N⁻‖²
    = (αV_N⁻ − ∇R(V_N⁻) + γU_N⁻)/(α + γ).  Optimality: ∇R(V_N⁻) + α(V − V_N⁻) + γ(V − U_N⁻) = 0."""
    out = torch.add(V_N, U_N, alpha=gamma / alpha).mul_(alpha)
    return out.sub_(grad_R).div_(alpha + gamma)


def update_U_N(V_N: Tensor, P_N: Tensor, *, overwrite_P: bool = False) -> Tensor:
    """U_N⁺ = argmin_U γ/2‖V_N⁺ − U‖² + γ/2‖U − W_N⁻Ṽ_{N-1}⁻‖² = (V_N⁺ + P_N)/2, P_N = W_N⁻Ṽ_{N-1}⁻.
    V_N⁺ is new, W_N and Ṽ_{N-1} old.  Optimality: γ(U − V_N⁺) + γ(U − P_N) = 0.
    (No proximal term: the subproblem is already γ-strongly convex.)"""
    out = P_N if overwrite_P else P_N.clone()
    return out.add_(V_N).mul_(0.5)


def update_W(
    W: Tensor,
    U: Tensor,
    V_prev: Tensor,
    *,
    gamma: float,
    alpha: float,
    lam: float | Tensor,
    gram: Tensor | None = None,
    cross: Tensor | None = None,
) -> Tensor:
    """W̃_i⁺ = argmin_W λ/2‖W‖² + γ/2‖U_i⁺ − WṼ_{i-1}⁻‖² + α/2‖W − W̃_i⁻‖²  (U_i⁺ new, Ṽ_{i-1} old)
    = (αW̃_i⁻ + γU_i⁺Ṽᵀ)((α+λ)I + γṼṼᵀ)⁻¹, a right-sided Cholesky solve.
    Optimality: W((α+λ)I + γṼṼᵀ) = γU_i⁺Ṽᵀ + αW̃_i⁻.  ``lam`` may be a vector (one λ per
    column of W̃: 0 on the bias column when the bias is not regularised), giving diag(α + λ) in place of (α+λ)I.

    ``gram`` and ``cross`` may pass precomputed ṼṼᵀ (constant for i = 1, where Ṽ_0 = X̃) and UṼᵀ."""
    G = augmented_gram(V_prev) if gram is None else gram
    M = G.mul(gamma)
    M.diagonal().add_(alpha + lam)
    C = augmented_cross(U, V_prev) if cross is None else cross
    R = torch.mul(C, gamma).add_(W, alpha=alpha)
    return solve_spd_right_(R, M)


def update_V_hidden(
    sigma_U: Tensor, W_next: Tensor, U_next: Tensor, *, rho: float = 1.0, overwrite_S: bool = False
) -> Tensor:
    """V_i⁺ = argmin_V γ/2‖V − S‖² + (ρ − 1)γ/2‖V − T‖² + γ/2‖U_{i+1}⁺ − W̃_{i+1}⁺Ṽ‖²  (i < N, no proximal term).

    Algorithm 2: ρ = 1 and S = σ(U_i⁻).  Algorithm 3 (MATH.md §8): ρ = 1 + τ_{i+1}, T = V_{i+1}⁺ − σ_{i+1}(U_{i+1}⁺),
    and the caller passes S' = τ_iV_{i-1}⁻ + σ(U_i⁻) + τ_{i+1}T as ``sigma_U``.  Algorithm 1 with a linear next layer
    (its proximal term): ρ = 1 + α/γ, T = V_i⁻, S' = S + (α/γ)V_i⁻, with U_{i+1}⁺ read as V_{i+1}⁻ there.
    Normal equations (ρI + ŴᵀŴ)V = S' + Ŵᵀ(U_{i+1}⁺ − b1ᵀ), Ŵ, b = W̃_{i+1}⁺.
    When d_{i+1} < d_i the equivalent Woodbury form V = (S' + Ŵᵀ(ρI + ŴŴᵀ)⁻¹(ρ(U − b1ᵀ) − ŴS'))/ρ is
    cheaper (a d_{i+1}-sized Cholesky); both are exact.  The branch is chosen by flop count.
    """
    S = sigma_U if overwrite_S else sigma_U.clone()  # updated in place below
    W_hat, b = W_next[:, :-1], W_next[:, -1:]
    d_next, d = W_hat.shape
    if 2 * d_next * d + d_next * d_next < d * d_next + d * d:  # Woodbury: fewer n-sized flops
        K = W_hat @ W_hat.T
        K.diagonal().add_(rho)
        T = torch.addmm(U_next, W_hat, S, alpha=-1.0 / rho).sub_(b)  # U − b1ᵀ − ŴS'/ρ
        if rho != 1.0:
            T.mul_(rho)
        solve_spd_right_(T.T, K)  # T ← K⁻¹T
        S.addmm_(W_hat.T, T)
        return S if rho == 1.0 else S.div_(rho)
    M = W_hat.T @ W_hat
    M.diagonal().add_(rho)
    rhs = S.sub_(W_hat.T @ b).addmm_(W_hat.T, U_next)  # S' + ŴᵀU − (Ŵᵀb)1ᵀ
    solve_spd_right_(rhs.T, M)  # rhs ← M⁻¹rhs
    return rhs


def prox_center(P: Tensor, U: Tensor, *, gamma: float, alpha: float, out: Tensor | None = None) -> Tensor:
    """m = (γP + αU_i⁻)/(γ + α): the point the U_i prox is centred at, in ``out`` (which may be P's or U's storage:
    the arithmetic is elementwise) or a new tensor."""
    return torch.add(P, U, alpha=alpha / gamma, out=out).mul_(gamma / (gamma + alpha))


def u_prox_piece(a: Tensor, p: Tensor, u: Tensor, gamma: float, alpha: float, activation: Activation,
                 out: Tensor | None = None) -> Tensor:
    """One piece (flat, of equal length) of the U_i update: argmin_u ½(a − σ(u))² + (β/2)(u − m)² entrywise,
    m = (γp + αu)/(γ + α), β = (γ + α)/γ, written into ``out`` (which may be ``p``'s or ``u``'s storage: the
    arithmetic is elementwise) or, without it, into a new tensor.  The one body of the U step: eager with ``out``,
    compiled (:mod:`bcd.fusion`) without it, so that a compiled call writes none of its arguments."""
    return activation.prox_(a, prox_center(p, u, gamma=gamma, alpha=alpha, out=out), (gamma + alpha) / gamma)


def update_U_hidden(
    V: Tensor,
    P: Tensor,
    U: Tensor,
    *,
    gamma: float,
    alpha: float,
    activation: Activation,
    overwrite_P: bool = False,
    out: Tensor | None = None,
) -> Tensor:
    """U_i⁺ = argmin_U γ/2‖V_i⁺ − σ(U)‖² + γ/2‖U − W_i⁻Ṽ_{i-1}⁻‖² + α/2‖U − U_i⁻‖²  (i < N; V_i⁺ new, the rest old).
    Optimality (entrywise, σ piecewise smooth): 0 ∈ −γ(V_i⁺ − σ(u))∂σ(u) + γ(u − P) + α(u − U_i⁻); the prox takes the
    global minimiser among the stationary candidates.

    Completing the square: elementwise prox of σ at m = (γP + αU_i⁻)/(γ+α) with β = (γ+α)/γ,
    P = W_i⁻Ṽ_{i-1}⁻ (see :mod:`bcd.activations`).  On the CPU :func:`u_prox_piece` runs on chunks
    (:func:`bcd.activations.chunk_size`), so that its temporaries stay in cache: one pass over memory instead of
    one per operation (``benchmarks/bench_engine.py`` measures the gain); on CUDA in one piece.  Each piece's centre
    and prox are formed in ``out`` (which may be U itself), else in P's storage (``overwrite_P``: P is a scratch
    buffer), else in a new tensor.  Every chunking gives the same bits.  For a closed-form prox on the CPU,
    ``BCD_FUSE`` (:mod:`bcd.fusion`) may compile the piece into one kernel instead, whose result is copied into place:
    the same to rounding, not to the bit."""
    piece, chunk = (pass_function(u_prox_piece, fuse_mode(), P) if activation.closed_form_prox
                    else (u_prox_piece, chunk_size(P)))
    if out is None:
        out = P if overwrite_P else P.new_empty(P.shape)
    flat_a, flat_p, flat_u, flat_out = V.reshape(-1), P.reshape(-1), U.reshape(-1), out.view(-1)
    for s in range(0, flat_p.numel(), chunk):  # a loop over memory chunks, not over entries
        sl = slice(s, s + chunk)
        if piece is u_prox_piece:
            u_prox_piece(flat_a[sl], flat_p[sl], flat_u[sl], gamma, alpha, activation, out=flat_out[sl])
        else:
            flat_out[sl].copy_(piece(flat_a[sl], flat_p[sl], flat_u[sl], gamma, alpha, activation))
    return out
