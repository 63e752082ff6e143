"""Recycled block storage for sweeps that hooks listen to.

With no hook listening, the steps of :mod:`bcd.schedule` write every new n-sized block into storage the engine owns
(the replaced block's, or the problem's scratch buffer).  With a hook listening they cannot: the hook reads the old
block and the published product P after the step, and may keep them until a later step of the sweep (the recorder
holds V_i⁻ until the U_i step).  Every such step used to allocate fresh d_i×n tensors, which on the CPU come from
``mmap`` above 32 MiB and are page-faulted in afresh: 27 allocations of 288 MB per sweep of MNIST 10×600 at full size.

:class:`BlockPool` keeps the few tensors the engine has let go of (replaced blocks, spent products) and hands one
back to a step only when **nothing else refers to it**: neither the tensor object (Python's reference count) nor its
storage (a view, counted by torch).  A tensor a hook still holds is never reused; the pool only ever returns
storage that would otherwise have been freed, so it changes no value and no bit (tests/test_engine_descent.py).
Where torch does not expose the storage use count the pool stays empty and every step allocates as before.

For hooks this means: a block a hook is shown may later come back, as the same Python object with new values, as
another block or product; a hook that wants old values keeps the tensor (or a view), never only its ``id``.  The pool
belongs to one :class:`bcd.problem.Problem` and is not thread-safe (as its scratch buffer is not); the engine empties
it when a run ends.
"""

from __future__ import annotations

import sys

import torch

Tensor = torch.Tensor

_use_count = getattr(torch._C, "_storage_Use_Count", None)  # a private torch function: absent → no recycling


def _storage_users(t: Tensor) -> int:
    """Strong references to ``t``'s storage (one per tensor sharing it, views included), plus one for the storage
    object made here."""
    return _use_count(t.untyped_storage()._cdata)


def _object_refs(t: Tensor) -> int:
    """Python references to the tensor object ``t``, with those of this call (what they add is calibrated below)."""
    return sys.getrefcount(t)


def _held_only_by_a_list() -> tuple[int, int]:
    """Both counts for a tensor that only a list holds, seen exactly as :meth:`BlockPool.take` sees its entries
    (the interpreter's own references differ between Python versions and builds: measured, not assumed)."""
    free = [torch.empty(1)]
    t = free[0]
    return _object_refs(t), _storage_users(t)


_LONE_REFS, _LONE = _held_only_by_a_list() if _use_count is not None else (-1, -1)


class BlockPool:
    """At most ``keep`` released tensors; :meth:`take` returns one of the asked shape that nothing else refers to.

    The pool keeps only tensors of a kind (shape, dtype, device) that some step has asked for, and when full lets the
    oldest go.  So the output layer's d_N×n blocks, released at the start of a sweep but never asked for, do not push
    out the hidden blocks that the next hidden layer's steps take."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._free: list[Tensor] = []
        self._asked: set[tuple] = set()  # the kinds take() has been asked for
        self.reused = 0  # tensors handed back out (for tests and benchmarks)

    @staticmethod
    def _kind(shape: tuple[int, ...], like: Tensor) -> tuple:
        return tuple(shape), like.dtype, like.device

    def give(self, t: Tensor | None) -> None:
        """Offer ``t``, which the engine no longer needs (a hook may still hold it: :meth:`take` checks).  Views,
        strided tensors, memory torch does not own (``torch.from_numpy``: a user's array) and kinds no step has asked
        for are not taken."""
        if _use_count is None or t is None or t._base is not None or not t.is_contiguous() \
                or not t.untyped_storage().resizable() or self._kind(t.shape, t) not in self._asked:
            return
        if any(f is t for f in self._free):
            return
        self._free.append(t)
        if len(self._free) > self.keep:
            del self._free[0]  # the oldest: freed now if nothing else holds it

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
        """A released tensor of ``shape`` with ``like``'s dtype and device that only the pool refers to, else None
        (the caller allocates)."""
        kind = self._kind(shape, like)
        self._asked.add(kind)
        for j in range(len(self._free)):
            t = self._free[j]  # held by the list and t: nothing else holds it at the calibrated counts
            if self._kind(t.shape, t) == kind and _object_refs(t) == _LONE_REFS and _storage_users(t) == _LONE:
                del self._free[j]
                self.reused += 1
                return t
        return None

    def clear(self) -> None:
        self._free.clear()
        self._asked.clear()
