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
"""

from __future__ import annotations

import sys

import torch

Tensor = torch.Tensor

_use_count = getattr(torch._C, "_storage_Use_Count", None)  # a private torch function: absent → no recycling


def _storage_users(t: Tensor) -> int:
    """Tensors (views included) sharing ``t``'s storage, plus one for the storage object made here."""
    return _use_count(t.untyped_storage()._cdata)


def _object_refs(t: Tensor) -> int:
    """Python references to the tensor object ``t``, plus two (this call's argument and getrefcount's)."""
    return sys.getrefcount(t)


_LONE = _storage_users(torch.empty(1)) if _use_count is not None else -1  # a tensor that nothing else shares


class BlockPool:
    """At most ``keep`` released tensors; :meth:`take` returns one of the asked shape that nothing else refers to."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._free: list[Tensor] = []
        self.reused = 0  # tensors handed back out (for tests and benchmarks)

    def give(self, t: Tensor | None) -> None:
        """Offer ``t``, which the engine no longer needs (a hook may still hold it: :meth:`take` checks)."""
        if _use_count is None or t is None or t._base is not None or not t.is_contiguous():
            return
        if any(f is t for f in self._free):
            return
        self._free.append(t)
        if len(self._free) > self.keep:
            del self._free[0]  # the oldest: freed now if nothing else holds it

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
        """A released tensor of ``shape`` with ``like``'s dtype and device that only the pool refers to, else None
        (the caller allocates)."""
        for j in range(len(self._free)):
            t = self._free[j]  # references: the list and t, so nothing else holds it at 2 + 2
            if t.shape == shape and t.dtype == like.dtype and t.device == like.device \
                    and _object_refs(t) <= 4 and _storage_users(t) == _LONE:
                del self._free[j]
                self.reused += 1
                return t
        return None

    def clear(self) -> None:
        self._free.clear()
