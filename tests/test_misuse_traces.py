"""A saved trace damaged in ways its shape check missed: `bcd verify RUN_DIR` and `bcd report RUN_DIR` refuse it in
one line naming the file (and the column or key), exit 2, and leave every file of the run directory as it was."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_robustness import _err

from bcd.cli import main
from verification import schema as S  # noqa: N812


def _meta(edit):
    def damage(d):
        m = json.loads((d / "trace_meta.json").read_text())
        edit(m)
        (d / "trace_meta.json").write_text(json.dumps(m))
    return damage


def _table(name, edit):
    def damage(d):
        edit(pd.read_parquet(d / name)).to_parquet(d / name)
    return damage


def _sweeps(edit):
    return _table("trace_sweeps.parquet", edit)


def _blocks(edit):
    return _table("trace_blocks.parquet", edit)


def _nan_sweep(s):
    s = s.astype({S.SWEEP: float})
    s.loc[s.index[1], S.SWEEP] = np.nan
    return s


@pytest.mark.parametrize(("damage", "named"), [
    # meta: a key of another kind (widths null was an internal TypeError; a bad dtype passed `bcd report`)
    (_meta(lambda m: m.update(widths=None)), "trace_meta.json' is damaged (its 'widths' None are not"),
    (_meta(lambda m: m.update(dtype="abc")), "trace_meta.json' is damaged (its 'dtype' 'abc' is not"),
    (_meta(lambda m: m["config"].update(dtype="float32")), "its 'config' has dtype 'float32' but its 'dtype' is"),
    # the sweep column: sweeps are distinct whole numbers (a fractional sweep passed with exit 0)
    (_sweeps(lambda s: s.assign(**{S.SWEEP: s[S.SWEEP] + 0.5})), "trace_sweeps.parquet' is damaged (its 'sweep'"),
    (_sweeps(_nan_sweep), "trace_sweeps.parquet' is damaged (its 'sweep'"),
    (_sweeps(lambda s: pd.concat([s, s.iloc[[1]]])), "trace_sweeps.parquet' is damaged (sweep 1 has 2 rows"),
    # the block table: blocks of the network, sweeps of the sweep table (layer 99 failed a guaranteed claim)
    (_blocks(lambda b: b.assign(**{S.BLOCK: "Z"})), "trace_blocks.parquet' is damaged (its row at sweep 1 has block Z"),
    (_blocks(lambda b: b.assign(**{S.LAYER: 99})), "has block V and layer 99, not a block of the 'three' network"),
    (_blocks(lambda b: b.assign(**{S.SWEEP: b[S.SWEEP] + 10})), "its rows of sweep 11 have no row in trace_sweeps"),
    # columns the recorder has always written (a dropped residual turned a pass into inconclusive, exit 0)
    (_blocks(lambda b: b.drop(columns=[S.BLOCK_RESIDUAL, S.BLOCK_CONST])),
     "lacks the column(s) 'descent_const', 'residual' the recorder always writes"),
    (_sweeps(lambda s: s.drop(columns=[S.TRAIN_ACC])), "lacks the column(s) 'train_acc' the recorder always writes"),
])
def test_a_damaged_trace_is_refused_by_verify_and_report_and_nothing_is_rewritten(verified_run, capsys, damage,
                                                                                  named):
    damage(verified_run)
    before = {p: p.read_bytes() for p in verified_run.rglob("*") if p.is_file() and p.name != ".bcd-lock"}
    capsys.readouterr()
    assert main(["verify", str(verified_run), "--figure-formats", "png"]) == 2
    assert named in _err(capsys)
    assert main(["report", str(verified_run), "--figure-formats", "png"]) == 2
    assert named in _err(capsys)
    assert {p: p.read_bytes() for p in verified_run.rglob("*") if p.is_file() and p.name != ".bcd-lock"} == before


def test_the_untouched_run_still_verifies_and_renders(verified_run):
    assert main(["verify", str(verified_run), "--figure-formats", "png"]) == 0
    assert main(["report", str(verified_run), "--figure-formats", "png"]) == 0
