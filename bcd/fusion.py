"""Elementwise passes compiled into one kernel on the CPU (``BCD_FUSE``).

Eager torch runs every elementwise operation as a pass of its own over memory: the engine's U_i prox (its centre,
two branch tests, a division, a clamp, a select: :func:`bcd.blocks.u_prox_piece`) and the recorder's layer sums
(:func:`verification.fast_path.layer_sums`) each cost about four times the read of their operands
(``benchmarks/bench_layer_pass.py``, ``benchmarks/bench_engine.py --fuse off,on``).  ``torch.compile`` of the *same*
Python function fuses them into one loop; nothing is written twice.  The compile costs seconds once per process and
configuration (γ, α, the activation; inductor's on-disk cache keeps later processes at 2–5 s), so ``auto`` compiles
only for layers large enough to repay it.  CUDA runs eager (one whole-matrix piece: its kernels are bandwidth-bound
already).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

from bcd.activations import chunk_size

Tensor = torch.Tensor

FUSE_ENTRIES = 1 << 23  # a CPU pass this large runs fused under "auto" (benchmarks/bench_layer_pass.py)
FUSE_CHUNK = 1 << 20  # entries per call of a compiled pass: its 8 MB outputs are reused, not page-faulted in afresh
FUSE_MODES = ("auto", "on", "off")
_compiled: dict[Callable, Callable | None] = {}  # per pass function: compiled, or None once compiling failed


def fuse_mode() -> str:
    """``BCD_FUSE``: whether the elementwise passes of a layer run as one compiled kernel each (``torch.compile``)
    instead of eager blocks — ``auto`` (default) where the layer has at least ``FUSE_ENTRIES`` entries on this rank, on
    the CPU (the compile, seconds once per process and configuration, pays off on long runs of that size), ``on`` for
    every CPU layer, ``off`` never.  A value not in ``FUSE_MODES`` is a ValueError naming it."""
    mode = os.environ.get("BCD_FUSE", "auto").strip().lower() or "auto"
    if mode not in FUSE_MODES:
        raise ValueError(f"BCD_FUSE={os.environ['BCD_FUSE']!r} is not allowed; give one of {', '.join(FUSE_MODES)}")
    return mode


def _aliased(args: tuple) -> bool:
    """Whether two tensor arguments share storage.  torch 2.13's compiled code can write into the wrong argument when
    the aliasing among its arguments changes from one call to the next (``tests/test_fusion.py`` shows it), so such
    a call runs eagerly."""
    ptrs = [a.untyped_storage().data_ptr() for a in args if isinstance(a, Tensor)]
    return len(set(ptrs)) < len(ptrs)


def pass_function(fn: Callable, mode: str, like: Tensor) -> tuple[Callable, int]:
    """(``fn``, :func:`bcd.activations.chunk_size`) or, where ``mode`` asks for it for a layer like ``like``, its
    compiled form and ``FUSE_CHUNK``: the entries per call.  The caller calls it on pieces of about that many entries,
    so that a compiled call's outputs stay below glibc's largest mmap threshold and are reused instead of
    page-faulted in afresh, and an eager call's temporaries stay in cache.

    A compile that fails (e.g. no C++ compiler) warns once and ``fn`` runs from then on: the failed call is repeated
    eagerly (compile errors come before any kernel runs, so the arguments are as given); if the eager call fails too,
    its own error is raised and the compiled form is kept.  A call whose tensor arguments share storage runs eagerly
    (:func:`_aliased`).  Floats (γ, α as arguments, an activation's slope as an attribute of one) are compiled in as
    constants, one graph per value (``specialize_float``; past torch's recompile limit of 8 graphs the pass runs
    eagerly): left symbolic, torch 2.13's compiled code computed with a value of an earlier call
    (``tests/test_fusion.py``)."""
    eager = (fn, chunk_size(like))
    if like.device.type != "cpu" or mode == "off" or (mode == "auto" and like.numel() < FUSE_ENTRIES):
        return eager
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=True)
    if _compiled[fn] is None:
        return eager

    def run(*args):
        fused = _compiled[fn]
        if fused is None or _aliased(args):
            return fn(*args)
        try:
            with torch._dynamo.config.patch(specialize_float=True):
                return fused(*args)
        except Exception as exc:  # a compiler failure, unless fn fails eagerly too (then that error is fn's own)
            result = fn(*args)
            _compiled[fn] = None
            first = (str(exc).strip().splitlines() or [""])[0]
            warnings.warn(f"BCD_FUSE: compiling {fn.__name__} failed ({type(exc).__name__}: {first}); "
                          "running it eagerly", RuntimeWarning, stacklevel=2)
            return result

    return run, FUSE_CHUNK
