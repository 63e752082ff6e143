"""The recorder's fast path: in-stream formulas for Algorithm 2 in its own order (backward Gauss–Seidel,
V_N, U_N, W_N, then V_i, U_i, W_i), mixed into :class:`verification.recorder.Recorder`.

**Per-block decrease** of L̄ = (terms of L̄ that depend on the block, before) − (after); the
proximal terms are not part of L̄.  V_N, U_N, U_i: elementwise norms.  W_i: the aff term is a
quadratic in W̃ evaluated from E = U_i⁺ − P_i⁻ (P_i⁻ = W̃_i⁻Ṽ_{i-1}⁻ is ``aux["P"]`` of the U_i step),
EṼᵀ and the Gram ṼṼᵀ (``aux["gram"]``):  with D = W̃⁺ − W̃⁻,
    ‖U⁺ − W̃⁺Ṽ⁻‖² = ‖E‖² − 2⟨EṼᵀ, D⟩ + ⟨DṼṼᵀ, D⟩,
so the decrease γ/2(2⟨EṼᵀ,D⟩ − ⟨DṼṼᵀ,D⟩) + λ/2(‖W̃⁻‖² − ‖W̃⁺‖²) is formed from small quantities
(no cancellation of two large norms), though EṼᵀ = UṼᵀ − W̃⁻ṼṼᵀ is a difference of two large products: each
decrease is recorded with the size S·‖Δ‖ of what it was formed from (``decrease_noise``, verification/tolerance.py).
The "after" value of the aff term is also the "before" value of the V_{i-1} update.  Where a block's "after" value
is a term the engine evaluates at the end of the sweep anyway (the V_i update: γ/2‖U_{i+1}⁺ − W̃_{i+1}⁺Ṽ_i⁺‖²; the
W_1 update: γ/2‖U_1⁺ − W̃_1⁺X̃‖², both untouched by later steps of the sweep) it is taken from ``record``.
A sweep's block decreases sum to L̄^{k−1} − L̄^k (telescoping; tested in float64).

**g^k** (MATH.md §5), component by component, with ΔX = X^k − X^{k−1} and P_i = W̃_iṼ_{i-1}:
    V_N: −γΔU_N − αΔV_N  (prox-linear V_N: −γΔU_N − (α − c)ΔV_N, from its own optimality condition)
    U_N: γ(P_N^{k−1} − P_N^k)        U_i: γ(P_i^{k−1} − P_i^k) − αΔU_i       V_i: γ(σ(U_i^{k−1}) − σ(U_i^k))
    W_i: γ(P_i^k − U_i^k)Ṽ_{i-1}^kᵀ − γ(W̃_i^kṼ_{i-1}^{k−1} − U_i^k)Ṽ_{i-1}^{k−1}ᵀ − αΔW̃_i   (W_1: −αΔW̃_1)
P_i^k = W̃_i^kṼ_{i-1}^k is exactly ``aux["P"]`` of the U_i step of sweep k+1 (neither W̃_i nor V_{i-1}
changes in between), so the U_i and W_i components are completed there — one d_i×n buffer per
layer (γP_i^{k−1} − αΔU_i) is carried across the sweep boundary, no copy of the iterate — and for
the last sweep from the final state when :meth:`Recorder.trace` is called.  The second W term is
−γ(DṼṼᵀ − EṼᵀ) with the quantities above.  For exact block updates g^k is the gradient of L̄ at
Q^k wherever L̄ is differentiable (away from ReLU kinks; tested against autograd in float64); at a
kink U_i^k = 0 the prox optimality condition selects an element of the limiting subdifferential
while autograd's ReLU′(0) = 0 selects another (see verification/subgradient.py for the least-norm one).

**Exactness residual** (``full``) of a block update: ‖Σ_j t_j‖ / Σ_j ‖t_j‖, where Σ_j t_j = 0 is the
subproblem's optimality condition written as a sum of uncancelled summands (e.g. for V_N:
(c+γ+α)V⁺ − cY − γU_N⁻ − αV⁻).  It is ≈ eps for an exact update, O(relative error) for a wrong one.

* W̃_i: the normwise backward error of the linear system W̃M = γUṼᵀ + αW̃⁻, M = γṼṼᵀ + (α+λ)I:
  ‖r‖/(‖M‖_F(‖W̃⁺‖ + ‖W̃⁻‖) + γ‖EṼᵀ‖), the right-hand side's norm bounded through UṼᵀ = W̃⁻ṼṼᵀ + EṼᵀ;
  ≈ eps for a backward-stable Cholesky solve.  For W̃_1 the products with X̃ (d_0 wide) are not
  otherwise computed and would cost more than the update itself, so ‖r‖_F and ‖EX̃ᵀ‖_F are
  estimated from 16 fixed Gaussian probes as ‖rZ‖_F/4 (relative standard error ≈ 18%, irrelevant
  next to the gap between ≈ eps for an exact update and ≳ 1e-6 for a wrong one).
* V_i (i<N): t = V⁺, −σ(U_i⁻), Ŵᵀ(P_{i+1}⁺ − U_{i+1}⁺), the last completed in the next sweep; its size
  is bounded by ‖Ŵ‖_F(‖P⁺‖ + ‖U⁺‖).  For d_i > 16, like W̃_1's, ‖r‖_F = ‖Σt‖_F is sketched with 16 fixed Gaussian
  probes, here on the feature side (Z ∈ R^{16×d_i}, the same on every sample shard): ‖Zr‖_F/4, with ZA
  (A = V⁺ − σ(U_i⁻)) formed in the layer pass and Z(ŴᵀF) = (ZŴᵀ)F in the next sweep, so neither the n-sized product
  ŴᵀF nor a d_i×n buffer is needed (E‖Zr‖² = 16‖r‖²; within a factor of 3 either way in the tests).  For d_i ≤ 16,
  Z = I: exact.
* U_i (i<N): elementwise and, for ReLU, nonconvex: per entry f(u) = ½(a − σ(u))² + (β/2)(u − m)²
  (a = V_i⁺, m = (γP⁻ + αU⁻)/(γ + α), β = (γ + α)/γ).  Its global minimisers are computed
  independently of the engine's prox (the better of u₊ = max((a + βm)/(1 + β), 0) and u₋ = min(m, 0),
  both at a tie up to rounding) and the residual entry is (1 + β)·dist(u_new, argmin f) — |f′(u_new)|
  up to the branch curvature on the minimiser's branch, and positive for a stationary but worse
  candidate, which a stationarity test alone would miss — relative to ‖a‖ + ‖σ(u)‖ + β‖u‖ + β‖m‖.
* U_N, V_N: the closed-form conditions, e.g. γ(2U⁺ − V_N⁺ − P_N⁻) for U_N.

**Sums over samples** (MATH.md §10) go through :mod:`bcd.reduction`: every squared norm and inner product of an
n-sized block (V, U, P, E, A, Y and their differences) is a sum over samples: ``sample_sq``/``sample_dot``, a norm
the square root after the reduction (``sample_norm``), or in the chunked passes below local sums reduced together in
one ``over_samples``; so are EX̃ᵀZ of the W̃_1 sketch and the train-accuracy count.  The
W̃-sized quantities (W̃, D, the Gram G, EṼᵀ, residual r of a W step) are replicated — G and UṼᵀ came through the
seam in the engine — and use the local ``sq``/``norm``/``dot``.

**Memory passes.**  For a hidden layer every n-sized quantity of its V_i and U_i updates (‖Δ‖², the norms, the
decreases, ‖g_{V_i}‖², ‖E‖², the carried B) comes from one chunked pass at the U_i step, and the U_i and W_i parts
of g^k from one more at the next sweep's U_i step (:meth:`Algorithm2FastPath._hidden_layer`, ``_complete``): each
operand is read once per pass, the temporaries stay in cache, and the carried buffers are reused from sweep to sweep.
The math of each pass is one pure function (:func:`layer_sums`, :func:`completion_sums`), called on blocks of rows,
eagerly or, on the CPU under ``BCD_FUSE`` (:mod:`bcd.fusion`), compiled into one kernel per call: in eager torch each
of its nine elementwise operations is a pass of its own, about 4× the time of reading the five operands
(``benchmarks/bench_layer_pass.py``).  Called on whole matrices instead, a compiled pass allocates its n-sized
outputs afresh each time, above glibc's mmap threshold, and page faults cost more than fusing saves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from bcd.activations import relative, u_block_residual
from bcd.blocks import affine, augmented_cross, augmented_gram
from bcd.fusion import pass_function
from bcd.model import augmented_norm
from bcd.objective import accuracy, predict
from bcd.problem import BCDState
from bcd.reduction import dot, norm, over_samples, sample_dot, sample_norm, sample_sq, sq
from verification import schema as S  # noqa: N812

Tensor = torch.Tensor
PROBES = 16  # Gaussian probes of the sketched W̃_1 and V_i residuals (relative standard error ≈ 1/√(2·16) ≈ 18%)
PROBE_SEED = 0
G_DEFINITION = S.G_OPTIMALITY


def in_layer_pass(block: str, i: int, N: int) -> bool:
    """Whether the n-sized work of this block update (‖Δ‖², ‖X⁺‖, its decrease, its g^k part) is done in its hidden
    layer's one pass at the U_i step (:meth:`Algorithm2FastPath._hidden_layer`): V_i and U_i for i < N."""
    return block != "W" and i < N


def fill_aux(block: str, i: int, state: BCDState, aux: dict) -> None:
    """The products the engine's own steps publish (P for U steps; the Gram ṼṼᵀ and UṼᵀ for W steps,
    with the updated U_i); a user's step may not publish them, so compute what is missing."""
    if block == "U" and "P" not in aux:
        aux["P"] = affine(state.W[i], state.V[i - 1])
    elif block == "W":
        if "gram" not in aux:
            aux["gram"] = augmented_gram(state.V[i - 1])
        if "cross" not in aux:
            aux["cross"] = augmented_cross(state.U[i], state.V[i - 1])


def _reduced(parts: list[Tensor], k: int, like: Tensor) -> Tensor:
    """The k sums of a chunked pass: the chunks' local sums added up in float64, then summed over every sample shard
    in one reduction (a shard with no entries contributes zeros)."""
    local = torch.stack(parts).sum(dim=0, dtype=torch.float64) if parts else \
        torch.zeros(k, dtype=torch.float64, device=like.device)
    return over_samples(local)


# The sums of a hidden layer's pass (:func:`layer_sums`), in this order: local, then reduced over sample shards at once.
LAYER_SUMS = ("dV_sq", "V_sq", "dV_A", "dU_sq", "U_sq", "ds_sq", "ds_A", "dU_E", "E_sq", "so_sq")


def layer_sums(V_old: Tensor, V_new: Tensor, U_old: Tensor, U_new: Tensor, P: Tensor, B: Tensor,
               sigma: Callable[[Tensor], Tensor], gamma: float, alpha: float,
               keep_A: bool) -> tuple[Tensor, Tensor | None]:
    """The n-sized work of a hidden layer's V_i and U_i updates on one piece of their entries (flat, of equal length):
    with ΔV = V⁺ − V⁻, ΔU = U⁺ − U⁻, A = V⁺ − σ(U⁻), d = σ(U⁺) − σ(U⁻) and E = U⁺ − P, the local sums
    ‖ΔV‖², ‖V⁺‖², ⟨ΔV, A⟩, ‖ΔU‖², ‖U⁺‖², ‖d‖², ⟨d, A⟩, ⟨ΔU, E⟩, ‖E‖², ‖σ(U⁻)‖² (``LAYER_SUMS``, in the working dtype),
    and A itself where ``keep_A`` (the sketched V_i residual of ``full``); writes the carried B = γP − αΔU into
    ``B``.  A pure function of its arguments besides ``B``."""
    so = sigma(U_old)
    A = torch.sub(V_new, so)
    dv = torch.sub(V_new, V_old)
    du = torch.sub(U_new, U_old)
    ds = torch.sub(sigma(U_new), so)
    e = torch.sub(U_new, P)
    torch.sub(P, du, alpha=alpha / gamma, out=B).mul_(gamma)
    return torch.stack([torch.vdot(dv, dv), torch.vdot(V_new, V_new), torch.vdot(dv, A), torch.vdot(du, du),
                        torch.vdot(U_new, U_new), torch.vdot(ds, ds), torch.vdot(ds, A), torch.vdot(du, e),
                        torch.vdot(e, e), torch.vdot(so, so)]), A if keep_A else None


def completion_sums(B: Tensor, P: Tensor, U: Tensor, gamma: float, write_F: bool, sizes: bool) -> Tensor:
    """The n-sized work of completing a hidden layer's g^k parts on one piece of their entries (flat, of equal
    length): the local ‖B − γP‖² (g_{U_i} = B − γP), and ‖P‖², ‖U‖² where ``sizes``; writes F = P − U over ``B``
    where ``write_F`` (after B is read)."""
    gu = torch.sub(B, P, alpha=gamma)
    if write_F:
        torch.sub(P, U, out=B)
    return torch.stack([torch.vdot(gu, gu), *((torch.vdot(P, P), torch.vdot(U, U)) if sizes else ())])


class Algorithm2FastPath:
    """The per-block work of the fast path (standard/full presets); state lives on the Recorder."""


    # Decreases use x⁻² − x⁺² = −Δ(x⁻ + x⁺) entrywise, e.g. ‖o − Y‖² − ‖n − Y‖² = −⟨Δ, o + n − 2Y⟩ with Δ = n − o:
    # one temporary, and no cancellation between two large sums.  σ(·) may return its argument (identity):
    # its result is never modified in place.

    def _step_V(self, sw, row, i, state, old, new, delta, aux) -> None:
        g, N, full = self.gamma, self.N, self._level >= 2
        if in_layer_pass("V", i, N):  # everything n-sized is computed in the layer's one pass at the U_i step, next
            row["_minus"] = S.aff_term(i + 1)  # after-value γ/2‖U_{i+1}⁺ − W̃_{i+1}⁺Ṽ_i⁺‖², from record
            self._pending_V[i] = (row, old, new)
            return
        # V_N
        U, Y, c, a = state.U[N], self.problem.Y, self.c, self.alpha
        t = torch.add(old, new).mul_(c + g).sub_(Y, alpha=2 * c).sub_(U, alpha=2 * g)
        row[S.BLOCK_DECREASE] = -0.5 * sample_dot(delta, t)
        n_old, n_new = sample_norm(old), sample_norm(new)  # the noise of ⟨Δ, t⟩ and of the solve (tolerance.py)
        row[S.BLOCK_NOISE] = ((c + g + a) * (n_old + n_new) + 2 * c * sample_norm(Y) + 2 * g * sample_norm(U)) \
            * sample_norm(delta)
        self._dV_N = delta
        if full:
            if self.problem.config.vn_update == "prox_linear":
                r = torch.sub(old, Y, out=t).mul_(c).add_(new, alpha=a + g).sub_(old, alpha=a).sub_(U, alpha=g)
                n_old = sample_norm(old)
                scale = c * (n_old + sample_norm(Y)) + (a + g) * sample_norm(new) + a * n_old + g * sample_norm(U)
            else:
                r = torch.mul(new, c + g + a, out=t).sub_(Y, alpha=c).sub_(U, alpha=g).sub_(old, alpha=a)
                scale = (c + g + a) * sample_norm(new) + c * sample_norm(Y) + g * sample_norm(U) \
                    + a * sample_norm(old)
            row[S.BLOCK_RESIDUAL] = relative(sample_norm(r), scale)

    def _step_U(self, sw, row, i, state, old, new, delta, aux) -> None:
        g, a, N, full = self.gamma, self.alpha, self.N, self._level >= 2
        P = aux["P"]
        if i == N or (i == 1 and full):  # kept for the W_i step's E = U_i⁺ − P (otherwise ‖E‖² is all it needs)
            self._P[i] = P
        V = state.V[i]  # V_i⁺
        if in_layer_pass("U", i, N):
            self._hidden_layer(sw, row, i, state, old, new, P)
        else:  # U_N: ‖V−o‖² − ‖V−n‖² + ‖o−P‖² − ‖n−P‖² = 2⟨Δ, V + P − o − n⟩
            t = torch.add(V, P).sub_(old).sub_(new)
            row[S.BLOCK_DECREASE] = g * sample_dot(delta, t)
            n_old, n_new = sample_norm(old), sample_norm(new)
            row[S.BLOCK_NOISE] = (g * (sample_norm(V) + 2 * self._product_size(i, state) + n_old + n_new)
                                  + a * (n_old + n_new)) * sample_norm(delta)
            self._U_norm[i] = n_new
            coef = a - (self.c if self.problem.config.vn_update == "prox_linear" else 0.0)
            g_V = torch.mul(delta, -g, out=t).sub_(self._dV_N, alpha=coef)
            self._dV_N = None
            self._set_g(sw, ("V", N), g_V)
            self._carry[i] = {"sweep": sw, "B": P.mul(g)}
            if full:
                r = torch.mul(new, 2.0, out=t).sub_(V).sub_(P)
                row[S.BLOCK_RESIDUAL] = relative(sample_norm(r), 2 * sample_norm(new) + sample_norm(V) + sample_norm(P))
        sw.pending += 1
        self._carry[i]["U_row"] = row

    def _hidden_layer(self, sw, row_U, i, state, old, new, P) -> None:
        """Everything n-sized of the V_i and U_i updates of a hidden layer (i < N) in **one pass** over their operands,
        in blocks of whole rows of about :func:`bcd.activations.chunk_size` entries (at least one row; on CUDA one
        piece, with its temporaries d_i×n each): V_i⁻, V_i⁺, U_i⁻, U_i⁺ and
        P = W̃_i⁻Ṽ_{i-1}⁻ are each read once, and nothing n-sized is allocated except the carried B = γP − αΔU,
        written into a buffer reused from sweep to sweep (and, in ``full``, the sketch ZA of the V_i residual).  With
        A = V_i⁺ − σ(U_i⁻), d = σ(U_i⁺) − σ(U_i⁻) and E = U_i⁺ − P (small differences, no two large sums cancel):
            V_i: ‖V⁻ − σ⁻‖² − ‖V⁺ − σ⁻‖² = −⟨ΔV, 2A − ΔV⟩,
            U_i: ‖V⁺ − σ⁻‖² − ‖V⁺ − σ⁺‖² + ‖U⁻ − P‖² − ‖U⁺ − P‖² = ⟨d, 2A − d⟩ − ⟨ΔU, 2E − ΔU⟩  (each × γ/2),
        g_{V_i} = −γd, and ‖E‖² is kept for the W_i step.  Each chunk's sums are taken in the working dtype and added
        up in float64 (measured on the CPU: 64 Ki-entry blocks cost about a fifth of whole-matrix temporaries, whose
        page faults dominate; smaller blocks lose to per-operation overhead)."""
        g, a, full = self.gamma, self.alpha, self._level >= 2
        row_V, V_old, V_new = self._pending_V.pop(i)
        B = self._buffer("B", i, new)
        d, n = new.shape
        Z = self._v_probes(i, new)[0] if full else None
        ZA = new.new_zeros(Z.shape[0], n) if full else None  # Z·A of the sketched V_i residual (full)
        sigma = self.problem.activation.apply  # σ_i of a hidden layer
        run, chunk = pass_function(layer_sums, self._fuse, new)
        rows, parts = max(1, chunk // max(1, n)), []  # row blocks: contiguous, and Z·A adds up by rows
        for r0 in range(0, d, rows):
            sl = slice(r0, r0 + rows)
            piece, A_c = run(*(t[sl].reshape(-1) for t in (V_old, V_new, old, new, P)), B[sl].view(-1), sigma, g, a,
                             full)
            if full:
                ZA.addmm_(Z[:, sl], A_c.view(-1, n))
            parts.append(piece)
        sums = _reduced(parts, len(LAYER_SUMS), new)
        x = dict(zip(LAYER_SUMS, sums.unbind(), strict=True))
        row_V[S.BLOCK_DELTA_SQ], row_U[S.BLOCK_DELTA_SQ] = x["dV_sq"], x["dU_sq"]
        sw.dq_sq += [x["dV_sq"], x["dU_sq"]]
        sw.norms["V"].append(x["V_sq"].sqrt())
        sw.norms["U"].append(x["U_sq"].sqrt())
        row_V[S.BLOCK_DECREASE] = -g * x["dV_A"] + 0.5 * g * x["dV_sq"] + self._aff_before_V.pop(i)
        row_U[S.BLOCK_DECREASE] = 0.5 * g * (2 * x["ds_A"] - x["ds_sq"] - 2 * x["dU_E"] + x["dU_sq"])
        # noise (tolerance.py): A = V⁺ − σ(U⁻) and E = U⁺ − P entrywise, P = W̃_i⁻Ṽ_{i-1}⁻ a rounded product; V_i also
        # inherits the W_{i+1} step's noise in its before-value and the evaluation of its after-value (at close)
        nV, nso, ndV, nU, ndU, nds = (x[k].sqrt() for k in ("V_sq", "so_sq", "dV_sq", "U_sq", "dU_sq", "ds_sq"))
        row_V[S.BLOCK_NOISE] = (g * (nV + nso) + a * (2 * nV + ndV)) * ndV + self._noise_before_V.pop(i)
        nV_tilde = augmented_norm(x["V_sq"], self._n_total)
        row_V["_minus_scale"] = g * (self._U_norm[i + 1] + norm(state.W[i + 1]) * nV_tilde)
        row_U[S.BLOCK_NOISE] = (g * (nU + 2 * self._product_size(i, state)) + a * (2 * nU + ndU)) * ndU \
            + g * (nV + nso + nds) * nds
        self._V_sq[i], self._U_norm[i] = x["V_sq"], nU
        d_sig = torch.sub(sigma(new), sigma(old)) if self.keep_g else None  # the tensor only for keep_g
        self._set_g(sw, ("V", i), d_sig, factor=-g, sq=x["ds_sq"])  # g_{V_i} = γ(σ(U⁻) − σ(U⁺))
        self._E_sq[i] = x["E_sq"]
        self._carry[i] = {"sweep": sw, "B": B}
        if full:
            carry = self._carry[i + 1]
            carry["ZA"], carry["A_scale"], carry["A_row"] = ZA, x["V_sq"].sqrt() + x["so_sq"].sqrt(), row_V
            row_U[S.BLOCK_RESIDUAL] = u_block_residual(new, V_new, None, (g + a) / g, self.problem.config.activation,
                                                       m_parts=(P, old, g, a))

    def _product_size(self, i: int, state: BCDState) -> Tensor:
        """‖W̃_i‖·‖Ṽ_{i-1}‖ at the current state: a bound on ‖P_i‖ = ‖W̃_iṼ_{i-1}‖, and eps times it on P_i's rounding
        (‖Ṽ_{i-1}‖² = ‖V_{i-1}‖² + n, tracked from sweep to sweep; X̃'s for i = 1)."""
        v = self._norm_X_tilde if i == 1 else augmented_norm(self._V_sq[i - 1], self._n_total)
        return norm(state.W[i]) * v

    def _buffer(self, name: str, i: int, like: Tensor) -> Tensor:
        """A recorder-owned n-sized buffer for layer i, reused from sweep to sweep (no page faults of a fresh
        allocation); its previous contents have been consumed by :meth:`_complete` before it is written again."""
        buf = self._bufs.get((name, i))
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._bufs[(name, i)] = torch.empty_like(like, memory_format=torch.contiguous_format)
        return buf

    def _step_W(self, sw, row, i, state, old, new, delta, aux) -> None:
        g, a, lam, full = self.gamma, self.alpha, self.lam, self._level >= 2
        G = aux["gram"]
        if i == self.N:
            E = state.U[i] - self._P.pop(i)  # U_i⁺ − W̃_i⁻Ṽ_{i-1}⁻
            E_sq = sample_sq(E)  # E is n-sized; W̃, G, EṼᵀ below are replicated (G and UṼᵀ came through the seam)
        else:  # ‖E‖² from the layer pass; E itself only for the sketched W̃_1 residual of ``full``
            E_sq = self._E_sq.pop(i)
            E = state.U[i] - self._P.pop(i) if i == 1 and full else None
        reg_dec = -0.5 * lam * (2 * dot(old, delta) + sq(delta)) if lam > 0 else 0.0
        # noise (tolerance.py), from the norms of the products the step formed: the solve W̃⁺M = γUṼᵀ + αW̃⁻ with
        # M = γG + (α+λ)I has a residual of about eps(γ‖W̃⁺G‖ + γ‖UṼᵀ‖ + (α+λ)‖W̃⁺‖ + α‖W̃⁻‖), and for i ≥ 2 the decrease
        # γ/2·inner, inner = 2⟨EṼᵀ, D⟩ − ⟨DG, D⟩ with EṼᵀ = UṼᵀ − W̃⁻G, rounds by about eps·γ(‖UṼᵀ‖ + ‖W̃⁻G‖ + ‖DG‖)‖D‖
        nW, nW_new, nD, n_cross = norm(old), norm(new), norm(delta), norm(aux["cross"])
        if i >= 2:
            WG, DG = old @ G, delta @ G
            EV = aux["cross"] - WG  # EṼ⁻ᵀ = U⁺Ṽ⁻ᵀ − W̃⁻Ṽ⁻Ṽ⁻ᵀ from the step's products
            inner = 2 * dot(EV, delta) - dot(DG, delta)  # ‖E‖² − ‖U⁺ − W̃⁺Ṽ⁻‖²
            n_DG = norm(DG)  # ‖W̃⁺G‖ ≤ ‖W̃⁻G‖ + ‖DG‖ (the solve), and ‖W̃⁻G‖ + ‖DG‖ (inner's rounding)
            noise = (g * (n_cross + norm(WG) + 2 * n_DG) + (a + lam) * nW_new + a * nW) * nD
        else:  # no product with X̃X̃ᵀ is formed here: ‖W̃⁺G‖ ≤ ‖UX̃ᵀ‖ + ((α+λ)‖W̃⁺‖ + α‖W̃⁻‖)/γ from the solve itself
            noise = (2 * g * n_cross + 2 * (a + lam) * nW_new + 2 * a * nW) * nD
        # ½γ‖E‖² (the aff term before this step, E = U_i⁺ − P_i⁻ entrywise, P_i⁻ = W̃⁻Ṽ⁻ rounded; ‖Ṽ⁻‖² = tr G)
        noise_E = g * E_sq.sqrt() * (self._U_norm[i] + 2 * nW * G.diagonal().sum().sqrt())
        row[S.BLOCK_NOISE] = noise if i >= 2 else noise + noise_E
        if i >= 2:
            self._noise_before_V[i - 1] = noise + noise_E
        else:  # the after-value γ/2‖U_1⁺ − W̃_1⁺X̃‖² comes from record: its evaluation noise is added at close
            row["_minus_scale"] = g * (self._U_norm[1] + nW_new * self._norm_X_tilde)
        if i >= 2:
            row[S.BLOCK_DECREASE] = 0.5 * g * inner + reg_dec
            self._aff_before_V[i - 1] = 0.5 * g * (E_sq - inner)
            carry = self._carry[i]
            carry["S"] = (DG - EV).mul_(-g).sub_(delta, alpha=a)
            carry["W_row"] = row
        else:  # Ṽ_0 = X̃ is fixed: g_W1 = −αΔW̃_1, after-value of the aff term from record
            row[S.BLOCK_DECREASE] = 0.5 * g * E_sq + reg_dec
            row["_minus"] = S.aff_term(1)
            self._set_g(sw, ("W", 1), delta.mul(-a))
        if full:  # r = W̃⁺M − (γUṼᵀ + αW̃⁻), M = γṼṼᵀ + (α+λ)I, written as γ(DṼṼᵀ − EṼᵀ) + λW̃⁺ + αD
            c = a + lam  # ‖γG + cI‖_F² = γ²‖G‖² + 2γc·tr G + c²(d+1)
            norm_M = (g * g * sq(G) + 2 * g * c * G.diagonal().sum() + c * c * G.shape[0]).sqrt()
            if i >= 2:  # the products are there already: exact
                r = (DG - EV).mul_(g).add_(delta, alpha=a)
                if lam > 0:
                    r.add_(new, alpha=lam)
                r_norm, EV_norm = norm(r), norm(EV)
            else:  # W̃_1: Ṽ_0 = X̃ is fixed, sketch with fixed probes Z: ‖r‖_F ≈ ‖rZ‖_F/√s
                Z, GZ, XtZ = self._probes(G, state.V[0])
                EVZ = over_samples(E @ XtZ)  # EX̃ᵀZ: a sum over samples
                rZ = (delta @ GZ).sub_(EVZ).mul_(g).add_(delta @ Z, alpha=a)
                if lam > 0:
                    rZ.add_(new @ Z, alpha=lam)
                r_norm, EV_norm = norm(rZ) / math.sqrt(PROBES), norm(EVZ) / math.sqrt(PROBES)
            scale = norm_M * (norm(new) + norm(old)) + g * EV_norm
            row[S.BLOCK_RESIDUAL] = relative(r_norm, scale)

    def _probes(self, G: Tensor, X: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fixed Gaussian probes Z ∈ R^{(d_0+1)×s} for the W̃_1 residual, with X̃ᵀ-side products cached."""
        if self._probe_cache is None:
            gen = torch.Generator().manual_seed(PROBE_SEED)
            Z = torch.randn(G.shape[0], PROBES, generator=gen, dtype=torch.float64).to(G)
            self._probe_cache = (Z, G @ Z, torch.addmm(Z[-1:], X.T, Z[:-1]))
        return self._probe_cache

    def _v_probes(self, i: int, like: Tensor) -> tuple[Tensor, float]:
        """Probes Z of the V_i residual and the divisor of ‖Zr‖_F: fixed Gaussian Z ∈ R^{s×d_i} (feature side, the same
        on every sample shard) and √s; for d_i ≤ s the identity and 1 (exact, and no dearer)."""
        cached = self._v_probe_cache.get(i)
        if cached is None:
            d = like.shape[0]
            if d <= PROBES:
                cached = (torch.eye(d, dtype=like.dtype, device=like.device), 1.0)
            else:
                gen = torch.Generator().manual_seed(PROBE_SEED + i)
                cached = (torch.randn(PROBES, d, generator=gen, dtype=torch.float64).to(like), math.sqrt(PROBES))
            self._v_probe_cache[i] = cached
        return cached

    def _complete(self, i: int, P: Tensor, U: Tensor, V_prev: Tensor, W: Tensor) -> None:
        """Finish the layer-i parts of g^{k} (and the V_{i-1} residual) with P = P_i^k = W̃_i^kṼ_{i-1}^k:
        g_{U_i} = B − γP, and F = P − U_i^k for g_{W_i} = γFṼ_{i-1}ᵀ + S.  For a hidden layer one chunked pass reads B,
        P and U once and writes F over B (whose contents are consumed by then)."""
        carry = self._carry.pop(i)
        sw = carry["sweep"]
        g, full = self.gamma, self._level >= 2
        B, need_F = carry["B"], "S" in carry or "ZA" in carry  # layer 1 has neither (g_W1 = −αΔW̃_1)
        if i == self.N or self.keep_g:
            self._set_g(sw, ("U", i), B.sub_(P, alpha=g), carry["U_row"])
            F = torch.sub(P, U, out=B) if need_F else None
            P_sq = U_sq = None
        else:
            flat = (B.view(-1), P.reshape(-1), U.reshape(-1))
            sizes = full and need_F
            run, chunk = pass_function(completion_sums, self._fuse, B)
            parts = [run(*(t[s:s + chunk] for t in flat), g, need_F, sizes) for s in range(0, B.numel(), chunk)]
            sums = _reduced(parts, 3 if sizes else 1, B).unbind()
            self._set_g(sw, ("U", i), None, row=carry["U_row"], sq=sums[0])
            F = B if need_F else None
            P_sq, U_sq = (sums[1], sums[2]) if full and need_F else (None, None)
        if "S" in carry:
            self._set_g(sw, ("W", i), augmented_cross(F, V_prev).mul_(g).add_(carry["S"]), carry["W_row"])
        if "ZA" in carry:  # V_{i-1}: Z(A + ŴᵀF) = ZA + (ZŴᵀ)F, s×n, and ‖r‖_F ≈ ‖Zr‖_F/√s
            W_hat = W[:, :-1]
            Z, div = self._v_probes(i - 1, V_prev)
            rZ = torch.addmm(carry["ZA"], Z @ W_hat.T, F)
            P_n = sample_norm(P) if P_sq is None else P_sq.sqrt()
            U_n = sample_norm(U) if U_sq is None else U_sq.sqrt()
            scale = carry["A_scale"] + norm(W_hat) * (P_n + U_n)
            carry["A_row"][S.BLOCK_RESIDUAL] = relative(sample_norm(rZ) / div, scale)
        sw.pending -= 1

    def _defer_accuracy(self, sw, state: BCDState, rec: dict[str, Any]) -> None:
        """Test accuracy now; train accuracy at the next U_1 step, whose aux["P"] = W̃_1^kX̃ is the first
        layer of the forward pass (the weights W̃_i^k are kept by reference: the engine replaces blocks)."""
        problem = self.problem
        if problem.labels is None:
            return
        if problem.X_test is not None:
            rec[S.TEST_ACC] = accuracy(state.W, problem.X_test, problem.labels_test, problem)
        self._acc_pending = (sw, list(state.W))
        sw.pending += 1

    def _complete_accuracy(self, P_1: Tensor) -> None:
        sw, W = self._acc_pending
        self._acc_pending = None
        correct = (predict(W, self.problem.X, self.problem, P_1=P_1) == self.problem.labels).sum(dtype=torch.float64)
        sw.record[S.TRAIN_ACC] = over_samples(correct) / self._n_total  # counts summed over sample shards
        sw.pending -= 1
