"""The one seam for sums over samples (MATH.md §10).

Every quantity that couples samples is a sum over the columns of X: the Grams Ṽ_{i-1}Ṽ_{i-1}ᵀ and cross
products U_iṼ_{i-1}ᵀ of the W steps, every sample term of the objective (the loss and the splitting
gaps), and the accuracy counts.  Each of them is formed from the local columns and then passed through
:func:`over_samples`.  In one process that is the identity; a sample-sharded engine (one process per block
of columns, W replicated) installs a :class:`Reduction` whose ``sum_`` all-reduces in place, and then gets the
same iterates as one process up to the summation order.  Nothing else in Algorithms 2 and 3 needs to change;
Algorithm 1's piecewise Newton solver also gathers and broadcasts (the last paragraph).

The recorder goes through it too, keeping squared sums until after the reduction (a norm of an n-sized block is
``sample_norm`` = √(over_samples(local ‖·‖²)); W-sized quantities, and products that already came through the seam
(Grams, cross products), are replicated and never reduced again): ‖ΔX‖² and the block norms of V and U (so dQ_sq,
the norm columns and B), ‖X̃‖, the squared norms of the V, U components of g^k, every inner product and squared
norm of an n-sized block in the fast path's decreases and exactness residuals (numerators and scales, the five
squared sums of :func:`bcd.activations.u_block_residual`, the W̃_1 sketch's EX̃ᵀZ), the train-accuracy count, and
the run's n (the descent constants, the trace's meta).  The generic path's subproblems (:mod:`bcd.subproblems`):
the prox and linearised-loss terms of a value; the residual summands, each term's gradient taken of its local value
(:func:`locally`) and for W̃ and a sample term then summed over shards, and their norms; the V stationarity and the
rule tolerance of an inner-solver block.

The generic path's g^k (:func:`verification.subgradient.least_norm_subgradient`): each sample term's gradient is
taken of its local value and, for W̃, summed over shards; the two-splitting's coupled kink QP forms EṼᵀ, ‖R_V‖²,
‖Ṽ‖₂² and its Frank–Wolfe gap through the seam.

Algorithm 1's ReLU inner solvers (:mod:`bcd.inner`, the piecewise Newton solver) use the seam in two ways.  Their
V_i problems are one per column, so each shard solves its own columns and only the solver's whole-block scalars (the
stopping rule's two norms, the values, the kink counts, "did any column still decrease") go through
:func:`over_samples`.  A W̃_i problem (one per row) is coupled over samples by more than sums: its exact line search
minimises a piecewise quadratic with a breakpoint from every sample, and its held-kink Schur complement and
sample-space piece step couple the samples of a row pairwise.  So its two n-sized operands are gathered
(:func:`gather_samples`: O(n·(d_{i-1} + d_i)) memory per shard for the duration of that step), every shard solves the
same full problem, and :func:`replicate_` makes the result bit-identical on every shard.  Exact, but without the
sharding's saving for those blocks: the memory check counts the gathered operands, but not the solve's working set,
which is a single process's on all n samples on every rank (its sample-space path builds up to n×n matrices).
The audit of saved iterates (:mod:`verification.audit`) reads whole iterates in one process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

Tensor = torch.Tensor


class Reduction:
    """Sum over every sample shard, in place.  The base class is the single-process identity."""

    def sum_(self, t: Tensor) -> Tensor:
        return t

    def gather(self, t: Tensor) -> Tensor:
        """The columns (samples) of ``t`` from every shard, in shard order: the whole n-sized tensor."""
        return t

    def broadcast_(self, t: Tensor) -> Tensor:
        """``t`` replaced in place by the first shard's copy (a replicated tensor computed on every shard)."""
        return t


_active: Reduction = Reduction()


def over_samples(t: Tensor) -> Tensor:
    """``t`` summed over all sample shards (in place; the identity in one process)."""
    return _active.sum_(t)


def gather_samples(t: Tensor) -> Tensor:
    """All n columns of an n-sized tensor (samples as columns), from every shard in order (itself in one process).
    Only for the blocks that couple samples by more than sums (:mod:`bcd.inner`'s W̃ step): O(n) memory per shard."""
    return _active.gather(t)


def replicate_(t: Tensor) -> Tensor:
    """A W-sized result that every shard computed from the same gathered inputs, made bit-identical on every shard
    (the first shard's copy, in place): replication must not rest on every rank rounding alike."""
    return _active.broadcast_(t)


@contextlib.contextmanager
def using(reduction: Reduction) -> Iterator[Reduction]:
    """Route every sum over samples through ``reduction`` inside the ``with`` block."""
    global _active
    previous, _active = _active, reduction
    try:
        yield reduction
    finally:
        _active = previous


# ---------------------------------------------------------------- norms: n-sized (sharded) versus W-sized (replicated)
# V_i and U_i blocks (and anything formed column by column from them, X and Y included) are n-sized: each shard holds
# its own columns, and a squared norm or an inner product is a sum over samples.  W̃_i blocks, and every product that
# already went through the seam (Grams, cross products), are replicated: summing them again would count them K times.


def sq(t: Tensor) -> Tensor:
    """‖t‖² of a replicated (W-sized) tensor, or of a local part: never reduced."""
    return torch.linalg.vector_norm(t).square()


def norm(t: Tensor) -> Tensor:
    """‖t‖ of a replicated (W-sized) tensor, or of a local part: never reduced."""
    return torch.linalg.vector_norm(t)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """⟨a, b⟩ of two replicated (W-sized) tensors: never reduced."""
    return torch.vdot(a.reshape(-1), b.reshape(-1))


def sample_sq(t: Tensor) -> Tensor:
    """‖t‖² of an n-sized tensor (samples as columns), summed over every shard."""
    return over_samples(torch.linalg.vector_norm(t).square())


def sample_norm(t: Tensor) -> Tensor:
    """‖t‖ of an n-sized tensor: the square root of the squared sum, taken after the reduction."""
    return sample_sq(t).sqrt()


class SampleNorms:
    """:func:`sample_sq` and :func:`sample_norm` memoised by tensor object (``norm(t)``, ``norm.sq(t)``), for a span
    in which no tensor it sees changes in place (one block step's two states share every block but the updated one).
    Each distinct n-sized tensor costs one pass and one reduction.  Which calls hit depends on tensor identity, so the
    reductions pair up across shards because every rank builds its states by the same code (an update that returns
    its old block decides so from reduced values, alike on every rank).  The returned 0-d tensors are shared between
    callers: never modify them in place (nor hand them to :func:`over_samples`, which sums in place)."""

    def __init__(self) -> None:
        # id → (the tensor, kept alive so that its id is not reused; ‖t‖²; ‖t‖)
        self._memo: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def _entry(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hit = self._memo.get(id(t))
        if hit is None:
            s = sample_sq(t)
            hit = self._memo[id(t)] = (t, s, s.sqrt())
        return hit

    def sq(self, t: Tensor) -> Tensor:
        return self._entry(t)[1]

    def __call__(self, t: Tensor) -> Tensor:
        return self._entry(t)[2]


def sample_dot(a: Tensor, b: Tensor) -> Tensor:
    """⟨a, b⟩ of two n-sized tensors, summed over every shard."""
    return over_samples(torch.vdot(a.reshape(-1), b.reshape(-1)))


def block_sq(block: str, t: Tensor) -> Tensor:
    """‖t‖² of a tensor shaped like block ``block``: over every shard for V and U (n-sized), local for W."""
    return sq(t) if block == "W" else sample_sq(t)


def block_norm(block: str, t: Tensor) -> Tensor:
    """‖t‖ of a tensor shaped like block ``block`` (:func:`block_sq`, square root after the reduction)."""
    return block_sq(block, t).sqrt()


@contextlib.contextmanager
def locally() -> Iterator[Reduction]:
    """Sums over samples stay local (the identity reduction) inside the ``with`` block: for the local part of a
    sum whose reduction the caller does itself (e.g. autograd of a term's value with respect to a replicated W)."""
    with using(Reduction()) as reduction:
        yield reduction
