"""BCD_FUSE (bcd/fusion.py): the recorder's n-sized passes of a hidden layer and the engine's U-prox compiled into one
kernel each give the trace of the eager passes up to rounding; a compiler that fails leaves the eager trace (bit for
bit at these sizes, where a layer is one piece either way), with one warning per pass; a bad value is refused
before anything runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bcd import blocks, fusion
from bcd.cli import main
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.engine import train
from verification import fast_path
from verification import schema as S  # noqa: N812
from verification.recorder import Recorder

PASSES = {fast_path.layer_sums, fast_path.completion_sums, blocks.u_prox_piece}


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(n=120, d=5, k=3, seed=5, n_test=30)


def _trace(monkeypatch, data, mode: str, preset: str):
    monkeypatch.setenv("BCD_FUSE", mode)
    cfg = BCDConfig(hidden=(7, 5, 6), gamma=1.3, alpha=2.0, lam=0.1, sweeps=4)
    rec = Recorder(preset)
    train(data.X_train, data.y_train, cfg, X_test=data.X_test, y_test=data.y_test, hooks=[rec])
    return rec.trace()


def _numeric(df):
    return df[[c for c in df.columns if "time" not in c and df[c].dtype.kind == "f"]]


@pytest.mark.parametrize("preset", ["standard", "full"])
def test_fused_passes_give_the_eager_trace(monkeypatch, data, preset):
    monkeypatch.setattr(fusion, "_compiled", {})
    eager = _trace(monkeypatch, data, "off", preset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = _trace(monkeypatch, data, "on", preset)
    failed = [str(w.message) for w in caught if "BCD_FUSE" in str(w.message)]
    if failed:  # e.g. no C++ compiler on this machine: the eager fallback is tested below
        pytest.skip(f"torch.compile does not work here: {failed[0]}")
    assert set(fusion._compiled) == PASSES
    assert all(f is not None for f in fusion._compiled.values())  # compiled, and it ran
    for e, f in ((eager.sweeps, fused.sweeps), (eager.blocks, fused.blocks)):
        e, f = _numeric(e), _numeric(f)
        assert list(e.columns) == list(f.columns) and len(e) == len(f)
        for c in e.columns:
            scale = np.nanmax(np.abs(e[c].to_numpy())) if e[c].notna().any() else 0.0
            # the exactness residual is a rounding-level ratio: the fused U-prox rounds differently, so only its size
            atol = 1e-14 if c == S.BLOCK_RESIDUAL else 1e-12 * scale
            np.testing.assert_allclose(f[c].to_numpy(), e[c].to_numpy(), rtol=1e-11, atol=atol, equal_nan=True,
                                       err_msg=c)


def test_a_failing_compiler_leaves_the_eager_trace_with_one_warning(monkeypatch, data):
    eager = _trace(monkeypatch, data, "off", "standard")

    def broken(fn, **_):
        def call(*args):
            raise RuntimeError("no C++ compiler here")
        return call

    monkeypatch.setattr(fusion, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler here.*running it eagerly") as caught:
        fallen = _trace(monkeypatch, data, "on", "standard")
    assert len([w for w in caught if "BCD_FUSE" in str(w.message)]) == 3  # once per pass function, not per layer
    assert fusion._compiled == dict.fromkeys(PASSES)
    for e, f in ((eager.sweeps, fallen.sweeps), (eager.blocks, fallen.blocks)):
        np.testing.assert_array_equal(_numeric(f).to_numpy(), _numeric(e).to_numpy())


def test_auto_fuses_only_large_cpu_layers(monkeypatch):
    monkeypatch.setattr(fusion, "_compiled", {})
    monkeypatch.setattr(fusion, "FUSE_ENTRIES", 41)
    fn = fast_path.completion_sums
    assert fusion.pass_function(fn, "auto", torch.zeros(4, 10)) == (fn, fusion.chunk_size(torch.zeros(1)))
    assert fusion.pass_function(fn, "off", torch.zeros(5, 10))[0] is fn
    assert fusion._compiled == {}  # nothing compiled for either
    run, chunk = fusion.pass_function(fn, "auto", torch.zeros(5, 10))
    assert run is not fn and chunk == fusion.FUSE_CHUNK and fn in fusion._compiled


def test_a_bad_bcd_fuse_is_refused_before_anything_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BCD_FUSE", "maybe")
    with pytest.raises(ValueError, match="BCD_FUSE='maybe' is not allowed; give one of auto, on, off"):
        Recorder("standard")
    out = tmp_path / "run"
    assert main(["verify", "--dataset", "mixture", "--n-train", "60", "--hidden", "6,6", "--sweeps", "3",
                 "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "BCD_FUSE='maybe' is not allowed" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
