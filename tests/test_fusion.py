"""BCD_FUSE for the engine (bcd/fusion.py): the U_i prox compiled into one kernel gives the eager step up to rounding
on every storage path, the same bits with and without hooks; a compiled call never sees aliased arguments and takes its
own γ, α and slope (the two torch 2.13 hazards behind those guards are pinned here)."""

from __future__ import annotations

import warnings

import pytest
import torch

from bcd import blocks, fusion
from bcd.activations import get_activation
from bcd.cli import main
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture
from bcd.engine import train
from verification.recorder import Recorder


@pytest.fixture(scope="session")
def compiler():
    try:
        torch.compile(lambda x: x + 1)(torch.zeros(3))
    except Exception as exc:  # no C++ compiler here: the eager fallback is tested in tests/test_fused_passes.py
        pytest.skip(f"torch.compile does not work on this machine: {type(exc).__name__}")


@pytest.fixture
def fused(compiler, monkeypatch):
    """BCD_FUSE=on with pieces of 37 entries (so that a step runs several compiled calls and a shorter tail), from
    no earlier graph, and a pass past torch's recompile limit failing (so that it runs eagerly and ``_compiled`` says
    so, instead of torch falling back silently while the asserts below see a compiled pass)."""
    torch._dynamo.reset()
    monkeypatch.setenv("BCD_FUSE", "on")
    monkeypatch.setattr(fusion, "_compiled", {})
    monkeypatch.setattr(fusion, "FUSE_CHUNK", 37)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        yield


def _writer(p: torch.Tensor, u: torch.Tensor, target: torch.Tensor) -> None:
    m = torch.add(p, u)
    target.copy_(m * 2.0)


def test_torch_compile_still_needs_the_aliasing_guard(fused, monkeypatch):
    """A compiled function that writes its third argument, called first with it aliasing the second (U⁺ written over
    U⁻) and then with a separate output: torch 2.13 writes the second call's result into the second argument.  With
    the guard (:func:`bcd.fusion._aliased`) the aliased call runs eagerly and both are right; without it, wrong."""
    gen = torch.Generator().manual_seed(0)
    p, u = (torch.randn(4, 25, generator=gen, dtype=torch.float64) for _ in range(2))
    want = ((p + u) * 2.0).view(-1)[:50]  # the first piece of 50 of the 100 entries, as the engine's chunks are

    def two_calls(run):
        aliased = u.clone()
        run(p.view(-1)[:50], aliased.view(-1)[:50], aliased.view(-1)[:50])
        kept, out = u.clone(), torch.zeros_like(u)
        run(p.view(-1)[:50], kept.view(-1)[:50], out.view(-1)[:50])
        return (torch.equal(aliased.view(-1)[:50], want) and torch.equal(out.view(-1)[:50], want)
                and torch.equal(kept, u))

    def fresh(guarded: bool):
        """``pass_function(_writer)`` compiled afresh: no earlier graph in this process or in inductor's caches."""
        torch._dynamo.reset()
        monkeypatch.setattr(fusion, "_compiled", {})
        monkeypatch.setattr(fusion, "_aliased", aliased_check if guarded else lambda args: False)
        return fusion.pass_function(_writer, "on", p)[0]

    aliased_check = fusion._aliased
    with torch._inductor.config.patch(fx_graph_cache=False), torch._functorch.config.patch(enable_autograd_cache=False):
        assert not two_calls(fresh(guarded=False)), "torch.compile handles changing aliasing now: _aliased may go"
        assert two_calls(fresh(guarded=True))
    assert fusion._compiled[_writer] is not None  # it compiled: the separate call ran fused


def test_a_compiled_pass_takes_each_call_s_own_gamma_alpha_and_slope(fused, monkeypatch):
    """The recorder's layer pass with a new γ and the U-prox with a new leaky slope, in one process: each compiled
    call computes with its own values (as symbolic float inputs torch 2.13 used an earlier call's: B off by 16 at
    γ = 2 after γ = 1; the test fails with ``specialize_float`` left at torch's default)."""
    from verification.fast_path import layer_sums

    gen = torch.Generator().manual_seed(5)
    ops = [torch.randn(60, generator=gen, dtype=torch.float64) for _ in range(5)]
    for gamma, alpha in ((1.0, 5.0), (2.0, 5.0), (1.3, 0.7), (4.0, 0.1)):
        run, _ = fusion.pass_function(layer_sums, "on", ops[0])
        B, B_ref = torch.empty(60, dtype=torch.float64), torch.empty(60, dtype=torch.float64)
        sums, _ = run(*ops, B, torch.relu, gamma, alpha, False)
        want, _ = layer_sums(*ops, B_ref, torch.relu, gamma, alpha, False)
        torch.testing.assert_close(B, B_ref, rtol=1e-14, atol=1e-14 * B_ref.abs().max().item())
        torch.testing.assert_close(sums, want, rtol=1e-13, atol=0.0)
    for name in ("leaky_relu(0.2)", "leaky_relu(0.3)", "relu", "identity"):
        act = get_activation(name)
        run, _ = fusion.pass_function(blocks.u_prox_piece, "on", ops[0])
        got, want = run(*ops[:3], 1.3, 0.7, act), blocks.u_prox_piece(*ops[:3], 1.3, 0.7, act)
        torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14 * want.abs().max().item(), msg=name)
    assert fusion._compiled[layer_sums] is not None and fusion._compiled[blocks.u_prox_piece] is not None


@pytest.mark.parametrize("name", ["relu", "leaky_relu(0.2)", "identity"])
def test_the_fused_u_step_is_the_eager_step_on_every_storage_path(fused, monkeypatch, name):
    act = get_activation(name)
    gen = torch.Generator().manual_seed(3)
    V, P, U = (torch.randn(7, 23, generator=gen, dtype=torch.float64) * 2 for _ in range(3))
    kw = {"gamma": 1.3, "alpha": 0.7, "activation": act}
    monkeypatch.setenv("BCD_FUSE", "off")
    want = blocks.update_U_hidden(V, P, U, **kw)
    monkeypatch.setenv("BCD_FUSE", "on")
    before = [t.clone() for t in (V, P, U)]
    fresh = blocks.update_U_hidden(V, P, U, **kw)
    assert all(torch.equal(b, t) for b, t in zip(before, (V, P, U), strict=True))  # nothing written but the result
    P2 = P.clone()
    into_P = blocks.update_U_hidden(V, P2, U, overwrite_P=True, **kw)
    assert into_P.data_ptr() == P2.data_ptr()
    P3, U3 = P.clone(), U.clone()
    over_U = blocks.update_U_hidden(V, P3, U3, overwrite_P=True, out=U3, **kw)  # the engine's quiet path
    assert over_U.data_ptr() == U3.data_ptr()
    U4 = U.clone()
    over_U_keep_P = blocks.update_U_hidden(V, P, U4, out=U4, **kw)
    assert over_U_keep_P.data_ptr() == U4.data_ptr() and torch.equal(P, before[1])
    given = torch.full_like(U, float("nan"))
    into_given = blocks.update_U_hidden(V, P, U, out=given, **kw)  # the recorded path: storage from the pool
    assert into_given.data_ptr() == given.data_ptr()
    assert blocks.u_prox_piece in fusion._compiled and fusion._compiled[blocks.u_prox_piece] is not None
    for got in (fresh, into_P, over_U, over_U_keep_P, into_given):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14 * want.abs().max().item())


def test_fused_runs_with_and_without_hooks_give_the_same_bits_and_the_eager_iterates(fused, monkeypatch):
    """One process, BCD_FUSE=on: a quiet run (U⁺ over U⁻), then a recorded one (U⁺ in fresh storage), then eager."""
    data = gaussian_mixture(n=90, d=5, k=3, seed=4)
    cfg = BCDConfig(hidden=(6, 5), gamma=1.1, alpha=1.7, sweeps=4, dtype="float64")

    def final(hooks):
        return train(data.X_train, data.y_train, cfg, hooks=hooks).state

    quiet, recorded = final([]), final([Recorder("standard")])
    assert fusion._compiled[blocks.u_prox_piece] is not None  # both ran compiled
    monkeypatch.setenv("BCD_FUSE", "off")
    eager = final([])
    for blocks_q, blocks_r, blocks_e in ((quiet.U, recorded.U, eager.U), (quiet.W, recorded.W, eager.W)):
        for q, r, e in zip(blocks_q[1:], blocks_r[1:], blocks_e[1:], strict=True):
            assert torch.equal(q, r)
            torch.testing.assert_close(q, e, rtol=1e-12, atol=1e-12 * e.abs().max().item())


def test_an_error_of_the_pass_itself_is_raised_not_blamed_on_the_compiler(fused):
    def pass_with_a_bug(x: torch.Tensor) -> torch.Tensor:
        raise ValueError(f"a bug in the pass itself, on {x.numel()} entries")

    run, _ = fusion.pass_function(pass_with_a_bug, "on", torch.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "compiling ... failed" warning
        with pytest.raises(ValueError, match="a bug in the pass itself, on 3 entries"):
            run(torch.zeros(3))
    assert fusion._compiled[pass_with_a_bug] is not None  # the compiler is not blamed


def test_a_bad_bcd_fuse_stops_bcd_train_before_anything_is_written(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BCD_FUSE", "always")
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["train", "--dataset", "mixture", "--n-train", "60", "--hidden", "6,6", "--sweeps", "2",
                     "--no-progress", "--out", str(out)])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err == "bcd train: error: BCD_FUSE='always' is not allowed; give one of auto, on, off"
