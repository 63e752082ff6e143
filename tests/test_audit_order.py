"""Auditing another implementation update by update (MATH.md §11): a NumPy re-implementation of Algorithm 2
(tests/audit_reference.py, written independently of the package) and its planted bugs, audited from their iterates
alone with the declared update order — in-process and through the file format and ``bcd audit``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from audit_reference import MUTANTS, run_algorithm2, toy_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcd.config import BCDConfig
from bcd.engine import train
from bcd.schedule import schedule_for
from verification import schema as S  # noqa: N812
from verification.audit import IterateWriter, audit
from verification.auditor import Auditor, unchecked_claims
from verification.checks import CHECKS, verify
from verification.recorder import Recorder

MUTANTS_MD = Path(__file__).resolve().parents[1] / "verification" / "MUTANTS.md"
BEGIN, END = "<!-- audit table: begin -->", "<!-- audit table: end -->"
WIDTHS = (5, 4, 4, 3)
SETTINGS = [dict(gamma=1.0, alpha=2.0), dict(gamma=0.5, alpha=3.0), dict(gamma=2.0, alpha=0.7)]
SWEEPS = 8


def _audit(iterates, X, Y, order="three-splitting", *, by_block=False, **kw) -> Auditor:
    cfg = BCDConfig(hidden=WIDTHS[1:-1], dtype="float64", **kw)
    aud = Auditor(X.T, Y.T, cfg, order=order)
    aud.observe(iterates[0])
    names = [s.name for s in schedule_for(aud.config.splitting, aud.config.N)]
    for Q in iterates[1:]:
        if by_block:
            for name in names:
                aud.observe_block(name, Q[name])
        else:
            aud.observe(Q)
    return aud


def _changes(mutant: str, kw: dict) -> bool:
    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    good = run_algorithm2(X, Y, WIDTHS, sweeps=SWEEPS, **kw)
    bad = run_algorithm2(X, Y, WIDTHS, sweeps=SWEEPS, mutant=mutant, **kw)
    return any(not np.allclose(g[k], b[k], rtol=1e-12, atol=1e-12) for g, b in zip(good, bad, strict=True) for k in g)


@pytest.fixture(scope="module")
def results():
    """{mutant: [(changes the iterates, failed claims, block_exactness explanation, failed claims without the
    order) per setting]}."""
    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    out = {}
    for name in MUTANTS:
        out[name] = []
        for kw in SETTINGS:
            its = run_algorithm2(X, Y, WIDTHS, sweeps=SWEEPS, mutant=name, **kw)
            verdicts = _audit(its, X, Y, **kw).verify()
            blind = {v.claim for v in _audit(its, X, Y, order=None, **kw).verify() if v.status == "fail"}
            by = {v.claim: v for v in verdicts}
            out[name].append((_changes(name, kw), {v.claim for v in verdicts if v.status == "fail"},
                              by["block_exactness"].explanation, blind))
    return out


@pytest.mark.parametrize("name", list(MUTANTS))
def test_every_mutant_is_caught_in_every_setting_where_it_changes_the_iterates(results, name):
    for kw, (changed, failed, _, _) in zip(SETTINGS, results[name], strict=True):
        assert changed, f"{name} does not change the iterates at {kw}: nothing to catch"
        assert "block_exactness" in failed, f"{name} escaped the exactness audit at {kw}: {failed}"


def test_the_jacobi_bias_step_is_named_with_its_block_and_sweep(results):
    import re

    for _, _, why, _ in results["jacobi_bias"]:
        assert re.search(r"block\(s\) W1 are not exact minimisers: residual \S+ at sweep \d+", why), why


def test_the_correct_loop_passes_every_check_with_the_order_and_leaves_nothing_unchecked():
    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    aud = _audit(run_algorithm2(X, Y, WIDTHS, sweeps=SWEEPS, **SETTINGS[0]), X, Y, **SETTINGS[0])
    tr = aud.trace()
    verdicts = verify(tr, aud.config)
    status = {v.claim: v.status for v in verdicts}
    assert status["block_exactness"] == status["monotone_descent"] == status["sufficient_descent"] == "pass"
    assert not any(v.status == "fail" for v in verdicts)
    assert not unchecked_claims(verdicts, tr)
    assert tr.meta[S.META_SOURCE] == "audit" and tr.meta[S.META_BLOCKS_ARE_UPDATES] is True
    assert float(tr.blocks[S.BLOCK_RESIDUAL].max()) < 1e-12


def test_without_the_order_the_per_update_claims_are_reported_unchecked():
    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    its = run_algorithm2(X, Y, WIDTHS, sweeps=SWEEPS, mutant="jacobi_bias", **SETTINGS[0])
    aud = _audit(its, X, Y, order=None, **SETTINGS[0])
    tr = aud.trace()
    verdicts = verify(tr, aud.config)
    assert not any(v.status == "fail" for v in verdicts)  # the Jacobi step descends: invisible without the order
    unchecked = dict(unchecked_claims(verdicts, tr))
    assert "block_exactness" in unchecked and "--order" in unchecked["block_exactness"]
    assert "Jacobi" in unchecked["block_exactness"]


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(gamma=st.floats(0.1, 5.0), alpha=st.floats(0.1, 5.0), lam=st.sampled_from([0.0, 0.3]),
       widths=st.sampled_from([(5, 4, 3), (5, 4, 4, 3), (4, 4, 4, 2), (6, 3, 5, 2)]), seed=st.integers(0, 10_000),
       activation=st.sampled_from(["relu", "relu", "identity"]), skips=st.booleans())
def test_the_correct_loop_raises_no_false_alarm(gamma, alpha, lam, widths, seed, activation, skips):
    """30 random float64 configurations of the NumPy loop (ResNet skips included): no check fails."""
    X, Y = toy_data(n=16, d=widths[0], k=widths[-1], seed=seed)
    its = run_algorithm2(X, Y, widths, gamma=gamma, alpha=alpha, lam=lam, sweeps=5, seed=seed, activation=activation,
                         skips=skips)
    cfg = BCDConfig(hidden=widths[1:-1], dtype="float64", gamma=gamma, alpha=alpha, lam=lam, activation=activation)
    aud = Auditor(X.T, Y.T, cfg, order="resnet" if skips else "three-splitting")
    for Q in its:
        aud.observe(Q)
    failed = [(v.claim, v.explanation) for v in aud.verify() if v.status == "fail"]
    assert not failed


def test_block_by_block_files_and_cli_give_the_same_verdicts(tmp_path):
    """The same run fed per sweep, per block update (the on_block callback) and through files + ``bcd audit``."""
    from bcd.cli import main

    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    kw = dict(gamma=1.0, alpha=2.0, lam=0.1)
    seen = []
    its = run_algorithm2(X, Y, WIDTHS, sweeps=5, mutant="jacobi_bias", on_block=lambda name, Q: seen.append(name),
                         **kw)
    per_sweep = _audit(its, X, Y, **kw).verify()
    per_block = _audit(its, X, Y, by_block=True, **kw).verify()
    import torch

    as_torch = [{k: torch.from_numpy(v) for k, v in Q.items()} for Q in its]  # torch blocks (float64, CPU) as well
    torch_verdicts = _audit(as_torch, X, Y, **kw).verify()
    d = tmp_path / "iters"
    d.mkdir()
    for k, Q in enumerate(its):
        np.savez(d / f"iter_{k:04d}.npz", **Q)
    np.savez(d / "data.npz", X=X.T, Y=Y.T)
    (d / "audit.toml").write_text(f"gamma = {kw['gamma']}\nalpha = {kw['alpha']}\nlam = {kw['lam']}\n")
    np.savez(d / "meta.npz", note=np.array([1.0]))  # a user's own file: ignored, never read as an iterate
    files = verify(audit(d, order="three-splitting"))
    assert main(["audit", str(d), "--order", "three-splitting", "--out", str(tmp_path / "out")]) == 1  # a fail
    saved = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    for other in (per_block, torch_verdicts, files):
        assert [(v.claim, v.status) for v in other] == [(v.claim, v.status) for v in per_sweep]
        for a, b in zip(other, per_sweep, strict=True):
            assert (a.measured is None and b.measured is None) or a.measured == pytest.approx(b.measured, rel=1e-9)
    assert [(v["claim"], v["status"]) for v in saved] == [(v.claim, v.status) for v in per_sweep]
    assert seen[:9] == [s.name for s in schedule_for("three", 3)]


def test_order_file_and_the_engines_own_run(tmp_path):
    """Our engine's run dumped by IterateWriter, audited with an order file: the block table equals the recorder's
    (generic path) — decreases, steps, residuals — so the audit sees exactly what the recorder sees."""
    from bcd.data import gaussian_mixture

    data = gaussian_mixture(n=30, d=5, k=3, seed=4)
    cfg = BCDConfig(hidden=(4, 4), gamma=0.8, alpha=1.5, lam=0.2, sweeps=4, skip="auto")
    rec = Recorder("full", path="generic")
    train(data.X_train, data.y_train, cfg, hooks=[rec, IterateWriter(tmp_path / "it")])
    names = [s.name for s in schedule_for("three", cfg.N)]
    (tmp_path / "order.toml").write_text(f'variant = "resnet"\nblocks = {json.dumps(names)}\n')
    tr = audit(tmp_path / "it", order=tmp_path / "order.toml")
    mine = rec.trace().blocks
    for col in (S.SWEEP, S.STEP, S.BLOCK_DECREASE, S.BLOCK_DELTA_SQ, S.BLOCK_CONST):
        np.testing.assert_allclose(tr.blocks[col].to_numpy(float), mine[col].to_numpy(float), rtol=1e-9, atol=1e-12,
                                   err_msg=col)
    assert (tr.blocks[S.BLOCK_RESIDUAL] < 1e-12).all()
    assert tr.meta["order"] == names and tr.meta[S.META_FILES][0] == "iter_000000.npz"


# ------------------------------------------------------------------------------ bad input


def _dir(tmp_path, its, X, Y):
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    for k, Q in enumerate(its):
        np.savez(d / f"iter_{k:04d}.npz", **Q)
    np.savez(d / "data.npz", X=X.T, Y=Y.T)
    (d / "audit.toml").write_text("gamma = 1.0\nalpha = 2.0\n")
    return d


@pytest.mark.parametrize("fault", ["missing_block", "shape", "nan", "unknown_block", "one_iterate", "pickled",
                                   "mixed_stems", "gap"])
def test_bad_audit_input_is_a_clear_error_and_writes_nothing(tmp_path, fault, capsys):
    from bcd.cli import main

    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    its = run_algorithm2(X, Y, WIDTHS, sweeps=3, gamma=1.0, alpha=2.0)
    args = ["--order", "three-splitting"]
    expect = {"missing_block": "U2", "shape": "V1 has shape", "nan": "NaN", "unknown_block": "X7",
              "one_iterate": "one iterate", "pickled": "pickle", "mixed_stems": "stems", "gap": "jump"}[fault]
    if fault == "missing_block":
        its[2] = {k: v for k, v in its[2].items() if k != "U2"}
    elif fault == "shape":
        its[1] = {**its[1], "V1": its[1]["V1"][:, :-1]}
    elif fault == "nan":
        its[3] = {**its[3], "W2": np.full_like(its[3]["W2"], np.nan)}
    elif fault == "one_iterate":
        its = its[:1]
    d = _dir(tmp_path, its, X, Y)
    if fault == "unknown_block":
        (tmp_path / "o.toml").write_text('blocks = ["V3", "U3", "W3", "X7"]\n')
        args = ["--order", str(tmp_path / "o.toml")]
    elif fault == "pickled":
        np.savez(d / "iter_0001.npz", **{**its[1], "W1": np.array([{"W1": 1}], dtype=object)})  # a pickled array
    elif fault == "mixed_stems":
        np.savez(d / "step_0000.npz", **its[0])
    elif fault == "gap":
        (d / "iter_0002.npz").unlink()
    out = tmp_path / "out"
    assert main(["audit", str(d), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err, err
    assert not out.exists()


# ------------------------------------------------------------------------------ the table


def _table(results) -> str:
    claims = list(CHECKS)
    n = len(SETTINGS)
    lines = [BEGIN, "", "## Auditing another implementation (`bcd audit --order`)", "",
             "Generated by `tests/test_audit_order.py` (rewrite with `BCD_UPDATE_MUTANTS_MD=1 pytest "
             "tests/test_audit_order.py`); do not edit by hand.", "",
             "A NumPy re-implementation of Algorithm 2 written independently of the engine "
             "(`tests/audit_reference.py`) "
             f"and each mutant run on {n} float64 problems (ReLU, widths {WIDTHS}, n = 20, {SWEEPS} sweeps; (γ, α) = "
             + ", ".join(f"({p['gamma']:g}, {p['alpha']:g})" for p in SETTINGS)
             + "). Only their iterates reach the auditor (`Auditor(..., order=\"three-splitting\")`). A cell k/"
             f"{n} means the check returned `fail` on k of the {n} problems; every mutant changes the iterates in "
             "every setting.", "",
             "| mutant | " + " | ".join(claims) + " | any check, without `--order` |",
             "|---|" + "---|" * (len(claims) + 1)]
    for name, desc in MUTANTS.items():
        counts = [sum(c in failed for _, failed, _, _ in results[name]) for c in claims]
        blind = sum(bool(b) for *_, b in results[name])
        lines.append(f"| {name}: {desc} | " + " | ".join(f"**{k}/{n}**" if k else "–" for k in counts)
                     + f" | {blind}/{n} |")
    lines += ["", "The last column is the same audit without the declared order (iterate-level checks only). "
              "The correct loop on 30 random float64 configurations (ResNet skips included) fails no check "
              "(`test_the_correct_loop_raises_no_false_alarm`).", "", END]
    return "\n".join(lines)


def test_the_audit_table_in_mutants_md_is_current(results):
    text = MUTANTS_MD.read_text(encoding="utf-8")
    table = _table(results)
    if os.environ.get("BCD_UPDATE_MUTANTS_MD"):
        head = text.split(BEGIN)[0].rstrip("\n")
        tail = text.split(END, 1)[1] if END in text else "\n"  # what follows the table (the catalogue) is kept
        text = head + "\n\n" + table.split(END)[0] + END + tail
        MUTANTS_MD.write_text(text, encoding="utf-8")
    assert BEGIN in text and text.split(BEGIN)[1].split(END)[0] == table.split(BEGIN)[1].split(END)[0], (
        "rerun with BCD_UPDATE_MUTANTS_MD=1 pytest tests/test_audit_order.py")


def test_algorithm_1_with_relu_is_auditable_with_its_order(tmp_path):
    """Our Algorithm 1 (ReLU, inner solvers) dumped to files and audited with --order two-splitting: the block
    decreases equal the recorder's, no check fails, and the inner blocks' stopping rule is judged from the
    recomputed stationarity (no solver report reaches an audit)."""
    from bcd.data import gaussian_mixture

    data = gaussian_mixture(n=30, d=5, k=3, seed=4)
    cfg = BCDConfig(hidden=(4, 4), gamma=1.0, alpha=1.0, sweeps=4, splitting="two")
    rec = Recorder("full")
    train(data.X_train, data.y_train, cfg, hooks=[rec, IterateWriter(tmp_path / "it")])
    tr = audit(tmp_path / "it", order="two-splitting")
    mine = rec.trace().blocks
    np.testing.assert_allclose(tr.blocks[S.BLOCK_DECREASE].to_numpy(float), mine[S.BLOCK_DECREASE].to_numpy(float),
                               rtol=1e-9, atol=1e-12)
    inner = tr.blocks[S.BLOCK_STATIONARITY].notna()
    assert inner.any() and tr.blocks.loc[inner, S.BLOCK_RULE_HELD].isna().all()  # no report reaches an audit
    verdicts = {v.claim: v for v in verify(tr)}
    assert not [c for c, v in verdicts.items() if v.status == "fail"]
    judged = verdicts["block_exactness"].details["inner"]
    assert judged["n_updates"] == judged["n_no_report"] == int(inner.sum())


def test_cli_without_order_names_what_it_could_not_check_and_strict_exits_1(tmp_path, capsys):
    from bcd.cli import main

    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    d = _dir(tmp_path, run_algorithm2(X, Y, WIDTHS, sweeps=SWEEPS, gamma=1.0, alpha=2.0), X, Y)
    assert main(["audit", str(d), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "update order: not declared" in out and "not checked" in out and "block_exactness: the update order" in out
    assert main(["audit", str(d), "--strict", "--out", str(tmp_path / "b")]) == 1
    assert main(["audit", str(d), "--order", "three-splitting", "--strict", "--out", str(tmp_path / "c")]) == 0


def test_in_process_misuse_is_a_clear_error():
    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    its = run_algorithm2(X, Y, WIDTHS, sweeps=2, gamma=1.0, alpha=2.0)
    cfg = BCDConfig(hidden=WIDTHS[1:-1], dtype="float64", gamma=1.0, alpha=2.0)
    aud = Auditor(X.T, Y.T, cfg, order="three-splitting")
    aud.observe(its[0])
    with pytest.raises(ValueError, match="observed block 'U3' at step 0 of sweep 1, but the declared order updates V3"):
        aud.observe_block("U3", its[1]["U3"])
    aud.observe_block("V3", its[1]["V3"])
    with pytest.raises(ValueError, match="sweep 1 is incomplete: 1 of 9 blocks"):
        aud.trace()
    with pytest.raises(ValueError, match="in the middle of sweep 1"):
        aud.observe(its[1])
    two = Auditor(X.T, Y.T, cfg, order="two-splitting")  # three-splitting iterates: U blocks are not its blocks
    with pytest.raises(ValueError, match="U1, U2, U3 that the 'two' variant does not have"):
        two.observe(its[0])
    with pytest.raises(ValueError, match="order entry 3"):
        Auditor(X.T, Y.T, cfg, order=["V3", "U3", "W3", "Q2"])
    with pytest.raises(ValueError, match="never updates"):  # refused at construction, before any iterate
        Auditor(X.T, Y.T, cfg, order=["V3", "U3", "W3"])


def test_real_targets_with_labels_give_the_accuracy():
    X, Y = toy_data(n=20, d=WIDTHS[0], k=WIDTHS[-1], seed=1)
    its = run_algorithm2(X, Y, WIDTHS, sweeps=2, gamma=1.0, alpha=2.0)
    cfg = BCDConfig(hidden=WIDTHS[1:-1], dtype="float64", gamma=1.0, alpha=2.0)
    aud = Auditor(X.T, Y.T, cfg, order="three-splitting", labels=Y.argmax(axis=0))
    for Q in its:
        aud.observe(Q)
    acc = aud.trace().sweeps[S.TRAIN_ACC]
    assert acc.notna().all() and ((acc >= 0) & (acc <= 1)).all()
    with pytest.raises(ValueError, match="labels"):
        Auditor(X.T, Y.T, cfg, labels=np.full(20, 0.7))
    with pytest.raises(ValueError, match="labels"):
        Auditor(X.T, Y.T, cfg, labels=np.full(20, 7))
