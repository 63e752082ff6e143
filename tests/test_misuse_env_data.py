"""Misuse of the launcher's variables, BCD_CACHE and npz files that tests/test_environment_and_npz_input.py does not
cover: one line naming the value and what is allowed, exit 2, nothing written.  Each case below was a message from
inside torch or numpy that named no variable or file, a wait for ranks that never come, an internal error (exit 3),
or a refusal of a valid integer dtype."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from bcd.cli import main
from bcd.config import BCDConfig
from bcd.data import main as data_main
from bcd.inputs import make_problem

TINY = ["--dataset", "mixture", "--n-train", "40", "--hidden", "4", "--sweeps", "1", "--no-progress"]


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(("env", "named"), [
    ({"MASTER_PORT": "abc"},  # int()'s
     "MASTER_PORT='abc' is not allowed; MASTER_PORT must be an integer in 1..65535 (a TCP port)"),
    ({"MASTER_PORT": "99999"}, "MASTER_PORT='99999' is not allowed; MASTER_PORT must be an integer in 1..65535"),
    ({"RANK": "5"}, "RANK='5' is not allowed; RANK must be an integer in 0..1 (WORLD_SIZE=2)"),  # c10d frames, a wait
    ({"LOCAL_RANK": "x"}, "LOCAL_RANK='x' is not allowed"),  # never read on the CPU
    ({"LOCAL_RANK": "2"}, "LOCAL_RANK='2' is not allowed; LOCAL_RANK must be an integer in 0..1"),
    ({"LOCAL_WORLD_SIZE": "3"}, "LOCAL_WORLD_SIZE='3' is not allowed; LOCAL_WORLD_SIZE must be an integer in 1..2"),
])
def test_a_bad_launcher_variable_is_named_before_the_rendezvous(tmp_path, capsys, monkeypatch, env, named):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("BCD_DIST_TIMEOUT_S", "5")  # MASTER_ADDR unset: the unchecked run stops at once in torch
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    for command in (["train", *TINY, "--out", str(tmp_path / "r")], ["report", str(tmp_path / "v")]):
        assert main(command) == 2
        assert named in _err(capsys)
    assert not (tmp_path / "r").exists()


def test_a_bcd_cache_that_is_a_file_is_named(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("BCD_CACHE", str(tmp_path / "afile"))
    named = f"BCD_CACHE={str(tmp_path / 'afile')!r} is not allowed"
    assert data_main(["fetch"]) == 2
    assert named in _err(capsys)
    assert main(["train", "--dataset", "mnist", "--n-train", "10", "--hidden", "4", "--no-progress", "--out",
                 str(tmp_path / "r")]) == 2  # was "MNIST is not in the cache (.../afile/mnist/...)"
    assert named in _err(capsys) and not (tmp_path / "r").exists()
    assert data_main(["--help"]) == 0 and "$BCD_CACHE" in capsys.readouterr().out


X, Y = np.random.default_rng(0).standard_normal((30, 3)), np.arange(30) % 2


def _train(tmp_path, path) -> list[str]:
    return ["train", "--dataset", "npz", "--data-path", str(path), "--hidden", "4", "--sweeps", "1", "--n-train",
            "10", "--no-progress", "--out", str(tmp_path / "r")]


def _damaged(tmp_path, how: str):
    np.savez(tmp_path / "ok.npz", X_train=X, y_train=Y)
    data = bytearray((tmp_path / "ok.npz").read_bytes())
    if how == "crc":
        data[data.find(b"\x93NUMPY") + 200] ^= 0xFF
        (tmp_path / "d.npz").write_bytes(data)
    else:  # a member that is not a .npy array
        with zipfile.ZipFile(tmp_path / "d.npz", "w") as zf:
            zf.writestr("X_train.npy", b"hello")
            zf.writestr("y_train.npy", b"x")


@pytest.mark.parametrize(("arrays", "named"), [
    ({"X_train": X.astype(complex), "y_train": Y}, "X_train in {} holds complex128 values"),  # named no file
    ({"X_train": X, "y_train": np.array(["a"] * 30, dtype=object)}, "y_train in {} holds Python objects"),  # no array
    ({"X_train": X, "y_train": Y, "X_test": X[:0], "y_test": Y[:0]}, "{} has no test samples"),  # internal error
    ("crc", "X_train in {} cannot be read (BadZipFile: Bad CRC-32"),  # internal error BadZipFile
    ("not npy", "X_train in {} cannot be read (not a .npy array)"),  # internal error AttributeError
])
def test_a_bad_or_damaged_npz_is_named(tmp_path, capsys, arrays, named):
    path = tmp_path / "d.npz"
    if isinstance(arrays, str):
        _damaged(tmp_path, arrays)
    else:
        np.savez(path, **arrays)
    assert main(_train(tmp_path, path)) == 2
    assert named.format(path) in _err(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint16", "uint32"])
def test_every_integer_dtype_of_features_is_accepted(tmp_path, capsys, dtype):
    np.savez(tmp_path / "d.npz", X_train=(X * 10).astype(dtype), y_train=Y)  # was "X has dtype torch.int16;
    assert main(_train(tmp_path, tmp_path / "d.npz")) == 0  # allowed: a real floating or integer dtype"


def test_an_empty_test_set_is_refused_by_the_api():
    with pytest.raises(ValueError, match=r"X_test has no samples \(shape \(0, 3\)\); give at least one row"):
        make_problem(X, Y, BCDConfig(hidden=(4,)), X_test=X[:0], y_test=Y[:0])  # was a RuntimeError from min()
