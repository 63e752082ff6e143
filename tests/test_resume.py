"""Killed and interrupted runs continue bit for bit (bcd/checkpoint.py): SIGKILL at three different sweeps, SIGINT and
SIGTERM, each resumed with ``bcd train --resume`` and compared with the uninterrupted run (weights bitwise, the
per-sweep log bitwise except the timing columns)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

ARGS = ["--dataset", "mixture", "--n-train", "1500", "--n-test", "100", "--hidden", "120,120", "--sweeps", "40",
        "--checkpoint-every", "2", "--no-progress", "--seed", "3"]


def _bcd(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bcd", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _checkpoint_sweep(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint.json").read_text())["sweep"]
    except (OSError, ValueError, KeyError):
        return -1


def _same(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    la, lb = pd.read_parquet(a / "sweeps.parquet"), pd.read_parquet(b / "sweeps.parquet")
    cols = [c for c in la.columns if not c.startswith("time_")]
    pd.testing.assert_frame_equal(la[cols], lb[cols], check_exact=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    p = _bcd("train", *ARGS, "--out", str(out))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    return out


def _interrupt(out: Path, at: int, sig: int) -> subprocess.Popen:
    p = _bcd("train", *ARGS, "--out", str(out))
    deadline = time.monotonic() + 120
    while _checkpoint_sweep(out) < at:
        assert p.poll() is None, f"the run ended before sweep {at}: {p.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(sig)
    p.wait(timeout=120)
    return p


@pytest.mark.parametrize("at", [2, 14, 30])
def test_a_run_killed_at_any_sweep_resumes_to_the_same_result(tmp_path, uninterrupted, at):
    out = tmp_path / "run"
    p = _interrupt(out, at, signal.SIGKILL)
    assert p.returncode == -signal.SIGKILL
    assert not (out / "weights.safetensors").exists()  # killed: only the checkpoint is there
    r = _bcd("train", "--resume", str(out))
    assert r.wait(timeout=300) == 0, r.stderr.read()
    _same(uninterrupted, out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_after_a_whole_sweep_says_how_to_resume_and_resumes(tmp_path, uninterrupted, sig):
    out = tmp_path / "run"
    p = _interrupt(out, 6, sig)
    err = p.stderr.read()
    assert p.returncode == 3 and f"bcd train --resume {out}" in err and "Traceback" not in err, err
    log = pd.read_parquet(out / "sweeps.parquet")  # the run directory of a stopped run is complete and consistent
    assert int(log["sweep"].iloc[-1]) == _checkpoint_sweep(out) < 40
    first = json.loads((out / "environment.json").read_text())
    r = _bcd("train", "--resume", str(out))
    assert r.wait(timeout=300) == 0, r.stderr.read()
    _same(uninterrupted, out)
    # the environment record is the whole run's: both processes' segments, their wall times summed
    env = json.loads((out / "environment.json").read_text())
    segs = env["segments"]
    assert [(x["first_sweep"], x["last_sweep"]) for x in segs] == [(0, int(log["sweep"].iloc[-1])),
                                                                   (int(log["sweep"].iloc[-1]), 40)]
    assert segs[0]["wall_time_s"] == first["wall_time_s"]
    assert env["wall_time_s"] == pytest.approx(sum(x["wall_time_s"] for x in segs)) and "wall_time_note" not in env


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    r = _bcd("train", "--resume", str(tmp_path / "nothing"))
    assert r.wait(timeout=60) == 2 and "nothing to resume" in r.stderr.read()
    out = tmp_path / "run"
    assert _bcd("train", *ARGS[:8], "--sweeps", "2", "--checkpoint-every", "0", "--out", str(out)).wait(60) == 0
    r = _bcd("train", "--resume", str(out), "--gamma", "2")
    assert r.wait(timeout=60) == 2 and "--gamma do not apply" in r.stderr.read()  # the flag as the user typed it


VERIFY = ["--dataset", "mixture", "--n-train", "800", "--n-test", "100", "--hidden", "60,60", "--sweeps", "24",
          "--checkpoint-every", "2", "--no-progress", "--seed", "5", "--figure-formats", "png"]


@pytest.mark.parametrize(("command", "at"), [("verify", 4), ("verify", 15), ("verify", 20), ("record", 9)])
def test_a_killed_verify_or_record_resumes_to_the_same_trace_and_verdicts(tmp_path, command, at):
    """The recorder's carried state (the open sweep whose g^k parts complete in the next one, the running sums) is
    checkpointed with the iterate, so the trace and the verdicts of the resumed run equal the uninterrupted one's."""
    args = VERIFY if command == "verify" else [a for a in VERIFY if a not in ("--figure-formats", "png")]
    full = tmp_path / "full"
    p = _bcd(command, *args, "--out", str(full))
    assert p.wait(timeout=300) in (0, 1), p.stderr.read()
    out = tmp_path / "run"
    p = _bcd(command, *args, "--out", str(out))
    deadline = time.monotonic() + 120
    while _checkpoint_sweep(out) < at:
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=60) == -signal.SIGKILL  # killed mid-run, not after it ended
    k = _checkpoint_sweep(out)
    r = _bcd(command, "--resume", str(out), *(["--figure-formats", "png"] if command == "verify" else []))
    assert r.wait(timeout=300) in (0, 1), r.stderr.read()
    _same(full, out)
    env = json.loads((out / "environment.json").read_text())  # the killed process wrote no environment: said so
    assert [x["first_sweep"] for x in env["segments"]] == [k] and f"sweeps 1–{k} ran in a process killed" in \
        env["wall_time_note"]
    for table in ("trace_sweeps.parquet", "trace_blocks.parquet"):
        a, b = pd.read_parquet(full / table), pd.read_parquet(out / table)
        cols = [c for c in a.columns if not c.startswith("time_")]
        pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    if command == "verify":
        va = json.loads((full / "verdicts.json").read_text())
        vb = json.loads((out / "verdicts.json").read_text())
        assert [(v["claim"], v["status"], v["measured"]) for v in va] == [(v["claim"], v["status"], v["measured"])
                                                                          for v in vb]


def test_an_interrupted_verify_keeps_whole_sweeps_only_and_resumes(tmp_path):
    full = tmp_path / "full"
    assert _bcd("verify", *VERIFY, "--out", str(full)).wait(timeout=300) in (0, 1)
    out = tmp_path / "run"
    p = _bcd("verify", *VERIFY, "--out", str(out))
    while _checkpoint_sweep(out) < 6:
        assert p.poll() is None
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 3 and f"bcd verify --resume {out}" in err, err
    trace = pd.read_parquet(out / "trace_sweeps.parquet")
    blocks = pd.read_parquet(out / "trace_blocks.parquet")
    last = int(trace["sweep"].iloc[-1])
    assert last == _checkpoint_sweep(out) and blocks.groupby("sweep").size().eq(9).all()  # no half sweep
    assert _bcd("verify", "--resume", str(out), "--figure-formats", "png").wait(timeout=300) in (0, 1)
    a, b = pd.read_parquet(full / "trace_blocks.parquet"), pd.read_parquet(out / "trace_blocks.parquet")
    cols = [c for c in a.columns if not c.startswith("time_")]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


def test_tensors_read_back_are_aligned_like_fresh_ones(tmp_path):
    """safetensors hands out buffers at the file's offsets; MKL rounds differently on unaligned operands (a resumed
    run ended 1 ulp away from the uninterrupted one on an AVX-512 CPU), so a checkpoint is read into fresh memory."""
    import torch
    from safetensors.torch import load_file as load_raw
    from safetensors.torch import save_file

    from bcd.rundir import load_tensors

    path = tmp_path / "t.safetensors"
    save_file({f"T{i}": torch.randn(i + 1, 3, dtype=torch.float64) for i in range(6)}, str(path))
    assert any(t.data_ptr() % 64 for t in load_raw(str(path)).values())  # the hazard is real here
    loaded = load_tensors(path)
    assert all(t.data_ptr() % 64 == 0 for t in loaded.values())
    assert all(torch.equal(loaded[k], v) for k, v in load_raw(str(path)).items())


def test_resuming_a_finished_run_says_so_and_adds_no_segment(tmp_path, capsys):
    """Nothing is left to train: a note on stderr, the same weights and log, and environment.json keeps its segments
    and wall time (it gained an empty segment before)."""
    from bcd.cli import main

    out = tmp_path / "done"
    assert main(["train", "--dataset", "mixture", "--n-train", "60", "--hidden", "4", "--sweeps", "2",
                 "--no-progress", "--out", str(out)]) == 0
    env = json.loads((out / "environment.json").read_text())
    weights = (out / "weights.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "is already at its last sweep (2 of 2): nothing left to train" in capsys.readouterr().err
    again = json.loads((out / "environment.json").read_text())
    assert again["segments"] == env["segments"] and again["wall_time_s"] == env["wall_time_s"]
    assert (out / "weights.safetensors").read_bytes() == weights
