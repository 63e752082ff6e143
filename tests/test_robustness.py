"""Careless and hostile input, as issue 'Runs that survive' lists it: one line on stderr and a documented exit code
(2 bad input, 3 the run could not be completed), never a traceback; a tampered trace is refused, naming the column
and the sweep; guards refuse what cannot fit before anything is allocated."""

from __future__ import annotations

import errno
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_RUN

from bcd.cli import main
from verification import schema as S  # noqa: N812

SMALL = SMALL_RUN


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------ a trace is checked against itself


@pytest.mark.parametrize(("table", "column", "sweep", "named"), [
    ("trace_sweeps.parquet", S.OBJECTIVE, 2, "objective at sweep 2"),
    ("trace_sweeps.parquet", S.DECREASE, 3, "decrease at sweep 3"),
    ("trace_sweeps.parquet", S.CUM_DQ, 2, "cum_dQ at sweep 2"),
    ("trace_blocks.parquet", S.BLOCK_DECREASE, 2, "block_decrease at sweep 2"),
    ("trace_blocks.parquet", S.BLOCK_DELTA_SQ, 1, "delta_sq at sweep 1"),
])
def test_a_tampered_trace_is_refused_naming_the_column_and_sweep(verified_run, capsys, table, column, sweep, named):
    capsys.readouterr()
    df = pd.read_parquet(verified_run / table)
    row = df.index[df[S.SWEEP] == sweep][0]
    df.loc[row, column] += 100.0 if column != S.BLOCK_DELTA_SQ else 1.0
    df.to_parquet(verified_run / table, index=False)
    assert main(["verify", str(verified_run), "--figure-formats", "png"]) == 2
    err = _err(capsys)
    assert named in err and "inconsistent" in err


def test_an_untouched_saved_trace_still_verifies(verified_run):
    assert main(["verify", str(verified_run), "--figure-formats", "png"]) == 0


# ------------------------------------------------------------------------------ exit codes and one-line errors


def test_config_errors_are_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "a.toml").write_text('data = "x"\n')
    assert main(["train", str(tmp_path / "a.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "data in" in _err(capsys) and not (tmp_path / "r").exists()
    (tmp_path / "b.toml").write_text("[bcd\n")
    assert main(["train", str(tmp_path / "b.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "not valid TOML" in _err(capsys)
    assert main(["train", *SMALL, "--gamma", "1e-320", "--out", str(tmp_path / "r")]) == 2
    assert "gamma=1e-320 is not allowed" in _err(capsys)


@pytest.mark.parametrize(("argv", "named"), [
    (["train", "--hidden", "4", "--bogus"], "bcd train: error: unrecognized arguments: --bogus (`bcd train --help`"),
    (["report", "--frob", "x"], "bcd report: error: unrecognized arguments: --frob (`bcd report --help`"),
    (["--bogus", "train"], "bcd: error: unrecognized arguments: --bogus (`bcd --help`"),
])
def test_an_unknown_option_is_named_by_the_parser_it_was_given_to(argv, named, capsys):
    assert main(argv) == 2
    assert named in _err(capsys)


def test_an_empty_config_is_the_documented_default(tmp_path):
    import argparse

    from bcd.cli import DEFAULT_TRAIN_CONFIG, embedded_config, resolve_run_config

    (tmp_path / "empty.toml").write_text("")
    args = argparse.Namespace(config=str(tmp_path / "empty.toml"), out=None,
                              **{f: None for f in __import__("bcd.cli", fromlist=["RUN_FLAGS"]).RUN_FLAGS})
    cfg = resolve_run_config(args, DEFAULT_TRAIN_CONFIG)
    default = embedded_config(DEFAULT_TRAIN_CONFIG)
    assert list(cfg.bcd.hidden) == default["bcd"]["hidden"] and cfg.data.n_train == default["data"]["n_train"]


def test_a_diverging_run_exits_3_naming_block_and_sweep_and_keeps_its_log(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((40, 5)) * 1e30).astype(np.float32)
    np.savez(tmp_path / "d.npz", X_train=X, y_train=rng.integers(0, 3, 40))
    out = tmp_path / "run"
    code = main(["train", "--dataset", "npz", "--data-path", str(tmp_path / "d.npz"), "--n-train", "40",
                 "--hidden", "4,4", "--sweeps", "5", "--dtype", "float32", "--no-progress", "--out", str(out)])
    assert code == 3
    err = _err(capsys)
    assert "diverged" in err and "at sweep" in err and "first block updated to NaN/Inf" in err
    assert (out / "sweeps.parquet").is_file()


def test_write_failures_are_exit_3_or_2_with_one_line(tmp_path, capsys, monkeypatch):
    import bcd.runner

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bcd.runner, "write_table", full_disk)
    assert main(["train", *SMALL, "--out", str(tmp_path / "a")]) == 3
    assert "No space left on device" in _err(capsys)

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "b"))

    monkeypatch.setattr(bcd.runner, "write_table", denied)
    assert main(["train", *SMALL, "--out", str(tmp_path / "b")]) == 2
    assert "Permission denied" in _err(capsys)


def test_an_internal_error_is_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    import bcd.runner

    def broken(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr(bcd.runner, "save_weights", broken)
    assert main(["train", *SMALL, "--out", str(tmp_path / "a")]) == 3
    err = _err(capsys)
    assert "internal error KeyError" in err and "bcd --debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "train", *SMALL, "--out", str(tmp_path / "b")])


def test_a_corrupt_weights_file_is_a_clear_error(tmp_path):
    from bcd.rundir import load_weights

    (tmp_path / "w.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable weights file"):
        load_weights(tmp_path / "w.safetensors")


# ------------------------------------------------------------------------------ guards before allocation


def test_huge_widths_and_labels_are_refused_before_allocation(tmp_path, capsys, monkeypatch):
    assert main(["train", *SMALL[:6], "--hidden", "100000000", "--out", str(tmp_path / "a")]) == 2
    assert "GiB for its state" in _err(capsys)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    y[0] = 10**9
    np.savez(tmp_path / "d.npz", X_train=rng.standard_normal((40, 5)), y_train=y)
    assert main(["train", "--dataset", "npz", "--data-path", str(tmp_path / "d.npz"), "--n-train", "40",
                 "--hidden", "4", "--out", str(tmp_path / "b")]) == 2
    assert "classes" in _err(capsys)


def test_a_zip_bomb_npz_is_refused_before_it_is_decompressed(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
        with zf.open("X_train.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {**header, "shape": (2**24, 16)})
            chunk = bytes(2**20)
            for _ in range(2**8):  # 256 MiB of zeros, a few hundred KiB compressed
                fh.write(chunk)
    monkeypatch.setenv("BCD_MEMORY_LIMIT_GB", "0.25")
    assert path.stat().st_size < 2**21
    assert main(["train", "--dataset", "npz", "--data-path", str(path), "--n-train", "100", "--hidden", "4",
                 "--out", str(tmp_path / "r")]) == 2
    assert "would inflate" in _err(capsys)


# ------------------------------------------------------------------------------ run-directory integrity


def test_overwrite_removes_every_artefact_of_the_earlier_run(verified_run, capsys):
    assert (verified_run / "trace_sweeps.parquet").is_file() and (verified_run / "report.html").is_file()
    assert main(["train", *SMALL, "--out", str(verified_run), "--overwrite"]) == 0
    left = {p.name for p in verified_run.iterdir()}
    assert not left & {"trace_sweeps.parquet", "trace_blocks.parquet", "verdicts.json", "report.html", "figures"}
    assert main(["verify", str(verified_run), "--figure-formats", "png"]) == 2  # no trace: no stale verdicts
    assert "no trace" in capsys.readouterr().err


def test_out_into_a_foreign_directory_is_refused_and_loses_nothing(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "summary.txt").write_text("my notes")
    assert main(["train", *SMALL, "--out", str(d)]) == 2
    assert "holds no bcd run" in _err(capsys) and (d / "summary.txt").read_text() == "my notes"
    assert main(["train", *SMALL, "--out", str(tmp_path / "run")]) == 0
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    assert main(["train", *SMALL, "--out", str(tmp_path / "run"), "--overwrite"]) == 2
    assert "notes.txt" in _err(capsys) and (tmp_path / "run" / "notes.txt").is_file()


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    import subprocess
    import sys

    from bcd.rundir import release_locks

    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    release_locks()  # this process's own lock (held until exit otherwise): the holder below is another writer
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
        "os.ftruncate(fd, 0); os.pwrite(fd, b'4242', 0); print('held', flush=True); time.sleep(60)"),
        str(out / ".bcd-lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", *SMALL, "--out", str(out), "--overwrite"]) == 2
        assert "another bcd process (pid 4242)" in _err(capsys)
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", *SMALL, "--out", str(out), "--overwrite"]) == 0  # its holder is gone: nothing stale


def test_files_follow_the_umask_and_links_are_not_written_through(verified_run, tmp_path):
    import os
    import stat

    mode = stat.S_IMODE(os.stat(verified_run / "config.json").st_mode)
    assert mode == 0o666 & ~_current_umask()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"precious")
    fig = verified_run / "figures" / "objective.png"
    fig.unlink()
    fig.symlink_to(outside)
    assert main(["report", str(verified_run), "--figure-formats", "png"]) == 0
    assert outside.read_bytes() == b"precious" and not fig.is_symlink()


def _current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_every_file_a_verified_run_writes_is_a_known_artefact(verified_run):
    from bcd.rundir import is_artefact

    assert all(is_artefact(p.name) for p in verified_run.iterdir())


def test_the_markdown_report_keeps_no_raw_html(tmp_path):
    from reports.document import render_markdown
    from reports.runs import load_run

    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--figure-formats", "png", "--out", str(out)]) == 0
    run = load_run(out)
    run.name = "<script>alert(1)</script>"
    md = render_markdown([run], [], ["<img src=x onerror=alert(1)>"], "<b>t</b>", out)
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;" in md


def test_a_combined_report_of_unrelated_trees_needs_out(tmp_path, capsys, monkeypatch):
    import os

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert main(["record", *SMALL, "--out", str(d)]) == 0
    monkeypatch.setattr(os.path, "commonpath", lambda paths: "/")  # as for /home/x/run and /mnt/y/run
    assert main(["report", str(a), str(b)]) == 2
    assert "--out" in _err(capsys)


def test_a_synthetic_set_too_large_to_generate_is_refused(tmp_path, capsys):
    assert main(["train", "--dataset", "mixture", "--n-train", "100000000000", "--hidden", "4",
                 "--out", str(tmp_path / "a")]) == 2
    assert "GiB to generate" in _err(capsys) and not (tmp_path / "a").exists()


def test_out_of_memory_is_exit_3_with_advice(tmp_path, capsys, monkeypatch):
    import bcd.runner

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(bcd.runner, "initial_state", oom)
    assert main(["train", *SMALL, "--out", str(tmp_path / "a")]) == 3
    assert "out of memory" in _err(capsys)


def test_the_audit_never_writes_into_a_training_run(tmp_path, capsys):
    from audit_reference import run_algorithm2, toy_data

    X, Y = toy_data(n=20, d=5, k=3, seed=1)
    d = tmp_path / "iters"
    d.mkdir()
    for k, Q in enumerate(run_algorithm2(X, Y, (5, 4, 4, 3), sweeps=2, gamma=1.0, alpha=2.0)):
        np.savez(d / f"iter_{k}.npz", **Q)
    np.savez(d / "data.npz", X=X.T, Y=Y.T)
    (d / "audit.toml").write_text("gamma = 1.0\nalpha = 2.0\n")
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(run)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert main(["audit", str(d), "--out", str(run)]) == 2
    assert "holds a training run" in _err(capsys)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


# ------------------------------------------------------------------------------ checkpoints under faults


def test_a_checkpoint_write_cut_short_leaves_the_previous_one_usable(tmp_path, monkeypatch):
    import bcd.checkpoint as ck
    from bcd.config import BCDConfig
    from bcd.data import gaussian_mixture
    from bcd.engine import run
    from bcd.inputs import make_problem
    from bcd.problem import initial_state

    d = gaussian_mixture(n=30, d=5, k=3, seed=1)
    p = make_problem(d.X_train, d.y_train, BCDConfig(hidden=(4,), sweeps=4), n_classes=3)
    st = initial_state(p)
    res = run(p, st, sweeps=2)
    rows = res.log.to_dict("records")
    ck.save(tmp_path, st, rows)
    run(p, st, sweeps=1)

    def cut(*a, **k):
        raise OSError("killed while writing the pointer")

    monkeypatch.setattr(ck, "write_text", cut)
    with pytest.raises(OSError):
        ck.save(tmp_path, st, [*rows, rows[-1]])  # the data of sweep 3 is written, the pointer is not
    state, log = ck.load(tmp_path, p)
    assert state.sweep == 2 and len(log) == 3


def test_train_resume_refuses_a_verify_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--checkpoint-every", "1", "--figure-formats", "png", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out)]) == 2
    assert "resume it with that command" in _err(capsys)


def test_an_aborted_verify_invents_no_sweep_and_no_weights(tmp_path, capsys, monkeypatch):
    import bcd.engine

    real = bcd.engine.sweep
    calls = {"n": 0}

    def abort_in_sweep_3(state, problem, schedule, hooks=()):
        calls["n"] += 1
        if calls["n"] == 3:  # a second Ctrl-C in the middle of sweep 3
            def interrupted(*a, **k):
                raise KeyboardInterrupt
            return real(state, problem, [schedule[0], type(schedule[1])(schedule[1].block, schedule[1].layer,
                                                                          interrupted)], hooks)
        return real(state, problem, schedule, hooks)

    monkeypatch.setattr(bcd.engine, "sweep", abort_in_sweep_3)
    out = tmp_path / "run"
    assert main(["verify", *SMALL[:-3], "--sweeps", "5", "--no-progress", "--figure-formats", "png",
                 "--out", str(out)]) == 3
    assert "aborted mid-sweep" in _err(capsys)
    trace = pd.read_parquet(out / "trace_sweeps.parquet")
    assert int(trace["sweep"].max()) == 2 and not (out / "weights.safetensors").exists()
    blocks = pd.read_parquet(out / "trace_blocks.parquet")
    assert int(blocks["sweep"].max()) == 2


def test_a_subset_larger_than_the_data_names_the_key_and_where_it_comes_from(tmp_path, capsys):
    """Without --n-train the embedded default's n_train (6000) applies: the message says which key and why."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X_train=rng.standard_normal((20, 3)), y_train=rng.integers(0, 2, 20))
    assert main(["train", "--dataset", "npz", "--data-path", str(tmp_path / "d.npz"), "--hidden", "4",
                 "--out", str(tmp_path / "r")]) == 2
    err = _err(capsys)
    assert "n_train=6000 is more than the 20 train samples of npz; give n_train <= 20" in err, err
    assert "embedded default config" in err and not (tmp_path / "r").exists()


def test_n_test_for_data_without_a_test_set_is_refused_not_ignored(tmp_path, capsys):
    """teacher data has no test split: --n-test was silently dropped; now it is exit 2 naming the value. Without
    --n-test the same run trains (the embedded defaults set no n_test: MNIST's whole test set is n_test = None)."""
    args = ["train", "--dataset", "teacher", "--n-train", "30", "--hidden", "4", "--sweeps", "1", "--no-progress"]
    assert main([*args, "--n-test", "5", "--out", str(tmp_path / "r")]) == 2
    err = _err(capsys)
    assert "n_test=5 asks for test samples but the teacher data has none" in err, err
    assert not (tmp_path / "r").exists()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X_train=rng.standard_normal((20, 3)), y_train=rng.integers(0, 2, 20))
    npz = ["--dataset", "npz", "--data-path", str(tmp_path / "d.npz"), "--n-train", "20"]
    assert main([*args[:1], *npz, *args[5:], "--n-test", "3", "--out", str(tmp_path / "r")]) == 2
    assert "give a file with X_test and y_test" in _err(capsys)
    assert main([*args, "--out", str(tmp_path / "r")]) == 0
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    assert (env["n_train"], env["n_test"]) == (30, 0)  # the report's data row shows the counts that ran


def test_help_shows_what_a_command_takes(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 bad input" in out and "3 the run could not be completed" in out  # the whole first paragraph
    assert main(["theory", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--trace" in out and not any(f in out for f in ("--out", "--overwrite", "--no-progress", "--nproc"))
    assert main(["theory", "--out", "x"]) == 2  # still parsed, to be refused by name
    assert "--out do(es) not apply to bcd theory" in _err(capsys)


def test_flags_that_would_do_nothing_are_refused_by_name(tmp_path, capsys, monkeypatch):
    """Each of these was accepted and silently changed nothing (or fell back to a default)."""
    monkeypatch.chdir(tmp_path)
    tiny = [a if a != "6,6" else "5,4" for a in SMALL]
    for command in (["train", *SMALL], ["report", "r"], ["audit", "a"], ["reproduce", "mlp3x1500-mnist"]):
        assert main([*command, "--out", ""]) == 2  # train wrote runs/train-default; report's '' was the cwd
        assert "argument --out: '' is not allowed; give a directory path" in _err(capsys)
    assert main(["train", *tiny, "--skip", "auto", "--out", "s"]) == 2  # 10-5-4-3 has no layer to skip
    assert "widths 10-5-4-3 have none" in _err(capsys)
    assert main(["train", *SMALL, "--hidden", "5,,4", "--out", "h"]) == 2  # used to train 5,4
    assert "'' is not a width or DEPTHxWIDTH" in _err(capsys)
    assert main(["theory", "--dataset", "npz", "--data-path", "nonexistent.npz"]) == 2  # never read
    assert "--dataset, --data-path do(es) not apply to bcd theory without --trace" in _err(capsys)
    assert not any(tmp_path.iterdir())


def test_hidden_takes_depth_x_width():
    from bcd.cli import parse_widths

    assert parse_widths("3x1500") == [1500] * 3 and parse_widths("784, 2x300,10") == [784, 300, 300, 10]
    for bad in ("x5", "0x5", "5x", "10000000x5", "5.5", ""):
        with pytest.raises(ValueError, match="is not a width or DEPTHxWIDTH"):
            parse_widths(bad)


def test_report_out_never_replaces_files_it_did_not_write(verified_run, tmp_path, capsys):
    """A folder of the user's own (a report.md and a figure of theirs) is refused and left as it was; a folder that bcd
    report made is written again."""
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "report.md").write_text("my own notes")
    (mine / "figures" / "objective.png").write_text("img")
    assert main(["report", str(verified_run), "--out", str(mine), "--figure-formats", "png"]) == 2
    assert "holds files that bcd report did not write" in _err(capsys)
    assert (mine / "report.md").read_text() == "my own notes"
    assert (mine / "figures" / "objective.png").read_text() == "img"
    assert sorted(p.name for p in mine.rglob("*")) == ["figures", "objective.png", "report.md"]
    for _ in range(2):
        assert main(["report", str(verified_run), "--out", str(tmp_path / "new"), "--figure-formats", "png"]) == 0
    assert (tmp_path / "new" / "report.html").is_file()


def test_misfits_a_launcher_can_see_are_one_line_before_any_rank_starts(tmp_path, capsys):
    """A resume with another world size than its checkpoint's printed the error once per rank; a config.json whose
    [bcd] is a string said "unknown key(s) ['x']" (it iterated the string)."""
    out = tmp_path / "r"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--nproc", "2"]) == 2
    assert "written by 1 process(es), this run has 2: resume it in one process" in _err(capsys)
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "bcd": "x"}))
    assert main(["train", "--resume", str(out)]) == 2
    assert "bcd in the config must be a table ([bcd] with keys); got str 'x'" in _err(capsys)


def _meta(d, edit):
    m = json.loads((d / "trace_meta.json").read_text())
    edit(m)
    (d / "trace_meta.json").write_text(json.dumps(m))


def _sweeps(d, edit):
    edit(pd.read_parquet(d / "trace_sweeps.parquet")).to_parquet(d / "trace_sweeps.parquet")


@pytest.mark.parametrize(("damage", "named"), [
    (lambda d: _meta(d, lambda m: m.update(config=None)), "trace_meta.json' is damaged (its 'config' is NoneType"),
    (lambda d: _meta(d, lambda m: m["config"].update(hidden=[5])), "its 'config' has hidden widths [5] but"),
    (lambda d: _meta(d, lambda m: m["config"].update(gamma="abc")), "its 'config' is not a configuration: gamma="),
    (lambda d: _sweeps(d, lambda s: s.astype({S.OBJECTIVE: str})), "'objective' hold"),
    (lambda d: _sweeps(d, lambda s: s.iloc[:0]), "trace_sweeps.parquet' is damaged (it has no sweep rows)"),
    (lambda d: _sweeps(d, lambda s: s.drop(columns=[S.OBJECTIVE, S.DECREASE])),
     "lacks the column(s) 'objective', 'decrease' the recorder always writes"),
    (lambda d: (d / "trace_blocks.parquet").unlink(), "trace_blocks.parquet' is missing"),
    (lambda d: (d / "trace_meta.json").unlink(), "trace_meta.json' is missing"),
])
def test_a_damaged_trace_is_refused_by_verify_and_report_and_nothing_is_rewritten(verified_run, capsys, damage,
                                                                                  named):
    """Each of these gave an internal error (exit 3), numpy's own message, or passed with exit 0 — and a failed
    re-verify had already rewritten verdicts.json."""
    damage(verified_run)
    before = {p.name: p.read_bytes() for p in verified_run.iterdir() if p.is_file()}
    assert main(["verify", str(verified_run), "--figure-formats", "png"]) == 2
    assert named in _err(capsys)
    assert main(["report", str(verified_run), "--figure-formats", "png"]) == 2
    assert named in _err(capsys)
    assert {p.name: p.read_bytes() for p in verified_run.iterdir() if p.is_file()} == before
