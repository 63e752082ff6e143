"""Monotone inner solvers for the convex block subproblems that have no closed form (MATH.md §9, §7's rule).

With a non-quadratic regulariser the W̃_i step of Algorithms 2 and 3 is a lasso-type problem, and a nonzero s_i
makes the V_i step (i < N) a column-separable constrained or ℓ1 problem:

    W̃⁺ ≈ argmin_W  r(W) + γ/2‖U_i⁺ − WṼ⁻‖² + α/2‖W − W̃⁻‖²        Hessian H = γṼṼᵀ + αI        (μ ≥ α)
    V⁺  ≈ argmin_V  s(V) + γ/2⟨V, (ρI + ŴᵀŴ)V⟩ − γ⟨V, R⟩        Hessian H = γ(ρI + ŴᵀŴ)      (μ = γρ)

with R = S' + Ŵᵀ(U_{i+1}⁺ − b1ᵀ) the right-hand side of :func:`bcd.blocks.update_V_hidden`.  Both are
Φ = f + g with f a convex quadratic and g a separable record with an exact prox.

**Method: monotone FISTA** (Beck & Teboulle 2009, MFISTA) with step 1/L, L = λ_max(H): an accelerated
proximal-gradient step z = prox_{g/L}(y − ∇f(y)/L), accepted only where it does not increase Φ, so Φ never
increases from the start point.  The start is the better of X⁻ and the prox of the unregularised minimiser
(one solve), so Φ(X⁺) ≤ Φ(X⁻) — the monotone half of MATH.md §7's rule.

**Stopping rule** (the other half): stop when dist(0, ∂Φ(X)) ≤ η_X‖X − X⁻‖, dist computed exactly with the
record's least-norm element (``least_norm(X, ∇f(X))``), or at ``max_iter`` (reported as ``reason='cap'``).
η_X = min(η, μ_X/4): with strong convexity μ_X, Φ(X⁻) − Φ(X⁺) ≥ (μ_X/2 − η_X)‖X⁺ − X⁻‖² ≥ (μ_X/4)‖X⁺ − X⁻‖²,
so the block keeps a sufficient-descent constant (Φ(X⁻) ≥ Φ(X⁺) + ⟨g, X⁻ − X⁺⟩ + μ_X/2‖X⁻ − X⁺‖² for g ∈ ∂Φ(X⁺)).
A rounding floor (the rule cannot ask for less than a few ulps of the gradient's scale) stops a solve that
has reached the exact minimiser with X⁺ = X⁻; it counts as the rule only within √eps‖∇f‖, what the recorder's
exactness check also accepts (:func:`_stop_test`), and is otherwise reported as 'stalled'.

Algorithm 1 (MATH.md §7) with a nonlinear σ adds *nonconvex* blocks, W̃_i ≈ argmin r(W) + γ/2‖σ(WṼ⁻) − V_i⁺‖² +
α/2‖W − W̃⁻‖² and its V_i analogue: :func:`solve_W_nonconvex` / :func:`solve_V_nonconvex` take the monotone proximal
gradient with backtracking (:func:`_prox_gradient`; no acceleration, Φ falls at every accepted step) under the same
rule with the configured η (α/2 from the proximal term is all a nonconvex block keeps), reporting 'rule', 'cap' or
'stalled'.  They serve every C¹ σ with any r_i, s_i, and the kinked σ the piecewise Newton solver of
:mod:`bcd.inner` does not take (leaky ReLU; ReLU with a non-ridge r_i, a ridge without the bias, or an s_i).  For a
kinked σ, f is piecewise smooth: its gradient uses σ′ = the left slope at a kink (autograd's convention), the
backtracking test still makes every accepted step a descent step (Φ(z) ≤ Φ(x) − ‖z − x‖²/(2t)), but iterates
approach a convex kink without landing on it, so the rule often fails there (MATH.md §7.3) and the solve stops at
the cap or stalls: reported, and the checks then hold that block to monotone descent only.  Algorithm 1's V_i
with s_i where σ_{i+1} = Id is convex and takes :func:`solve_V_prox` (ρ = 1 + α/γ).

Sums over samples: the V problems' scalars (Φ, norms, inner products) pass through :mod:`bcd.reduction`
(column-local problems); the W problems are built from ṼṼᵀ and UṼᵀ (or E ⊙ σ′ times Ṽᵀ), already reduced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bcd.reduction import block_sq, over_samples
from bcd.regularisers import penalised

Tensor = torch.Tensor


@dataclass(frozen=True)
class ProxInfo:
    """What a monotone FISTA solve did (the fields the recorder reads from :class:`bcd.inner.InnerInfo` too)."""

    iterations: int
    stationarity: float
    tolerance: float
    rule_held: bool
    reason: str  # 'rule' | 'cap' | 'stalled'
    value_before: float
    value_after: float
    eta: float
    max_iter: int


def _stop_test(stat: float, tol: float, floor: float, grad_norm: float, eps: float) -> str | None:
    """``'rule'`` when dist(0, ∂Φ) ≤ η‖X − X⁻‖, or when it is within a rounding floor that is itself ≤ √eps‖∇f‖ — never
    above what the recorder's exactness check accepts (√eps times the sum of the gradient's parts, ≥ √eps‖∇f‖), so a
    solve never claims a rule the recorder would refute; ``'stalled'`` when the rounding floor is reached without
    that (nothing more to gain: reported as the rule not held); None to go on."""
    if stat <= tol or stat <= min(floor, math.sqrt(eps) * grad_norm):
        return "rule"
    return "stalled" if stat <= floor else None


def block_eta(eta: float, mu: float) -> float:
    """η_X = min(η, μ_X/4): the rule's η for a block with strong-convexity modulus μ_X (module docstring)."""
    return min(eta, 0.25 * mu)


def _mfista(kind: str, X_old: Tensor, start: Tensor, grad_f: Callable[[Tensor], Tensor],
            f: Callable[[Tensor, Tensor], Tensor], prox_g: Callable[[Tensor, float], Tensor],
            g: Callable[[Tensor], Tensor], least_norm: Callable[[Tensor, Tensor], Tensor], L: float, eta: float,
            max_iter: int) -> tuple[Tensor, ProxInfo]:
    """Minimise Φ = f + g from ``start`` (Φ(start) ≤ Φ(X⁻)); ``f(X, ∇f(X))`` evaluates f cheaply from its gradient."""
    eps = torch.finfo(X_old.dtype).eps

    def phi(X, G):
        return float(f(X, G) + g(X))

    G_old = grad_f(X_old)
    before = phi(X_old, G_old)
    x, Gx = start, grad_f(start)
    Fx = phi(x, Gx)
    y, Gy, t = x, Gx, 1.0
    iters, stat, tol, reason = 0, math.inf, 0.0, "cap"
    for iters in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
        z = prox_g(y - Gy / L, 1.0 / L)
        Gz = grad_f(z)
        Fz = phi(z, Gz)
        x_prev = x
        if Fz <= Fx:
            x, Gx, Fx = z, Gz, Fz
        stat = math.sqrt(float(block_sq(kind, least_norm(x, Gx))))
        step = math.sqrt(float(block_sq(kind, x - X_old)))
        floor = 64 * eps * L * math.sqrt(float(block_sq(kind, x)) + float(block_sq(kind, X_old)))
        tol = eta * step
        stop = _stop_test(stat, tol, floor, math.sqrt(float(block_sq(kind, Gx))), eps)
        if stop is not None:
            reason = stop
            break
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = x + (t / t_new) * (z - x) + ((t - 1.0) / t_new) * (x - x_prev)
        Gy = grad_f(y)
        t = t_new
    return x, ProxInfo(iters, stat, tol, reason == "rule", reason, before, Fx, eta, max_iter)


def _lambda_max(H: Tensor) -> float:
    """λ_max of a symmetric PSD matrix (times 1 + 1e-6: the step 1/L must not exceed 1/λ_max)."""
    return float(torch.linalg.eigvalsh(H)[-1]) * (1.0 + 1e-6)


def solve_W_prox(W_old: Tensor, gram: Tensor, cross: Tensor, *, gamma: float, alpha: float, reg, reg_bias: bool,
                 eta: float, max_iter: int) -> tuple[Tensor, ProxInfo]:
    """W̃⁺ for r = ``reg`` (a regulariser record) by monotone FISTA; ``gram`` = ṼṼᵀ, ``cross`` = U_i⁺Ṽᵀ (reduced).

    f(W) = γ/2 tr(WGWᵀ) − γ⟨W, C⟩ + α/2‖W − W̃⁻‖² (+ const), ∇f = γ(WG − C) + α(W − W̃⁻); r acts on Ŵ alone when
    ``reg_bias`` is false."""
    H = gram.mul(gamma)
    H.diagonal().add_(alpha)
    L = _lambda_max(H)

    def view(X):
        return penalised(X, reg_bias)

    def grad_f(W):
        return (W @ gram - cross).mul_(gamma).add_(W - W_old, alpha=alpha)

    def f(W, G):  # f = ½⟨W, HW⟩ − ⟨W, γC + αW̃⁻⟩ (+ const), and HW = ∇f(W) + γC + αW̃⁻
        lin = cross.mul(gamma).add_(W_old, alpha=alpha)
        return 0.5 * torch.sum(W * (G + lin)) - torch.sum(W * lin)

    def prox_g(W, t):
        out = W.clone()
        view(out).copy_(reg.prox(view(W), t))
        return out

    def g(W):
        return reg.value(view(W))

    def least_norm(W, G):
        out = G.clone()
        view(out).copy_(reg.least_norm(view(W), view(G)))
        return out

    # start: the better of W̃⁻ and the prox of the unregularised minimiser (αW̃⁻ + γC)H⁻¹
    free = torch.linalg.solve(H, cross.mul(gamma).add_(W_old, alpha=alpha).T).T
    cand = prox_g(free, 1.0 / L)
    start = cand if float(f(cand, grad_f(cand)) + g(cand)) <= float(f(W_old, grad_f(W_old)) + g(W_old)) else W_old
    return _mfista("W", W_old, start, grad_f, f, prox_g, g, least_norm, L, block_eta(eta, alpha), max_iter)


def solve_V_prox(V_old: Tensor, rhs: Tensor, W_next: Tensor, *, gamma: float, rho: float, reg, eta: float,
                 max_iter: int, closed_form: Tensor) -> tuple[Tensor, ProxInfo]:
    """V_i⁺ (i < N) for s_i = ``reg`` by monotone FISTA: f(V) = γ/2⟨V, (ρI + K)V⟩ − γ⟨V, R⟩, K = ŴᵀŴ,
    ∇f = γ((ρI + K)V − R); ``closed_form`` is the unregularised minimiser (the start candidate's centre)."""
    W_hat = W_next[:, :-1]
    K = W_hat.T @ W_hat
    L = gamma * (rho + float(torch.linalg.eigvalsh(K)[-1])) * (1.0 + 1e-6)

    def grad_f(V):
        return torch.addmm(V, K, V, beta=rho).sub_(rhs).mul_(gamma)

    def f(V, G):  # ½⟨V, γ(ρI + K)V⟩ − γ⟨V, R⟩ = ½⟨V, G⟩ − ½γ⟨V, R⟩
        return over_samples(0.5 * torch.sum(V * G) - 0.5 * gamma * torch.sum(V * rhs))

    def g(V):
        return over_samples(reg.value(V))

    start_cand = reg.prox(closed_form, 1.0 / L)
    start = start_cand if float(f(start_cand, grad_f(start_cand)) + g(start_cand)) \
        <= float(f(V_old, grad_f(V_old)) + g(V_old)) else V_old
    return _mfista("V", V_old, start, grad_f, f, reg.prox, g, reg.least_norm, L, block_eta(eta, gamma * rho),
                   max_iter)


# ------------------------------------------------------------------ Algorithm 1 with a nonlinear σ (nonconvex blocks)


def _block_dot(kind: str, a: Tensor, b: Tensor) -> Tensor:
    s = torch.sum(a * b)
    return over_samples(s) if kind == "V" else s


def _prox_gradient(kind: str, X_old: Tensor, value_grad: Callable[[Tensor], tuple[Tensor, Tensor]], reg,
                   view: Callable[[Tensor], Tensor], t0: float, eta: float, max_iter: int) -> tuple[Tensor, ProxInfo]:
    """Monotone proximal gradient with backtracking for Φ = f + g, f C¹ and nonconvex, g = ``reg`` on ``view(X)``.

    z = prox_{tg}(x − t∇f(x)), t halved until f(z) ≤ f(x) + ⟨∇f(x), z − x⟩ + ‖z − x‖²/(2t) (then
    Φ(z) ≤ Φ(x) − ‖z − x‖²/(2t): Φ never increases from X⁻), grown ×1.5 after each accepted step; stops under MATH.md
    §7's rule dist(0, ∂Φ(X)) ≤ η‖X − X⁻‖ (dist from the record's least-norm element) or at ``max_iter``."""
    eps = torch.finfo(X_old.dtype).eps

    def prox(X, t):
        out = X.clone()
        view(out).copy_(reg.prox(view(X), t))
        return out

    def least_norm(X, G):
        out = G.clone()
        view(out).copy_(reg.least_norm(view(X), view(G)))
        return out

    def g(X):
        r = reg.value(view(X))
        return over_samples(r) if kind == "V" else r

    x = X_old
    f, G = value_grad(x)
    before = float(f + g(x))
    t = t0
    iters, stat, tol, held = 0, math.inf, 0.0, False
    reason = "cap"
    for iters in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
        accepted = False
        for _ in range(60):
            z = prox(x - t * G, t)
            fz, Gz = value_grad(z)
            d = z - x
            if float(fz) <= float(f + _block_dot(kind, G, d) + block_sq(kind, d) / (2 * t)) + 8 * eps * abs(float(f)):
                accepted = True
                break
            t *= 0.5
        if not accepted:  # no step passes the test at any scale: keep x (never accept an uphill step)
            reason = "stalled"
            break
        x, f, G = z, fz, Gz
        t *= 1.5
        stat = math.sqrt(float(block_sq(kind, least_norm(x, G))))
        tol = eta * math.sqrt(float(block_sq(kind, x - X_old)))
        # rounding floor: a few ulps of the gradient's parts, whose scale is ‖∇f‖ + L‖x‖ with L = 1/t0 the curvature
        # estimate (not the backtracked t, which a kink of σ can shrink without bound)
        g_norm = math.sqrt(float(block_sq(kind, G)))
        floor = 64 * eps * (g_norm + math.sqrt(float(block_sq(kind, x))) / t0)
        stop = _stop_test(stat, tol, floor, g_norm, eps)
        if stop is not None:
            held, reason = stop == "rule", stop
            break
    return x, ProxInfo(iters, stat, tol, held, reason, before, float(f + g(x)), eta, max_iter)


def _lip(act) -> float:
    """L_σ for the first step (a polynomial has none on ℝ: 1, and the backtracking finds the scale)."""
    lip = act.lipschitz(None)
    return lip if math.isfinite(lip) else 1.0


def solve_W_nonconvex(V_target: Tensor, V_prev: Tensor, W_old: Tensor, *, act, gamma: float, alpha: float, reg,
                      reg_bias: bool, eta: float, max_iter: int, gram: Tensor) -> tuple[Tensor, ProxInfo]:
    """Algorithm 1's W̃_i step (i < N) for a nonlinear σ: W̃⁺ ≈ argmin r(W) + γ/2‖σ(WṼ⁻) − V_i⁺‖² + α/2‖W − W̃⁻‖², with
    ∇f = γ(E ⊙ σ′(P))Ṽᵀ + α(W − W̃⁻), P = WṼ⁻, E = σ(P) − V_i⁺ (a sum over samples: reduced).  First step
    1/(γL_σ²λ_max(ṼṼᵀ) + α) (the Gauss–Newton curvature; backtracking corrects it)."""
    from bcd.blocks import affine, augmented_cross
    from bcd.reduction import sample_sq, sq

    def value_grad(W):
        P = affine(W, V_prev)
        E = act.apply(P) - V_target
        f = 0.5 * gamma * sample_sq(E) + 0.5 * alpha * sq(W - W_old)
        return f, augmented_cross(E * act.d1(P), V_prev).mul_(gamma).add_(W - W_old, alpha=alpha)

    L = gamma * _lip(act) ** 2 * float(torch.linalg.eigvalsh(gram)[-1]) + alpha
    return _prox_gradient("W", W_old, value_grad, reg, lambda X: penalised(X, reg_bias),
                          1.0 / L, eta, max_iter)


def solve_V_nonconvex(S: Tensor, V_next: Tensor, W_next: Tensor, V_old: Tensor, *, act, gamma: float, alpha: float,
                      reg, eta: float, max_iter: int) -> tuple[Tensor, ProxInfo]:
    """Algorithm 1's V_i step (i < N − 1) for a nonlinear σ: V⁺ ≈ argmin s(V) + γ/2‖V − S‖²
    + γ/2‖σ(ŴV + b1ᵀ) − V_{i+1}⁺‖² + α/2‖V − V⁻‖², S = σ(W̃_i⁻Ṽ_{i-1}⁻), [Ŵ b] = W̃_{i+1}⁺;
    ∇f = γ(V − S) + γŴᵀ(E ⊙ σ′(Z)) + α(V − V⁻)."""
    from bcd.blocks import affine
    from bcd.reduction import sample_sq

    W_hat = W_next[:, :-1]

    def value_grad(V):
        Z = affine(W_next, V)
        E = act.apply(Z) - V_next
        f = 0.5 * gamma * (sample_sq(V - S) + sample_sq(E)) + 0.5 * alpha * sample_sq(V - V_old)
        grad = torch.addmm(V - S, W_hat.T, E * act.d1(Z)).mul_(gamma).add_(V - V_old, alpha=alpha)
        return f, grad

    L = gamma * (1.0 + _lip(act) ** 2 * float(torch.linalg.matrix_norm(W_hat, 2)) ** 2) + alpha
    return _prox_gradient("V", V_old, value_grad, reg, lambda X: X, 1.0 / L, eta, max_iter)
