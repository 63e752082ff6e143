"""The model as data: which blocks are variables, and the objective as a declared sum of terms.

A *variant* of the paper (MATH.md §2, §7, §8) is the list of its variable blocks and the list of
the terms of its objective.  Each :class:`Term` states its trace column (``id``), the blocks it
depends on, a label, and its value.  Objective evaluation (:mod:`bcd.objective`), the trace's term
columns, the report's labels and heatmaps and the recorder's per-block decreases all iterate over
this list, so a new variant adds terms instead of editing every consumer.

* ``three`` (Algorithm 2):  L̄ = R(V_N;Y) + Σ r_i(W̃_i) + Σ s_i(V_i)
  + γ/2 Σ_i (‖V_i − σ_i(U_i)‖² + ‖U_i − W̃_iṼ_{i-1}‖²).
* ``resnet`` (Algorithm 3): as ``three`` with the act term ‖V_i − τ_iV_{i-1} − σ_i(U_i)‖², τ_i = 1 on
  the layers with a skip connection (d_i = d_{i-1}).
* ``two`` (Algorithm 1):    L = R(V_N;Y) + Σ r_i + Σ s_i + γ/2 Σ_i ‖V_i − σ_i(W̃_iṼ_{i-1})‖²  (no U blocks).

Sample terms (loss, act, aff, fit, and s_i on V_i) are sums over samples and pass through
:func:`bcd.reduction.over_samples`; r_i on the replicated W̃_i is not.  R, σ, r_i and s_i are catalogue records
(:mod:`bcd.catalogue`); a term whose function is not differentiable (ℓ1, an indicator, the hinge) carries its
``least_norm``: the least-norm element of G + ∂t(X) for the one block X it acts on.  Terms are built from the
configuration and the widths alone (no tensors), so the reports can read the labels of a saved run without its data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from bcd.blocks import affine
from bcd.reduction import SampleNorms, over_samples, sample_norm, sample_sq

if TYPE_CHECKING:  # the problem module imports this one
    from bcd.config import BCDConfig
    from bcd.problem import BCDState, Problem

Tensor = torch.Tensor
Block = tuple[str, int]  # ("W" | "V" | "U", the paper's layer index i = 1..N)

LOSS = "loss"
OBJECTIVE = "objective"
VARIANTS = ("three", "resnet", "two")


def act_term(i: int) -> str:
    """Column name of γ/2‖V_i − τ_iV_{i-1} − σ_i(U_i)‖² (three-splitting, ResNet)."""
    return f"act_gap_{i}"


def aff_term(i: int) -> str:
    """Column name of γ/2‖U_i − W̃_iṼ_{i-1}‖² (three-splitting, ResNet)."""
    return f"aff_gap_{i}"


def fit_term(i: int) -> str:
    """Column name of γ/2‖V_i − σ_i(W̃_iṼ_{i-1})‖² (two-splitting)."""
    return f"fit_gap_{i}"


def reg_term(i: int) -> str:
    """Column name of r_i(W̃_i) (λ/2‖W̃_i‖² for the ridge)."""
    return f"reg_{i}"


def sreg_term(i: int) -> str:
    """Column name of s_i(V_i)."""
    return f"sreg_{i}"


SAMPLE_KINDS = ("loss", "act", "aff", "fit", "sreg")  # terms that are sums over samples (MATH.md §10)


@dataclass(frozen=True)
class Term:
    """One summand of the objective.

    ``id`` is its trace column; ``blocks`` the variable blocks it depends on (V_0 = X is data, never
    listed); ``label`` plain text for tables; ``gap`` mathtext of what sits inside its norm (the
    report's heatmap rows); ``value(state, problem)`` a 0-d tensor on the problem's device.

    ``rounding(state, problem, value, block, norm)`` → (E, G), the sizes its floating-point rounding scales with
    (verification/tolerance.py, "Block noise"): the computed ``value`` is within about eps·E of the exact value at the
    stored iterates (beyond the eps·|value| of its reductions), and its computed gradient in ``block`` within about
    eps·G.  For a term coef/2‖R‖², R formed from operands of total size s (a product W̃Ṽ counted as ‖W̃‖‖Ṽ‖):
    E = coef·‖R‖·s and G = coef·J·s, J a bound of ‖∂R/∂block‖ (E counts only the operands that change with
    the block: below).  r_i and s_i are separable in the entries of their one block: E = 0 (their rounding is within
    eps·|value|) and G = ‖least-norm subgradient‖ (λ‖Ŵ_i‖ for the ridge on the weights).  ``norm(t)`` gives the
    sample norm ‖t‖ (``norm.sq(t)``: ‖t‖²) of an n-sized tensor, an iterate, X or Y, never a W
    (:class:`bcd.reduction.SampleNorms`: the caller shares it between the terms and the two states of one step, so
    each tensor's norm is computed once)."""

    id: str
    kind: str  # "loss" | "act" | "aff" | "fit" | "reg" | "sreg"
    layer: int
    blocks: frozenset[Block]
    label: str
    gap: str
    value: Callable[[BCDState, Problem], Tensor]
    rounding: Callable[[BCDState, Problem, Tensor, Block, SampleNorms], tuple[Tensor, Tensor]]  # see above
    least_norm: Callable[[BCDState, Problem, Tensor], Tensor] | None = None  # nonsmooth: G ↦ G + s*, s* ∈ ∂t
    tex_full: str = ""

    @property
    def smooth(self) -> bool:
        return self.least_norm is None

    @property
    def sample(self) -> bool:
        """A sum over samples (reduced through the seam); r_i on W̃_i is replicated."""
        return self.kind in SAMPLE_KINDS

    def depends_on(self, block: Block) -> bool:
        return block in self.blocks

    @property
    def tex(self) -> str:
        """The whole term in mathtext, e.g. γ/2‖V_2 − σ_2(U_2)‖² (a legend label)."""
        if self.tex_full:
            return self.tex_full
        if self.kind == "loss":
            return rf"${self.gap}$"
        weight = r"\lambda" if self.kind == "reg" else r"\gamma"
        return rf"$\frac{{{weight}}}{{2}}\|{self.gap}\|^2$"

    @property
    def is_gap(self) -> bool:
        """A splitting penalty (act, aff or fit term): what the report's gap heatmap shows."""
        return self.kind in ("act", "aff", "fit")


def variant_name(config: BCDConfig) -> str:
    """``two`` | ``three`` | ``resnet`` (three-splitting with skip connections)."""
    if config.splitting == "two":
        return "two"
    return "resnet" if config.skip != "none" else "three"


def skips(config: BCDConfig, widths: tuple[int, ...]) -> tuple[int, ...]:
    """τ_0..τ_N: τ_i = 1 when layer i has a skip connection V_i = V_{i-1} + σ_i(U_i) + (gap).

    ``skip="auto"``: every layer with d_i = d_{i-1} (MATH.md §8), V_0 = X included; ``"none"``: no skips."""
    N = len(widths) - 1
    if config.skip == "none":
        return (0,) * (N + 1)
    return (0, *(int(widths[i] == widths[i - 1]) for i in range(1, N + 1)))


def variable_blocks(variant: str, N: int) -> tuple[Block, ...]:
    """The variable blocks of a variant, layer by layer (W̃_i, V_i[, U_i])."""
    kinds = ("W", "V") if variant == "two" else ("W", "V", "U")
    return tuple((b, i) for i in range(1, N + 1) for b in kinds)


def _v(i: int) -> frozenset[Block]:
    """{V_i} when V_i is a variable (i ≥ 1), else ∅ (V_0 = X is data)."""
    return frozenset({("V", i)}) if i >= 1 else frozenset()


def terms_for(config: BCDConfig, widths: tuple[int, ...]) -> tuple[Term, ...]:
    """The terms of the configured variant's objective, in trace-column order."""
    N = len(widths) - 1
    variant = variant_name(config)
    tau = skips(config, widths)
    loss = config.loss_record
    out = [Term(LOSS, "loss", N, frozenset({("V", N)}), "R(V_N; Y)", "R(V_N;Y)", _loss_value, _loss_rounding,
                None if loss.smooth else _loss_least_norm)]
    for i in range(1, N + 1):
        if variant == "two":
            out.append(Term(fit_term(i), "fit", i, frozenset({("V", i), ("W", i)}) | _v(i - 1),
                            f"γ/2‖V_{i} − σ_{i}(W̃_{i}Ṽ_{i-1})‖²",
                            rf"V_{{{i}}} - \sigma_{{{i}}}(\tilde W_{{{i}}}\tilde V_{{{i - 1}}})", _fit_value(i),
                            _fit_rounding(i)))
        else:
            skip = tau[i] == 1
            act_blocks = frozenset({("V", i), ("U", i)}) | (_v(i - 1) if skip else frozenset())
            prev, prev_tex = (f" − V_{i - 1}", rf" - V_{{{i - 1}}}") if skip else ("", "")
            out.append(Term(act_term(i), "act", i, act_blocks, f"γ/2‖V_{i}{prev} − σ_{i}(U_{i})‖²",
                            rf"V_{{{i}}}{prev_tex} - \sigma_{{{i}}}(U_{{{i}}})", _act_value(i, skip),
                            _act_rounding(i, skip)))
            out.append(Term(aff_term(i), "aff", i, frozenset({("U", i), ("W", i)}) | _v(i - 1),
                            f"γ/2‖U_{i} − W̃_{i}Ṽ_{i-1}‖²", rf"U_{{{i}}} - \tilde W_{{{i}}}\tilde V_{{{i - 1}}}",
                            _aff_value(i), _aff_rounding(i)))
        out += _regulariser_terms(config, i)
    return tuple(out)


def _regulariser_terms(config: BCDConfig, i: int) -> list[Term]:
    """r_i on W̃_i (Ŵ_i only when ``reg_bias`` is false) and s_i on V_i, when they are not zero."""
    out = []
    r, s = config.r_records[i - 1], config.s_records[i - 1]
    if not r.is_zero:
        target = "W̃" if config.reg_bias else "Ŵ"
        tex_target = r"\tilde W" if config.reg_bias else r"\hat W"
        if r.ridge is not None and config.reg_bias:
            label, tex_full = f"λ/2‖W̃_{i}‖²", ""
        else:
            label, tex_full = f"r_{i}({target}_{i}) = {r.spec}", rf"$r_{{{i}}}({tex_target}_{{{i}}})$"
        out.append(Term(reg_term(i), "reg", i, frozenset({("W", i)}), label, rf"{tex_target}_{{{i}}}",
                        _reg_value(i), _reg_rounding(i), None if r.smooth else _reg_least_norm(i),
                        tex_full))
    if not s.is_zero:
        out.append(Term(sreg_term(i), "sreg", i, frozenset({("V", i)}), f"s_{i}(V_{i}) = {s.spec}", f"V_{{{i}}}",
                        _sreg_value(i), _sreg_rounding(i), None if s.smooth else _sreg_least_norm(i),
                        rf"$s_{{{i}}}(V_{{{i}}})$"))
    return out


def term_names(config: BCDConfig, widths: tuple[int, ...]) -> list[str]:
    """The trace columns of the objective's terms."""
    return [t.id for t in terms_for(config, widths)]


def touching(terms: tuple[Term, ...], block: Block) -> tuple[Term, ...]:
    """The terms that depend on ``block`` (what one update of that block can change)."""
    return tuple(t for t in terms if block in t.blocks)


# ---------------------------------------------------------------- term values


def _loss_value(state: BCDState, problem: Problem) -> Tensor:
    return over_samples(problem.loss.value(state.V[state.N], problem.Y, problem.c))


def _loss_least_norm(state: BCDState, problem: Problem, G: Tensor) -> Tensor:
    return problem.loss.least_norm(state.V[state.N], G, problem.Y, problem.c)


# The three n-sized terms form their residual in the problem's scratch buffer (free between steps: a quiet step's
# product never outlives its step, and a listened-to step does not use it), so evaluating L̄ allocates nothing n-sized
# (it faulted in some 40 blocks' worth of fresh memory per evaluation of MNIST 10×600); where autograd records (an
# input requires grad), in new tensors.  The residual is σ(U) − V rather than V − σ(U) (and so on): negation is exact,
# so the squared sums are the same bits.


def _scratch(problem: Problem, shape: torch.Size, *inputs: Tensor) -> Tensor | None:
    """The problem's scratch buffer for an n-sized residual, or None while autograd records through ``inputs``."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return None
    return problem.scratch(*shape)


def _act_value(i: int, skip: bool) -> Callable:
    def value(state: BCDState, problem: Problem) -> Tensor:
        U, V = state.U[i], state.V[i]
        buf = _scratch(problem, U.shape, U, V, state.V[i - 1])
        A = problem.sigma(i, U, out=buf)
        A = A.sub_(V) if buf is not None else A - V  # −(V_i − σ(U_i))
        if skip:
            A = A.add_(state.V[i - 1]) if buf is not None else A + state.V[i - 1]
        return 0.5 * problem.config.gamma * sample_sq(A)

    return value


def _aff_value(i: int) -> Callable:
    def value(state: BCDState, problem: Problem) -> Tensor:
        U, W, V_prev = state.U[i], state.W[i], state.V[i - 1]
        buf = _scratch(problem, U.shape, U, W, V_prev)
        E = affine(W, V_prev, out=buf)
        E = E.sub_(U) if buf is not None else E - U  # −(U_i − W̃_iṼ_{i-1})
        return 0.5 * problem.config.gamma * sample_sq(E)

    return value


def _fit_value(i: int) -> Callable:
    def value(state: BCDState, problem: Problem) -> Tensor:
        V, W, V_prev = state.V[i], state.W[i], state.V[i - 1]
        buf = _scratch(problem, V.shape, V, W, V_prev)
        fit = problem.sigma(i, affine(W, V_prev, out=buf), out=buf)
        fit = fit.sub_(V) if buf is not None else fit - V  # −(V_i − σ_i(W̃_iṼ_{i-1}))
        return 0.5 * problem.config.gamma * sample_sq(fit)

    return value


def penalised(W: Tensor, config: BCDConfig) -> Tensor:
    """The part of W̃_i that r_i acts on (:func:`bcd.regularisers.penalised` with the config's ``reg_bias``)."""
    from bcd.regularisers import penalised as view

    return view(W, config.reg_bias)


def _reg_value(i: int) -> Callable:
    def value(state: BCDState, problem: Problem) -> Tensor:
        return problem.r[i].value(penalised(state.W[i], problem.config))

    return value


def _reg_least_norm(i: int) -> Callable:
    def least_norm(state: BCDState, problem: Problem, G: Tensor) -> Tensor:
        out = G.clone()
        view = penalised(out, problem.config)
        view.copy_(problem.r[i].least_norm(penalised(state.W[i], problem.config), view))
        return out

    return least_norm


def _sreg_value(i: int) -> Callable:
    def value(state: BCDState, problem: Problem) -> Tensor:
        return over_samples(problem.s[i].value(state.V[i]))

    return value


def _sreg_least_norm(i: int) -> Callable:
    def least_norm(state: BCDState, problem: Problem, G: Tensor) -> Tensor:
        return problem.s[i].least_norm(state.V[i], G)

    return least_norm


# ---------------------------------------------------------------- rounding sizes (Term.rounding)
# What each term's computed value and gradient are formed from, for the recorder's block noise on its generic path
# (verification/tolerance.py, "Block noise").  Iterates are stored numbers, and a difference or an elementwise σ is
# rounded relative to its own result (within the eps·|value| of the |L̄| tolerance): only a product W̃Ṽ (by about
# eps·‖W̃‖‖Ṽ‖, normwise) and σ(U) (by eps·|σ(U)|) round by more.  In a block's decrease t(X⁻) − t(X⁺) an operand that
# does not depend on the block is computed twice from the same numbers, so its rounding cancels to first order, up to
# ‖R⁻ − R⁺‖ ≤ J‖Δ‖ times its size: that is within the ‖Δ‖·G part.  E counts the operands that change with the block.


def augmented_norm(V_sq: Tensor, n_total: int) -> Tensor:
    """‖Ṽ‖ = (‖V‖² + n)^½ from ‖V‖²: Ṽ = [V; 1ᵀ] adds a row of n ones."""
    return (V_sq + n_total).sqrt()


def _tilde_norm(state: BCDState, problem: Problem, i: int, norm: SampleNorms) -> Tensor:
    """‖Ṽ_i‖ at the state (V_0 = X)."""
    return augmented_norm(norm.sq(state.V[i]), problem.n_total)


def _max_bound(t: Tensor) -> Tensor:
    """An upper bound of max |t| over every shard, within (numel)^(1/16) of it: ‖t‖₁₆ = ‖t‖·‖t/‖t‖‖₁₆, in float64
    and scaled (the 16th powers neither overflow nor, short of entries 10⁻¹⁹ of ‖t‖, underflow; no max-reduction
    through the seam); ‖t‖ itself where that fails."""
    t = t.double()
    size = sample_sq(t).sqrt()
    bound = size * over_samples((t / size.clamp_min(torch.finfo(t.dtype).tiny)).pow(16).sum()).pow(1.0 / 16)
    return torch.where(torch.isfinite(bound) & (bound > 0), bound, size)


def _lipschitz_on_bounded_sets_only(problem: Problem, i: int) -> bool:
    """Whether σ_i has no global Lipschitz constant (a polynomial hidden σ; σ_N is the identity)."""
    return i != problem.config.N and not math.isfinite(problem.activation.lipschitz(None))


def _sigma_extra(problem: Problem, i: int, lip: float, arg_size: Callable[[], Tensor], numel: int) -> Tensor | float:
    """What σ_i's evaluation rounds by beyond eps·|σ|: 0 for the catalogue's σ with a global Lipschitz constant
    (elementwise, relative); for a polynomial (Horner with mixed signs), eps·Σ_k|c_k||u|^k ≤ eps(|σ(0)| + L_B|u|)
    per entry: |σ(0)|·√numel + L_B·‖argument‖ (``arg_size()``, asked for only then)."""
    if not _lipschitz_on_bounded_sets_only(problem, i):
        return 0.0
    zero = float(problem.activation.apply(torch.zeros(1, dtype=torch.float64)))
    return abs(zero) * math.sqrt(numel) + lip * arg_size()


def _sigma_lipschitz(problem: Problem, i: int, bound: Callable[[], Tensor]) -> float:
    """L of σ_i: 1 at the output layer (σ_N = identity), else the activation's constant on all of ℝ where it exists,
    or on [−B, B], B = ``bound()`` ≥ max |argument|, for a σ Lipschitz on bounded sets alone (a polynomial)."""
    if i == problem.config.N:
        return 1.0
    if _lipschitz_on_bounded_sets_only(problem, i):
        return problem.activation.lipschitz(float(bound()))
    return problem.activation.lipschitz(None)


def _residual_norm(value: Tensor, coef: float) -> Tensor:
    """‖R‖ of a term coef/2‖R‖² from its computed value."""
    return (2.0 * value.clamp_min(0.0) / coef).sqrt()


def _aff_rounding(i: int) -> Callable:
    def rounding(state: BCDState, problem: Problem, value: Tensor, block: Block,
                 norm: SampleNorms) -> tuple[Tensor, Tensor]:
        """R = U_i − W̃_iṼ_{i-1}: the product rounds by ‖W̃_i‖‖Ṽ_{i-1}‖ (it changes with W̃_i and V_{i-1}, not U_i);
        the gradient's operands (the step's products with U_i too) s = ‖W̃_i‖‖Ṽ_{i-1}‖ + ‖U_i‖, J = ‖Ṽ_{i-1}‖ (W̃_i),
        1 (U_i), ‖W̃_i‖ (V_{i-1})."""
        g = problem.config.gamma
        nW, nV = torch.linalg.vector_norm(state.W[i]), _tilde_norm(state, problem, i - 1, norm)
        product = nW * nV
        E = g * _residual_norm(value, g) * product if block[0] != "U" else torch.zeros_like(product)
        jac = {"W": nV, "U": 1.0, "V": nW}[block[0]]
        return E, g * jac * (product + norm(state.U[i]))

    return rounding


def _act_rounding(i: int, skip: bool) -> Callable:
    def rounding(state: BCDState, problem: Problem, value: Tensor, block: Block,
                 norm: SampleNorms) -> tuple[Tensor, Tensor]:
        """R = σ(U_i) − V_i (+ V_{i-1}): σ(U_i) rounds by ‖σ(U_i)‖ ≤ ‖R‖ + ‖V_i‖ (+ ‖V_{i-1}‖) (it changes with U_i),
        and with a skip the partial difference σ(U_i) − V_i by its size ≤ ‖R‖ + ‖V_{i-1}‖ (with U_i and V_i); the
        gradient's operands s = ‖σ(U_i)‖ + ‖V_i‖ (+ ‖V_{i-1}‖), J = L_σ (U_i), 1 (V_i, V_{i-1})."""
        g, U = problem.config.gamma, state.U[i]
        r, nV = _residual_norm(value, g), norm(state.V[i])
        nV_prev = norm(state.V[i - 1]) if skip else torch.zeros_like(r)
        lip = _sigma_lipschitz(problem, i, lambda: _max_bound(U))
        sigma = r + nV + nV_prev + _sigma_extra(problem, i, lip, lambda: norm(U), U.shape[0] * problem.n_total)
        partial = r + nV_prev if skip else torch.zeros_like(r)
        var = {("U", i): sigma + partial, ("V", i): partial}.get(block, torch.zeros_like(r))
        jac = lip if block[0] == "U" else 1.0
        return g * r * var, g * jac * (sigma + nV + nV_prev)

    return rounding


def _fit_rounding(i: int) -> Callable:
    def rounding(state: BCDState, problem: Problem, value: Tensor, block: Block,
                 norm: SampleNorms) -> tuple[Tensor, Tensor]:
        """R = σ_i(W̃_iṼ_{i-1}) − V_i: the product's rounding through σ, L_σ‖W̃_i‖‖Ṽ_{i-1}‖, and σ's own,
        ‖σ(·)‖ ≤ ‖R‖ + ‖V_i‖ (both change with W̃_i and V_{i-1}, not V_i); the gradient's operands s = those and
        ‖V_i‖, J = L_σ‖Ṽ_{i-1}‖ (W̃_i), 1 (V_i), L_σ‖W̃_i‖ (V_{i-1})."""
        g = problem.config.gamma
        W, nW, nV = state.W[i], torch.linalg.vector_norm(state.W[i]), _tilde_norm(state, problem, i - 1, norm)

        def arg_bound() -> Tensor:  # |(W̃Ṽ)_kj| ≤ max_k ‖W̃_k,:‖ · max_j ‖Ṽ_:,j‖
            cols = (torch.linalg.vector_norm(state.V[i - 1], dim=0).square() + 1.0).sqrt()
            return torch.linalg.vector_norm(W, dim=1).amax() * _max_bound(cols)

        lip = _sigma_lipschitz(problem, i, arg_bound)
        r, nVi = _residual_norm(value, g), norm(state.V[i])
        formed = lip * nW * nV + r + nVi + _sigma_extra(problem, i, lip, lambda: nW * nV, W.shape[0] * problem.n_total)
        E = g * r * formed if block != ("V", i) else torch.zeros_like(r)
        jac = {"W": lip * nV, "V": 1.0 if block[1] == i else lip * nW}[block[0]]
        return E, g * jac * (formed + nVi)

    return rounding


def _loss_rounding(state: BCDState, problem: Problem, value: Tensor, block: Block,
                   norm: SampleNorms) -> tuple[Tensor, Tensor]:
    """R(V_N; Y): E from the loss record (0 where each summand is rounded relative to itself: squared, logistic; the
    cancelling sums of cross-entropy, the hinge's 1 − ỹv); the gradient's operands s = ‖V_N‖ + ‖Y‖ with J = L_R, or c
    where ∇R is not Lipschitz (the hinge)."""
    V, c = state.V[state.N], problem.c
    lip = problem.loss.lipschitz(c)
    size = norm(V) + norm(problem.Y)
    return over_samples(problem.loss.rounding(V, problem.Y, c)), (c if lip is None else lip) * size


def _reg_rounding(i: int) -> Callable:
    def rounding(state: BCDState, problem: Problem, value: Tensor, block: Block,
                 norm: SampleNorms) -> tuple[Tensor, Tensor]:
        """r_i(W̃_i): E = 0, G = ‖least-norm element of ∂r_i‖ at the penalised part of W̃_i."""
        W = penalised(state.W[i], problem.config)
        g = torch.linalg.vector_norm(problem.r[i].least_norm(W, torch.zeros_like(W)))
        return torch.zeros_like(g), g

    return rounding


def _sreg_rounding(i: int) -> Callable:
    def rounding(state: BCDState, problem: Problem, value: Tensor, block: Block,
                 norm: SampleNorms) -> tuple[Tensor, Tensor]:
        """s_i(V_i): E = 0, G = ‖least-norm element of ∂s_i(V_i)‖."""
        V = state.V[i]
        g = sample_norm(problem.s[i].least_norm(V, torch.zeros_like(V)))
        return torch.zeros_like(g), g

    return rounding
