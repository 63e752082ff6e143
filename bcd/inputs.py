"""Validation and ingestion of user data: the arrays given to :func:`make_problem` become a :class:`Problem`.

It checks that ``X`` (and ``X_test``) are finite 2-D real or integer arrays, that the targets ``y`` are
integer labels (one-hot encoded here) or finite real targets with one row per sample, that the numbers of
samples and features match, and that the requested device exists.  Samples are **rows** in the API (the
NumPy convention) and become **columns** here, once, as the paper and the engine have them.  Bad input
raises :class:`ValueError` naming the offending value and what is allowed.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch

from bcd.config import BCDConfig
from bcd.envvars import env_positive
from bcd.problem import Problem

Tensor = torch.Tensor


def _as_matrix(name: str, a, dtype: torch.dtype) -> Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array with samples as rows; got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:  # every other dtype numpy gives is a real floating or integer one
        raise ValueError(f"{name} has dtype {t.dtype}; allowed: a real floating or integer dtype")
    t = t.to(dtype)
    bad = ~torch.isfinite(t)
    if bad.any():
        r, c = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{name} contains NaN/Inf (first at row {r}, column {c}); all values must be finite")
    return t


def make_problem(
    X,
    y,
    config: BCDConfig,
    *,
    X_test=None,
    y_test=None,
    n_classes: int | None = None,
) -> Problem:
    """Validate the data and build a :class:`Problem` (:func:`problem_inputs`, then the problem, whose constants
    — the sample count, the Gram of X — are sums over samples through the reduction seam)."""
    return Problem(**problem_inputs(X, y, config, X_test=X_test, y_test=y_test, n_classes=n_classes))


def problem_inputs(
    X,
    y,
    config: BCDConfig,
    *,
    X_test=None,
    y_test=None,
    n_classes: int | None = None,
) -> dict:
    """Validate the data and return the :class:`Problem`'s fields, with no sum over samples (so that a sharded run
    can agree on every rank's validation before the first collective).

    ``X``: (n, d_0), **samples as rows** (the NumPy convention; transposed once to columns here).
    ``y``: integer labels of shape (n,) (one-hot targets, accuracy reported) or real targets of
    shape (n, d_N) (regression, e.g. a teacher network's outputs).
    """
    dtype = getattr(torch, config.dtype)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available here; allowed: cpu")
    Xr = _as_matrix("X", X, dtype)
    n = _samples("X", Xr)
    ya = y if isinstance(y, torch.Tensor) else np.asarray(y)
    if ya.ndim == 1 and ya.size and not (ya.dtype.is_floating_point if isinstance(ya, torch.Tensor)
                                         else np.issubdtype(ya.dtype, np.floating)):
        k = n_classes if n_classes is not None else int(ya.max()) + 1  # before the one-hot Y is allocated
        check_memory(config, (Xr.shape[1], *config.hidden, min(max(k, 1), MAX_CLASSES)), n, device)
    labels, Y = _targets("y", y, n, n_classes, dtype)
    n_out = Y.shape[1]
    check_memory(config, (Xr.shape[1], *config.hidden, n_out), n, device)
    labels_test = X_test_c = None
    if X_test is not None:
        Xt = _as_matrix("X_test", X_test, dtype)
        _samples("X_test", Xt)
        if Xt.shape[1] != Xr.shape[1]:
            raise ValueError(f"X_test has {Xt.shape[1]} features but X has {Xr.shape[1]}; they must match")
        if y_test is None:
            raise ValueError("X_test was given without y_test")
        lt, _Yt = _targets("y_test", y_test, Xt.shape[0], n_out if labels is not None else None, dtype)
        if labels is None or lt is None:
            raise ValueError("test data needs integer labels (accuracy is only defined for classification)")
        labels_test, X_test_c = lt.to(device), Xt.T.contiguous().to(device)
    return dict(
        X=Xr.T.contiguous().to(device),
        Y=Y.T.contiguous().to(device),
        config=config,
        labels=None if labels is None else labels.to(device),
        X_test=X_test_c,
        labels_test=labels_test,
    )


def _samples(name: str, t: Tensor) -> int:
    """The number of samples (rows) of ``t``, at least one."""
    if t.shape[0] == 0:
        raise ValueError(f"{name} has no samples (shape {tuple(t.shape)}); give at least one row")
    return t.shape[0]


def _targets(name: str, y, n: int, n_classes: int | None, dtype: torch.dtype):
    try:
        t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not numeric (dtype {np.asarray(y).dtype}); give integer labels or real "
                         "targets") from None
    if t.ndim == 0 or t.shape[0] != n:
        raise ValueError(f"{name} has {0 if t.ndim == 0 else t.shape[0]} samples but X has {n}; they must match")
    if t.ndim == 2 and torch.is_floating_point(t):
        return None, _as_matrix(name, t, dtype)
    if t.ndim != 1 or torch.is_floating_point(t):
        raise ValueError(
            f"{name} must be integer labels of shape (n,) or real targets (n, d_N); got {t.dtype} {tuple(t.shape)}"
        )
    t = t.to(torch.int64)
    k = int(t.max()) + 1 if n_classes is None else n_classes
    lo, hi = int(t.min()), int(t.max())
    if lo < 0:
        raise ValueError(f"{name} has labels in [{lo}, {hi}]; labels are the integers 0..K-1 of K classes (>= 0)")
    if hi >= k:
        raise ValueError(f"{name} has labels in [{lo}, {hi}]; allowed: 0..{k - 1} for {k} classes")
    if k > MAX_CLASSES:
        raise ValueError(f"{name} has a label {hi}, i.e. {k} classes (one output row each); at most {MAX_CLASSES} "
                         "classes are allowed — labels must be 0..K-1")
    Y = torch.zeros(n, k, dtype=dtype)
    Y[torch.arange(n), t] = 1.0
    return t, Y


MAX_CLASSES = 100_000


def memory_limit_gib() -> float | None:
    """``BCD_MEMORY_LIMIT_GB`` (checked), or None when it is unset."""
    return env_positive("BCD_MEMORY_LIMIT_GB", None, "GiB")


def memory_limit(device: torch.device) -> int:
    """Bytes a run may plan to hold: ``BCD_MEMORY_LIMIT_GB`` if set, else the device's memory (physical memory on the
    CPU, the GPU's total on CUDA)."""
    gib = memory_limit_gib()
    if gib is not None:
        return int(min(gib, 2.0**32) * 2**30)  # beyond 4 EiB: no limit that any machine reaches
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def state_bytes(config: BCDConfig, widths: tuple[int, ...], n: int) -> int:
    """Bytes of a run's state for n samples: the V and U blocks (d_i × n each, two per layer for the three-splitting,
    one for the two-splitting), X, Y and the weights, in ``config.dtype``."""
    item = torch.finfo(getattr(torch, config.dtype)).bits // 8
    per_layer = 1 if config.splitting == "two" else 2
    state = n * (widths[0] + widths[-1] + per_layer * sum(widths[1:])) \
        + sum(d * (d_prev + 1) for d_prev, d in itertools.pairwise(widths))
    return state * item


def ranks_sharing_memory(device: torch.device) -> int:
    """How many ranks of a sharded run hold their state in this device's memory: on the CPU every rank on this
    machine (``LOCAL_WORLD_SIZE``, set by ``--nproc`` and torchrun), on CUDA one (each rank has its own GPU)."""
    from bcd.distributed import launcher

    launch = launcher()
    return 1 if device.type == "cuda" or launch is None else launch.local_world


def gathered_bytes(config: BCDConfig, widths: tuple[int, ...], n_total: int) -> int:
    """Bytes that one shard of a sharded run gathers at once: the two n-sized operands Ṽ_{i-1}, V_i of a piecewise
    Newton W̃_i step (:mod:`bcd.inner`, "Sharding"), the largest over those blocks; 0 without such blocks.  The
    solve's working set on those operands is not counted (it is not counted for one process either; its sample-space
    path can build n×n matrices, on every rank)."""
    from bcd.inner import newton_blocks

    item = torch.finfo(getattr(torch, config.dtype)).bits // 8
    layers = [int(b[1:]) for b in newton_blocks(config) if b.startswith("W")]
    return max([(widths[i - 1] + widths[i]) * n_total * item for i in layers], default=0)


def check_memory(config: BCDConfig, widths: tuple[int, ...], n: int, device: torch.device) -> None:
    """Refuse, before anything n-sized is allocated, a state that cannot fit (:func:`state_bytes` of this process's
    n samples plus what it gathers, :func:`gathered_bytes`, times the ranks that share this memory in a sharded
    run)."""
    from bcd.distributed import launched, launched_world

    ranks = ranks_sharing_memory(device)
    world = launched_world() if launched() else 1
    gathered = gathered_bytes(config, widths, world * n) if world > 1 else 0
    need, limit = ranks * (state_bytes(config, widths, n) + gathered), memory_limit(device)
    if need > limit:
        each = f" ({ranks} ranks on this machine, {need / ranks / 2**30:.1f} GiB each)" if ranks > 1 else ""
        what = "its state and the Newton W̃ steps' gathered operands" if gathered else "its state"
        raise ValueError(f"this run needs about {need / 2**30:.1f} GiB for {what}{each} (widths {list(widths)}, "
                         f"n = {n}{' per rank' if ranks > 1 else ''}, {config.dtype}) but {limit / 2**30:.1f} GiB "
                         f"are available on {device.type} (BCD_MEMORY_LIMIT_GB); use fewer samples (--n-train), "
                         "narrower layers, float32" + (" or fewer ranks" if ranks > 1 else ""))


def labels(name: str, y, n: int, n_classes: int) -> Tensor:
    """Integer labels 0..n_classes−1 of n samples (for the accuracy), validated as the targets of
    :func:`make_problem` are: a ValueError names the value and what is allowed."""
    t, _ = _targets(name, y, n, n_classes, torch.float64)
    if t is None:
        raise ValueError(f"{name} holds real targets; the accuracy needs integer labels of shape ({n},)")
    return t
