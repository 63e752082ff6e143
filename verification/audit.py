"""``bcd audit``: verify iterates produced by *any* implementation of the paper's objectives, read from files.

Input directory ``DIR``:

* one file per sweep, ``<stem>_<k>.npz`` or ``<stem>_<k>.safetensors`` (k = 0 for Q⁰, then 1, 2, … — sorted by k;
  one stem per directory), with keys ``W1..WN`` (augmented, bias last column, d_i×(d_{i-1}+1)), ``V1..VN`` and, for
  the three-splitting, ``U1..UN`` (d_i×n, samples as columns).  ``.npz`` files are read without pickle;
  every other file is ignored, and the audit lists it;
* ``data.npz``: ``X`` (n×d_0, samples as rows) and ``Y`` (n×d_N targets) and/or ``y`` (n labels;
  one-hot targets when ``Y`` is absent, accuracy when present);
* hyperparameters in ``audit.toml`` (``gamma``, ``alpha``, optional ``lam``, ``activation``,
  ``reduction``, ``vn_update``) or as overrides (the CLI flags).

From a notebook, after each sweep k (and once before the first, k = 0)::

    np.savez(f"audit/iter_{k:04d}.npz", **{f"{b}{i}": arr for (b, i), arr in blocks.items()})
    # blocks[("W", i)] = np.hstack([W_i, b_i[:, None]]), blocks[("V", i)] = V_i, blocks[("U", i)] = U_i

then ``bcd audit audit/ --gamma 1 --alpha 5 --order three-splitting`` (with ``data.npz`` holding X and Y or y).
The files are fed to :class:`verification.auditor.Auditor` (the in-process API, which needs no files): with the
declared order every block update is rebuilt and checked; without it only iterate-level claims are (L̄ and its
terms, ‖ΔQ‖, B, the least-norm subgradient at each Q^k), and the audit says which claims it left unchecked.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bcd import catalogue
from bcd.config import REDUCTIONS, VN_UPDATES, BCDConfig
from bcd.data import check_npz_size
from bcd.problem import BCDState, Problem
from bcd.rundir import atomic_write, write_text
from verification.auditor import Auditor
from verification.trace import Trace

Tensor = torch.Tensor
DATA_FILE = "data.npz"
AUDIT_TOML = "audit.toml"
SUFFIXES = (".npz", ".safetensors")
HYPERPARAMETERS = ("gamma", "alpha", "lam", "activation", "reduction", "vn_update", "loss", "r", "s", "reg_bias")


# --------------------------------------------------------------------------- reading a directory


ITERATE_NAME = re.compile(r"^(?P<stem>.+?)_(?P<k>\d+)\.(npz|safetensors)$")


def iterate_files(directory: str | Path) -> tuple[list[Path], list[str]]:
    """The iterate files of an audit directory in sweep order, and the names of the other files (ignored).

    An iterate file is named ``<stem>_<k>.npz`` or ``<stem>_<k>.safetensors`` (k = 0 for Q⁰, then 1, 2, …: sorted
    by k, not by name), with one stem for the whole directory (``iter_000000.npz``, ``iter_000001.npz``, …).  Every
    other file (``data.npz``, ``audit.toml``, a ``meta.npz`` of your own) is ignored, and the audit says so."""
    directory = Path(directory)
    if not directory.is_dir():
        if directory.exists():
            raise ValueError(f"audit directory {str(directory)!r} is a file, not a folder of iterates")
        raise FileNotFoundError(f"audit directory {str(directory)!r} does not exist")
    found: dict[str, list[tuple[int, Path]]] = {}
    ignored = []
    for p in sorted(directory.iterdir()):
        if not p.is_file():  # e.g. the audit's own output folder
            continue
        m = ITERATE_NAME.match(p.name)
        if m is None:
            if p.name not in (DATA_FILE, AUDIT_TOML):
                ignored.append(p.name)
            continue
        found.setdefault(m["stem"], []).append((int(m["k"]), p))
    if not found:
        raise ValueError(f"{str(directory)!r} holds no iterate files: expected <stem>_<k>.npz or .safetensors, "
                         f"e.g. iter_000000.npz (Q⁰), iter_000001.npz, …" + (
                             f"; found only {', '.join(ignored[:8])}" if ignored else ""))
    if len(found) > 1:
        raise ValueError(f"{str(directory)!r} mixes iterate files with the stems {', '.join(sorted(found))}; "
                         "keep one run per directory")
    (stem, items), = found.items()
    items.sort()
    ks = [k for k, _ in items]
    if len(set(ks)) != len(ks):
        dup = sorted({k for k in ks if ks.count(k) > 1})
        raise ValueError(f"{str(directory)!r} has two files for sweep {dup[0]} ({stem}_{dup[0]}.*): one per sweep")
    if ks != list(range(ks[0], ks[0] + len(ks))):
        gap = next(k for a, k in itertools.pairwise(ks) if k != a + 1)
        raise ValueError(f"{str(directory)!r}: the iterate files jump to sweep {gap} ({stem}_{gap}.*); "
                         "a missing sweep hides its updates")
    return [p for _, p in items], ignored


def load_iterate(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        check_npz_size(path)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except Exception as e:
        raise ValueError(f"{path.name} is not a readable .safetensors file: {e}") from None


def read_hyperparameters(directory: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``audit.toml`` (if present) updated by the non-None ``overrides``; gamma and alpha are required."""
    hp: dict[str, Any] = {}
    toml = directory / AUDIT_TOML
    if toml.is_file():
        try:
            with toml.open("rb") as fh:
                hp = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{str(toml)!r} is not valid TOML: {e}") from None
        unknown = set(hp) - set(HYPERPARAMETERS)
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in {toml}; allowed: {', '.join(HYPERPARAMETERS)}")
    hp.update({k: v for k, v in (overrides or {}).items() if v is not None})
    missing = [k for k in ("gamma", "alpha") if k not in hp]
    if missing:
        raise ValueError(f"the audit needs {' and '.join(missing)} (in {AUDIT_TOML} or as --{missing[0]})")
    for key in ("activation", "loss"):
        if key in hp:
            hp[key] = catalogue.build(key, hp[key]).spec
    for key, allowed in (("reduction", REDUCTIONS), ("vn_update", VN_UPDATES)):
        if key in hp and hp[key] not in allowed:
            raise ValueError(f"{key}={hp[key]!r} is not supported; allowed: {', '.join(allowed)}")
    return hp


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v).replace("'", '"')


def _read_data(directory: Path):
    path = directory / DATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing: the audit needs X (n×d_0) and Y (n×d_N) or y (n)")
    check_npz_size(path)
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


def _widths(arrays: dict[str, np.ndarray], path: Path, d0: int) -> tuple[int, ...]:
    N = 0
    while f"W{N + 1}" in arrays:
        N += 1
    if N < 2:
        raise ValueError(f"{path.name} holds {N} weight matrices (W1, W2, ...); the audit needs N >= 2 layers")
    bad = [f"W{i}" for i in range(1, N + 1) if np.ndim(arrays[f"W{i}"]) != 2]
    if bad:
        raise ValueError(f"{path.name}: {bad[0]} has shape {np.shape(arrays[bad[0]])}; every W_i is a matrix "
                         "d_i×(d_(i-1)+1) with the bias last")
    return (d0, *(int(arrays[f"W{i}"].shape[0]) for i in range(1, N + 1)))


# --------------------------------------------------------------------------- the audit


def audit(directory: str | Path, overrides: dict[str, Any] | None = None, *, order=None,
          device: str = "cpu", dtype: str = "float64") -> Trace:
    """Read an audit directory and return its :class:`Trace`: per block update when ``order`` is declared
    (:mod:`verification.auditor`), per iterate otherwise.  Ignored files are listed in ``meta["ignored_files"]``."""
    directory = Path(directory)
    files, ignored = iterate_files(directory)
    if len(files) < 2:
        raise ValueError(f"{str(directory)!r} holds one iterate ({files[0].name}); the audit needs Q⁰ and at least "
                         "one sweep")
    hp = read_hyperparameters(directory, overrides)
    X_rows, Y_rows, y = _read_data(directory)
    n, d0 = X_rows.shape
    first = load_iterate(files[0])
    widths = _widths(first, files[0], d0)
    try:  # the values as written: BCDConfig checks their types (bool("false") was True, float(True) 1.0)
        cfg = BCDConfig(hidden=widths[1:-1], sweeps=len(files) - 1, device=device, dtype=dtype,
                        splitting="three" if any(k.startswith("U") for k in first) else "two", **hp)
    except ValueError as e:
        raise ValueError(f"{e} (the hyperparameters of {str(directory / AUDIT_TOML)!r} and the flags)") from None
    targets = y if Y_rows is None else Y_rows  # labels are validated as make_problem validates targets
    if Y_rows is not None and Y_rows.shape != (n, widths[-1]):
        raise ValueError(f"targets Y have shape {Y_rows.shape}; expected ({n}, {widths[-1]}) to match W{cfg.N}")
    aud = Auditor(X_rows, targets, cfg, order=order, n_classes=widths[-1] if Y_rows is None else None,
                  labels=y if Y_rows is not None else None, files=[p.name for p in files])
    for k, path in enumerate(files):
        arrays = first if k == 0 else load_iterate(path)
        try:
            aud.observe(arrays)
        except ValueError as e:
            raise ValueError(f"{path.name}: {e}") from None
    trace = aud.trace()
    trace.meta["ignored_files"] = ignored
    return trace


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
    lines = [f"{k} = {_toml_value(getattr(cfg, k))}" for k in HYPERPARAMETERS if getattr(cfg, k) is not None]
    write_text(directory / AUDIT_TOML, "\n".join(lines) + "\n")
