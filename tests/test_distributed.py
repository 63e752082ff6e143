"""Sample-sharded BCD (bcd/distributed.py, MATH.md §10) on real gloo processes against one process: every iterate
and every trace column equal up to the summation order, the same verdicts; the CLI's --nproc launcher; misuse."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from dist_worker import VARIANTS, data, rank_main, rows, run_variant
from safetensors.numpy import load_file

from bcd.distributed import Shard, _free_port, backend_for
from verification import schema as S  # noqa: N812

ROUNDOFF_COLUMNS = {S.BLOCK_RESIDUAL}  # exactness residuals are rounding noise (~1e-16): compared as such
RTOL = 1e-12


def _close(a: np.ndarray, b: np.ndarray, name: str, scale: float | None = None) -> None:
    """Equal to RTOL relative to the column's own scale, or to ``scale`` (entries near zero, e.g. late decreases,
    are judged against the largest entry: summation order moves them by ~eps·scale)."""
    if scale is None:
        scale = float(np.nanmax(np.abs(a))) if np.isfinite(a).any() else 0.0
    np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * max(scale, 1e-300), err_msg=name)


@pytest.fixture(scope="module")
def single():
    d = data()
    return {name: run_variant(kw, d.X_train, d.y_train, d.X_test, d.y_test) for name, kw in VARIANTS.items()}


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_gloo_runs_equal_the_single_process_run(tmp_path, single, world):
    mp.start_processes(rank_main, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True,
                       start_method="spawn")
    for name in VARIANTS:
        trace1, verdicts1, state1 = single[name]
        L_scale = float(trace1.sweeps[S.OBJECTIVE].abs().max())
        objective_cols = {S.OBJECTIVE, *S.term_names(trace1.config, tuple(trace1.meta[S.META_WIDTHS]))}
        for rank in range(world):
            out = tmp_path / f"rank{rank}" / name
            sw, bl = pd.read_parquet(out / "trace_sweeps.parquet"), pd.read_parquet(out / "trace_blocks.parquet")
            for frame, mine, ref in (("sweeps", sw, trace1.sweeps), ("blocks", bl, trace1.blocks)):
                assert list(mine.columns) == list(ref.columns)
                for col in ref.columns:
                    if col.startswith("time_") or ref[col].dtype.kind not in "fi":
                        continue
                    a, b = ref[col].to_numpy(float), mine[col].to_numpy(float)
                    if col in ROUNDOFF_COLUMNS:
                        assert (np.nan_to_num(b) < 1e-12).all(), f"{frame}.{col} of rank {rank}"
                    elif col == S.BLOCK_STATIONARITY:  # dist(0, ∂Φ) after an inner solve: a small residual of large
                        # cancelling sums, so summation order moves it by more than 1e-12 of itself; what matters is
                        # the stopping rule's decision: equal to a millionth of the rule's tolerance (rule_held is
                        # compared exactly as its own column)
                        tol = 1e-6 * np.nan_to_num(ref[S.BLOCK_RULE_TOL].to_numpy(float))
                        assert (np.abs(np.nan_to_num(a - b)) <= tol).all(), f"{name}: {frame}.{col} of rank {rank}"
                    else:  # L̄'s terms and decreases differ by ~eps·L̄: judged on the scale of L̄
                        on_L = frame == "sweeps" and (col in objective_cols or col == S.DECREASE)
                        _close(a, b, f"{name}: {frame}.{col} of rank {rank}", L_scale if on_L else None)
            state = np.load(out / "state.npz")
            sl = rows(rank, world)
            for b, i, t in state1.blocks():
                ref = t.numpy() if b == "W" else t.numpy()[:, sl]  # W replicated, V and U the rank's own columns
                _close(ref, state[f"{b}{i}"], f"{name}: {b}{i} of rank {rank}")
            lines = (out / "verdicts.txt").read_text().splitlines()
            assert [ln.split()[:2] for ln in lines] == [[v.claim, v.status] for v in verdicts1], name


def test_shard_rows_cover_the_samples_once_and_refuse_too_many_ranks():
    for n, world in ((10, 3), (7, 7), (37, 2)):
        got = [Shard(r, world, "gloo", None).rows(n) for r in range(world)]
        assert sum(s.stop - s.start for s in got) == n and got[0].start == 0 and got[-1].stop == n
        assert all(a.stop == b.start for a, b in itertools.pairwise(got))
    with pytest.raises(ValueError, match="3 processes for 2 samples"):
        Shard(0, 3, "gloo", None).rows(2)


def test_cuda_backend_refused_clearly_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="NCCL"):
        backend_for("cuda")


# ------------------------------------------------------------------------------ the command line

TRAIN = ["--dataset", "mixture", "--n-train", "41", "--n-test", "17", "--hidden", "5,5", "--sweeps", "4",
         "--no-progress"]
ARGS = [*TRAIN, "--figure-formats", "png"]


def _bcd(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bcd", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_cli_nproc_equals_one_process_and_rank_0_alone_writes(tmp_path):
    one = _bcd("verify", *ARGS, "--out", str(tmp_path / "one"))
    two = _bcd("verify", *ARGS, "--out", str(tmp_path / "two"), "--nproc", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert two.stdout.count("report:") == 1  # one rank prints
    a = pd.read_parquet(tmp_path / "one" / "trace_sweeps.parquet")
    b = pd.read_parquet(tmp_path / "two" / "trace_sweeps.parquet")
    for col in (S.OBJECTIVE, S.DQ_SQ, S.G_NORM, S.TRAIN_ACC, S.TEST_ACC, S.BOUND_B):
        _close(a[col].to_numpy(float)[1:], b[col].to_numpy(float)[1:], col)
    import json

    env = json.loads((tmp_path / "two" / "environment.json").read_text())["distributed"]
    assert env["world_size"] == 2 and [r["n_local"] for r in env["ranks"]] == [21, 20]
    assert env["ranks"][0]["allreduce_bytes_per_sweep"] > 0
    assert json.loads((tmp_path / "two" / "environment.json").read_text())["n_train"] == 41


def test_cli_refuses_misuse_with_one_line_per_rank(tmp_path):
    # what the launcher can check is refused before any rank starts: one line, not one per rank
    for extra, message in ((["--n-train", "2"], "--nproc 3 is more ranks than the 2 training samples"),
                           (["--dataset", "junk"], "dataset='junk' is not supported"),
                           (["--checkpoint-every", "-1"], "--checkpoint-every -1 is not allowed")):
        too_many = _bcd("train", *TRAIN, *extra, "--out", str(tmp_path / "a"), "--nproc", "3")
        assert too_many.returncode == 2 and message in too_many.stderr, too_many.stderr
        assert len(too_many.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    cores = len(os.sched_getaffinity(0))
    many = _bcd("verify", *TRAIN, "--n-train", "5000", "--out", str(tmp_path / "a"), "--nproc", str(4 * cores + 1))
    assert many.returncode == 2 and f"give at most {4 * cores}" in many.stderr, many.stderr
    report = _bcd("theory", env={"WORLD_SIZE": "2", "RANK": "0"})
    assert report.returncode == 2 and "only train, verify, record run sharded" in report.stderr


def _launch_by_hand(tmp_path, per_rank_args, timeout_s="30"):
    env = {**os.environ, "WORLD_SIZE": str(len(per_rank_args)), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "BCD_DIST_TIMEOUT_S": timeout_s}
    return [subprocess.Popen([sys.executable, "-m", "bcd", *a], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for r, a in enumerate(per_rank_args)]


def test_ranks_with_different_configs_are_refused(tmp_path):
    procs = _launch_by_hand(tmp_path, [["train", *TRAIN, "--out", str(tmp_path / "c")],
                                       ["train", *TRAIN, "--gamma", "2", "--out", str(tmp_path / "c")]])
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [2, 2]
    assert all("different configurations" in err for _, err in results), results
    assert not (tmp_path / "c").exists()


def test_a_dead_rank_stops_the_others_with_a_message(tmp_path):
    long = ["train", "--dataset", "mixture", "--n-train", "400", "--hidden", "50,50", "--sweeps", "100000",
            "--no-progress", "--out", str(tmp_path / "d")]
    procs = _launch_by_hand(tmp_path, [long, long])
    time.sleep(8)  # both are training
    procs[1].send_signal(signal.SIGKILL)
    _out, err = procs[0].communicate(timeout=90)
    procs[1].wait()
    assert procs[0].returncode == 3, err
    assert "could not be completed" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "verify"])
def test_a_sharded_run_checkpoints_per_rank_and_resumes_to_the_same_result(tmp_path, command):
    """`--nproc 2` writes per-rank checkpoints; a run stopped after sweep 3 of 6 (its config then asks for 6) and
    resumed with the same --nproc ends with the weights, log and (for verify) trace and verdicts of the uninterrupted
    run; a resume with another world size is refused with the size to use."""
    args = [*TRAIN[:-3], "--no-progress", "--eval-every", "1", "--checkpoint-every", "2", "--nproc", "2"]
    if command == "verify":
        args += ["--figure-formats", "png"]
    whole = _bcd(command, *args, "--sweeps", "6", "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    part = _bcd(command, *args, "--sweeps", "3", "--out", str(tmp_path / "part"))
    assert part.returncode == 0, part.stderr
    names = sorted(p.name for p in (tmp_path / "part").glob("checkpoint*"))
    assert "checkpoint-3.rank0.safetensors" in names and "checkpoint-3.rank1.safetensors" in names, names
    assert not any(n.startswith("checkpoint-2") for n in names)  # older sets deleted, every rank its own
    assert json.loads((tmp_path / "part" / "checkpoint.json").read_text())["world_size"] == 2
    cfg_path = tmp_path / "part" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["bcd"]["sweeps"] = 6  # as if the run had been stopped after sweep 3 of 6
    cfg_path.write_text(json.dumps(cfg))
    for other in ([], ["--nproc", "3"]):  # one process, or three: refused with the size to use, on every rank
        wrong = _bcd(command, "--resume", str(tmp_path / "part"), "--no-progress", *other)
        assert wrong.returncode == 2 and "written by 2 process(es)" in wrong.stderr, wrong.stderr
        assert "--nproc 2" in wrong.stderr and "Traceback" not in wrong.stderr
    resumed = _bcd(command, "--resume", str(tmp_path / "part"), "--no-progress", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    wa = load_file(str(tmp_path / "whole" / "weights.safetensors"))
    wb = load_file(str(tmp_path / "part" / "weights.safetensors"))
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    la = pd.read_parquet(tmp_path / "whole" / "sweeps.parquet")
    lb = pd.read_parquet(tmp_path / "part" / "sweeps.parquet")
    cols = [c for c in la.columns if not c.startswith("time_")]
    pd.testing.assert_frame_equal(la[cols], lb[cols], check_exact=True)
    if command == "verify":
        ta = pd.read_parquet(tmp_path / "whole" / "trace_sweeps.parquet")
        tb = pd.read_parquet(tmp_path / "part" / "trace_sweeps.parquet")
        tcols = [c for c in ta.columns if not c.startswith("time_")]
        pd.testing.assert_frame_equal(ta[tcols], tb[tcols], check_exact=True)
        va = json.loads((tmp_path / "whole" / "verdicts.json").read_text())
        vb = json.loads((tmp_path / "part" / "verdicts.json").read_text())
        assert [(v["claim"], v["status"]) for v in va] == [(v["claim"], v["status"]) for v in vb]


def test_an_interrupt_of_the_launcher_stops_every_rank_after_a_whole_sweep_and_resumes(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group.  The ranks have their own group, so
    only the `--nproc 2` launcher gets it, and it passes it on to each rank once: every rank finishes the same sweep,
    the per-rank checkpoint is written, the run exits 3 saying how to resume, and the resumed run ends bit for bit
    where the uninterrupted one does.  (Ranks in the launcher's group would get the terminal's SIGINT and then the
    launcher's, a second signal that aborts mid-sweep.)"""
    args = ["--dataset", "mixture", "--n-train", "1000", "--n-test", "50", "--hidden", "150,150", "--sweeps", "120",
            "--checkpoint-every", "1", "--no-progress", "--nproc", "2"]
    whole = _bcd("train", *args, "--out", str(tmp_path / "whole"), timeout=300)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "bcd", "train", *args, "--out", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, process_group=0)  # a terminal's foreground group
    deadline = time.monotonic() + 120
    while True:
        try:
            if json.loads((out / "checkpoint.json").read_text())["sweep"] >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        assert p.poll() is None and time.monotonic() < deadline, "the run ended before sweep 3"
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    assert f"--resume {out} --nproc 2" in err and "Traceback" not in err, err
    k = json.loads((out / "checkpoint.json").read_text())["sweep"]
    assert 3 <= k < 120 and int(pd.read_parquet(out / "sweeps.parquet")["sweep"].iloc[-1]) == k
    resumed = _bcd("train", "--resume", str(out), "--no-progress", "--nproc", "2", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    wa, wb = load_file(str(tmp_path / "whole" / "weights.safetensors")), load_file(str(out / "weights.safetensors"))
    assert all(np.array_equal(wa[key], wb[key]) for key in wa)


def test_the_memory_check_counts_every_rank_on_this_machine(tmp_path):
    """K CPU ranks share this machine's memory: a limit that one rank's share fits but K shares do not refuses the
    sharded run on every rank with one line naming the ranks (the same state in one process is K times a rank's)."""
    from bcd.config import BCDConfig
    from bcd.inputs import state_bytes

    cfg = BCDConfig(hidden=(400, 400), dtype="float64")  # the state, not the generated data, sets the need
    n_rank = 21  # rank 0's share of the 41 samples of TRAIN
    per_rank = state_bytes(cfg, (10, 400, 400, 3), n_rank)  # the mixture has d_0 = 10 inputs and 3 classes
    limit_gb = str(1.5 * per_rank / 2**30)
    args = [*TRAIN[:6], "--hidden", "400,400", *TRAIN[8:], "--dtype", "float64"]
    one = _bcd("train", *args, "--n-train", "21", "--out", str(tmp_path / "one"), env={"BCD_MEMORY_LIMIT_GB": limit_gb})
    assert one.returncode == 0, one.stderr  # one rank's share alone fits
    r = _bcd("train", *args, "--out", str(tmp_path / "a"), "--nproc", "2", env={"BCD_MEMORY_LIMIT_GB": limit_gb})
    assert r.returncode == 2 and "2 ranks on this machine" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "a" / "weights.safetensors").exists()


def test_the_memory_check_counts_the_operands_a_newton_step_gathers(monkeypatch):
    """Algorithm 1 with ReLU and a ridge gathers Ṽ_{i-1} and V_i for each W̃_i step (bcd.inner, "Sharding"): a limit
    that the rank's own state fits but state + gathered operands do not is refused, naming them; the same limit
    passes in one process and for Algorithm 2 (which gathers nothing)."""
    from bcd.config import BCDConfig
    from bcd.inputs import check_memory, gathered_bytes, state_bytes

    widths, n = (10, 400, 400, 3), 500
    newton = BCDConfig(hidden=(400, 400), splitting="two", activation="relu", dtype="float64")
    assert gathered_bytes(newton, widths, 2 * n) == (400 + 400) * 2 * n * 8  # W̃_2: Ṽ_1 and V_2, both ranks' columns
    smooth = BCDConfig(hidden=(400, 400), splitting="two", activation="tanh", dtype="float64")
    assert gathered_bytes(smooth, widths, 2 * n) == 0
    limit = state_bytes(newton, widths, n) + 0.5 * gathered_bytes(newton, widths, 2 * n)
    monkeypatch.setenv("BCD_MEMORY_LIMIT_GB", str(limit / 2**30))
    check_memory(newton, widths, n, torch.device("cpu"))  # one process: nothing gathered
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # one rank per machine: only the gather can break the limit
    check_memory(smooth, widths, n, torch.device("cpu"))
    with pytest.raises(ValueError, match="gathered operands"):
        check_memory(newton, widths, n, torch.device("cpu"))


def test_the_newton_solver_sharded_reports_the_whole_blocks_record(tmp_path):
    """bcd.inner on 2 gloo ranks (V: each rank its own columns; W̃: gathered operands) against one process, the solves
    cut at a few iterations so that the whole-block rule and the cap decide: the same iterates (1e-12), and the
    same record: iterations, reason, Φ before/after, the rule's tolerance and stationarity, the kink counts and
    certificate.  A rank that stopped on its own columns' rule, decided "nothing changed" on its own columns, or
    reported its own norms, fails this: in the "settled" problem rank 1's columns start at their optimum, so on its
    own it would stall within two iterations while the whole block goes on to meet the rule."""
    from dist_worker import inner_main, inner_problems, solve_inner

    problems = inner_problems(2)
    mp.start_processes(inner_main, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    for name, problem in problems.items():
        one = solve_inner(problem)
        assert one["info_V"]["kink_entries"] > 0 and one["info_W"]["kink_entries"] > 0  # the kinks are exercised
        if name == "settled":  # rank 1 alone stalls early (its columns cannot decrease); the whole block does not
            alone, whole = solve_inner(problem, rows(1, 2))["info_V"], one["info_V"]
            assert alone["reason"] == "stalled" and alone["iterations"] < whole["iterations"], (alone, whole)
        for rank in range(2):
            arrays = np.load(tmp_path / f"inner-{name}{rank}.npz")
            _close(one["V"][:, rows(rank, 2)], arrays["V"], f"{name}: V of rank {rank}")
            _close(one["W"], arrays["W"], f"{name}: W of rank {rank}")
            infos = json.loads((tmp_path / f"inner-{name}{rank}.json").read_text())
            for block in ("info_V", "info_W"):
                ref, mine = one[block], infos[block]
                for key in ("iterations", "reason", "rule_held", "monotone", "kink_entries", "convex_kink_entries",
                            "kink_exact"):
                    assert mine[key] == ref[key], (name, block, key, rank)
                for key in ("value_before", "value_after", "tolerance", "step_norm"):
                    _close(np.array(ref[key]), np.array(mine[key]), f"{name}: {block}.{key} of rank {rank}")
                assert abs(mine["stationarity"] - ref["stationarity"]) <= 1e-9 * max(ref["tolerance"], 1e-300)
