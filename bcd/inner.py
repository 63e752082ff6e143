"""Monotone inexact inner solvers for the two nonconvex blocks of Algorithm 1 (two-splitting, MATH.md §7).

With σ = ReLU (or identity) and the other blocks fixed, Algorithm 1 needs

* the **W step** (row-separable; row r of W̃ only meets row r of V_i⁺):
  W̃⁺ ≈ argmin_W Φ(W) = γ/2‖V_i⁺ − σ(W̃Ṽ_{i-1}⁻)‖² + λ/2‖W̃‖² + α/2‖W̃ − W̃⁻‖²;
* the **V step** (column-separable; column j of V only meets column j of the data):
  V⁺ ≈ argmin_V Φ(V) = γ/2‖V − S‖² + γ/2‖V_{i+1}⁺ − σ(ŴV + b1ᵀ)‖² + α/2‖V − V⁻‖²,
  S = σ(W̃_i⁻Ṽ_{i-1}⁻), [Ŵ b] = W̃_{i+1}⁺.

Both are B independent problems of one generic form (``_Split``): for each problem b (a row of W̃, or a
column of V) with variable x ∈ Rᵖ,

    φ_b(x) = Σ_k w_k/2‖x − c_{k,b}‖² + γ/2 Σ_m (t_{bm} − σ(z_m(x)))²,   z_m(x) = ã_m·x + o_m,

with W: x = row of W̃, ã_m = [v_m; 1] (sample m, the ones entry implicit), o = 0, t = row of V_i⁺, quadratic terms
(λ, 0), (α, W̃⁻);  V: x = column of V, ã_m = row m of Ŵ, o_m = b_m, t = column of V_{i+1}⁺, terms (γ, S), (α, V⁻).
μ = Σ w_k ≥ α > 0, so every φ_b is μ-strongly convex plus γ Σ_m f(t_m, z_m), f(t, z) = ½(t − relu z)².

**Structure of f at the kink z = 0.**  f = ½t² for z ≤ 0 and ½(t − z)² for z ≥ 0: one-sided derivatives 0 and
−t.  t < 0: convex kink, ∂f(0) = [0, −t]; t > 0: concave kink, the limiting subdifferential is the two points
{−t, 0} (we use the hull [−t, 0], which gives a *lower bound* of the least-norm element there); t = 0: C¹.
So φ_b is piecewise quadratic on the hyperplane arrangement {z_m = 0}, and its minimisers often lie *on* hyperplanes
with t_m < 0 (a one-sided ℓ1-like kink: for z < 0 the entry is flat, for z > 0 it costs |t|z + z²/2).

**Algorithm (chosen): active-set piecewise Newton with an exact line search, batched over problems.**
State: x and a *held* set H_b of convex-kink entries that are kept at z_m = 0 as equality constraints.
Each iteration, for every problem at once:

1. Piece model.  With P = {m ∉ H : z_m > 0}, φ_b equals, near x and on {z_H = 0}, the quadratic
   q(x) = Σ_k w_k/2‖x − c_k‖² + γ/2 Σ_{m∈P} (t_m − z_m(x))² + const.  Its minimiser subject to z_H(x) = 0 is one
   KKT solve: (μI + γÃ_PᵀÃ_P) x + Ã_Hᵀν = μc̄ + γÃ_Pᵀ(t_P − o_P), Ã_H x = −o_H (Cholesky of the per-problem
   p×p Hessian, then a |H|×|H| Schur complement solved by a pseudo-inverse, so duplicate held rows are harmless).
2. Multipliers.  Stationarity of φ at a held entry requires ξ_m = ν_m/γ ∈ [0, −t_m].  ξ_m < 0 means the entry
   wants z < 0 (release to the flat side), ξ_m > −t_m means it wants z > 0 (release into P).
3. Candidates: d₁ = piece step with H kept; d₂ = all violators released; d₃ = only the worst violator released
   (the classical primal active-set move, a guaranteed descent direction at a piece minimiser).  d₂/d₃ are only
   formed when some multiplier is violated.  With ``explore`` (default) also d₄ = the step to the piece
   P = {t > 0}, H kept: a cheap look behind concave kinks (entries on the flat side whose target is positive),
   which a local method cannot see; measured, it cut the problems that end in a worse basin than L-BFGS from the
   same start from 11 to 8 of 210 (tests/test_inner.py).
4. Exact line search on the *true* φ along each candidate: s ↦ φ(x + s d) is a 1-D piecewise quadratic with
   breakpoints −z_m/δ_m; the breakpoints are sorted, segment coefficients are cumulative sums, and the global
   minimiser over s ≥ 0 is taken.  When it lies on a breakpoint of a convex-kink entry, that entry is added to H:
   this is how iterates land *exactly* on kinks (z_m = 0 up to rounding, and held there by the next KKT solve).
5. Safeguard: the candidate with the lowest *directly recomputed* φ_b is accepted per problem only if it does not
   exceed the current φ_b; otherwise the problem keeps its x.  Hence φ never increases, per row / per column.

Why this and not a first-order method: on a kink with t < 0 the gradient jumps by γ|t|‖ã‖, so gradient,
Armijo or L-BFGS iterates zig-zag around the hyperplane and the least-norm residual never drops below the jump
(MATH.md §7.3 reports exactly that stall).  A majorise–minimise (DC) scheme would still need an inner convex
nonsmooth solver.  The piecewise Newton step is exact on a piece, so σ = identity (one piece, no kinks) is solved
exactly in one step (then the rule holds), and for ReLU it terminates in a handful of iterations on small
problems.  Cost per iteration of step 1, chosen per problem by a flop estimate (``_piece_route``):
*dense*: assembling the p×p Hessian, O(M·p² + p³) flops and O(p²) memory per problem (chunked, see
``chunk_elems``); *sample space* (``_piece_solve_wood``): all problems share Ã (M×p), only P differs, so by
Woodbury H_b⁻¹ needs a k×k capacitance matrix, k = min(|P|, |N|), N = the complement of P, gathered from a shared
M×M matrix (K = ÃÃᵀ when |P| is small; C = ÃH_full⁻¹Ãᵀ, H_full = μI + γÃᵀÃ, when |N| is small), O(k³ + M·p) per
problem plus O(M²p + p³) once per solve; the Schur complement of the held rows is gathered the same way, and one
step of matrix-free iterative refinement on the KKT residual brings the result to the dense path's accuracy (the
tests compare the two paths).  Measured on MNIST 784-100-100-100-10, n = 2000 (W_1: p = 785, M = 2000, most rows
with k ≪ M), one thread: the W_1 solve went from 18 s to 3.8 s, the V solves (p = M = 100, B = 2000) from 1.9 s
to 0.2 s.  Still heavy for 1500-wide layers with n = 60 000 (k³ per problem with k up to M/2; a Krylov variant
of step 1 would be needed there).  Entries usually land
on kinks a few per iteration, so the iteration count grows with the number of kink entries per problem (measured,
one CPU thread: W 50×51, n = 500, α = 5, γ = 1: 43 iterations, 5.5 s; V 50×500 under a 40×51 layer: 2
iterations, 0.4 s).  Host syncs: a handful per iteration (set sizes, the rule, the box-QP certificate).

**Stopping rule (MATH.md §7 item 2), applied globally per block:** stop when
dist(0, ∂Φ(X)) ≤ η‖X − X⁻‖_F, the left side being the Frobenius norm of the per-row (W) / per-column (V)
least-norm subgradients (the least-norm element of a separable function's subdifferential is the concatenation
of the per-problem ones), or at ``max_iter`` (reported: ``reason='cap'``), or when no problem can decrease any more
(``reason='stalled'``, also not a rule success).  Default η = α/10: the proximal term alone contributes
α(X⁺ − X⁻) to the subgradient used in the relative-error bound, so η = α/10 enlarges that bound's constant by
10 % (b → b + η√(blocks)); a fixed η is all the H1/H2 argument needs.

**Least-norm residual** (``stationarity_W/V``): entries with |z_m| ≤ kink_rtol·(‖ã_m‖‖x‖ + |o_m|) count as kink
entries (rounding: held entries sit at z ≈ 1e-16·scale, never at exactly 0).  The smooth part g plus
γÃ_Kᵀξ is minimised over the box ξ ∈ [min(0, −t), max(0, −t)] per problem by a batched projected Newton method
with a projected-arc search; the returned norm is ‖g + γÃ_Kᵀξ‖ for a *feasible* ξ, so it is an upper bound on the
hull's least norm (equal to it when ``exact`` is True: projected gradient of the box QP ≈ 0).  At concave kinks the
hull makes it a lower bound on the limiting subdifferential's least norm (safe against false alarms, weaker for
detection; MATH.md §7.3).

**Sharding (MATH.md §10).**  A V problem is one column, so in a sample-sharded run each shard solves its own
columns; every whole-block figure (the rule's two norms, Φ before and after, the kink counts, whether any column
still decreased) is one sum over shards (``_Split.whole``), so all shards iterate and stop together.  A W̃ problem
is one row, which couples every sample by more than sums (the line search's breakpoints, the held rows' Schur
complement, the Woodbury piece step), so :func:`_split_W` gathers the two n-sized operands and every shard solves
the same full problem; :func:`solve_W` then makes the result bit-identical on every shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bcd.activations import Activation
from bcd.reduction import gather_samples, over_samples, replicate_

Tensor = torch.Tensor

__all__ = [
    "InnerInfo",
    "Stationarity",
    "applies",
    "newton_blocks",
    "phi_V",
    "phi_W",
    "solve_V",
    "solve_W",
    "stationarity_V",
    "stationarity_W",
]


# ----------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class InnerInfo:
    """What an inner solve did.

    ``stationarity`` = ‖least-norm subgradient of Φ at X⁺‖ (as :func:`stationarity_W`/`stationarity_V`
    recompute it), ``tolerance`` = η‖X⁺ − X⁻‖_F, ``rule_held`` ⇔ stationarity ≤ tolerance (then reason='rule');
    otherwise ``reason`` is 'cap' (iterations == max_iter) or 'stalled' (no problem could decrease further).
    ``value_before/after`` = Φ(X⁻), Φ(X⁺); ``monotone`` ⇔ every per-row/per-column value did not increase.
    ``kink_entries`` = entries with z ≈ 0 at X⁺ (any target sign); ``convex_kink_entries`` those with t < 0;
    ``kink_exact`` is the box-QP certificate of the residual (see module docstring)."""

    iterations: int
    stationarity: float
    tolerance: float
    rule_held: bool
    reason: str
    value_before: float
    value_after: float
    monotone: bool
    kink_entries: int
    convex_kink_entries: int
    kink_exact: bool
    eta: float
    max_iter: int
    step_norm: float


@dataclass(frozen=True)
class Stationarity:
    """Least-norm subgradient of a block objective: ``norm`` (Frobenius, whole block), ``per_problem``
    (per row for W, per column for V), kink counts and the box-QP certificate ``exact``."""

    norm: float
    per_problem: Tensor
    kink_entries: int
    convex_kink_entries: int
    exact: bool


# ----------------------------------------------------------------------------------------------------------------
# The generic batched problem


def _is_relu(activation: str | Activation) -> bool:
    name = activation.name if isinstance(activation, Activation) else str(activation)
    if name == "relu":
        return True
    if name == "identity":
        return False
    raise ValueError(f"inner solvers support activation 'relu' or 'identity', not {name!r}")


def applies(config, block: str, i: int) -> bool:
    """Whether this module's piecewise Newton solver takes Algorithm 1's nonconvex block (``block``, i) of a run with
    this :class:`bcd.config.BCDConfig`: σ = ReLU with the regulariser it was built for (W̃_i: r_i = λ/2‖W̃_i‖² on the
    whole W̃_i, λ ≥ 0; V_i: s_i = 0).  Every other kinked σ or regulariser (leaky ReLU; ℓ1, elastic net, a box, the
    orthant; a ridge without the bias) goes to the monotone proximal gradient of :mod:`bcd.prox_solvers`, as the C¹
    activations do."""
    if config.activation != "relu":
        return False
    if block == "W":
        return config.r_records[i - 1].ridge is not None and config.reg_bias
    return config.s_records[i - 1].is_zero


def newton_blocks(config) -> list[str]:
    """The blocks of an Algorithm 1 run that the piecewise Newton solver takes (W̃_i, i < N; V_i, i < N − 1).  In a
    sharded run its W̃_i steps gather their n-sized operands (see "Sharding" in the module docstring)."""
    if config.splitting != "two":
        return []
    N = config.N
    return [f"{b}{i}" for b, i in [("W", i) for i in range(1, N)] + [("V", i) for i in range(1, N - 1)]
            if applies(config, b, i)]


def default_kink_rtol(dtype: torch.dtype) -> float:
    """Relative width of the rounding band |z| ≤ rtol·(‖ã‖‖x‖ + |o|) counted as 'on the kink'."""
    return 1e4 * torch.finfo(dtype).eps  # float64: 2.2e-12, float32: 1.2e-3


@dataclass(frozen=True)
class _Split:
    """B problems φ_b(x) = Σ_k w_k/2‖x − c_k‖² + γ/2 Σ_m (t_bm − σ(ã_m·x + o_m))², x = row b of X (B×p).

    ``A`` is M×q; with ``ones`` the variable has p = q+1 entries and ã_m = [a_m; 1] (the bias, never stored)."""

    A: Tensor
    ones: bool
    o: Tensor | None
    T: Tensor
    quads: tuple[tuple[float, Tensor | None], ...]
    gamma: float
    relu: bool
    per_sample: bool = False  # one problem per sample (the V step): whole-block sums go over every sample shard

    def whole(self, t: Tensor) -> Tensor:
        """Σ over every problem of a per-problem sum ``t`` (a small tensor): over every shard when the problems are
        the samples (:func:`bcd.reduction.over_samples`), local otherwise (W̃: every shard holds every row)."""
        return over_samples(t) if self.per_sample else t

    @property
    def mu(self) -> float:
        return float(sum(w for w, _ in self.quads))

    def center(self) -> Tensor:
        """c̄ = Σ w_k c_k / μ (B×p)."""
        out = torch.zeros(self.T.shape[0], self.p, dtype=self.T.dtype, device=self.T.device)
        for w, c in self.quads:
            if c is not None and w != 0.0:
                out.add_(c, alpha=w)
        return out.div_(self.mu)

    @property
    def p(self) -> int:
        return self.A.shape[1] + int(self.ones)

    def z(self, X: Tensor) -> Tensor:
        q = self.A.shape[1]
        Z = torch.addmm(X[:, q:], X[:, :q], self.A.T) if self.ones else X @ self.A.T
        if self.o is not None:
            Z = Z + self.o
        return Z

    def dz(self, D: Tensor) -> Tensor:
        """The linear part only: δ = D Ãᵀ."""
        q = self.A.shape[1]
        return torch.addmm(D[:, q:], D[:, :q], self.A.T) if self.ones else D @ self.A.T

    def back(self, G: Tensor) -> Tensor:
        """G Ã (B×M → B×p)."""
        out = G @ self.A
        return torch.cat([out, G.sum(dim=1, keepdim=True)], dim=1) if self.ones else out

    def scale(self, X: Tensor) -> Tensor:
        """‖ã_m‖‖x‖ + |o_m| (B×M): the magnitude that rounding errors of z_m are relative to (x itself comes out
        of a linear solve, so its rounding is relative to ‖x‖, not to the entries that ã_m happens to touch)."""
        an = self.A.square().sum(dim=1)
        if self.ones:
            an = an + 1.0
        S = X.norm(dim=1, keepdim=True) * an.sqrt()
        if self.o is not None:
            S = S + self.o.abs()
        return S

    def rows(self, idx: Tensor, valid: Tensor) -> Tensor:
        """Ã[idx] (B×K×p), zero where not ``valid``."""
        R = self.A[idx]
        if self.ones:
            R = torch.cat([R, torch.ones_like(R[..., :1])], dim=-1)
        return R * valid.unsqueeze(-1).to(R.dtype)

    def offsets(self, idx: Tensor, valid: Tensor) -> Tensor:
        if self.o is None:
            return torch.zeros(idx.shape, dtype=self.T.dtype, device=self.T.device)
        return self.o[idx] * valid.to(self.T.dtype)

    def hessians(self, Pm: Tensor, chunk_elems: int) -> Tensor:
        """μI + γ Σ_m P_bm ã_m ã_mᵀ for every problem (B×p×p), assembled in chunks of problems."""
        B, p, q = Pm.shape[0], self.p, self.A.shape[1]
        Pf = Pm.to(self.T.dtype)
        H = torch.empty(B, p, p, dtype=self.T.dtype, device=self.T.device)
        step = max(1, chunk_elems // max(1, self.A.shape[0] * q))
        for s in range(0, B, step):  # a loop over memory chunks of problems, not over problems
            e = min(B, s + step)
            H[s:e, :q, :q] = torch.einsum("bm,mi,mj->bij", Pf[s:e], self.A, self.A)
        if self.ones:
            PA = Pf @ self.A
            H[:, :q, q] = PA
            H[:, q, :q] = PA
            H[:, q, q] = Pf.sum(dim=1)
        H.mul_(self.gamma)
        H.diagonal(dim1=1, dim2=2).add_(self.mu)
        return H

    def values(self, X: Tensor) -> Tensor:
        """φ_b(x_b) for every problem (B,), written directly (not via the completed square)."""
        Z = self.z(X)
        act = torch.relu(Z) if self.relu else Z
        val = (self.T - act).square().sum(dim=1).mul_(0.5 * self.gamma)
        for w, c in self.quads:
            if w != 0.0:
                dev = X if c is None else X - c
                val.add_(dev.square().sum(dim=1), alpha=0.5 * w)
        return val


def _split_W(Vt: Tensor, Vp: Tensor, W_old: Tensor, gamma: float, alpha: float, lam: float, relu: bool) -> _Split:
    """The rows of W̃ couple every sample by more than sums: in a sharded run, on the gathered operands."""
    Vt, Vp = gather_samples(Vt), gather_samples(Vp)
    return _Split(A=Vp.T, ones=True, o=None, T=Vt, quads=((lam, None), (alpha, W_old)), gamma=gamma, relu=relu)


def _split_V(S: Tensor, Vn: Tensor, Wn: Tensor, V_old: Tensor, gamma: float, alpha: float, relu: bool) -> _Split:
    """One problem per column (sample): each shard solves its own columns."""
    return _Split(A=Wn[:, :-1], ones=False, o=Wn[:, -1], T=Vn.T, quads=((gamma, S.T), (alpha, V_old.T)),
                  gamma=gamma, relu=relu, per_sample=True)


def _gather_mask(mask: Tensor) -> tuple[Tensor, Tensor, int]:
    """Indices of the True entries of each row, padded (B×K, K = max count) and the validity mask.
    Padding indices are distinct False entries of the same row, so scattering zeros there is harmless."""
    K = int(mask.sum(dim=1).max().item()) if mask.numel() else 0
    if K == 0:
        return mask.new_zeros(mask.shape[0], 0, dtype=torch.long), mask.new_zeros(mask.shape[0], 0), 0
    idx = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :K]
    return idx, mask.gather(1, idx), K


def _chol_solve(L: Tensor, B: Tensor) -> Tensor:
    """(LLᵀ)⁻¹B for batched lower-triangular L: two triangular solves (``cholesky_solve`` is much slower
    batched on CPU)."""
    Y = torch.linalg.solve_triangular(L, B.contiguous(), upper=False)
    return torch.linalg.solve_triangular(L.transpose(-1, -2), Y, upper=True)


def _psd_solve(S: Tensor, r: Tensor) -> Tensor:
    """Pseudo-inverse solve S⁺r for batched symmetric PSD S (K×K) by eigendecomposition."""
    evals, Q = torch.linalg.eigh(S)
    cut = evals.amax(dim=-1, keepdim=True).clamp_min(0) * (S.shape[-1] * torch.finfo(S.dtype).eps * 10)
    inv = torch.where(evals > cut, 1.0 / evals.clamp_min(torch.finfo(S.dtype).tiny), torch.zeros_like(evals))
    return (Q @ (inv * (Q.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)).squeeze(-1)


# ----------------------------------------------------------------------------------------------------------------
# Least-norm subgradient


def _box_least_norm(g: Tensor, J: Tensor, lo: Tensor, hi: Tensor, iters: int = 30) -> tuple[Tensor, bool]:
    """min_ξ ‖g + Jᵀξ‖ over lo ≤ ξ ≤ hi, batched (g: B×p, J: B×K×p): projected Newton with an arc search.

    Monotone in the objective; the result is ‖g + Jᵀξ‖ for a feasible ξ (an upper bound on the minimum).
    The flag says whether the projected gradient vanished (to a relative 1e-10) for every problem."""
    dtype = g.dtype
    eps = torch.finfo(dtype).eps
    Q = J @ J.transpose(1, 2)  # B×K×K
    q = (J @ g.unsqueeze(-1)).squeeze(-1)  # B×K
    K = Q.shape[-1]
    trace = Q.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(torch.finfo(dtype).tiny)  # ≥ λ_max(Q)
    ridge = (trace / K * 1e3 * eps).view(-1, 1, 1)
    betas = torch.tensor([2.0**-k for k in range(0, 21)], dtype=dtype, device=g.device)

    def resid(xi: Tensor) -> Tensor:  # ‖g + Jᵀξ‖ for xi of shape B×C×K → B×C
        return (g.unsqueeze(1) + xi @ J).norm(dim=-1)

    xi = torch.zeros_like(lo)
    width = (hi - lo).abs()
    exact = False
    for it in range(iters):
        G = (Q @ xi.unsqueeze(-1)).squeeze(-1) + q
        band = 1e-12 * width
        bound = ((xi <= lo + band) & (G > 0)) | ((xi >= hi - band) & (G < 0)) | (width == 0)
        free = ~bound
        Qm = torch.where(free.unsqueeze(-1) & free.unsqueeze(-2), Q, torch.zeros_like(Q)) + ridge * torch.eye(
            K, dtype=dtype, device=g.device
        )
        Qm = Qm + torch.diag_embed((~free).to(dtype))
        step = torch.linalg.solve(Qm, (-G * free.to(dtype)).unsqueeze(-1)).squeeze(-1)
        cand = torch.clamp(xi.unsqueeze(1) + betas.view(1, -1, 1) * step.unsqueeze(1), lo.unsqueeze(1), hi.unsqueeze(1))
        pg = torch.clamp(xi - G / trace.unsqueeze(-1), lo, hi).unsqueeze(1)
        cand = torch.cat([xi.unsqueeze(1), pg, cand], dim=1)
        best = resid(cand).argmin(dim=1)
        xi = cand[torch.arange(cand.shape[0], device=g.device), best]
        if it % 3 == 2 or it == iters - 1:
            G = (Q @ xi.unsqueeze(-1)).squeeze(-1) + q
            proj = xi - torch.clamp(xi - G, lo, hi)
            scale = (J.norm(dim=-1) * g.norm(dim=-1, keepdim=True)).clamp_min(1e-300)
            if bool(((proj.abs() * (J.norm(dim=-1) + 1e-300)) <= 1e-10 * scale + 1e3 * eps * scale).all()):
                exact = True
                break
    return resid(xi.unsqueeze(1)).squeeze(1), exact


def _stationarity(sp: _Split, X: Tensor, kink_rtol: float | None) -> Stationarity:
    rtol = default_kink_rtol(X.dtype) if kink_rtol is None else kink_rtol
    Z = sp.z(X)
    g = (X - sp.center()).mul_(sp.mu)
    kink = Z.abs() <= rtol * sp.scale(X) if sp.relu else torch.zeros_like(Z, dtype=torch.bool)
    pos = (Z > 0) & ~kink if sp.relu else torch.ones_like(Z, dtype=torch.bool)
    g.add_(sp.back(torch.where(pos, Z - sp.T, torch.zeros_like(Z))), alpha=sp.gamma)
    idx, valid, K = _gather_mask(kink)
    per, exact = g.norm(dim=1), True
    if K > 0:
        J = sp.rows(idx, valid) * sp.gamma
        t = sp.T.gather(1, idx) * valid.to(X.dtype)
        lo, hi = torch.clamp(-t, max=0.0), torch.clamp(-t, min=0.0)
        per, exact = _box_least_norm(g, J, lo, hi)
    # the whole-block figures in one reduction: ‖per‖², kink entries, convex-kink entries, uncertified shards (in
    # float64, so that the counts stay exact past 2²⁴ entries of a float32 run)
    f64 = torch.float64
    tot = sp.whole(torch.stack([per.square().sum().to(f64), kink.sum().to(f64), (kink & (sp.T < 0)).sum().to(f64),
                                torch.tensor(float(not exact), dtype=f64, device=per.device)]))
    sq, n_kink, n_convex, uncertified = tot.tolist()
    return Stationarity(math.sqrt(sq), per, int(n_kink), int(n_convex), uncertified == 0)


# ----------------------------------------------------------------------------------------------------------------
# Piece step in sample space (Woodbury), for wide problems

# None: choose by the flop estimate; "dense" / "wood": force a path (tests).
_PIECE_PATH: str | None = None


class _Shared:
    """Quantities shared by all problems of a split (they all have the same Ã, M×p): Ã itself, the sample Gram
    K = ÃÃᵀ, the Cholesky factor and the inverse of H_full = μI + γÃᵀÃ and C = ÃH_full⁻¹Ãᵀ (M×M), each built
    on first use."""

    def __init__(self, sp: _Split) -> None:
        self.sp = sp
        A = sp.A
        self.At = torch.cat([A, torch.ones_like(A[:, :1])], dim=1) if sp.ones else A
        self._K: Tensor | None = None
        self._Ls: Tensor | None = None
        self._C: Tensor | None = None
        self._Hinv: Tensor | None = None

    @property
    def K(self) -> Tensor:
        if self._K is None:
            self._K = self.At @ self.At.T
        return self._K

    @property
    def Ls(self) -> Tensor:
        if self._Ls is None:
            Hf = self.At.T @ self.At
            Hf.mul_(self.sp.gamma).diagonal().add_(self.sp.mu)
            self._Ls = torch.linalg.cholesky(Hf)
        return self._Ls

    @property
    def Hinv(self) -> Tensor:
        """H_full⁻¹ explicitly (applied to a few rows at a time, a GEMM beats two triangular solves; its rounding,
        relative κ(H_full)·eps, is removed by the iterative refinement of :func:`_piece_solve_wood`)."""
        if self._Hinv is None:
            Hi = torch.cholesky_inverse(self.Ls)
            self._Hinv = 0.5 * (Hi + Hi.T)
        return self._Hinv

    @property
    def C(self) -> Tensor:
        if self._C is None:
            C = self.At @ (self.Hinv @ self.At.T)
            self._C = 0.5 * (C + C.T)
        return self._C

    def hs_solve(self, R: Tensor) -> Tensor:
        """H_full⁻¹ r for every row of R (B×p)."""
        return R @ self.Hinv


def _piece_route(sp: _Split, Pm: Tensor, Hm: Tensor) -> tuple[Tensor, Tensor]:
    """Per problem: the path (0 dense, 1 sample-space form 'Z' = Woodbury on μI over P, 2 form 'F' = Woodbury on
    H_full over the complement N of P) with the smallest flop estimate, and its capacitance size (B,)."""
    M, p = sp.A.shape[0], sp.p
    nP = Pm.sum(dim=1)
    nN = M - nP
    nH = Hm.sum(dim=1).to(torch.float64)
    k = torch.minimum(nP, nN)
    kf = k.to(torch.float64)
    dense = M * p * p + p**3 / 3 + nH * p * p
    wood = kf**3 / 3 + 2 * kf * kf + nH * kf * kf + nH**3 / 3 + 8 * M * p
    route = torch.where(nP <= nN, 1, 2)
    if _PIECE_PATH is None:
        route = torch.where(wood < dense, route, 0)
    elif _PIECE_PATH == "dense":
        route = torch.zeros_like(route)
    return route, k


def _piece_solve_wood(sp: _Split, sh: _Shared, form: str, Pm: Tensor, Hm: Tensor, rhs: Tensor
                      ) -> tuple[Tensor, Tensor] | None:
    """The piece step of :func:`_piece_solve` without any p×p per-problem matrix: by Woodbury, H_b⁻¹ =
    (μI + γÃ_PᵀÃ_P)⁻¹ needs only a |P|×|P| (form 'Z': μ/γI + K_PP) or an |N|×|N| (form 'F': I/γ − C_NN, N the
    complement of P) capacitance matrix gathered from the shared M×M matrices; the Schur complement Ã_H H_b⁻¹ Ã_Hᵀ
    is gathered likewise.  Followed by one step of iterative refinement on the KKT residual (matrix-free), so the
    result matches the dense solve to rounding.  None when a capacitance factorisation fails (caller falls back)."""
    dtype, dev = rhs.dtype, rhs.device
    B, M = Pm.shape
    At, mu, gam = sh.At, sp.mu, sp.gamma
    Pf = Pm.to(dtype)
    sel = Pm if form == "Z" else ~Pm
    idx, valid, k = _gather_mask(sel)
    vf = valid.to(dtype)
    G = sh.K if form == "Z" else sh.C

    def sub(G: Tensor, i: Tensor, j: Tensor) -> Tensor:  # G[i_b, j_b] per problem, B×|i|×|j|
        return G[i.unsqueeze(2), j.unsqueeze(1)]

    Lc = None
    if k > 0:
        Cap = sub(G, idx, idx) * (vf.unsqueeze(2) * vf.unsqueeze(1))
        if form == "Z":
            Cap = Cap + torch.diag_embed(vf * (mu / gam) + (1.0 - vf))
        else:
            Cap = torch.diag_embed(vf / gam + (1.0 - vf)) - Cap
        Lc, info = torch.linalg.cholesky_ex(Cap)
        if bool((info != 0).any()):
            return None

    def cap_solve(U: Tensor) -> Tensor:  # B×k×c
        return torch.cholesky_solve(U, Lc)

    def hinv(R: Tensor) -> Tensor:  # H_b⁻¹ r_b, R: B×p
        if form == "Z":
            if k == 0:
                return R / mu
            u = (R @ At.T).gather(1, idx) * vf
            w = cap_solve(u.unsqueeze(-1)).squeeze(-1) * vf
            return (R - torch.zeros(B, M, dtype=dtype, device=dev).scatter_(1, idx, w) @ At) / mu
        Y = sh.hs_solve(R)
        if k == 0:
            return Y
        u = (Y @ At.T).gather(1, idx) * vf
        w = cap_solve(u.unsqueeze(-1)).squeeze(-1) * vf
        return Y + sh.hs_solve(torch.zeros(B, M, dtype=dtype, device=dev).scatter_(1, idx, w) @ At)

    hidx, hvalid, kH = _gather_mask(Hm)
    hvf = hvalid.to(dtype)
    if kH > 0:  # S = Ã_H H_b⁻¹ Ã_Hᵀ in sample space
        if form == "Z":
            S = sub(G, hidx, hidx)
            if k > 0:
                GhP = sub(G, hidx, idx) * vf.unsqueeze(1)
                S = S - GhP @ cap_solve(GhP.transpose(1, 2))
            S = S / mu
        else:
            S = sub(G, hidx, hidx)
            if k > 0:
                GhN = sub(G, hidx, idx) * vf.unsqueeze(1)
                S = S + GhN @ cap_solve(GhN.transpose(1, 2))
        S = S * (hvf.unsqueeze(2) * hvf.unsqueeze(1)) + torch.diag_embed(1.0 - hvf)
        S = 0.5 * (S + S.transpose(1, 2))

    def kkt(r1: Tensor, r2: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """H x + Ã_Hᵀν = r1, Ã_H x = r2 (r2: B×kH)."""
        Y = hinv(r1)
        if kH == 0:
            return Y, None
        rr = (Y @ At.T).gather(1, hidx) * hvf - r2
        nuK = _psd_solve(S, rr) * hvf
        X = Y - hinv(torch.zeros(B, M, dtype=dtype, device=dev).scatter_(1, hidx, nuK) @ At)
        return X, nuK

    oH = sp.offsets(hidx, hvalid) if kH > 0 else None
    r2 = -oH if oH is not None else None
    X, nuK = kkt(rhs, r2)
    # one step of iterative refinement: residuals of the KKT system, matrix-free
    Zx = X @ At.T
    res1 = rhs - mu * X - gam * (Pf * Zx) @ At
    if kH > 0:
        res1 = res1 - torch.zeros(B, M, dtype=dtype, device=dev).scatter_(1, hidx, nuK) @ At
        res2 = r2 - Zx.gather(1, hidx) * hvf
        dX, dnu = kkt(res1, res2)
        nuK = nuK + dnu
    else:
        dX, _ = kkt(res1, None)
    X = X + dX
    nu = torch.zeros(B, M, dtype=dtype, device=dev)
    if kH > 0:
        nu.scatter_(1, hidx, nuK)
    return X, nu


# ----------------------------------------------------------------------------------------------------------------
# Solver pieces


def _piece_solve(sp: _Split, Pm: Tensor, Hm: Tensor, rhs0: Tensor, chunk_elems: int,
                 sh: _Shared | None = None) -> tuple[Tensor, Tensor]:
    """argmin of the piece model (entries P active, entries H held at z = 0) and the multipliers ν (B×M).

    Per problem, dense p×p Hessians (:func:`_piece_dense`) or, when the flop estimate says so and ``sh`` is
    given, the sample-space Woodbury form (:func:`_piece_solve_wood`); both solve the same KKT system.  Problems
    are grouped by path and sorted by capacitance size, so the padding of a group stays small."""
    Pf = Pm.to(sp.T.dtype)
    tgt = sp.T if sp.o is None else sp.T - sp.o
    rhs = rhs0 + sp.gamma * sp.back(Pf * tgt)
    if sh is None:
        return _piece_dense(sp, Pm, Hm, rhs, chunk_elems)
    route, k = _piece_route(sp, Pm, Hm)
    if bool((route == 0).all()):
        return _piece_dense(sp, Pm, Hm, rhs, chunk_elems)
    B, M = Pm.shape
    X = torch.empty_like(rhs)
    nu = torch.zeros(B, M, dtype=rhs.dtype, device=rhs.device)
    nH = Hm.sum(dim=1)
    redo = route == 0
    for r, form in ((1, "Z"), (2, "F")):
        ids = torch.nonzero(route == r).squeeze(1)
        if ids.numel() == 0:
            continue
        ids = ids[torch.argsort(k[ids] + nH[ids])]
        size = (k[ids] + nH[ids]).tolist()
        s = 0
        while s < ids.numel():  # a loop over groups of similar size (padding ≤ ~15 %), not over problems
            e = s + 1
            while (e < ids.numel() and size[e] <= 1.15 * size[s] + 8
                   and (e + 1 - s) * (2 * size[e] ** 2 + 4 * M) <= chunk_elems):
                e += 1
            g = ids[s:e]
            out = _piece_solve_wood(sp, sh, form, Pm[g], Hm[g], rhs[g])
            if out is None:
                redo[g] = True
            else:
                X[g], nu[g] = out
            s = e
    g = torch.nonzero(redo).squeeze(1)
    if g.numel():
        X[g], nu[g] = _piece_dense(sp, Pm[g], Hm[g], rhs[g], chunk_elems)
    return X, nu


def _piece_dense(sp: _Split, Pm: Tensor, Hm: Tensor, rhs: Tensor, chunk_elems: int) -> tuple[Tensor, Tensor]:
    """The piece step with per-problem p×p Hessians (Cholesky, then a Schur complement for the held rows)."""
    Hs = sp.hessians(Pm, chunk_elems)
    L, _info = torch.linalg.cholesky_ex(Hs)  # SPD: μ ≥ α > 0
    Y = _chol_solve(L, rhs.unsqueeze(-1)).squeeze(-1)
    nu = torch.zeros(Pm.shape, dtype=rhs.dtype, device=rhs.device)
    idx, valid, K = _gather_mask(Hm)
    if K == 0:
        return Y, nu
    AH = sp.rows(idx, valid)  # B×K×p
    Zm = _chol_solve(L, AH.transpose(1, 2))  # H⁻¹Ãᵀ_H, B×p×K
    S = AH @ Zm + torch.diag_embed((~valid).to(rhs.dtype))
    r = (AH @ Y.unsqueeze(-1)).squeeze(-1) + sp.offsets(idx, valid)
    nuK = _psd_solve(S, r) * valid.to(rhs.dtype)
    Xh = Y - (Zm @ nuK.unsqueeze(-1)).squeeze(-1)
    nu.scatter_(1, idx, nuK)
    return Xh, nu


def _line_search(sp: _Split, X: Tensor, D: Tensor, Z0: Tensor, dZ: Tensor, R: Tensor) -> Tensor:
    """Exact minimiser s* ≥ 0 of s ↦ φ(x + s d) per problem (B,); landing on a breakpoint puts an entry on its kink.

    R = x − c̄.  z(s) = Z0 + s·dZ; entries with dZ = 0 keep their state.  Quadratic part: μ/2‖R + s d‖²;
    an active entry (z(s) > 0) adds γ(½(z−t)² − ½t²) relative to the flat side, i.e. coefficients
    (½z² − zt, (z − t)δ, δ²)·γ in (1, s, s²/2)."""
    mu, gam = sp.mu, sp.gamma
    T = sp.T
    c1 = mu * (R * D).sum(1)
    c2 = mu * D.square().sum(1)
    e0 = gam * (0.5 * Z0.square() - Z0 * T)
    e1 = gam * (Z0 - T) * dZ
    e2 = gam * dZ.square()
    B = X.shape[0]
    if not sp.relu:
        c1 = c1 + e1.sum(1)
        c2 = c2 + e2.sum(1)
        s = torch.where(c2 > 0, -c1 / c2.clamp_min(torch.finfo(X.dtype).tiny), torch.zeros_like(c1)).clamp_min(0)
        return s
    act0 = (Z0 > 0) | ((Z0 == 0) & (dZ > 0))
    a0f = act0.to(X.dtype)
    c0 = (e0 * a0f).sum(1)
    c1 = c1 + (e1 * a0f).sum(1)
    c2 = c2 + (e2 * a0f).sum(1)
    inf = torch.tensor(float("inf"), dtype=X.dtype, device=X.device)
    crossing = (Z0 * dZ) < 0
    bp = torch.where(crossing, -Z0 / torch.where(crossing, dZ, torch.ones_like(dZ)), inf)
    bps, order = torch.sort(bp, dim=1)
    sign = torch.where(dZ > 0, 1.0, -1.0).to(X.dtype)
    tog = torch.stack([e0 * sign, e1 * sign, e2 * sign], dim=0).gather(2, order.unsqueeze(0).expand(3, -1, -1))
    tog = torch.where(torch.isfinite(bps).unsqueeze(0), tog, torch.zeros_like(tog))
    cum = torch.cumsum(tog, dim=2)  # segment k ≥ 1 coefficients minus the base
    C0 = torch.cat([c0.unsqueeze(1), c0.unsqueeze(1) + cum[0]], dim=1)
    C1 = torch.cat([c1.unsqueeze(1), c1.unsqueeze(1) + cum[1]], dim=1)
    C2 = torch.cat([c2.unsqueeze(1), c2.unsqueeze(1) + cum[2]], dim=1)
    lo = torch.cat([torch.zeros(B, 1, dtype=X.dtype, device=X.device), bps], dim=1)
    hi = torch.cat([bps, inf.expand(B, 1)], dim=1)
    ok = torch.isfinite(lo)
    tiny = torch.finfo(X.dtype).tiny
    st = torch.where(C2 > 0, -C1 / C2.clamp_min(tiny), torch.where(C1 < 0, inf, torch.zeros_like(C1)))
    lo_f = torch.where(ok, lo, torch.zeros_like(lo))
    s = torch.minimum(torch.maximum(st, lo_f), hi)
    s = torch.where(torch.isfinite(s), s, lo_f)
    val = C0 + C1 * s + 0.5 * C2 * s * s
    val = torch.where(ok, val, inf)
    k = val.argmin(dim=1, keepdim=True)
    s_star = s.gather(1, k).squeeze(1)
    tiny_step = D.norm(dim=1) <= 16 * torch.finfo(X.dtype).eps * (X.norm(dim=1) + R.norm(dim=1))
    s_star = torch.where((c2 > 0) & ~tiny_step, s_star, torch.zeros_like(s_star))
    return s_star

def _solve(sp: _Split, X0: Tensor, *, eta: float, max_iter: int, kink_rtol: float | None,
           chunk_elems: int, explore: bool = True) -> tuple[Tensor, InnerInfo]:
    dtype = X0.dtype
    eps = torch.finfo(dtype).eps
    rtol = default_kink_rtol(dtype) if kink_rtol is None else kink_rtol
    X = X0.clone()
    v_before = sp.values(X)
    v_cur = v_before.clone()
    cbar = sp.center()
    rhs0 = cbar * sp.mu
    Z = sp.z(X)
    reason = "cap"
    it = 0
    st = _stationarity(sp, X, kink_rtol)
    sh = _Shared(sp)

    def dist_from_start() -> float:  # ‖X − X⁻‖_F of the whole block
        return math.sqrt(float(sp.whole((X - X0).square().sum())))

    while True:
        step_norm = dist_from_start()
        if st.norm <= eta * step_norm:
            reason = "rule"
            break
        if it >= max_iter:
            break
        # held = the convex-kink entries on their hyperplane now (landings put entries there up to rounding; an
        # entry that drifted off, e.g. through a rank-deficient Schur solve, is simply no longer held)
        held = (Z.abs() <= rtol * sp.scale(X)) & (sp.T < 0) if sp.relu else torch.zeros_like(Z, dtype=torch.bool)
        Pm = (Z > 0) & ~held if sp.relu else torch.ones_like(Z, dtype=torch.bool)
        Xh, nu = _piece_solve(sp, Pm, held, rhs0, chunk_elems, sh)
        cands = [(Xh, held)]  # (x̂, H kept); H at the start of the step is ``held``
        if sp.relu and bool(held.any()):
            xi = nu / sp.gamma
            thr = 1e3 * eps * (1.0 + sp.T.abs())
            low = torch.where(held, -xi, torch.zeros_like(xi))
            high = torch.where(held, xi + sp.T, torch.zeros_like(xi))  # ξ − |t| with t < 0
            viol = torch.maximum(low, high)
            bad = held & (viol > thr)
            if bool(bad.any()):
                H2 = held & ~bad
                P2 = Pm | (bad & (high > thr))
                X2, _ = _piece_solve(sp, P2, H2, rhs0, chunk_elems, sh)
                cands.append((X2, H2))
                worst = torch.where(bad, viol, torch.full_like(viol, -1.0)).argmax(dim=1, keepdim=True)
                one = torch.zeros_like(bad).scatter_(1, worst, True) & bad
                if bool((bad.sum(1) > 1).any()):
                    H3 = held & ~one
                    P3 = Pm | (one & (high > thr))
                    X3, _ = _piece_solve(sp, P3, H3, rhs0, chunk_elems, sh)
                    cands.append((X3, H3))
        if sp.relu and explore:
            # exploration (nonconvexity): the piece that a target-matching network would be on, P = {t > 0} (the
            # entries behind a concave kink included), held entries kept; its model is not φ here, but the line
            # search is on the true φ and only a decrease is accepted, so this can only help
            P4 = (sp.T > 0) & ~held
            X4, _ = _piece_solve(sp, P4, held, rhs0, chunk_elems, sh)
            cands.append((X4, held))
        R = X - cbar
        best_X, best_v = X, v_cur
        Z0 = torch.where(held, torch.zeros_like(Z), Z)
        for Xc, Hk in cands:
            D = Xc - X
            dZ = torch.where(Hk, torch.zeros_like(Z), sp.dz(D))
            s = _line_search(sp, X, D, Z0, dZ, R)
            Xn = X + s.unsqueeze(1) * D
            vn = sp.values(Xn)
            better = vn < best_v
            best_X = torch.where(better.unsqueeze(1), Xn, best_X)
            best_v = torch.where(better, vn, best_v)
        it += 1
        changed = float(sp.whole((best_v < v_cur).sum().to(dtype))) > 0  # on any shard: all go on together
        X, v_cur = best_X, best_v
        Z = sp.z(X)
        st = _stationarity(sp, X, kink_rtol)
        if not changed:
            step_norm = dist_from_start()
            reason = "rule" if st.norm <= eta * step_norm else "stalled"
            break
    tol = eta * step_norm  # every exit above measured step_norm at the final X
    before, after, rises = sp.whole(torch.stack([v_before.sum(), v_cur.sum(), (v_cur > v_before).sum().to(dtype)]))
    info = InnerInfo(
        iterations=it,
        stationarity=st.norm,
        tolerance=tol,
        rule_held=reason == "rule",
        reason=reason,
        value_before=float(before),
        value_after=float(after),
        monotone=float(rises) == 0,
        kink_entries=st.kink_entries,
        convex_kink_entries=st.convex_kink_entries,
        kink_exact=st.exact,
        eta=eta,
        max_iter=max_iter,
        step_norm=step_norm,
    )
    return X, info


# ----------------------------------------------------------------------------------------------------------------
# Public API


def phi_W(W: Tensor, Vt: Tensor, Vp: Tensor, W_old: Tensor, *, gamma: float, alpha: float, lam: float = 0.0,
          activation: str | Activation = "relu", per_row: bool = False) -> Tensor:
    """Φ(W) = γ/2‖V_i⁺ − σ(W̃Ṽ_{i-1}⁻)‖² + λ/2‖W̃‖² + α/2‖W̃ − W̃⁻‖² (a 0-dim tensor, or per row (d_i,)).
    Sharded, a collective: it gathers Ṽ_{i-1} and V_i, so every rank calls it."""
    v = _split_W(Vt, Vp, W_old, gamma, alpha, lam, _is_relu(activation)).values(W)
    return v if per_row else v.sum()


def phi_V(V: Tensor, S: Tensor, Vn: Tensor, Wn: Tensor, V_old: Tensor, *, gamma: float, alpha: float,
          activation: str | Activation = "relu", per_column: bool = False) -> Tensor:
    """Φ(V) = γ/2‖V − S‖² + γ/2‖V_{i+1}⁺ − σ(ŴV + b1ᵀ)‖² + α/2‖V − V⁻‖² (0-dim, or per column (n,)).  Sharded,
    the 0-dim value is a collective (summed over ranks: every rank calls it); per column it is this rank's columns."""
    sp = _split_V(S, Vn, Wn, V_old, gamma, alpha, _is_relu(activation))
    v = sp.values(V.T)
    return v if per_column else sp.whole(v.sum())


def stationarity_W(W: Tensor, Vt: Tensor, Vp: Tensor, W_old: Tensor, *, gamma: float, alpha: float,
                   lam: float = 0.0, activation: str | Activation = "relu",
                   kink_rtol: float | None = None) -> Stationarity:
    """dist(0, ∂Φ(W)) per row and in Frobenius norm.  ∂Φ(W) row r: λw + α(w − w⁻) + γ Σ_j ξ_j ṽ_j with
    ξ_j = z_j − t_j (z_j > 0), 0 (z_j < 0), and at a kink ξ_j ∈ [min(0, −t_j), max(0, −t_j)] (the hull at concave
    kinks: a lower bound there).  The box QP is solved batched; see the module docstring for its accuracy.
    Sharded, a collective (the operands are gathered and the norm reduced): every rank calls it."""
    return _stationarity(_split_W(Vt, Vp, W_old, gamma, alpha, lam, _is_relu(activation)), W, kink_rtol)


def stationarity_V(V: Tensor, S: Tensor, Vn: Tensor, Wn: Tensor, V_old: Tensor, *, gamma: float, alpha: float,
                   activation: str | Activation = "relu", kink_rtol: float | None = None) -> Stationarity:
    """dist(0, ∂Φ(V)) per column and in Frobenius norm.  Column j: γ(v − s) + α(v − v⁻) + γ Σ_k ξ_k ŵ_k with ξ_k
    as in :func:`stationarity_W` for z_k = ŵ_k·v + b_k and target (V_{i+1}⁺)_kj.  Sharded, the Frobenius norm and
    the counts are reduced over ranks (a collective: every rank calls it); ``per_problem`` holds this rank's columns."""
    return _stationarity(_split_V(S, Vn, Wn, V_old, gamma, alpha, _is_relu(activation)), V.T, kink_rtol)


def solve_W(Vt: Tensor, Vp: Tensor, W_old: Tensor, *, gamma: float, alpha: float, lam: float = 0.0,
            activation: str | Activation = "relu", eta: float | None = None, max_iter: int = 50,
            kink_rtol: float | None = None, chunk_elems: int = 2**26, explore: bool = True) -> tuple[Tensor, InnerInfo]:
    """W̃⁺ ≈ argmin_W γ/2‖V_i⁺ − σ(W̃Ṽ_{i-1}⁻)‖² + λ/2‖W̃‖² + α/2‖W̃ − W̃⁻‖², started at W̃⁻, monotone per row.

    Optimality: 0 ∈ ∂Φ(W̃⁺) row by row (see :func:`stationarity_W`); stops when the least-norm residual is
    ≤ η‖W̃⁺ − W̃⁻‖_F (η defaults to α/10) or after ``max_iter`` iterations (``info.reason``).
    σ = identity: the ridge minimiser (αW̃⁻ + γV_i⁺Ṽᵀ)((α+λ)I + γṼṼᵀ)⁻¹ after one step."""
    sp = _split_W(Vt, Vp, W_old, gamma, alpha, lam, _is_relu(activation))
    W, info = _solve(sp, W_old, eta=0.1 * alpha if eta is None else eta, max_iter=max_iter, kink_rtol=kink_rtol,
                     chunk_elems=chunk_elems, explore=explore)
    return replicate_(W), info


def solve_V(S: Tensor, Vn: Tensor, Wn: Tensor, V_old: Tensor, *, gamma: float, alpha: float,
            activation: str | Activation = "relu", eta: float | None = None, max_iter: int = 50,
            kink_rtol: float | None = None, chunk_elems: int = 2**26, explore: bool = True) -> tuple[Tensor, InnerInfo]:
    """V⁺ ≈ argmin_V γ/2‖V − S‖² + γ/2‖V_{i+1}⁺ − σ(ŴV + b1ᵀ)‖² + α/2‖V − V⁻‖², started at V⁻, monotone per
    column; same stopping rule as :func:`solve_W`.  σ = identity: ((γ+α)I + γŴᵀŴ)V = γS + αV⁻ + γŴᵀ(V_{i+1}⁺ − b1ᵀ)."""
    sp = _split_V(S, Vn, Wn, V_old, gamma, alpha, _is_relu(activation))
    Xt, info = _solve(sp, V_old.T, eta=0.1 * alpha if eta is None else eta, max_iter=max_iter,
                      kink_rtol=kink_rtol, chunk_elems=chunk_elems, explore=explore)
    return Xt.T.contiguous(), info

