"""The block subproblems, as data beside the updates (as jaxopt keeps ``optimality_fun`` beside ``update``).

Updating block X (the others fixed at their current values) solves

    X⁺ = argmin_X Φ_X(X),   Φ_X(X) = Σ_{t touches X} t(…, X, …) + (ω/2)‖X − X⁻‖²,

where the sum runs over the objective's declared terms that depend on X (:mod:`bcd.model`) and ω is
the block's proximal weight: α for every block of the two-splitting and for V_N, W_i, U_i (i < N)
of the three-splitting and ResNet; 0 for U_N and V_i (i < N) there, whose subproblems are already
strongly convex (MATH.md §3, §7, §8).  The prox-linear V_N step (Theorem 2) replaces the loss term
by its linearisation ⟨∇R(V_N⁻), V − V_N⁻⟩.

A :class:`Subproblem` belongs to a *block* of a variant, not to the function that updates it: a user's
step, or a mutant, that updates V_2 is judged against V_2's subproblem.  It gives

* :meth:`Subproblem.value` — Φ_X at a candidate X;
* :meth:`Subproblem.residual` — the relative optimality residual of a candidate: with the gradient of
  Φ_X written as a sum of uncancelled summands Σ_j t_j (per touched term t: ∇t(X) − ∇t(0) and ∇t(0), which
  for a quadratic term ½‖AX − B‖² are AᵀAX and −AᵀB; the proximal term's ωX and −ωX⁻),
  ‖Σ_j t_j‖ / Σ_j ‖t_j‖ — ≈ eps for the exact minimiser, O(relative error) for a wrong one.
  The ReLU U-prox is nonsmooth and nonconvex: its residual is the distance to the *global* minimisers
  of the elementwise problem (:func:`bcd.activations.u_block_residual`, which compares the
  candidates' values instead of using the prox's sign tests).

These generic forms evaluate the touched terms with autograd; the recorder's fast path for Algorithm
2 has in-stream formulas for the same quantities and is tested against these.

Sums over samples (MATH.md §10) go through :mod:`bcd.reduction`: a term's gradient is taken of its *local* value
(the seam held at the identity) and, for the replicated W̃ block and a sample term, then summed over the shards;
a V or U gradient is column-local and stays so.  Norms of V- and U-sized summands are square roots of squared sums
reduced over samples; those of W-sized summands are local (they are already totals: never reduced twice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bcd.activations import u_block_residual
from bcd.blocks import affine
from bcd.model import LOSS, Block, Term, touching
from bcd.problem import BCDState, Problem
from bcd.reduction import block_norm, block_sq, locally, over_samples, sample_dot
from theory.constants import has_proximal_term

Tensor = torch.Tensor


@dataclass(frozen=True)
class Subproblem:
    """Φ_X of one block (module docstring): the touched terms and the proximal weight ω."""

    block: str
    layer: int
    terms: tuple[Term, ...]
    omega: float
    linearised_loss: bool  # the prox-linear V_N step of Theorem 2

    @property
    def key(self) -> Block:
        return (self.block, self.layer)

    def _with(self, state: BCDState, X: Tensor) -> BCDState:
        """A shallow copy of ``state`` with this block replaced by X (no tensor is copied)."""
        out = BCDState(list(state.W), list(state.V), list(state.U), state.sweep)
        out.set(self.block, self.layer, X)
        return out

    def value(self, state: BCDState, problem: Problem, X: Tensor) -> Tensor:
        """Φ_X(X) with the other blocks at their values in ``state`` (X⁻ = the block in ``state``)."""
        old = state.get(self.block, self.layer)
        at = self._with(state, X)
        total = X.new_zeros(())
        for t in self.terms:
            if t.id == LOSS and self.linearised_loss:
                total = total + sample_dot(_grad_R(old, problem), X - old)
            else:
                total = total + t.value(at, problem)
        if self.omega:
            total = total + 0.5 * self.omega * block_sq(self.block, X - old)
        return total

    def summands(self, state: BCDState, problem: Problem, X: Tensor) -> list[Tensor]:
        """An element of ∂Φ_X(X) — the least-norm one for the nonsmooth records; for a kinked σ inside a smooth
        term (Algorithm 1's fit terms) autograd's one-sided element — as uncancelled summands: for each smooth
        touched term t, ∇t(X) − ∇t(0) and ∇t(0) (for a quadratic term ½‖AX − B‖² these are AᵀAX and −AᵀB), the
        proximal term's ωX, −ωX⁻, and for each nonsmooth term (ℓ1, an indicator, the hinge) the element s* of its
        subdifferential nearest to minus the rest (its record's ``least_norm``)."""
        old = state.get(self.block, self.layer)
        out = []
        zero = torch.zeros_like(X)
        for t in self.terms:
            if t.id == LOSS and self.linearised_loss:
                out.append(_grad_R(old, problem))
                continue
            if not t.smooth:
                continue
            g_X, g_0 = (self._term_grad(t, state, problem, Z) for Z in (X, zero))
            out += [g_X.sub_(g_0), g_0]
        if self.omega:
            out += [X.mul(self.omega), old.mul(-self.omega)]
        rough = [t for t in self.terms if not t.smooth and not (t.id == LOSS and self.linearised_loss)]
        if rough:
            at = self._with(state, X)
            G = torch.stack(out).sum(dim=0) if out else torch.zeros_like(X)
            for t in rough:
                full = t.least_norm(at, problem, G)
                out.append(full - G)
                G = full
        return out

    def _term_grad(self, t: Term, state: BCDState, problem: Problem, X: Tensor) -> Tensor:
        """∇t at X: the gradient of the local value; for W̃ (replicated) and a sample term, summed over the shards."""
        leaf = X.detach().clone().requires_grad_(True)
        with torch.enable_grad(), locally():
            (g,) = torch.autograd.grad(t.value(self._with(state, leaf), problem), leaf)
        return over_samples(g) if self.block == "W" and t.sample else g

    def solved_inexactly(self, problem: Problem) -> bool:
        """Blocks updated by an inner solver under MATH.md §7's rule: Algorithm 1's nonconvex blocks (σ nonlinear:
        W_i (i < N), V_i (i < N − 1), :mod:`bcd.inner`), and the convex blocks without a closed form
        (:mod:`bcd.prox_solvers`): W_i with a non-ridge r_i, V_i (i < N) with a nonzero s_i."""
        cfg, i = problem.config, self.layer
        if self._convex_inner(problem):
            return True
        if problem.variant != "two" or cfg.activation == "identity":
            return False
        return (self.block == "W" and i < cfg.N) or (self.block == "V" and i < cfg.N - 1)

    def _generic_inner(self, problem: Problem) -> bool:
        """An inner-solver block whose stationarity is the norm of :meth:`summands`' sum: the convex blocks of
        :mod:`bcd.prox_solvers` and Algorithm 1's nonconvex blocks that its proximal gradient solves (every one the
        piecewise Newton solver does not take, :func:`bcd.inner.applies`).  At an entry exactly on a kink of σ the
        sum holds autograd's one-sided slope: an element of the subdifferential, so its norm bounds dist(0, ∂Φ) from
        above (iterates of a gradient method reach a kink with probability zero)."""
        if self._convex_inner(problem):
            return True
        if not self.solved_inexactly(problem):
            return False
        from bcd import inner

        return not inner.applies(problem.config, self.block, self.layer)

    def _convex_inner(self, problem: Problem) -> bool:
        cfg, i = problem.config, self.layer
        if self.block == "W":
            nonlinear_two = problem.variant == "two" and i < cfg.N and cfg.activation != "identity"
            return problem.r[i].ridge is None and not nonlinear_two
        if self.block != "V" or i == cfg.N or problem.s[i].is_zero:
            return False
        # Algorithm 1: the convex V_i steps are those with σ_{i+1} = Id (i = N − 1, or σ = identity)
        return problem.variant != "two" or i == cfg.N - 1 or problem.activation.is_identity

    def eta(self, problem: Problem) -> float:
        """η of this block's stopping rule: the configured η, capped at μ_X/4 for the convex inner solvers
        (:func:`bcd.prox_solvers.block_eta`)."""
        from bcd.prox_solvers import block_eta

        cfg = problem.config
        if not self._convex_inner(problem):
            return cfg.eta
        if self.block == "W":
            return block_eta(cfg.eta, cfg.alpha)
        rho = 1.0 + cfg.alpha / cfg.gamma if problem.variant == "two" else 1.0 + problem.tau[self.layer + 1]
        return block_eta(cfg.eta, cfg.gamma * rho)  # μ of the V_i step: γρ (Algorithm 1: γ + α)

    def rule_tolerance(self, state: BCDState, problem: Problem, new: Tensor) -> float:
        """The right side of the stopping rule dist(0, ∂Φ_X(X⁺)) ≤ η_X‖X⁺ − X⁻‖.  For the convex inner blocks it is
        floored at √eps·Σ‖summands‖ (the accuracy every closed-form block is held to): a solve that reaches the exact
        minimiser with X⁺ = X⁻ meets the rule (:func:`bcd.prox_solvers._mfista` stops there, on a smaller floor)."""
        old = state.get(self.block, self.layer)
        tol = self.eta(problem) * float(block_norm(self.block, new - old))
        if self._generic_inner(problem):
            norms = [float(block_norm(self.block, p)) for p in self.summands(state, problem, new)]
            scale = sum(x for x in norms if math.isfinite(x))  # an infinite part (off a set) must not lift the floor
            from verification.tolerance import residual_tol  # the one definition of that accuracy

            tol = max(tol, residual_tol(new.dtype) * scale)
        return tol

    def stationarity(self, state: BCDState, problem: Problem, new: Tensor) -> float:
        """dist(0, ∂Φ_X(X⁺)): the least-norm subgradient of an inner-solver block's subproblem (:mod:`bcd.inner`;
        for the convex inner blocks, the norm of :meth:`summands`' sum, whose nonsmooth part is the records' exact
        least-norm element)."""
        from bcd.inner import stationarity_V, stationarity_W

        cfg, i = problem.config, self.layer
        if self._generic_inner(problem):
            return float(block_norm(self.block, torch.stack(self.summands(state, problem, new)).sum(dim=0)))
        old = state.get(self.block, i)
        if self.block == "W":
            st = stationarity_W(new, state.V[i], state.V[i - 1], old, gamma=cfg.gamma, alpha=cfg.alpha,
                                lam=problem.r[i].ridge,
                                activation=cfg.activation)
        else:
            S = problem.sigma(i, affine(state.W[i], state.V[i - 1]))
            st = stationarity_V(new, S, state.V[i + 1], state.W[i + 1], old, gamma=cfg.gamma, alpha=cfg.alpha,
                                activation=cfg.activation)
        return st.norm  # whole-block, over every sample shard (bcd.inner, "Sharding")

    def residual(self, state: BCDState, problem: Problem, new: Tensor) -> Tensor:
        """Relative optimality residual of ``new`` (0-d tensor; module docstring)."""
        if self.block == "U" and self.layer < problem.config.N and problem.variant != "two" \
                and not problem.activation.is_identity:
            cfg = problem.config
            a = problem.u_target(state, self.layer)
            P = affine(state.W[self.layer], state.V[self.layer - 1])
            return u_block_residual(new, a, None, (cfg.gamma + cfg.alpha) / cfg.gamma, problem.activation,
                                    m_parts=(P, state.U[self.layer], cfg.gamma, cfg.alpha))
        parts = self.summands(state, problem, new)
        total = torch.stack([block_norm(self.block, p) for p in parts]).sum()
        r = block_norm(self.block, torch.stack(parts).sum(dim=0))
        out = torch.where(total > 0, r / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(r))
        # a candidate off an indicator's set (least-norm element +∞) or a NaN iterate is not a minimiser: +∞, never
        # NaN (which the checks would read as "not recorded")
        return torch.where(torch.isfinite(out), out, torch.full_like(out, math.inf))


def _grad_R(V_N: Tensor, problem: Problem) -> Tensor:
    """∇R at V_N (the loss record's gradient)."""
    return problem.loss.grad(V_N, problem.Y, problem.c)


def subproblem_for(problem: Problem, block: str, layer: int) -> Subproblem:
    """The subproblem of block (``block``, ``layer``) in the problem's variant."""
    key = (block, layer)
    if key not in problem.variables:
        allowed = ", ".join(f"{b}{i}" for b, i in problem.variables)
        raise ValueError(f"{block}{layer} is not a block of the {problem.variant!r} variant; its blocks are {allowed}")
    cfg = problem.config
    omega = cfg.alpha if has_proximal_term(problem.variant, block, layer, cfg.N) else 0.0
    linear = block == "V" and layer == cfg.N and cfg.vn_update == "prox_linear"
    return Subproblem(block, layer, touching(problem.terms, key), omega, linear)
