"""`bcd verify` and `bcd report`: exit codes 0 / 1 / 2, files written, real checks on saved traces,
several seeds grouped into bands."""

from __future__ import annotations

import json

import pytest
from reports_traces import write_run

from bcd.cli import main
from reports.document import FIGURES_DIR
from reports.runs import group_labels, groups, load_run
from theory import constants
from verification.verdict import VERDICTS_FILE as VERDICTS

PNG_ONLY = ["--figure-formats", "png"]  # PDFs are tested in test_reports_document.py; PNG keeps these fast
SMALL = ["--dataset", "mixture", "--n-train", "60", "--n-test", "30", "--hidden", "6,5", "--sweeps", "6"]


def test_verify_trains_checks_and_reports_exit_0(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "verify-default"  # the embedded default's run directory
    assert main(["verify", *SMALL, "--no-progress", *PNG_ONLY]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "environment.json",
        "trace_sweeps.parquet",
        "trace_blocks.parquet",
        VERDICTS,
        "report.html",
        "report.md",
        FIGURES_DIR,
    } <= names
    verdicts = json.loads((out / VERDICTS).read_text())
    assert {v["claim"] for v in verdicts} == set(constants.CLAIM_IDS)
    assert "mixture (n_train 60, n_test 30, subset stratified)" in (out / "report.md").read_text()  # the counts run
    assert all(v["status"] != "fail" for v in verdicts if v["guaranteed"])
    run = load_run(out)
    assert run.trace.meta["preset"] == "full" and len(run.trace.blocks) > 0
    assert "report:" in capsys.readouterr().out
    # the embedded default replaces its own run directory (`make demo` can be run again), but only a run of the
    # same configuration: the demo's directory with other flags is refused, as any run directory is
    sweeps = len(load_run(out).trace.sweeps)
    assert main(["verify", *SMALL, "--no-progress", *PNG_ONLY]) == 0
    assert main(["verify", *SMALL, "--sweeps", "2", "--no-progress", *PNG_ONLY]) == 2
    assert "already holds a run" in capsys.readouterr().err and len(load_run(out).trace.sweeps) == sweeps
    assert main(["verify", *SMALL, "--sweeps", "2", "--overwrite", "--no-progress", *PNG_ONLY]) == 0
    assert len(load_run(out).trace.sweeps) == 3
    # an explicit --out is never clobbered without --overwrite
    assert main(["verify", *SMALL, "--out", str(out), "--no-progress", *PNG_ONLY]) == 2


def test_verify_of_a_failing_run_directory_exits_1(tmp_path, capsys):
    d = write_run(tmp_path / "run", failing=True)
    (d / VERDICTS).unlink()  # re-verified from the saved trace by the real checks
    assert main(["verify", str(d), "--figure-formats", "svg"]) == 1
    assert (d / FIGURES_DIR / "objective.svg").is_file() and not (d / FIGURES_DIR / "objective.pdf").exists()
    printed = capsys.readouterr().out
    assert "FAILED guaranteed claim(s): monotone_descent" in printed
    md = (d / "report.md").read_text()
    row = next(line for line in md.splitlines() if f"[{constants.MONOTONE}]" in line)
    assert "| fail |" in row and "sweep 7 (whole sweep)" in row
    assert '<span class="status fail">fail</span>' in (d / "report.html").read_text()


def test_verify_of_a_passing_run_directory_exits_0(tmp_path):
    d = write_run(tmp_path / "run", verdicts=False)
    assert main(["verify", str(d), *PNG_ONLY]) == 0
    assert {v["status"] for v in json.loads((d / VERDICTS).read_text())} <= {"pass", "inconclusive"}


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "{tmp}/no-such.toml"],  # neither a config file nor a run directory
        ["verify", "{run}", "--gamma", "2"],  # overrides only apply when training
        ["verify", "{run}", "--preset", "cheap"],  # so do the recorder's and the checkpoints' flags
        ["verify", "{run}", "--checkpoint-every", "3"],
        ["verify", "{run}", "--resume", "{run}"],
        ["verify", "--preset", "junk"],  # argparse's own errors: one line too
        ["verify", "--figure-formats", "gif", "--sweeps", "1", "--out", "{tmp}/new"],  # refused before training
        ["record", "--checkpoint-every", "-1", "--out", "{tmp}/new"],
        ["verify", "{tmp}"],  # a directory without a trace
        ["verify", "--preset", "cheap", "--sweeps", "-1"],  # a bad config value
        ["report", "{tmp}/missing"],
        ["report", "{run}", "--figure-formats", "png,eps"],  # a format the report does not write
    ],
)
def test_bad_input_exits_2(tmp_path, argv, capsys):
    run = write_run(tmp_path / "run", verdicts=False)
    argv = [a.format(tmp=tmp_path, run=run) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists()


def test_report_of_several_seeds_overlays_and_bands(tmp_path, capsys):
    dirs = [write_run(tmp_path / f"seed{s}", seed=s, verdicts=s != 2) for s in range(3)]
    dirs.append(write_run(tmp_path / "alpha3", seed=9, alpha=3.0))
    runs = [load_run(d) for d in dirs]
    grouped = groups(runs)
    assert [[r.name for r in g] for g in grouped] == [["seed0", "seed1", "seed2"], ["alpha3"]]
    assert group_labels(grouped) == ["alpha=2 (3 seeds)", "alpha=3"]
    assert main(["report", *map(str, dirs), *PNG_ONLY]) == 0
    out = tmp_path / "report"  # the common parent's report/
    md = (out / "report.md").read_text()
    for name in ("seed0", "seed1", "seed2", "alpha3"):
        assert f"| {name} |" in md and f"## Verdicts — {name}" in md
    assert "run 'seed2' has no verdicts.json" in md
    assert "mean ± standard deviation across seeds" in md
    assert len(list((out / FIGURES_DIR).glob("*.png"))) == 10
    # nothing was recomputed: the saved verdicts are untouched and seed2 still has none
    assert not (dirs[2] / VERDICTS).exists()
    assert "warning:" in capsys.readouterr().out
    # a copy of seed 0 is not a fourth seed: it is a group of its own
    copy = write_run(tmp_path / "seed0-copy", seed=0)
    grouped = groups([*runs[:3], load_run(copy)])
    assert [[r.name for r in g] for g in grouped] == [["seed0", "seed1", "seed2"], ["seed0-copy"]]


def test_embedded_defaults_are_the_documented_jobs(monkeypatch):
    import torch

    from bcd.cli import embedded_config
    from bcd.config import RunConfig
    from verification.cli import DEFAULT_VERIFY_CONFIG, DEFAULT_VERIFY_CONFIG_GPU, default_config_name

    cpu = RunConfig.from_dict(embedded_config(DEFAULT_VERIFY_CONFIG))
    gpu = RunConfig.from_dict(embedded_config(DEFAULT_VERIFY_CONFIG_GPU))
    for cfg in (cpu, gpu):
        assert cfg.data.dataset == "mnist" and cfg.bcd.splitting == "three"
        assert cfg.bcd.activation == "relu" and cfg.bcd.dtype == "float64"
    assert cpu.bcd.device == "cpu" and cpu.data.n_train is not None
    assert gpu.bcd.device == "cuda" and gpu.data.n_train is None and gpu.bcd.hidden == (1500, 1500, 1500)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_config_name() == DEFAULT_VERIFY_CONFIG_GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_config_name() == DEFAULT_VERIFY_CONFIG


def test_strict_turns_an_unresolved_guaranteed_claim_into_a_failure(tmp_path, capsys):
    """With 0 sweeps nothing can be resolved: guaranteed claims are inconclusive, exit 0 unless --strict."""
    out = tmp_path / "empty"
    assert main(["verify", *SMALL, "--sweeps", "0", "--out", str(out), "--no-progress", *PNG_ONLY]) == 0
    assert "--strict makes it one" in capsys.readouterr().out
    assert main(["verify", str(out), "--strict", *PNG_ONLY]) == 1
    assert "a failure under --strict" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "content", "argv", "message"), [
    ("config.json", "[1]", ["train", "--resume"], "config.json' is damaged (a JSON list, not an object)"),
    ("config.json", "[1]", ["report"], "config.json' is damaged (a JSON list"),
    ("verdicts.json", '[{"claim": "x"}]', ["report"], "verdicts.json' is damaged (not a list of verdicts"),
    ("verdicts.json", '[{"claim": "x", "title": "t", "status": "pass", "worst": [1, 2]}]', ["report"],
     "verdicts.json' is damaged (not a list of verdicts: verdict field 'worst' = [1, 2] is not dict or null)"),
    ("verdicts.json", '[{"claim": "x", "title": "t", "status": "pass", "theoretical": [1]}]', ["report"],
     "verdicts.json' is damaged (not a list of verdicts: verdict field 'theoretical'"),
    ("verdicts.json", '[{"claim": "x", "title": "t", "status": "bogus"}]', ["report"],
     "verdicts.json' is damaged (not a list of verdicts: status='bogus' is not allowed"),
    ("config.json", '{"data": [1]}', ["report"], "config.json' is damaged (its 'data' section is list"),
    ("trace_meta.json", '{"n": "abc"}', ["report"], "trace_meta.json' is damaged (its n 'abc' is not a positive"),
    ("environment.json", "{", ["report"], "environment.json' is damaged (not JSON"),
    ("trace_meta.json", "x", ["verify"], "trace_meta.json' is damaged (not JSON"),
])
def test_a_damaged_file_of_a_run_directory_is_named_in_one_line(tmp_path, capsys, name, content, argv, message):
    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--out", str(out), "--no-progress", *PNG_ONLY]) == 0
    (out / name).write_text(content)
    capsys.readouterr()
    assert main([*argv, str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_damaged_verdicts_json_leaves_the_old_report_and_figures_alone(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--out", str(out), "--no-progress", *PNG_ONLY]) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    verdicts = json.loads((out / "verdicts.json").read_text())
    verdicts[0]["worst"] = [1, 2]
    (out / "verdicts.json").write_text(json.dumps(verdicts))
    assert main(["report", str(out)]) == 2
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "verdicts.json"}
    assert after == {p: t for p, t in before.items() if p.name != "verdicts.json"}


@pytest.mark.parametrize(("argv", "message"), [
    (["reproduce", "global-minimum", "--seeds", "-3"], "--seeds '-3': seeds=[-3] is not allowed; give a list of "
     "integers in [0, 2**64)"),
    (["reproduce", "mlp3x1500-mnist", "--seeds", "0,-1", "--n-train", "50"], "--seeds '0,-1': seeds=[0, -1]"),
    (["reproduce", "global-minimum", "--out", "{file}"], "is a file; give a folder"),
    (["reproduce", "mlp3x1500-mnist", "--out", "{file}"], "is a file; give a folder"),
    (["report", "{file}"], "is a file, not a run directory"),
])
def test_reproduce_and_report_refuse_bad_seeds_and_files_before_writing(tmp_path, capsys, argv, message):
    f = tmp_path / "a-file"
    f.write_text("keep")
    before = sorted(tmp_path.rglob("*"))
    assert main([a.format(file=f) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert sorted(tmp_path.rglob("*")) == before and f.read_text() == "keep"


def test_a_config_json_of_another_network_than_the_trace_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--out", str(out), "--no-progress", *PNG_ONLY]) == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg["bcd"]["hidden"] = [5]
    (out / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "config.json' is damaged (its hidden widths [5] are not those of the run's trace" in err, err


def test_a_config_json_with_an_unknown_key_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--out", str(out), "--no-progress", *PNG_ONLY]) == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg["bcd"]["bogus"] = 1
    (out / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert "config.json' is damaged" in capsys.readouterr().err


def test_resume_keeps_the_recorder_it_checkpointed(tmp_path, capsys):
    """`bcd record --resume` on a verify run would extend its trace under stale verdicts: refused, naming the command
    that continues it; a preset or schedule given with --resume would be silently ignored: refused."""
    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--out", str(out), "--no-progress", *PNG_ONLY]) == 0
    capsys.readouterr()
    assert main(["record", "--resume", str(out)]) == 2
    assert f"continue it with bcd verify --resume {out}" in capsys.readouterr().err
    for flags in (["--preset", "cheap"], ["--every", "2"]):
        command = "record" if flags[0] == "--every" else "verify"
        assert main([command, "--resume", str(out), *flags]) == 2
        assert f"{flags[0]} do not apply" in capsys.readouterr().err


def test_report_out_never_replaces_another_runs_report(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert main(["verify", *SMALL, "--out", str(d), "--no-progress", *PNG_ONLY]) == 0
    before = (b / "report.md").read_bytes()
    capsys.readouterr()
    assert main(["report", str(a), "--out", str(b), *PNG_ONLY]) == 2
    assert "directory of another run" in capsys.readouterr().err and (b / "report.md").read_bytes() == before
    assert main(["report", str(a), "--out", str(a / "config.json"), *PNG_ONLY]) == 2
    assert main(["report", str(a), "--out", str(tmp_path / "combined"), *PNG_ONLY]) == 0


def test_theory_refuses_a_trace_of_another_network(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["verify", *SMALL, "--out", str(out), "--no-progress", *PNG_ONLY]) == 0
    capsys.readouterr()
    assert main(["theory", "--trace", str(out), "--hidden", "8,8,8"]) == 2
    assert "hidden widths [6, 5] but the configuration [8, 8, 8]" in capsys.readouterr().err
    assert main(["theory", "--trace", str(out)]) == 0
    # another objective: the trace's B and L̄⁰ are not its own, unless both are given
    assert main(["theory", "--trace", str(out), "--gamma", "50"]) == 2
    assert "differs from the trace's run in gamma=50.0 (the trace: " in capsys.readouterr().err
    assert main(["theory", "--trace", str(out), "--gamma", "50", "--B", "10", "--L0", "100"]) == 0
    assert main(["theory", "--trace", str(out), "--n-train", "5000"]) == 2
    assert "leave out --n-train" in capsys.readouterr().err
    assert main(["theory", "--trace", str(out), "--dataset", "teacher"]) == 2
    assert "--dataset with --trace" in capsys.readouterr().err
    assert main(["report", str(out), str(tmp_path / "." / "run"), *PNG_ONLY]) == 2  # one run given twice
    assert "is given twice" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [(["--nproc", "2"], "--nproc does not apply to bcd theory"),
                                                (["--out", "x"], "--out do(es) not apply to bcd theory")])
def test_theory_refuses_run_flags_it_would_ignore(flags, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["theory", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
