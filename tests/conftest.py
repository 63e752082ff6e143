"""Shared fixtures.  ``device``: the test runs on the CPU and, where a CUDA device is present, again on it (the
engine, recorder and checks tests take it; ``benchmarks/device_check.sh`` runs them on a GPU machine).

Under ``pytest -n K`` (pytest-xdist; ``make test`` runs two workers) each worker takes its share of the cores, for
torch here and, through OMP_NUM_THREADS, for the processes its tests start (K workers × all cores each would
oversubscribe the machine)."""

from __future__ import annotations

import os

_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:  # the cores this process may use (affinity), shared; never more than a user's OMP_NUM_THREADS
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _share = max(1, _cores // _WORKERS)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        _share = max(1, min(_share, int(os.environ["OMP_NUM_THREADS"])))
    os.environ["OMP_NUM_THREADS"] = str(_share)

import pytest  # noqa: E402
import torch  # noqa: E402

if _WORKERS > 1:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


SMALL_RUN = ["--dataset", "mixture", "--n-train", "60", "--n-test", "20", "--hidden", "6,6", "--sweeps", "3",
             "--no-progress"]  # a tiny run that `bcd verify` trains, checks and reports in seconds


@pytest.fixture(scope="session")
def verified_template(tmp_path_factory):
    """One `bcd verify` run directory per test worker; tests take copies (:func:`verified_run`)."""
    from bcd.cli import main

    out = tmp_path_factory.mktemp("template") / "run"
    assert main(["verify", *SMALL_RUN, "--figure-formats", "png", "--out", str(out)]) == 0
    return out


@pytest.fixture
def verified_run(verified_template, tmp_path):
    """A verified run directory of this test's own, to damage or extend: a copy of :func:`verified_template`."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(verified_template, out)
    return out
