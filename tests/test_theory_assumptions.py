"""Applicability of the theory to a configuration, the `bcd theory` table, and the engine's sympy isolation."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest

from bcd import BCDConfig
from bcd.cli import main
from theory import constants as tc
from theory.assumptions import FAILS, HOLDS, UNDECIDED, applicability, catalogue_entries


def test_lambda_positive_makes_theorem1_guaranteed():
    app = applicability(BCDConfig(lam=0.1))
    assert app.condition("T1(ii)").status == HOLDS and "coercive" in app.condition("T1(ii)").reason
    assert app.assumption_holds and app.theorem1_condition_holds
    for cid in (tc.CONVERGENCE, tc.RATE, tc.SUFFICIENT_DESCENT, tc.RELATIVE_ERROR, tc.MONOTONE):
        assert app.guaranteed(cid), cid


def test_lambda_zero_leaves_theorem1_observed_and_says_why():
    app = applicability(BCDConfig(lam=0.0))
    assert app.condition("T1(ii)").status == FAILS
    assert app.condition("T1(iii)").status == FAILS  # explicit unbounded direction with constant L̄
    assert app.condition("T1(i)").status == UNDECIDED
    for cid in (tc.CONVERGENCE, tc.RATE):
        assert not app.guaranteed(cid)
        assert "T1(ii) fails" in app.claim_status(cid).reason
    # the lemmas need only α, γ > 0 and exact updates
    assert app.guaranteed(tc.SUFFICIENT_DESCENT) and app.guaranteed(tc.MONOTONE) and app.guaranteed(tc.RELATIVE_ERROR)
    assert not app.guaranteed(tc.KL_EXPONENT) and not app.guaranteed(tc.GLOBAL_MINIMUM)


def test_prox_linear_alpha_conditions():
    ok = applicability(BCDConfig(vn_update="prox_linear", gamma=1.0, alpha=0.2))
    assert ok.condition("T2(alpha, derived)").status == HOLDS and ok.guaranteed(tc.SUFFICIENT_DESCENT)
    bad = applicability(BCDConfig(vn_update="prox_linear", gamma=0.1, alpha=0.3, lam=1.0))
    assert bad.condition("T2(alpha, seeds)").status == HOLDS
    assert bad.condition("T2(alpha, derived)").status == FAILS
    assert not bad.guaranteed(tc.SUFFICIENT_DESCENT) and not bad.guaranteed(tc.CONVERGENCE)
    assert "seeds' condition holds" in bad.claim_status(tc.SUFFICIENT_DESCENT).reason
    mean = applicability(BCDConfig(vn_update="prox_linear", reduction="mean", gamma=0.1, alpha=0.3), n=100)
    assert mean.condition("T2(alpha, derived)").status == HOLDS  # L_R = 1/100


def test_catalogue_and_serialisation():
    names = {(e.kind, e.name) for e in catalogue_entries()}
    for kind, name in [("loss", "squared"), ("loss", "hinge"), ("activation", "relu"), ("activation", "softplus"),
                       ("regulariser", "l1"), ("regulariser", "none")]:
        assert (kind, name) in names
    assert all(e.semialgebraic or e.real_analytic for e in catalogue_entries())
    d = json.loads(json.dumps(applicability(BCDConfig()).to_dict()))
    assert d["conditions"][1]["id"] == "T1(ii)" and d["catalogue"]
    with pytest.raises(ValueError, match="unknown"):
        applicability(BCDConfig()).guaranteed("nope")
    with pytest.raises(ValueError, match="BCDConfig"):
        applicability({"lam": 0.1})


def table_row(out: str, first: str) -> str:
    rows = [line for line in out.splitlines() if line.startswith(first + " ")]
    assert len(rows) == 1, (first, rows)
    return rows[0]


def test_bcd_theory_default_table_lists_theorem1_as_observed(capsys):
    assert main(["theory"]) == 0
    out = capsys.readouterr().out
    assert table_row(out, "T1(ii)").split()[1] == "fails"
    conv = table_row(out, "convergence")
    assert conv.split()[1] == "observed" and "none of Theorem 1's conditions" in conv
    assert table_row(out, "sufficient_descent").split()[1] == "guaranteed"
    assert "Proposition 1 catalogue" in out and "needs B" in out


def test_bcd_theory_with_lambda_lists_theorem1_as_guaranteed(capsys):
    assert main(["theory", "--lam", "0.1", "--B", "3", "--L0", "100"]) == 0
    out = capsys.readouterr().out
    assert table_row(out, "T1(ii)").split()[1] == "holds"
    assert table_row(out, "convergence").split()[1] == "guaranteed"
    assert table_row(out, "rate").split()[1] == "guaranteed"
    b = tc.relative_error_constant(1.0, 5.0, 3.0, 4)
    assert f"{b:.6g}" in table_row(out, "relative_error")


def test_bcd_theory_json_and_bad_input(capsys):
    assert main(["theory", "--json", "--vn-update", "prox_linear", "--gamma", "0.1", "--alpha", "0.3"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["constants"]["alpha_bound_derived"] == pytest.approx(0.45)
    assert not next(c for c in rep["claims"] if c["id"] == tc.SUFFICIENT_DESCENT)["guaranteed"]
    assert main(["theory", "--B", "-2"]) == 2
    assert "--B" in capsys.readouterr().err


def test_engine_and_cli_train_path_do_not_import_sympy():
    code = textwrap.dedent("""
        import sys
        import bcd, bcd.cli
        from bcd.data import gaussian_mixture
        bcd.cli.build_parser()  # imports every sub-command module, theory.cli included
        ds = gaussian_mixture(n=20, d=3, k=2)
        bcd.train(ds.X_train, ds.y_train, bcd.BCDConfig(hidden=(3,), sweeps=2))
        assert "sympy" not in sys.modules, "sympy was imported"
        import theory.claims  # the theory package itself does use sympy
        assert "sympy" in sys.modules
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_bcd_theory_reads_B_and_L0_from_a_trace(tmp_path, capsys):
    import pandas as pd

    from verification import schema as sc
    from verification.trace import Trace

    config = BCDConfig(hidden=(3,), gamma=1.0, alpha=2.0)
    sweeps = pd.DataFrame({sc.SWEEP: [0, 1], sc.OBJECTIVE: [50.0, 40.0], sc.BOUND_B: [2.0, 4.0]})
    Trace(sweeps, meta={"config": {**dataclasses.asdict(config), "hidden": [3]}, "n": 10}).save(tmp_path)
    assert main(["theory", "--hidden", "3", "--alpha", "2", "--trace", str(tmp_path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["constants"]["B"] == 4.0 and rep["constants"]["L0"] == 50.0
    assert rep["constants"]["b"] == pytest.approx(tc.relative_error_constant(1.0, 2.0, 4.0, 2))


def _constants_section(out: str) -> str:
    return out[out.index("\nConstants\n"):out.index("\nPer-block descent constants")]


def test_bcd_theory_refuses_an_L_star_above_L0(capsys):
    from theory.claims import claims_for

    assert main(["theory", "--B", "10", "--L0", "5", "--L-star", "10"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "--L-star 10" in err and "L̄⁰ = 5 (--L0)" in err and not captured.out
    with pytest.raises(ValueError, match=r"L_star=10 is above L0=5"):
        claims_for(BCDConfig(), B=10.0, L0=5.0, L_star=10.0)
    assert main(["theory", "--B", "10", "--L0", "5", "--L-star", "5"]) == 0  # L̄* = L̄⁰ is allowed: C = 0
    assert table_row(capsys.readouterr().out, "C").split()[-1] == "0"


def test_bcd_theory_says_why_C_has_no_value(capsys):
    flags = ["theory", "--vn-update", "prox_linear", "--gamma", "0.1", "--alpha", "0.01", "--B", "10", "--L0", "5"]
    assert main(flags) == 0
    section = _constants_section(capsys.readouterr().out)
    c_lines = section[section.index("\nC "):section.index("\nα bound (seeds)")]
    assert "none: a = -0.44 ≤ 0" in c_lines and "T2(alpha," in c_lines and "needs" not in c_lines
    # the reason is the applicability's own failing condition, also in the JSON report
    assert main([*flags, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    cond = next(c for c in rep["applicability"]["extra"] if c["id"] == "T2(alpha, derived)")
    assert rep["constants"]["a"] == pytest.approx(-0.44) and rep["constants"]["C"] is None
    why = rep["unavailable"]["C"]
    assert why.startswith("none: a = -0.44 ≤ 0") and cond["status"] == FAILS and cond["reason"] in why
    # a missing input is named alone, not together with the one that was given
    assert main(["theory", "--B", "10"]) == 0
    assert table_row(capsys.readouterr().out, "C").endswith("needs L̄⁰")
    assert main(["theory", "--L0", "5"]) == 0
    assert table_row(capsys.readouterr().out, "C").endswith("needs B")
    assert main(["theory"]) == 0
    assert table_row(capsys.readouterr().out, "C").endswith("needs B and L̄⁰")


def test_bcd_theory_finds_the_per_block_claim_by_its_constant(monkeypatch):
    from theory.cli import render, theory_report

    monkeypatch.setattr(tc, "MONOTONE", "per_block_descent_renamed")
    report = theory_report(BCDConfig(hidden=(3,)))
    assert any(c["id"] == "per_block_descent_renamed" for c in report["claims"])
    assert "Per-block descent constants" in render(report)


def test_global_minimum_claim_does_not_predict_a_zero_objective(capsys):
    from theory.claims import claim, claims_for

    gm = claim(claims_for(BCDConfig(), B=3.0, L0=100.0), tc.GLOBAL_MINIMUM)
    assert gm.constant is None and gm.bound == "qualitative" and "realisable" in gm.statement + gm.notes
    assert main(["theory", "--B", "3", "--L0", "100"]) == 0
    row = table_row(capsys.readouterr().out, tc.GLOBAL_MINIMUM).split()
    assert row[1:4] == ["observed", "->", "—"]  # no value, like the other qualitative claims
