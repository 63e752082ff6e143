"""The records of one BCD problem and its iterate, and the initial iterate.

:class:`Problem` holds the (already validated) data and the resolved constants γ, α, λ, c and σ;
:class:`BCDState` is the iterate Q = (W, V, U); :func:`init_weights` and :func:`initial_state` build Q⁰.
User arrays are validated and turned into a :class:`Problem` by :func:`bcd.inputs.make_problem`.

Index convention: lists are indexed by the paper's layer index i = 1..N; slot 0 holds
V_0 := X (fixed) and ``None`` for W_0, U_0.  Samples are columns: X ∈ R^{d_0×n}, Y ∈ R^{d_N×n}.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from bcd.activations import Activation
from bcd.blocks import affine, augmented_gram, loss_scale
from bcd.buffers import BlockPool
from bcd.config import BCDConfig
from bcd.losses import Loss
from bcd.model import Term, skips, terms_for, variable_blocks, variant_name
from bcd.reduction import over_samples
from bcd.regularisers import penalised

Tensor = torch.Tensor
BLOCKS = ("W", "V", "U")


@dataclass
class BCDState:
    """The iterate Q^k: W̃_i, V_i, U_i for i = 1..N (V[0] is X)."""

    W: list[Tensor | None]
    V: list[Tensor]
    U: list[Tensor | None]
    sweep: int = 0

    @property
    def N(self) -> int:
        return len(self.W) - 1

    def get(self, block: str, i: int) -> Tensor:
        return getattr(self, block)[i]

    def set(self, block: str, i: int, value: Tensor) -> None:
        getattr(self, block)[i] = value

    def blocks(self):
        """Yield (block, i, tensor) over every variable block in a fixed order."""
        for i in range(1, self.N + 1):
            for b in BLOCKS:
                t = self.get(b, i)
                if t is not None:
                    yield b, i, t

    def clone(self) -> BCDState:
        def c(xs):
            return [None if x is None else x.clone() for x in xs]

        return BCDState(c(self.W), [self.V[0], *c(self.V[1:])], c(self.U), self.sweep)


@dataclass
class Problem:
    """Data (samples as columns) plus the resolved constants γ, α, λ, c and the catalogue records R, σ, r_i, s_i."""

    X: Tensor
    Y: Tensor
    config: BCDConfig
    labels: Tensor | None = None
    X_test: Tensor | None = None
    labels_test: Tensor | None = None
    activation: Activation = field(init=False)
    loss: Loss = field(init=False)
    r: list = field(init=False)  # r_i records, r[i] for layer i (slot 0 unused)
    s: list = field(init=False)  # s_i records on V_i
    c: float = field(init=False)
    gram_X: Tensor = field(init=False)
    variant: str = field(init=False)
    tau: tuple[int, ...] = field(init=False)
    terms: tuple[Term, ...] = field(init=False)
    _scratch: Tensor | None = field(init=False, default=None, repr=False)
    pool: BlockPool = field(init=False, default_factory=BlockPool, repr=False)  # blocks a listened-to sweep let go

    def __post_init__(self) -> None:
        count = torch.tensor(float(self.n), dtype=torch.float64, device=self.X.device)
        self._n_total = int(over_samples(count).item())
        self.activation = self.config.activation_record
        self.loss = self.config.loss_record
        self.r = [None, *self.config.r_records]
        self.s = [None, *self.config.s_records]
        self.c = loss_scale(self.config.reduction, self.n_total)
        self.gram_X = augmented_gram(self.X)  # Ṽ_0Ṽ_0ᵀ is constant: computed once
        self.variant = variant_name(self.config)
        self.tau = skips(self.config, self.widths)  # τ_0..τ_N of the ResNet variant (all 0 otherwise)
        self.terms = terms_for(self.config, self.widths)

    @property
    def variables(self) -> tuple[tuple[str, int], ...]:
        """The variable blocks (block, i) of this problem's variant."""
        return variable_blocks(self.variant, self.config.N)

    @property
    def n(self) -> int:
        """Samples held here (this shard's columns)."""
        return self.X.shape[1]

    @property
    def n_total(self) -> int:
        """Samples over every shard (the n of the mean reduction's c = 1/n), summed through the reduction seam once,
        when the problem is built (a property that hid a collective would be a trap for rank-0-only code)."""
        return self._n_total

    @property
    def widths(self) -> tuple[int, ...]:
        """(d_0, d_1, ..., d_N)."""
        return (self.X.shape[0], *self.config.hidden, self.Y.shape[0])

    def sigma(self, i: int, U: Tensor, out: Tensor | None = None) -> Tensor:
        """σ_i(U): the hidden activation for i < N, the identity for i = N (written into ``out`` when given)."""
        if out is None:
            return U if i == self.config.N else self.activation.apply(U)
        return out.copy_(U) if i == self.config.N else self.activation.apply_into(U, out)

    def scratch(self, rows: int, cols: int) -> Tensor:
        """A rows×cols work buffer reused from step to step (grown when needed): the temporaries of a step that runs
        with no hook listening (``aux is None``), which nobody else reads.  Never returned as a block."""
        need = rows * cols
        if self._scratch is None or self._scratch.numel() < need:
            self._scratch = torch.empty(need, dtype=self.X.dtype, device=self.X.device)
        return self._scratch[:need].view(rows, cols)

    def u_target(self, state: BCDState, i: int) -> Tensor:
        """a_i = V_i − τ_iV_{i-1}: what σ_i(U_i) is pulled towards in the act term (V_i itself without a skip)."""
        return state.V[i] - state.V[i - 1] if self.tau[i] else state.V[i]

    def layer_output(self, i: int, P: Tensor, h_prev: Tensor) -> Tensor:
        """The forward pass of layer i from its pre-activation P = W̃_iṼ_{i-1}: σ_i(P) (+ h_{i-1} with a skip)."""
        out = self.sigma(i, P)
        return out + h_prev if self.tau[i] else out


# --------------------------------------------------------------------------- initialisation


def init_weights(config: BCDConfig, widths: tuple[int, ...]) -> list[Tensor]:
    """W̃_1..W̃_N on the CPU from ``config.seed`` (device-independent, deterministic).

    ``authors``: Ŵ ~ 0.01·N(0,1), b = 0.1 (the authors' experiments);
    ``kaiming``: Ŵ ~ N(0, 2/d_{i-1}), b = 0.
    """
    gen = torch.Generator().manual_seed(config.seed)
    dtype = getattr(torch, config.dtype)
    Ws = []
    for d_in, d_out in itertools.pairwise(widths):
        W = torch.empty(d_out, d_in + 1, dtype=torch.float64)
        W[:, :-1] = torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
        if config.init == "authors":
            W[:, :-1] *= 0.01
            W[:, -1] = 0.1
        else:
            W[:, :-1] *= (2.0 / d_in) ** 0.5
            W[:, -1] = 0.0
        Ws.append(W.to(dtype))
    return Ws


def initial_state(problem: Problem, weights: list | None = None) -> BCDState:
    """Q⁰: the given (or freshly drawn) weights, and U_i = W̃_iṼ_{i-1}, V_i = σ_i(U_i) (+ V_{i-1} on a skip
    layer) from a forward pass; the two-splitting has no U blocks (``U`` holds ``None``).  Where r_i or s_i is an
    indicator, W̃_i or V_i is projected onto its set, so that L̄(Q⁰) is finite."""
    cfg = problem.config
    widths = problem.widths
    dtype, device = problem.X.dtype, problem.X.device
    if weights is None:
        weights = init_weights(cfg, widths)
    if len(weights) != cfg.N:
        raise ValueError(f"got {len(weights)} initial weight matrices; this network has N={cfg.N} layers")
    W: list[Tensor | None] = [None]
    for i, w in enumerate(weights, start=1):
        w = torch.as_tensor(np.asarray(w) if not isinstance(w, torch.Tensor) else w)
        expected = (widths[i], widths[i - 1] + 1)
        if tuple(w.shape) != expected:
            raise ValueError(
                f"initial W{i} has shape {tuple(w.shape)}; expected {expected} "
                "(d_i × (d_(i-1)+1), the bias as the last column)"
            )
        w = w.to(dtype=dtype, device=device).clone()
        if problem.r[i].indicator:  # start feasible: the projection onto r_i's set (of Ŵ_i alone without reg_bias)
            view = penalised(w, cfg.reg_bias)
            view.copy_(problem.r[i].prox(view, 1.0))
        W.append(w)
    V: list[Tensor] = [problem.X]
    U: list[Tensor | None] = [None]
    for i in range(1, cfg.N + 1):
        P = affine(W[i], V[i - 1])
        S = problem.layer_output(i, P, V[i - 1])
        S = S.clone() if S is P else S  # V_N = U_N: separate tensors
        V.append(problem.s[i].prox(S, 1.0) if problem.s[i].indicator else S)  # feasible for s_i's set
        U.append(None if problem.variant == "two" else P)
    return BCDState(W, V, U)
