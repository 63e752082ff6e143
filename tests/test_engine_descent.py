"""L̄ (every term of MATH.md §2) never increases across any single block update (float64, hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcd import BCDConfig, train
from bcd.data import gaussian_mixture, teacher_student
from bcd.inputs import make_problem
from bcd.objective import objective
from bcd.problem import initial_state
from bcd.schedule import schedule_for


def single_update_increases(problem, state, sweeps):
    """Reference loop: apply the schedule one block at a time and return every relative increase of L̄."""
    schedule = schedule_for(problem.config.splitting, problem.config.N)
    increases = []
    value = objective(state, problem)
    for _ in range(sweeps):
        for step in schedule:
            new = step.update(state, problem, step.layer, {})
            state.set(step.block, step.layer, new)
            after = objective(state, problem)
            increases.append((after - value) / max(1.0, abs(value)))
            value = after
    return np.array(increases)


configs = st.fixed_dictionaries(
    {
        "hidden": st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
        "activation": st.sampled_from(["relu", "identity"]),
        "gamma": st.floats(0.05, 20.0),
        "alpha": st.floats(0.05, 20.0),
        "lam": st.sampled_from([0.0, 0.0, 0.01, 1.0]),
        "reduction": st.sampled_from(["sum", "mean"]),
        "vn_update": st.sampled_from(["prox", "prox", "prox_linear"]),
        "init": st.sampled_from(["authors", "kaiming"]),
        "seed": st.integers(0, 10_000),
    }
)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, n=st.integers(1, 25), d0=st.integers(1, 6), k=st.integers(2, 4))
def test_no_single_block_update_increases_the_objective(cfg, n, d0, k):
    if cfg["vn_update"] == "prox_linear":
        # Theorem 2's condition for the update as implemented: α > (L_R − γ)/2, L_R = c ≤ 1
        cfg["alpha"] = max(cfg["alpha"], 0.5 + 1e-3)
    config = BCDConfig(dtype="float64", sweeps=3, **cfg)
    ds = gaussian_mixture(n=n, d=d0, k=k, seed=cfg["seed"])
    problem = make_problem(ds.X_train, ds.y_train, config, n_classes=k)
    increases = single_update_increases(problem, initial_state(problem), sweeps=3)
    assert increases.max() <= 1e-12, f"L̄ rose by {increases.max():.3e} (relative) in one block update"


def test_reference_loop_can_fail():
    """The property test's loop detects an update that is not a minimiser."""
    config = BCDConfig(hidden=(4,), dtype="float64")
    ds = gaussian_mixture(n=20, d=3, k=3)
    problem = make_problem(ds.X_train, ds.y_train, config)
    state = initial_state(problem)
    state.U[1] = state.U[1] + 1.0  # move U away from the forward pass ...
    schedule = schedule_for("three", config.N)
    bad = next(s for s in schedule if s.block == "U" and s.layer == 1)
    before = objective(state, problem)
    state.set("U", 1, bad.update(state, problem, 1, {}) + 0.5)  # ... and perturb the "minimiser"
    assert objective(state, problem) > before


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_teacher_student_is_fit(reduction, device):
    """Realisable problem, started at the teacher: L̄ stays ≈ 0 (the global minimum is a fixed point)."""
    ds, teacher = teacher_student(n=64, widths=(5, 7, 3), seed=2)
    config = BCDConfig(hidden=(7,), dtype="float64", sweeps=5, reduction=reduction, device=device)
    result = train(ds.X_train, ds.y_train, config, init_weights=[torch.tensor(w) for w in teacher])
    assert result.log["objective"].iloc[0] < 1e-20
    assert result.log["objective"].iloc[-1] < 1e-20


def test_training_decreases_sweep_objective_and_is_deterministic(device):
    ds = gaussian_mixture(n=120, d=6, k=3, seed=1)
    config = BCDConfig(hidden=(12, 12), dtype="float64", sweeps=8, seed=5, device=device)
    r1 = train(ds.X_train, ds.y_train, config)
    r2 = train(ds.X_train, ds.y_train, config)
    obj = r1.log["objective"].to_numpy()
    assert np.all(np.diff(obj) <= 1e-12 * np.abs(obj[:-1]))
    assert obj[-1] < 0.5 * obj[0]
    for w1, w2 in zip(r1.weights, r2.weights):
        assert torch.equal(w1, w2)


def test_initial_weights_are_injectable():
    ds = gaussian_mixture(n=30, d=4, k=2)
    config = BCDConfig(hidden=(5,), dtype="float64", sweeps=0)
    W = [np.full((5, 5), 0.1), np.full((2, 6), -0.2)]
    result = train(ds.X_train, ds.y_train, config, init_weights=W)
    for got, want in zip(result.weights, W):
        np.testing.assert_array_equal(got.numpy(), want)


def test_listening_hooks_do_not_change_the_iterates(device):
    """With an on_step hook the steps publish P, the Gram and UṼᵀ instead of reusing their storage;
    both paths must give bit-identical iterates."""

    class Listener:
        def __init__(self):
            self.seen = []

        def on_step(self, k, step, state, new, aux):
            self.seen.append((step.name, sorted(aux)))

    ds = gaussian_mixture(n=50, d=5, k=3, seed=4)
    for activation in ("relu", "identity"):
        config = BCDConfig(hidden=(7, 4), dtype="float64", sweeps=3, activation=activation, device=device)
        listener = Listener()
        quiet = train(ds.X_train, ds.y_train, config)
        heard = train(ds.X_train, ds.y_train, config, hooks=[listener])
        for a, b in zip(quiet.state.blocks(), heard.state.blocks()):
            assert torch.equal(a[2], b[2]), a[:2]
        assert ("U2", ["P"]) in listener.seen and ("W1", ["cross", "gram"]) in listener.seen


class _Hoarder:
    """A hook that keeps some of what it is shown after the engine has let go of it, each with a copy of its values
    at the time: every replaced V block (the tensor object) and a tensor sharing the storage of every replaced U block
    (not the object); every published P it lets go, so the pool has those to recycle."""

    def __init__(self):
        self.kept = []

    def on_step(self, k, step, state, new, aux):
        if step.block == "W":
            return
        old = state.get(step.block, step.layer)
        held = old if step.block == "V" else old.new_empty(0).set_(old.untyped_storage(), 0, old.shape, old.stride())
        self.kept.append((held, held.clone()))

    def untouched(self):
        return all(torch.equal(t, copy) for t, copy in self.kept)


def test_a_listened_to_sweep_recycles_only_what_nothing_else_holds(device, monkeypatch):
    """With a hook listening, the blocks a step replaces and the products it publishes are recycled by the problem's
    pool (bcd/buffers.py) for later steps of equal shape, instead of new tensors: the iterates stay bit-identical to
    the quiet run, storage is reused, and nothing a hook still holds (the tensor, or only its storage) is
    overwritten, while what it let go is reused in the same run.  Without either of the pool's reference checks the
    hoarding hook's tensors are overwritten."""
    import numpy as np

    from bcd import buffers
    from bcd.engine import run

    ds = gaussian_mixture(n=40, d=5, k=3, seed=2)
    config = BCDConfig(hidden=(6, 6, 6), dtype="float64", sweeps=4, device=device)
    quiet = train(ds.X_train, ds.y_train, config)
    problem = make_problem(ds.X_train, ds.y_train, config, n_classes=3)
    reused, asked, take = [], [], problem.pool.take

    def counted_take(shape, like):
        asked[-1] += 1
        return take(shape, like)

    monkeypatch.setattr(problem.pool, "take", counted_take)

    class Counter:  # listens to every step (so the steps publish and cannot reuse storage), holds nothing
        def on_run_start(self, problem, state):
            asked.append(0)

        def on_step(self, k, step, state, new, aux):
            pass

        def on_sweep_end(self, k, state, rec):
            reused.append(problem.pool.reused)
            asked.append(0)

    def same_as_quiet(state):
        return all(torch.equal(a[2], b[2]) for a, b in zip(quiet.state.blocks(), state.blocks()))

    assert same_as_quiet(run(problem, initial_state(problem), hooks=[Counter()]).state)
    # after the first sweep every take is served, the first hidden layer's too, though the output layer's blocks were
    # released just before it (the pool keeps only kinds some step asks for)
    served = [b - a for a, b in itertools.pairwise(reused)]
    assert asked[1] > 0 and served == asked[1:-1], (served, asked)
    monkeypatch.undo()

    hoarder, before = _Hoarder(), problem.pool.reused
    assert same_as_quiet(run(problem, initial_state(problem), hooks=[hoarder]).state)
    assert hoarder.untouched() and problem.pool.reused > before  # the Ps it let go were reused, nothing it holds

    for mutant in (lambda: monkeypatch.setattr(buffers, "_object_refs", lambda t: buffers._LONE_REFS),
                   lambda: monkeypatch.setattr(buffers, "_storage_users", lambda t: buffers._LONE)):
        monkeypatch.undo()
        mutant()
        hoarder = _Hoarder()
        run(problem, initial_state(problem), hooks=[hoarder])
        assert not hoarder.untouched()

    monkeypatch.undo()  # memory torch does not own (a user's numpy array) is never taken in
    arr = np.zeros((6, 40))
    like = torch.zeros(1, dtype=torch.float64)
    assert problem.pool.take((6, 40), like) is None  # asked for: a kind the pool would keep
    problem.pool.give(torch.from_numpy(arr))
    assert problem.pool.take((6, 40), like) is None


def test_the_pool_keeps_only_kinds_asked_for_and_lets_the_oldest_go():
    """A released tensor of a kind no step has asked for (the output layer's blocks) is not kept, so it cannot push out
    one that a later step takes; when full, the pool lets its oldest go.  (Tensors are told apart by their storage:
    the pool hands out only what nothing else holds, so the test keeps no reference to what it gives.)"""
    from bcd.buffers import BlockPool

    def block(dtype=torch.float64, rows=3):
        t = torch.zeros(rows, 5, dtype=dtype)
        return t, t.data_ptr()

    pool, like = BlockPool(keep=2), torch.zeros(1, dtype=torch.float64)
    assert pool.take((3, 5), like) is None  # now a kind asked for
    t, a = block()
    pool.give(t)
    pool.give(block(rows=1)[0])  # never asked for: not kept
    pool.give(block(rows=9)[0])  # nor a larger one (a hidden layer of another width)
    pool.give(block(dtype=torch.float32)[0])  # another dtype: another kind, not asked for
    t, _ = block()
    pool.give(t)
    del t
    got = pool.take((3, 5), like)
    assert got.data_ptr() == a  # a, the oldest, was not pushed out by the other kinds
    pool.give(got)  # now b, a
    t, c = block()
    pool.give(t)  # full: b, the oldest, goes
    del t, got
    ptrs = [pool.take((3, 5), like) for _ in range(3)]
    assert [p.data_ptr() for p in ptrs[:2]] == [a, c] and ptrs[2] is None and pool.reused == 3
