"""The one seam for sums over samples (MATH.md §10).

Every quantity that couples samples is a sum over the columns of X: the Grams Ṽ_{i-1}Ṽ_{i-1}ᵀ and cross
products U_iṼ_{i-1}ᵀ of the W steps, every sample term of the objective (the loss and the splitting
gaps), and the accuracy counts.  Each of them is formed from the local columns and then passed through
:func:`over_samples`.  In one process that is the identity; a sample-sharded engine (one process per block
of columns, W replicated) installs a :class:`Reduction` whose ``sum_`` all-reduces in place, and then gets the
same iterates as one process up to the summation order.  Nothing else in the engine needs to change.

Not yet through the seam: the recorder's in-stream formulas and the generic path's autograd residuals
(they form norms of n-sized blocks directly); a sharded recorder must route those squared sums here too.
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


_active: Reduction = Reduction()


def over_samples(t: Tensor) -> Tensor:
    """``t`` summed over all sample shards (in place; the identity in one process)."""
    return _active.sum_(t)


@contextlib.contextmanager
def using(reduction: Reduction) -> Iterator[Reduction]:
    """Route every sum over samples through ``reduction`` inside the ``with`` block."""
    global _active
    previous, _active = _active, reduction
    try:
        yield reduction
    finally:
        _active = previous
