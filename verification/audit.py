"""Audit mode: verify iterates produced by *any* implementation of the three-splitting objective.

Input directory ``DIR``:

* one file per sweep, ``*.npz`` or ``*.safetensors`` (sorted by name; the first is Q⁰), with keys
  ``W1..WN`` (augmented, bias last column, d_i×(d_{i-1}+1)), ``V1..VN``, ``U1..UN`` (d_i×n, samples
  as columns);
* ``data.npz``: ``X`` (n×d_0, samples as rows) and ``Y`` (n×d_N targets) and/or ``y`` (n labels;
  one-hot targets when ``Y`` is absent, accuracy when present);
* hyperparameters in ``audit.toml`` (``gamma``, ``alpha``, optional ``lam``, ``activation``,
  ``reduction``, ``vn_update``) or as overrides (the CLI flags).

From a notebook, after each sweep k (and once before the first, k = 0)::

    np.savez(f"audit/iter_{k:04d}.npz", **{f"{b}{i}": arr for (b, i), arr in blocks.items()})
    # blocks[("W", i)] = np.hstack([W_i, b_i[:, None]]), blocks[("V", i)] = V_i, blocks[("U", i)] = U_i

then ``bcd audit audit/ --gamma 1 --alpha 5`` (with ``data.npz`` holding X and Y or y).

For every iterate: the faithful L̄ and all its terms (:func:`bcd.objective.objective_terms`),
‖ΔQ‖², block norms and B, and an algorithm-independent stationarity measure, the norm of the
least-norm element of the limiting subdifferential ∂L̄(Q) (:func:`least_norm_subgradient`).  The
result is a :class:`Trace` with ``meta["source"] = "audit"``; its block table holds per-block ‖Δ‖²
and ‖least-norm component‖ but no decreases (the update order of the other implementation is not
known), so per-update checks are inconclusive on it by construction.

The subdifferential and its least-norm element: :mod:`verification.subgradient`.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bcd.config import ACTIVATIONS, REDUCTIONS, VN_UPDATES, BCDConfig
from bcd.objective import accuracy, objective_terms
from bcd.problem import BCDState, Problem
from bcd.rundir import atomic_write, write_text
from bcd.schedule import schedule_for
from theory.constants import RunConstants, iterate_bound
from verification import schema as S  # noqa: N812
from verification.subgradient import definition as g_definition
from verification.subgradient import least_norm_subgradient
from verification.trace import Trace

Tensor = torch.Tensor
DATA_FILE = "data.npz"
AUDIT_TOML = "audit.toml"
SUFFIXES = (".npz", ".safetensors")
HYPERPARAMETERS: dict[str, type] = {
    "gamma": float, "alpha": float, "lam": float, "activation": str, "reduction": str, "vn_update": str,
}


# --------------------------------------------------------------------------- reading a directory


def iterate_files(directory: str | Path) -> list[Path]:
    """The per-sweep files of an audit directory, sorted by name (the data file excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"audit directory {str(directory)!r} does not exist")
    files = sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.name != DATA_FILE and p.is_file())
    if not files:
        raise ValueError(f"{str(directory)!r} holds no iterate files (*.npz or *.safetensors besides {DATA_FILE})")
    return files


def load_iterate(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


def read_hyperparameters(directory: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``audit.toml`` (if present) updated by the non-None ``overrides``; gamma and alpha are required."""
    hp: dict[str, Any] = {}
    toml = directory / AUDIT_TOML
    if toml.is_file():
        with toml.open("rb") as fh:
            hp = tomllib.load(fh)
        unknown = set(hp) - set(HYPERPARAMETERS)
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in {toml}; allowed: {', '.join(HYPERPARAMETERS)}")
    hp.update({k: v for k, v in (overrides or {}).items() if v is not None})
    missing = [k for k in ("gamma", "alpha") if k not in hp]
    if missing:
        raise ValueError(f"the audit needs {' and '.join(missing)} (in {AUDIT_TOML} or as --{missing[0]})")
    for key, allowed in (("activation", ACTIVATIONS), ("reduction", REDUCTIONS), ("vn_update", VN_UPDATES)):
        if key in hp and hp[key] not in allowed:
            raise ValueError(f"{key}={hp[key]!r} is not supported; allowed: {', '.join(allowed)}")
    return hp


def _read_data(directory: Path):
    path = directory / DATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing: the audit needs X (n×d_0) and Y (n×d_N) or y (n)")
    with np.load(path, allow_pickle=False) as z:
        if "X" not in z.files or not ({"Y", "y"} & set(z.files)):
            raise ValueError(f"{path} has arrays {z.files}; it needs X and Y (targets) or y (labels)")
        X = np.asarray(z["X"], dtype=np.float64)
        Y = np.asarray(z["Y"], dtype=np.float64) if "Y" in z.files else None
        y = np.asarray(z["y"]) if "y" in z.files else None
    if X.ndim != 2:
        raise ValueError(f"X in {path} has shape {X.shape}; expected (n, d_0), samples as rows")
    for name, a, nd in (("Y", Y, 2), ("y", y, 1)):
        if a is not None and (a.ndim != nd or a.shape[0] != X.shape[0]):
            raise ValueError(f"{name} in {path} has shape {a.shape}; expected {X.shape[0]} samples as rows")
    return X, Y, y


def _to_state(arrays: dict[str, np.ndarray], path: Path, widths: tuple[int, ...], n: int, X: Tensor) -> BCDState:
    """The iterate of one file as a BCDState on X's device and dtype, every shape checked."""
    N = len(widths) - 1
    W, V, U = [None], [X], [None]
    for i in range(1, N + 1):
        for key, shape, dest in ((f"W{i}", (widths[i], widths[i - 1] + 1), W), (f"V{i}", (widths[i], n), V),
                                 (f"U{i}", (widths[i], n), U)):
            if key not in arrays:
                raise ValueError(f"{path.name} has no array {key!r}; every file needs W1..W{N}, V1..V{N}, U1..U{N}")
            a = arrays[key]
            if tuple(a.shape) != shape:
                raise ValueError(f"{path.name}: {key} has shape {tuple(a.shape)}; expected {shape} "
                                 "(W: d_i×(d_(i-1)+1) with the bias last; V, U: d_i×n, samples as columns)")
            dest.append(torch.as_tensor(np.asarray(a)).to(dtype=X.dtype, device=X.device))
    return BCDState(W, V, U)


def _widths(arrays: dict[str, np.ndarray], path: Path, d0: int) -> tuple[int, ...]:
    N = 0
    while f"W{N + 1}" in arrays:
        N += 1
    if N < 2:
        raise ValueError(f"{path.name} holds {N} weight matrices (W1, W2, ...); the audit needs N >= 2 layers")
    return (d0, *(int(arrays[f"W{i}"].shape[0]) for i in range(1, N + 1)))


# --------------------------------------------------------------------------- the audit


def audit(directory: str | Path, overrides: dict[str, Any] | None = None, *,
          device: str = "cpu", dtype: str = "float64") -> Trace:
    """Read an audit directory and return its :class:`Trace` (one sweep row per iterate file)."""
    directory = Path(directory)
    files = iterate_files(directory)
    hp = read_hyperparameters(directory, overrides)
    X_rows, Y_rows, y = _read_data(directory)
    n, d0 = X_rows.shape
    first = load_iterate(files[0])
    widths = _widths(first, files[0], d0)
    cfg = BCDConfig(hidden=widths[1:-1], sweeps=len(files) - 1, device=device, dtype=dtype,
                    **{k: HYPERPARAMETERS[k](v) for k, v in hp.items()})
    tdtype = getattr(torch, dtype)
    dev = torch.device(device)
    X = torch.as_tensor(X_rows.T.copy(), dtype=tdtype, device=dev)
    labels = None if y is None else torch.as_tensor(y.astype(np.int64), device=dev)
    if Y_rows is not None:
        Y = torch.as_tensor(Y_rows.T.copy(), dtype=tdtype, device=dev)
    else:
        if labels.min() < 0 or labels.max() >= widths[-1]:
            raise ValueError(f"labels y lie in [{int(labels.min())}, {int(labels.max())}]; "
                             f"allowed: 0..{widths[-1] - 1} for d_N = {widths[-1]} outputs")
        Y = torch.nn.functional.one_hot(labels, widths[-1]).T.to(tdtype).contiguous()
    if Y.shape != (widths[-1], n):
        raise ValueError(f"targets Y have shape {tuple(Y.T.shape)}; expected ({n}, {widths[-1]}) to match W{cfg.N}")
    problem = Problem(X=X, Y=Y, config=cfg, labels=labels)
    consts = RunConstants(cfg, problem.widths, problem.n)
    order = {(s.block, s.layer): j for j, s in enumerate(schedule_for(cfg.splitting, cfg.N))}
    rows, blocks = [], []
    prev: BCDState | None = None
    B = cum_dq = cum_g_sq = 0.0
    norm_X_tilde = math.sqrt(float(torch.linalg.vector_norm(X).square()) + n)  # ‖X̃‖ = ‖[X; 1ᵀ]‖
    for k, path in enumerate(files):
        state = _to_state(first if k == 0 else load_iterate(path), path, widths, n, X)
        state.sweep = k
        terms = objective_terms(state, problem)
        g_all = least_norm_subgradient(state, problem)
        g = g_all.parts
        keys = [(b, i) for b, i, _ in state.blocks()]
        stats = [torch.linalg.vector_norm(g[key]).square() for key in keys]
        stats += [torch.linalg.vector_norm(t) for _, _, t in state.blocks()]
        if prev is not None:
            stats += [torch.linalg.vector_norm(state.get(b, i) - prev.get(b, i)).square() for b, i in keys]
        host = torch.stack(stats).cpu().tolist()
        m = len(keys)
        g_sq, norms, d_sq = host[:m], host[m:2 * m], host[2 * m:]
        row: dict[str, Any] = {S.SWEEP: k, S.INSTRUMENTED: True, S.OBJECTIVE: terms[S.OBJECTIVE]}
        row.update({t.id: terms[t.id] for t in problem.terms})
        row[S.TRAIN_ACC] = accuracy(state.W, X, labels, problem) if labels is not None else math.nan
        row[S.TEST_ACC] = math.nan
        row[S.DECREASE] = rows[-1][S.OBJECTIVE] - row[S.OBJECTIVE] if rows else math.nan
        row[S.DQ_SQ] = sum(d_sq) if prev is not None else math.nan
        row[S.G_NORM] = math.sqrt(sum(g_sq))
        row[S.G_NORM_LOWER] = math.sqrt(max(float(g_all.lower_sq), 0.0))
        for b, col in (("W", S.NORM_W_MAX), ("V", S.NORM_V_MAX), ("U", S.NORM_U_MAX)):
            row[col] = max((v for (bb, _), v in zip(keys, norms, strict=True) if bb == b), default=math.nan)
        B = max(B, iterate_bound(row[S.NORM_W_MAX], row[S.NORM_V_MAX], row[S.NORM_U_MAX], n, norm_X_tilde))
        row[S.BOUND_B] = B
        if prev is not None:
            cum_dq += math.sqrt(row[S.DQ_SQ])
            cum_g_sq += sum(g_sq)
        row[S.CUM_DQ], row[S.CUM_G_SQ] = cum_dq, cum_g_sq
        rows.append(row)
        if prev is not None:
            for j, (b, i) in enumerate(keys):
                blocks.append({S.SWEEP: k, S.STEP: order[(b, i)], S.BLOCK: b, S.LAYER: i,
                               S.BLOCK_CONST: consts.block(b, i),
                               S.BLOCK_DELTA_SQ: d_sq[j], S.BLOCK_G_NORM: math.sqrt(g_sq[j])})
        prev = state
    config = {**dataclasses.asdict(cfg), "hidden": list(cfg.hidden)}
    meta = {
        S.META_CONFIG: config, S.META_DTYPE: dtype, S.META_N_SAMPLES: n, S.META_WIDTHS: list(widths),
        S.META_PRESET: "audit", S.META_SOURCE: "audit", S.META_SCHEDULE: {"every": 1},
        S.META_G_DEFINITION: g_definition(problem), S.META_BLOCKS_ARE_UPDATES: False,
        S.META_FILES: [p.name for p in files],
    }
    block_df = pd.DataFrame(blocks).sort_values([S.SWEEP, S.STEP], kind="stable").reset_index(drop=True) \
        if blocks else pd.DataFrame()
    return Trace(pd.DataFrame(rows), block_df, meta)


# --------------------------------------------------------------------------- writing our own iterates


class IterateWriter:
    """Engine hook that dumps our own run in the audit format: ``data.npz`` and ``audit.toml`` at the
    start, then one file per sweep (``iter_000000.npz`` = Q⁰, ...).  ``fmt``: ``npz`` | ``safetensors``."""

    def __init__(self, directory: str | Path, fmt: str = "npz"):
        if fmt not in ("npz", "safetensors"):
            raise ValueError(f"fmt={fmt!r} is not supported; allowed: npz, safetensors")
        self.directory, self.fmt = Path(directory), fmt

    def on_run_start(self, problem: Problem, state: BCDState) -> None:
        write_audit_inputs(self.directory, problem)
        self._write(state)

    def on_sweep_end(self, k: int, state: BCDState, record: dict[str, Any]) -> None:
        self._write(state)

    def _write(self, state: BCDState) -> None:
        write_iterate(self.directory / f"iter_{state.sweep:06d}.{self.fmt}", state)


def write_iterate(path: Path, state: BCDState) -> None:
    """One iterate, keys W1..WN, V1..VN, U1..UN (``.npz`` or ``.safetensors`` by the suffix)."""
    arrays = {f"{b}{i}": t.detach().cpu().contiguous() for b, i, t in state.blocks()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        atomic_write(path, lambda p: save_file(arrays, str(p)))
        return

    def write(p: Path) -> None:
        with p.open("wb") as fh:
            np.savez(fh, **{k: v.numpy() for k, v in arrays.items()})

    atomic_write(path, write)


def write_audit_inputs(directory: str | Path, problem: Problem) -> None:
    """``data.npz`` (X rows, Y targets, y labels if any) and ``audit.toml`` (the hyperparameters)."""
    directory = Path(directory)
    cfg = problem.config
    data = {"X": problem.X.T.cpu().numpy(), "Y": problem.Y.T.cpu().numpy()}
    if problem.labels is not None:
        data["y"] = problem.labels.cpu().numpy()

    def write(p: Path) -> None:
        with p.open("wb") as fh:
            np.savez(fh, **data)

    atomic_write(directory / DATA_FILE, write)
    lines = [f"{k} = {getattr(cfg, k)!r}".replace("'", '"') for k in HYPERPARAMETERS]
    write_text(directory / AUDIT_TOML, "\n".join(lines) + "\n")
