"""The engine and the recorder on CUDA equal the CPU in float64 (skipped without a GPU; run by
benchmarks/device_check.sh on a CUDA machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from verification import schema as S  # noqa: N812
from verification.checks import verify
from verification.pipeline import trace_arrays

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

VARIANTS = {"alg2": dict(), "alg3 resnet": dict(skip="auto"), "alg1 relu": dict(splitting="two", alpha=1.0),
            "alg2 prox-linear mean": dict(vn_update="prox_linear", reduction="mean", alpha=1.0)}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cuda_run_equals_the_cpu_run(name):
    d = gaussian_mixture(n=64, d=8, k=3, seed=5)
    traces = {}
    for device in ("cpu", "cuda"):
        cfg = BCDConfig(hidden=(6, 6), sweeps=5, dtype="float64", device=device, init="kaiming", **VARIANTS[name])
        trace, res = trace_arrays(d.X_train, d.y_train, cfg, preset="full", n_classes=3)
        traces[device] = (trace, [w.cpu().numpy() for w in res.weights], verify(trace, cfg))
    (tc, wc, vc), (tg, wg, vg) = traces["cpu"], traces["cuda"]
    for a, b in zip(wc, wg, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    for col in (S.OBJECTIVE, S.DQ_SQ, S.G_NORM):
        np.testing.assert_allclose(tc.sweeps[col].to_numpy(float), tg.sweeps[col].to_numpy(float), rtol=1e-8)
    assert [(v.claim, v.status) for v in vc] == [(v.claim, v.status) for v in vg]
