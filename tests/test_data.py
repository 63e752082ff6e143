"""Real MNIST offline: the pinned facts of DATA.md, the restricted unpickler, subsets, user arrays."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from bcd.config import DataConfig
from bcd.data import (
    MNIST_SHA256,
    _NumpyOnlyUnpickler,
    gaussian_mixture,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_npz,
    mnist_wheel_path,
    sha256_of,
    subset_indices,
    teacher_student,
)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_wheel_checksum():
    assert sha256_of(mnist_wheel_path()) == MNIST_SHA256


def test_mnist_pinned_facts(mnist):
    assert mnist.X_train.shape == (60000, 784) and mnist.X_test.shape == (10000, 784)
    assert np.bincount(mnist.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.X_train.mean() == pytest.approx(0.1307, abs=5e-5)
    assert mnist.X_train.std() == pytest.approx(0.3081, abs=5e-5)
    assert mnist.X_train.min() == 0.0 and mnist.X_train.max() == 1.0
    k = mnist.X_train[:100] * 255.0
    np.testing.assert_allclose(k, np.rint(k), atol=1e-4)  # exactly the 8-bit images


def test_unpickler_refuses_other_globals():
    payload = pickle.dumps(print)  # references builtins.print
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _NumpyOnlyUnpickler(io.BytesIO(payload)).load()


def test_missing_cache_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BCD_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make data"):
        load_mnist()


def test_stratified_and_leading_subsets(mnist):
    idx = subset_indices(mnist.y_train, 1000, "stratified")
    assert np.bincount(mnist.y_train[idx]).tolist() == [100] * 10
    assert np.all(np.diff(idx) > 0)
    ds = load_dataset(DataConfig(dataset="mnist", n_train=500, n_test=50, subset="leading"))
    np.testing.assert_array_equal(ds.y_train, mnist.y_train[:500])
    np.testing.assert_array_equal(ds.X_test, mnist.X_test[:50])
    with pytest.raises(ValueError, match="n=70000"):
        subset_indices(mnist.y_train, 70000, "leading")


def test_synthetic_problems():
    ds, teacher = teacher_student(n=40, widths=(3, 5, 2), seed=1)
    assert ds.X_train.shape == (40, 3) and ds.y_train.shape == (40, 2) and len(teacher) == 2
    mix = gaussian_mixture(n=50, d=4, k=3, n_test=10)
    assert mix.X_train.shape == (50, 4) and set(mix.y_train) <= {0, 1, 2} and mix.X_test.shape == (10, 4)


def test_npz_round_trip_and_errors(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X_train=np.ones((4, 2)), y_train=np.array([0, 1, 0, 1]))
    ds = load_npz(path)
    assert ds.X_train.shape == (4, 2)
    np.savez(tmp_path / "bad.npz", X=np.ones((4, 2)))
    with pytest.raises(ValueError, match="X_train"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "nope.npz")


def test_fashion_mnist_when_installed():
    try:
        ds = load_fashion_mnist()
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed ({exc})")
    assert ds.X_train.shape == (60000, 784) and ds.X_test.shape == (10000, 784)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
