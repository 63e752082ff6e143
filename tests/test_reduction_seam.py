"""The reduction seam (MATH.md §10): every sum over samples of the engine and the objective passes through
:func:`bcd.reduction.over_samples`.

Test: a reduction that doubles every sum stands for two shards holding identical columns.  One sweep on X with it
must equal one sweep on the duplicated data [X X] in one process — any sum that bypassed the seam would make the
W blocks, the objective or the accuracy differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.engine import run
from bcd.objective import accuracy, objective_terms
from bcd.problem import initial_state, make_problem
from bcd.reduction import Reduction, using


class TwoIdenticalShards(Reduction):
    def sum_(self, t):
        return t.mul_(2.0)


@pytest.mark.parametrize("kw", [dict(), dict(skip="auto", lam=0.1), dict(splitting="two", activation="identity"),
                                dict(vn_update="prox_linear", reduction="mean")])
def test_a_sharded_reduction_gives_the_iterates_of_the_full_data(kw):
    d = gaussian_mixture(n=30, d=5, k=3, seed=2)
    cfg = BCDConfig(**{"hidden": (5, 5), "gamma": 0.9, "alpha": 1.5, "sweeps": 3, "dtype": "float64", **kw})
    X2, y2 = np.vstack([d.X_train, d.X_train]), np.concatenate([d.y_train, d.y_train])
    full = make_problem(X2, y2, cfg)
    s_full = initial_state(full)
    run(full, s_full)
    with using(TwoIdenticalShards()):
        shard = make_problem(d.X_train, d.y_train, cfg)
        s_shard = initial_state(shard)
        run(shard, s_shard)
        terms_shard = objective_terms(s_shard, shard)
        acc_shard = accuracy(s_shard.W, shard.X, shard.labels, shard)
    n = d.X_train.shape[0]
    for i in range(1, cfg.N + 1):
        torch.testing.assert_close(s_shard.W[i], s_full.W[i], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(s_shard.V[i], s_full.V[i][:, :n], rtol=1e-10, atol=1e-12)
    terms_full = objective_terms(s_full, full)
    for key, value in terms_full.items():
        assert terms_shard[key] == pytest.approx(value, rel=1e-10), key
    assert acc_shard == pytest.approx(accuracy(s_full.W, full.X, full.labels, full))
