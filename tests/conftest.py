"""Shared fixtures.  ``device``: the test runs on the CPU and, where a CUDA device is present, again on it (the
engine, recorder and checks tests take it; ``benchmarks/device_check.sh`` runs them on a GPU machine)."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param
