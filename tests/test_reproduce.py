"""``bcd reproduce``: a tiny version of every packaged experiment runs (2 seeds, 2 sweeps/epochs, a small subset),
and its folder holds per-run logs, the long results, the summary table, the figure and the page; the comparison is
fair (every method starts from the same forward pass per seed); a reproduction continues with the runs not done."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch

from bcd.cli import main
from bcd.data import load_fashion_mnist
from reports.reproduce import BCD, load_experiment, packaged, reproduce, seeds_done, summary_table

TINY = {"seeds": [0, 1], "sweeps": 2, "n_train": 200, "n_test": 200}


def _fashion_installed() -> bool:
    try:
        load_fashion_mnist()
    except FileNotFoundError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(packaged()))
def test_a_tiny_version_of_every_packaged_experiment(name, tmp_path):
    exp = load_experiment(name, **TINY)
    if exp.data.get("dataset") == "fashion-mnist" and not _fashion_installed():
        pytest.skip("Fashion-MNIST is not installed (../shared/DATA.md)")
    out = reproduce(exp, tmp_path / name, progress=False)
    df = pd.read_csv(out / "results.csv")
    assert set(df["method"]) == set(exp.method_names) and set(df["seed"]) == {0, 1}
    assert sorted(df["epoch"].unique()) == [0, 1, 2]
    assert df["test_acc"].between(0, 1).all() and df["train_acc"].between(0, 1).all()
    # fairness: per seed, every method starts from the same weights, hence the same epoch-0 predictions
    start = df[df["epoch"] == 0].groupby("seed")["test_acc"].nunique()
    assert (start == 1).all(), df[df["epoch"] == 0]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"]) == list(exp.method_names)
    for r in summary.to_dict("records"):
        finals = df[(df["method"] == r["method"]) & (df["epoch"] == 2)]["test_acc"]
        assert r["final_mean"] == pytest.approx(finals.mean()) and r["final_min"] == pytest.approx(finals.min())
    png = out / "accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    md = (out / "report.md").read_text()
    assert "BCD verdicts" in md and "final test acc" in md and "accuracy.png" in md
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    for s in (0, 1):
        assert (out / BCD / f"seed-{s}" / "verdicts.json").is_file()
    for m in exp.method_names:  # every run records where and how long it ran, and the page lists each run
        for s in (0, 1):
            env = json.loads((out / m / f"seed-{s}" / "environment.json").read_text())
            assert env["torch"] == torch.__version__ and env["wall_time_s"] > 0
    assert "Environment of each run" in md and md.count(torch.__version__) == 2 * len(exp.method_names)


def test_a_reproduction_continues_with_the_runs_not_done(tmp_path):
    exp = load_experiment("mlp3x1500-mnist", seeds=[0], sweeps=1, n_train=100, n_test=100)
    out = reproduce(exp, tmp_path / "r", progress=False)
    logs = {p: p.stat().st_mtime_ns for p in out.rglob("log.csv")}
    assert len(logs) == 3
    more = load_experiment("mlp3x1500-mnist", seeds=[0, 3], sweeps=1, n_train=100, n_test=100)
    reproduce(more, out, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in logs.items())  # seed 0 was not rerun
    assert len(list(out.rglob("log.csv"))) == 6
    assert set(pd.read_csv(out / "results.csv")["seed"]) == {0, 3}


def test_a_killed_bcd_run_continues_from_its_checkpoint(tmp_path):
    """A BCD seed whose log is missing but whose checkpoint exists is resumed, not restarted."""
    exp = load_experiment("mlp3x1500-mnist", seeds=[0], sweeps=2, n_train=100, n_test=100, methods=["bcd"])
    out = reproduce(exp, tmp_path / "r", progress=False)
    d = out / BCD / "seed-0"
    first = pd.read_csv(d / "log.csv")
    os.remove(d / "log.csv")  # as if killed after its last checkpoint
    from reports.reproduce import status

    assert status(exp, out)[0]["state"] == "partial" and "sweep 2 of 2" in status(exp, out)[0]["detail"]
    reproduce(exp, out, progress=False)
    again = pd.read_csv(d / "log.csv")
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), again.drop(columns="seconds"))


def test_summary_table_statistics():
    df = pd.DataFrame({"method": ["m"] * 6, "seed": [0, 0, 0, 1, 1, 1], "epoch": [0, 1, 2] * 2,
                       "train_acc": 0.5, "test_acc": [0.1, 0.9, 0.8, 0.1, 0.7, 0.6], "loss": 1.0,
                       "seconds": [0, 1, 1, 0, 3, 3]})
    r = summary_table(df).iloc[0]
    assert r["final_mean"] == pytest.approx(0.7) and r["final_std"] == pytest.approx(0.1414213562)
    assert r["best_mean"] == pytest.approx(0.8) and (r["best_min"], r["best_max"]) == (0.7, 0.9)
    assert r["seconds_per_epoch"] == pytest.approx(2.0)


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "no-such-experiment"], "packaged"),
    (["reproduce", "mlp3x1500-mnist", "--seeds", "a,b"], "--seeds"),
    (["reproduce", "mlp3x1500-mnist", "--methods", "bcd,rmsprop"], "rmsprop"),
    (["reproduce", "mlp3x1500-mnist", "--sweeps", "0"], "sweeps=0"),
    (["reproduce"], "--list"),
    # an empty list is no list (not "the experiment's default"); a seed no generator takes is refused up front
    (["reproduce", "mlp3x1500-mnist", "--seeds", ""], "--seeds '' names no seed"),
    (["reproduce", "mlp3x1500-mnist", "--seeds", str(2**64)], f"seeds=[{2**64}] is not allowed"),
    (["reproduce", "mlp3x1500-mnist", "--methods", ""], "names no method"),
    (["reproduce", "mlp3x1500-mnist", "--methods", "sgd,sgd"], "names a method twice"),
    (["reproduce", "global-minimum", "--seeds", ""], "--seeds '' names no seed"),
    (["reproduce", "global-minimum", "--seeds", "1,1"], "names a seed twice"),
    (["reproduce", "global-minimum", "--status", "--sweeps", "0"], "sweeps=0"),  # checked before --status answers
    (["reproduce", "no-such-file.toml"], "'no-such-file.toml' does not exist"),
    (["reproduce", "--list", "mlp3x1500-mnist"], "(given: EXPERIMENT, --out)"),
    (["reproduce", "--list", "--seeds", "1"],
     "takes nothing else (given: --out, --seeds); run `bcd reproduce --list` alone"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_list_names_every_packaged_experiment(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in packaged())


def test_the_global_minimum_experiment_writes_its_table_and_figure(tmp_path):
    """Near the teacher L̄ falls far below the run started far from it (the full claim — L̄ → 0 near, a critical
    point with L̄* > 0 far — is the packaged run's, with 10 000 sweeps: RESULTS.md)."""
    from reports.reproduce import global_minimum

    out = global_minimum(tmp_path / "gm", sweeps=40, seeds=(0,), progress=False)
    df = pd.read_csv(out / "global_minimum.csv")
    last = df[df["sweep"] == 40].set_index("start")["objective"]
    assert last["near"] < 0.1 * last["far"]
    assert (df.groupby("start")["objective"].apply(lambda s: (s.diff().dropna() <= 1e-12 * s.abs().max()).all())).all()
    assert (out / "global_minimum.png").read_bytes()[:4] == b"\x89PNG"
    assert "final L̄" in (out / "global_minimum.md").read_text()


def test_a_run_of_another_configuration_is_refused_not_mixed(tmp_path, capsys):
    out = tmp_path / "r"
    exp = load_experiment("mlp3x1500-mnist", seeds=[0], sweeps=1, n_train=100, n_test=100, methods=["bcd", "sgd"])
    reproduce(exp, out, progress=False)
    other = load_experiment("mlp3x1500-mnist", seeds=[0], sweeps=2, n_train=100, n_test=100, methods=["bcd", "sgd"])
    with pytest.raises(ValueError, match=r"another configuration \(differs in bcd.sweeps\)"):
        reproduce(other, out, progress=False)
    assert main(["reproduce", "mlp3x1500-mnist", "--seeds", "0", "--sweeps", "1", "--n-train", "100", "--n-test", "100",
                 "--methods", "bcd,sgd", "--out", str(out), "--no-progress"]) == 0  # the same configuration: done


def test_what_the_data_or_the_folder_cannot_take_fails_before_anything_is_written(tmp_path, capsys):
    """An --n-train beyond the data set is refused before any fingerprint is written, so the corrected command runs
    in the same --out (a typo does not leave a folder of another configuration); and a seed of another configuration
    found late in the list leaves the seeds before it unclaimed."""
    out = tmp_path / "r"
    argv = ["reproduce", "mlp3x1500-mnist", "--sweeps", "1", "--n-test", "100", "--methods", "bcd,sgd",
            "--out", str(out), "--no-progress"]
    assert main([*argv, "--seeds", "1", "--n-train", "60001"]) == 2
    err = capsys.readouterr().err
    assert "n=60001" in err and "60000" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main([*argv, "--seeds", "1", "--n-train", "100"]) == 0
    before = sorted(out.rglob("*"))
    argv[argv.index("--sweeps") + 1] = "2"
    assert main([*argv, "--seeds", "0,1", "--n-train", "100"]) == 2
    assert "another configuration (differs in bcd.sweeps)" in capsys.readouterr().err
    assert sorted(out.rglob("*")) == before  # seed 0 was not claimed


SMALL = """[experiment]
name = "small"
seeds = [0]
sweeps = 2
[data]
dataset = "mixture"
n_train = 120
n_test = 60
[bcd]
hidden = [6, 6]
alpha = {alpha}
[methods.sgd]
optimizer = "sgd"
lr = 0.01
batch_size = 32
"""


def _small(tmp_path, alpha=1.0, name="small.toml"):
    f = tmp_path / name
    f.write_text(SMALL.format(alpha=alpha))
    return str(f)


def test_an_interrupted_bcd_run_is_not_done_and_the_same_command_continues_it(tmp_path, capsys, monkeypatch):
    """Ctrl-C (or SIGTERM) stops BCD after the sweep in progress; the reproduction then stops with exit 3 and no
    log.csv, so the run is not counted as done, and the same command continues it to the last sweep."""
    from bcd import engine

    out = tmp_path / "r"
    argv = ["reproduce", _small(tmp_path), "--sweeps", "4", "--out", str(out), "--no-progress"]
    enter = engine._GracefulStop.__enter__

    def signalled_at_once(self):
        enter(self)
        self.requested = True  # as if SIGINT arrived during the first sweep
        return self

    monkeypatch.setattr(engine._GracefulStop, "__enter__", signalled_at_once)
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same bcd reproduce command again" in err
    assert not (out / "bcd" / "seed-0" / "log.csv").exists() and not (out / "sgd" / "seed-0").exists()
    monkeypatch.setattr(engine._GracefulStop, "__enter__", enter)
    assert main(argv) == 0
    log = pd.read_csv(out / "bcd" / "seed-0" / "log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3, 4]


def test_a_folder_holds_one_experiment_and_its_methods_accumulate(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["--out", str(out), "--no-progress"]
    assert main(["reproduce", _small(tmp_path), "--methods", "bcd", *base]) == 0
    assert main(["reproduce", _small(tmp_path), *base]) == 0  # the baseline added later
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"]) == ["bcd", "sgd"]
    assert main(["reproduce", _small(tmp_path), "--methods", "bcd", "--seeds", "1", *base]) == 0
    assert list(pd.read_csv(out / "summary.csv")["method"]) == ["bcd", "sgd"]  # a BCD-only seed keeps the page whole
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    # another configuration with seeds the folder does not hold: refused, nothing rewritten
    assert main(["reproduce", _small(tmp_path, alpha=2.0, name="other.toml"), "--seeds", "7", *base]) == 2
    err = capsys.readouterr().err
    assert "holds experiment 'small' of another configuration (differs in bcd.alpha)" in err
    assert main(["reproduce", _small(tmp_path), "--sweeps", "3", "--seeds", "8", *base]) == 2
    assert "differs in bcd.sweeps" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    # the same configuration under another name: refused too (the folder's page has one name), nothing rewritten
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(SMALL.format(alpha=1.0).replace('name = "small"', 'name = "renamed"'))
    assert main(["reproduce", str(renamed), *base]) == 2
    assert "holds experiment 'small', of the same configuration as 'renamed'" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    # a folder that is not a reproduction (here: a run directory) is not written into
    run_dir = out / "bcd" / "seed-0"
    assert main(["reproduce", _small(tmp_path), "--out", str(run_dir), "--no-progress"]) == 2
    assert "holds no experiment.json" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("change, message", [
    (lambda out: (out / "bcd" / "seed-0.fingerprint.json").write_text('{"data": '), "fingerprint.json' is damaged"),
    (lambda out: (out / "bcd" / "seed-0.fingerprint.json").write_text("[1, 2]"), "a JSON list, not an object"),
    (lambda out: (out / "sgd" / "seed-0" / "log.csv").write_text("method,seed,epoch\n"), "log.csv' is damaged"),
    (lambda out: (out / "sgd" / "seed-0" / "log.csv").write_text("a,b\n1,2\n"), "columns ['a', 'b']"),
    (lambda out: (out / "experiment.json").write_text("{}"), "experiment.json' is damaged"),
    (lambda out: (out / "bcd" / "seed-0" / "verdicts.json").write_text('{"x": 1}'), "a JSON dict, not a list"),
])
def test_a_damaged_folder_is_named_in_one_line(change, message, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["reproduce", _small(tmp_path), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    change(out)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("seeds = [0]", "seeds = 3"), "seeds=3 is not allowed"),
    (lambda t: t.replace("seeds = [0]", "seeds = [0, 0]"), "names a seed twice"),
    (lambda t: t.replace("[methods.sgd]", "[methods.bcd]"), "not 'bcd'"),
    (lambda t: t.replace("[methods.sgd]", '[methods."../x"]'), "['../x']"),
    (lambda t: t.replace("[bcd]", '[bcd]\nskip = "auto"'), "skip = 'auto' with gradient methods"),
    (lambda t: t.replace("[bcd]", '[bcd]\nr = "nonneg"'), "r = nonneg with gradient methods"),
    (lambda t: t.replace("n_test = 60\n", ""), "no test set"),
    (lambda t: t.replace('name = "small"', 'name = "../up"'), "name = '../up'"),
])
def test_what_the_comparison_cannot_take_is_refused_before_any_run(edit, message, tmp_path, capsys):
    f = tmp_path / "e.toml"
    f.write_text(edit(SMALL.format(alpha=1.0)))
    assert main(["reproduce", str(f), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_bcd_evaluated_every_other_sweep_still_draws_its_curve(tmp_path):
    """With eval_every = 2 BCD's test accuracy is NaN at odd sweeps: the curve and band go through the evaluated
    sweeps (a line through NaNs draws nothing) and the final figure is the last sweep's."""
    from reports.reproduce import accuracy_curves

    f = tmp_path / "e.toml"
    f.write_text(SMALL.format(alpha=1.0).replace("[bcd]", "[bcd]\neval_every = 2").replace("sweeps = 2", "sweeps = 5"))
    out = reproduce(load_experiment(str(f), seeds=[0, 1]), tmp_path / "r", progress=False)
    df = pd.read_csv(out / "results.csv")
    assert df[(df["method"] == "bcd")]["test_acc"].isna().any()
    curves = accuracy_curves(df)
    assert list(curves["bcd"]["epoch"]) == [0, 2, 4, 5] and curves["bcd"]["mean"].notna().all()
    assert list(curves["sgd"]["epoch"]) == [0, 1, 2, 3, 4, 5] and (curves["sgd"]["count"] == 2).all()
    assert (curves["bcd"]["std"] >= 0).all()
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["bcd", "final_mean"] == pytest.approx(curves["bcd"]["mean"].iloc[-1])


def test_global_minimum_status_runs_nothing_and_refuses_flags_it_ignores(tmp_path, capsys):
    out = tmp_path / "gm"
    assert main(["reproduce", "global-minimum", "--status", "--out", str(out)]) == 0
    assert "not done" in capsys.readouterr().out and not out.exists()
    assert main(["reproduce", "global-minimum", "--n-train", "100", "--out", str(out)]) == 2
    assert "--n-train do(es) not apply to global-minimum" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("toml, message", [
    ('[experiment]\nseeds = [0]\n[data]\ndataset = "mnist"\nbogus = 1\n', "unknown key(s) ['bogus'] in [data]"),
    ('[experiment]\nseeds = [0]\n[methods]\nsgd = 3\n', "[methods.sgd]"),
    ('experiment = 5\n', "[experiment]"),
    ('[experiment]\nseeds = [0]\n[methods.sgd]\noptimizer = "sgd"\nmomentum = 2\n', "momentum"),
])
def test_bad_experiment_files_are_one_line_errors(toml, message, tmp_path, capsys):
    f = tmp_path / "e.toml"
    f.write_text(toml)
    assert main(["reproduce", str(f), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_experiment_file_that_is_not_utf8_or_an_out_that_cannot_be_a_folder_is_named(tmp_path, capsys):
    f = tmp_path / "e.toml"
    f.write_bytes("\ufeff[experiment]\nname = 'x'\n".encode("utf-16"))
    assert main(["reproduce", str(f), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{str(f)!r} is not UTF-8 text" in err and len(err.strip().splitlines()) == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    for argv in (["reproduce", _small(tmp_path)], ["reproduce", "global-minimum", "--sweeps", "1"]):
        assert main([*argv, "--out", str(blocker / "sub"), "--no-progress"]) == 2  # its parent is a file
        err = capsys.readouterr().err
        assert "cannot be created" in err and "give an --out you can write to" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "mine"


def test_status_says_where_each_run_stands_and_writes_nothing(tmp_path, capsys):
    from reports.reproduce import claim_run_dir, status

    kw = {"sweeps": 1, "n_train": 100, "n_test": 100, "methods": ["bcd", "sgd"]}
    out = reproduce(load_experiment("mlp3x1500-mnist", seeds=[0], **kw), tmp_path / "r", progress=False)
    more = load_experiment("mlp3x1500-mnist", seeds=[0, 1], **kw)
    claim_run_dir(more, "sgd", 1, out)  # claimed, then killed before its log
    files = sorted(p for p in out.rglob("*"))
    states = {(r["method"], r["seed"]): (r["state"], r["detail"]) for r in status(more, out)}
    assert states[("bcd", 0)][0] == "done" and "final test acc" in states[("bcd", 0)][1]
    assert states[("sgd", 0)][0] == "done" and states[("sgd", 1)][0] == "started"
    assert states[("bcd", 1)] == ("not started", "")
    other = load_experiment("mlp3x1500-mnist", seeds=[0], **{**kw, "n_train": 120})
    assert {r["state"] for r in status(other, out)} == {"other config"}
    assert all("data.n_train" in r["detail"] for r in status(other, out))
    code = main(["reproduce", "mlp3x1500-mnist", "--seeds", "0,1", "--sweeps", "1", "--n-train", "100", "--n-test",
                 "100", "--methods", "bcd,sgd", "--out", str(out), "--status"])
    printed = capsys.readouterr().out
    assert code == 0 and "bcd seed 1: not started" in printed and "3 of 4 runs done" not in printed
    assert "2 of 4 runs done" in printed
    assert sorted(p for p in out.rglob("*")) == files  # nothing written
    (out / "sgd" / "seed-0" / "log.csv").write_text("a,b\n1,2\n")  # one damaged log: that row says so
    states = {(r["method"], r["seed"]): (r["state"], r["detail"]) for r in status(more, out)}
    assert states[("sgd", 0)][0] == "damaged" and "log.csv' is damaged" in states[("sgd", 0)][1]
    assert states[("bcd", 0)][0] == "done"
    foreign = tmp_path / "a-run"  # a folder a real run refuses: --status used to answer "0 of 2 runs done", exit 0
    foreign.mkdir()
    (foreign / "trace_sweeps.parquet").write_text("x")
    assert main(["reproduce", "mlp3x1500-mnist", "--out", str(foreign), "--status"]) == 2
    assert "holds no experiment.json: it is not a bcd reproduce folder" in capsys.readouterr().err
    assert main(["reproduce", "foo"]) == 2  # the names it runs, global-minimum among them
    assert "packaged: global-minimum, mlp10x600-fashion" in capsys.readouterr().err


def test_a_folder_filled_one_seed_at_a_time_is_summarised_whole(tmp_path):
    kw = {"sweeps": 1, "n_train": 100, "n_test": 100, "methods": ["bcd"]}
    out = tmp_path / "r"
    for s in (0, 1):
        reproduce(load_experiment("mlp3x1500-mnist", seeds=[s], **kw), out, progress=False)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["seeds"]) == [2]
    assert json.loads((out / "experiment.json").read_text())["seeds"] == [0, 1]  # the folder's seeds, not the last
    assert set(pd.read_csv(out / "results.csv")["seed"]) == {0, 1}
    md = (out / "report.md").read_text()
    assert "| 0 |" in md and "| 1 |" in md  # both seeds' verdicts
    other = load_experiment("mlp3x1500-mnist", seeds=[2], **{**kw, "n_train": 120})  # another config: not mixed in
    reproduce(other, tmp_path / "r2", progress=False)
    assert seeds_done(other, out) == (2,) and seeds_done(load_experiment("mlp3x1500-mnist", seeds=[5], **kw), out) \
        == (0, 1, 5)
