"""Audit mode: iterates of any implementation → faithful L̄, least-norm subgradient, checks, ``bcd audit``."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import torch

from bcd.cli import main as bcd_main
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture, teacher_student
from bcd.engine import train
from bcd.problem import BCDState, Problem
from verification import schema as S  # noqa: N812
from verification.audit import AUDIT_TOML, IterateWriter, audit
from verification.recorder import Recorder
from verification.subgradient import least_norm_subgradient
from verification.trace import Trace


@pytest.fixture(scope="module")
def data():
    return gaussian_mixture(n=80, d=5, k=3, seed=4)


def _dump(tmp_path, data, fmt="npz", sweeps=6, **kw):
    cfg = BCDConfig(hidden=(6, 4), gamma=1.2, alpha=2.0, sweeps=sweeps, **kw)
    rec = Recorder("standard")
    res = train(data.X_train, data.y_train, cfg, hooks=[rec, IterateWriter(tmp_path, fmt)])
    return rec.trace(), res


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_audit_of_our_own_run_agrees_with_the_recorder(tmp_path, data, fmt):
    """Identity activation: L̄ is differentiable, the least-norm subgradient is the gradient, and equals
    the recorder's in-stream g^k; objective, ‖ΔQ‖², B and accuracy agree to rounding."""
    rec_trace, _ = _dump(tmp_path, data, fmt, activation="identity", lam=0.2)
    aud = audit(tmp_path)
    a, r = aud.sweeps, rec_trace.sweeps
    assert len(a) == len(r) == 7
    for col in (S.OBJECTIVE, S.DQ_SQ, S.BOUND_B, S.CUM_DQ, S.G_NORM, S.CUM_G_SQ, S.TRAIN_ACC, S.act_term(1)):
        np.testing.assert_allclose(a[col].iloc[1:], r[col].iloc[1:], rtol=1e-9, err_msg=col)
    assert aud.meta[S.META_SOURCE] == "audit" and aud.meta[S.META_BLOCKS_ARE_UPDATES] is False
    assert aud.config.gamma == 1.2 and aud.config.lam == 0.2 and aud.config.hidden == (6, 4)
    blk = aud.blocks
    assert S.BLOCK_DECREASE not in blk and S.BLOCK_RESIDUAL not in blk  # unknown for foreign iterates
    merged = blk.merge(rec_trace.blocks, on=[S.SWEEP, S.BLOCK, S.LAYER], suffixes=("_a", "_r"))
    np.testing.assert_allclose(merged[S.BLOCK_G_NORM + "_a"], merged[S.BLOCK_G_NORM + "_r"], rtol=1e-8)
    np.testing.assert_allclose(merged[S.BLOCK_DELTA_SQ + "_a"], merged[S.BLOCK_DELTA_SQ + "_r"], rtol=1e-9)


def test_audit_with_relu_is_at_most_the_recorders_g(tmp_path, data):
    rec_trace, _ = _dump(tmp_path, data, init="kaiming")
    aud = audit(tmp_path)
    assert (aud.sweeps[S.G_NORM].iloc[1:] <= rec_trace.sweeps[S.G_NORM].iloc[1:] * (1 + 1e-9)).all()
    np.testing.assert_allclose(aud.sweeps[S.OBJECTIVE], rec_trace.sweeps[S.OBJECTIVE], rtol=1e-12)


def _problem_and_state(activation, rng, n=7, widths=(3, 4, 2), zeros=False):
    cfg = BCDConfig(hidden=widths[1:-1], activation=activation, gamma=0.7, alpha=1.0, lam=0.3)
    X = torch.as_tensor(rng.normal(size=(widths[0], n)))
    Y = torch.as_tensor(rng.normal(size=(widths[-1], n)))
    problem = Problem(X=X, Y=Y, config=cfg)
    W, V, U = [None], [X], [None]
    for d_in, d_out in itertools.pairwise(widths):
        W.append(torch.as_tensor(rng.normal(size=(d_out, d_in + 1))))
        V.append(torch.as_tensor(rng.normal(size=(d_out, n))))
        u = torch.as_tensor(rng.normal(size=(d_out, n)))
        if zeros:
            u[:, ::2] = 0.0  # kinks with v > 0, v < 0 (random signs) ...
            V[-1][0, ::4] = 0.0  # ... and v = 0
        U.append(u)
    return problem, BCDState(W, V, U)


@pytest.mark.parametrize("activation", ["identity", "relu"])
def test_least_norm_subgradient_is_the_gradient_off_kinks(activation):
    rng = np.random.default_rng(0)
    problem, state = _problem_and_state(activation, rng)
    leaves = {(b, i): t.clone().requires_grad_() for b, i, t in state.blocks()}
    st = BCDState([None] + [leaves[("W", i)] for i in (1, 2)], [state.V[0]] + [leaves[("V", i)] for i in (1, 2)],
                  [None] + [leaves[("U", i)] for i in (1, 2)])
    cfg, g = problem.config, problem.config.gamma  # L̄ written out independently of bcd.objective
    L = 0.5 * problem.c * (st.V[2] - problem.Y).square().sum()
    for i in (1, 2):
        sig = st.U[i] if (i == 2 or activation == "identity") else torch.relu(st.U[i])
        gap = st.U[i] - st.W[i][:, :-1] @ st.V[i - 1] - st.W[i][:, -1:]
        L = L + 0.5 * g * ((st.V[i] - sig).square().sum() + gap.square().sum()) + 0.5 * cfg.lam * st.W[i].square().sum()
    L.backward()
    mine = least_norm_subgradient(state, problem).parts
    for key, leaf in leaves.items():
        torch.testing.assert_close(mine[key], leaf.grad, rtol=1e-12, atol=1e-12)


def test_least_norm_subgradient_at_kinks_against_brute_force():
    """At u = 0 the u-entry is γ·min over s ∈ S(v) of |R + s| (S(v) = {−v, 0}, [0, −v] or {0}), found here by
    brute force over a fine grid of the set plus its end points; everything else is the gradient."""
    rng = np.random.default_rng(1)
    problem, state = _problem_and_state("relu", rng, n=8, zeros=True)
    g = problem.config.gamma
    mine = least_norm_subgradient(state, problem).parts
    U, V = state.U[1], state.V[1]
    R = U - (state.W[1][:, :-1] @ state.V[0] + state.W[1][:, -1:])
    kinks = (U == 0).nonzero().tolist()
    signs = {int(np.sign(float(V[r, c]))) for r, c in kinks}
    assert signs == {-1, 0, 1}  # every case of the derivation occurs
    for r, c in kinks:
        v, res = float(V[r, c]), float(R[r, c])
        if v > 0:
            cands = np.array([-v, 0.0])
        elif v < 0:
            cands = np.concatenate([np.linspace(0.0, -v, 20001), [0.0, -v]])
        else:
            cands = np.array([0.0])
        best = g * np.min(np.abs(res + cands))
        assert abs(abs(float(mine[("U", 1)][r, c])) - best) <= 1e-4 * max(1.0, abs(v)) * g
    # the least-norm element is never larger than autograd's choice (ReLU′(0) = 0, i.e. s = 0)
    autograd_choice = g * R[U == 0].abs()
    assert bool((mine[("U", 1)][U == 0].abs() <= autograd_choice + 1e-15).all())
    assert bool((mine[("U", 1)][U == 0].abs() < autograd_choice - 1e-6).any())


def test_bcd_audit_command_passes_our_run_and_fails_a_rising_sequence(tmp_path, data, capsys):
    good = tmp_path / "good"
    _dump(good, data, sweeps=8)
    out = tmp_path / "out"
    assert bcd_main(["audit", str(good), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "monotone_descent" in printed and "audit of 9 iterates" in printed
    trace = Trace.load(out)
    assert trace.meta[S.META_SOURCE] == "audit" and len(trace.sweeps) == 9
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert {v["claim"]: v["status"] for v in verdicts}["monotone_descent"] == "pass"
    assert json.loads((out / "audit_config.json").read_text())["gamma"] == 1.2

    # the same iterates in reverse order: L̄ rises every sweep, and the audit must say so
    bad = tmp_path / "bad"
    bad.mkdir()
    files = sorted(good.glob("iter_*.npz"))
    for j, f in enumerate(reversed(files)):
        shutil.copy(f, bad / f"step_{j:03d}.npz")
    for name in ("data.npz", AUDIT_TOML):
        shutil.copy(good / name, bad / name)
    assert bcd_main(["audit", str(bad), "--out", str(tmp_path / "bad_out")]) == 1
    verdicts = json.loads((tmp_path / "bad_out" / "verdicts.json").read_text())
    assert {v["claim"]: v["status"] for v in verdicts}["monotone_descent"] == "fail"


def test_flags_override_audit_toml_and_bad_input_is_reported(tmp_path, data, capsys):
    _dump(tmp_path, data, sweeps=2)
    assert audit(tmp_path, {"gamma": 2.5, "lam": None}).config.gamma == 2.5
    (tmp_path / AUDIT_TOML).write_text('alpha = 2.0\n')
    assert bcd_main(["audit", str(tmp_path)]) == 2
    assert "gamma" in capsys.readouterr().err
    assert audit(tmp_path, {"gamma": 1.2}).config.alpha == 2.0
    (tmp_path / AUDIT_TOML).write_text('gamma = 1.0\nalpha = 1.0\nmomentum = 0.9\n')
    with pytest.raises(ValueError, match="momentum"):
        audit(tmp_path)
    (tmp_path / AUDIT_TOML).write_text('gamma = 1.0\nalpha = 1.0\nactivation = "relu6"\n')
    with pytest.raises(ValueError, match=r"activation='relu6'.*allowed: relu, leaky_relu"):
        audit(tmp_path)
    (tmp_path / AUDIT_TOML).write_text('gamma = \n')
    assert bcd_main(["audit", str(tmp_path)]) == 2
    assert f"{str(tmp_path / AUDIT_TOML)!r} is not valid TOML" in capsys.readouterr().err
    assert bcd_main(["audit", str(tmp_path / "iter_000000.npz")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / AUDIT_TOML).write_text('gamma = 1.0\nalpha = 1.0\nr = "l1(-1)"\n')
    with pytest.raises(ValueError, match="l1"):
        audit(tmp_path)
    for bad, named in (('reg_bias = "false"', "reg_bias='false' is not allowed"),  # bool("false") was True
                       ("lam = true", "lam=True is not allowed"),  # float(True) was λ = 1
                       ('gamma = "one"', "gamma='one' is not allowed")):
        gamma = "" if "gamma" in bad else "gamma = 1.0\n"
        (tmp_path / AUDIT_TOML).write_text(f'alpha = 1.0\nr = "l2(1)"\n{bad}\n{gamma}')
        assert bcd_main(["audit", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert named in err and AUDIT_TOML in err, err
    (tmp_path / AUDIT_TOML).write_text('gamma = 1.0\nalpha = 1.0\n')
    z = dict(np.load(tmp_path / "iter_000001.npz"))
    z["V2"] = z["V2"][:, :-1]
    np.savez(tmp_path / "iter_000001.npz", **z)
    with pytest.raises(ValueError, match="V2 has shape"):
        audit(tmp_path)
    (tmp_path / "data.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"data\.npz"):
        audit(tmp_path)
    with pytest.raises(FileNotFoundError):
        audit(tmp_path / "missing")


def test_audit_of_regression_targets(tmp_path):
    """Real-valued targets (a teacher network): data.npz has Y and no labels; accuracy is NaN."""
    ds, _ = teacher_student(n=40, widths=(3, 5, 2), seed=0)
    cfg = BCDConfig(hidden=(5,), gamma=1.0, alpha=1.0, sweeps=3)
    rec = Recorder("standard")
    train(ds.X_train, ds.y_train, cfg, hooks=[rec, IterateWriter(tmp_path)])
    aud = audit(tmp_path)
    np.testing.assert_allclose(aud.sweeps[S.OBJECTIVE], rec.trace().sweeps[S.OBJECTIVE], rtol=1e-12)
    assert aud.sweeps[S.TRAIN_ACC].isna().all()
