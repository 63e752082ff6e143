"""Broken engines must be caught; the correct engine must raise no false alarm.

Each mutant is a modified schedule of :class:`bcd.schedule.Step` (same engine loop, a different update
function for one or two blocks), run with ``Recorder(preset="full")`` on small float64 problems and
checked with :func:`verification.checks.verify`.  The table "which check caught which mutant" in
``verification/MUTANTS.md`` is generated from these results: the test compares it with the file, and
``BCD_UPDATE_MUTANTS_MD=1 pytest tests/test_verification_mutants.py`` rewrites it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bcd.blocks import affine, augmented_gram, update_U_hidden, update_V_hidden, update_W
from bcd.config import BCDConfig
from bcd.data import gaussian_mixture, teacher_student
from bcd.schedule import Step, step_W, three_splitting
from theory import constants as tc
from verification import schema as sc
from verification.checks import CHECKS, verify
from verification.pipeline import trace_arrays
from verification.tolerance import KAPPA_OBJECTIVE, machine_eps
from verification.verdict import FAIL, INCONCLUSIVE, PASS

MUTANTS_MD = Path(__file__).resolve().parents[1] / "verification" / "MUTANTS.md"


# ------------------------------------------------------------------------------- mutant updates
def _gram(state, problem, i, aux):
    """Publish ṼṼᵀ as the engine's W step does (the recorder reads it)."""
    aux["gram"] = G = problem.gram_X if i == 1 else augmented_gram(state.V[i - 1])
    return G


def _P(state, i, aux):
    """Publish P = W̃_i⁻Ṽ_{i-1}⁻ as the engine's U step does."""
    aux["P"] = P = affine(state.W[i], state.V[i - 1])
    return P


def U_without_prox(state, problem, i, aux):
    """U_i = argmin γ/2‖V_i⁺ − σ(U)‖² + γ/2‖U − P‖² — the α/2‖U − U_i⁻‖² term dropped."""
    cfg = problem.config
    return update_U_hidden(state.V[i], _P(state, i, aux), state.U[i], gamma=cfg.gamma, alpha=0.0,
                           activation=problem.activation)


def W_jacobi_bias(state, problem, i, aux):
    """The authors' bias step: Ŵ solved with the OLD bias, b from the OLD Ŵ (a Jacobi step)."""
    cfg = problem.config
    g, a, lam = cfg.gamma, cfg.alpha, cfg.lam
    _gram(state, problem, i, aux)
    W, U, V = state.W[i], state.U[i], state.V[i - 1]
    W_hat, b = W[:, :-1], W[:, -1:]
    M = V @ V.T * g
    M.diagonal().add_(a + lam)
    R = (U - b) @ V.T * g + a * W_hat
    W_new = torch.cholesky_solve(R.T, torch.linalg.cholesky(M)).T
    b_new = (a * b + g * (U - W_hat @ V).sum(dim=1, keepdim=True)) / (a + lam + g * V.shape[1])
    return torch.cat([W_new, b_new], dim=1)


def U_wrong_beta(state, problem, i, aux):
    """The ReLU prox called with β = γ/(γ + α) instead of (γ + α)/γ."""
    cfg = problem.config
    g, a = cfg.gamma, cfg.alpha
    m = (g * _P(state, i, aux) + a * state.U[i]) / (g + a)
    return problem.activation.prox(state.V[i], m, g / (g + a))


def W_swapped(state, problem, i, aux):
    """The W_i solve with γ and α exchanged."""
    cfg = problem.config
    G = _gram(state, problem, i, aux)
    return update_W(state.W[i], state.U[i], state.V[i - 1], gamma=cfg.alpha, alpha=cfg.gamma, lam=cfg.lam, gram=G)


def relu_prox_worse(a, m, beta):
    """The two candidates of the ReLU prox, returning the one with the LARGER value."""
    u_plus = ((a + beta * m) / (1 + beta)).clamp(min=0.0)
    u_minus = m.clamp(max=0.0)

    def f(u):
        return 0.5 * (a - torch.relu(u)) ** 2 + 0.5 * beta * (u - m) ** 2

    return torch.where(f(u_plus) <= f(u_minus), u_minus, u_plus)


def U_worse_candidate(state, problem, i, aux):
    cfg = problem.config
    g, a = cfg.gamma, cfg.alpha
    m = (g * _P(state, i, aux) + a * state.U[i]) / (g + a)
    return relu_prox_worse(state.V[i], m, (g + a) / g)


def old_W_next_pair() -> tuple[Callable, Callable]:
    """W_{i+1} keeps a reference to its old value; V_i is then solved with that OLD W_{i+1}."""
    memory: dict[int, torch.Tensor] = {}

    def W_remember(state, problem, i, aux):
        memory[i] = state.W[i]
        return step_W(state, problem, i, aux)

    def V_with_old_W(state, problem, i, aux):
        return update_V_hidden(problem.sigma(i, state.U[i]), memory[i + 1], state.U[i + 1])

    return W_remember, V_with_old_W


def replaced(N: int, **updates: Callable) -> tuple[Step, ...]:
    """Algorithm 2's schedule with the named steps (e.g. ``U1=...``) given new update functions."""
    out = [replace(s, update=updates.pop(s.name)) if s.name in updates else s for s in three_splitting(N)]
    assert not updates, f"no such step(s): {sorted(updates)}"
    return tuple(out)


def _old_W_next(N):
    W_remember, V_old = old_W_next_pair()
    return replaced(N, W2=W_remember, V1=V_old)


@dataclass(frozen=True)
class Mutant:
    key: str
    description: str
    schedule: Callable[[int], tuple[Step, ...]]


MUTANTS = (
    Mutant("prox_dropped", "proximal term dropped from U_1 (α = 0 in its subproblem)",
           lambda N: replaced(N, U1=U_without_prox)),
    Mutant("jacobi_bias", "authors' Jacobi bias update in W_1 (Ŵ with the old b, b from the old Ŵ)",
           lambda N: replaced(N, W1=W_jacobi_bias)),
    Mutant("wrong_beta", "U_1 ReLU prox with the wrong β = γ/(γ+α)", lambda N: replaced(N, U1=U_wrong_beta)),
    Mutant("old_W_next", "V_1 solved with the old W_2 (before its update in this sweep)", _old_W_next),
    Mutant("swapped_gamma_alpha", "γ and α swapped in the W_N update",
           lambda N: replaced(N, **{f"W{N}": W_swapped})),
    Mutant("worse_candidate", "ReLU prox of U_1 returns the worse of its two candidates",
           lambda N: replaced(N, U1=U_worse_candidate)),
)

# Small float64 problems on which every mutant is run: (γ, α) differ so that a swap matters.
MUTANT_PROBLEMS = (
    dict(gamma=1.0, alpha=2.0, seed=0),
    dict(gamma=0.5, alpha=3.0, seed=1),
    dict(gamma=2.0, alpha=0.7, seed=2),
)


def run_problem(schedule_of=None, *, hidden=(5, 4), n=20, d0=4, k=3, sweeps=12, activation="relu", dtype="float64",
                **cfg_kw):
    cfg = BCDConfig(hidden=hidden, sweeps=sweeps, dtype=dtype, activation=activation, **cfg_kw)
    ds = gaussian_mixture(n=n, d=d0, k=k, seed=cfg.seed)
    schedule = schedule_of(cfg.N) if schedule_of is not None else None
    trace, _ = trace_arrays(ds.X_train, ds.y_train, cfg, schedule=schedule, preset="full", n_classes=k)
    return trace, cfg


def mutant_results() -> dict[str, list[set[str]]]:
    """For every mutant and every problem: the set of checks that failed."""
    out = {}
    for m in MUTANTS:
        out[m.key] = []
        for p in MUTANT_PROBLEMS:
            trace, cfg = run_problem(m.schedule, **p)
            out[m.key].append({v.claim for v in verify(trace, cfg) if v.status == FAIL})
    return out


def mutants_markdown(results: dict[str, list[set[str]]]) -> str:
    n = len(MUTANT_PROBLEMS)
    claims = list(CHECKS)
    lines = [
        "# Which check caught which mutant",
        "",
        "Generated by `tests/test_verification_mutants.py` (rewrite with `BCD_UPDATE_MUTANTS_MD=1 pytest "
        "tests/test_verification_mutants.py`); do not edit by hand.",
        "",
        f"Each mutant of Algorithm 2's three-splitting step runs with `Recorder(preset=\"full\")` on {n} small "
        "float64 problems (ReLU, hidden widths (5, 4), n = 20 Gaussian-mixture samples, 12 sweeps; "
        + "(γ, α) = " + ", ".join(f"({p['gamma']:g}, {p['alpha']:g})" for p in MUTANT_PROBLEMS)
        + f"). A cell k/{n} means the check returned `fail` on k of the {n} problems.",
        "",
        "| mutant | " + " | ".join(claims) + " |",
        "|---|" + "---|" * len(claims),
    ]
    for m in MUTANTS:
        counts = [sum(c in failed for failed in results[m.key]) for c in claims]
        cells = [f"**{k}/{n}**" if k else "–" for k in counts]
        lines.append(f"| {m.key}: {m.description} | " + " | ".join(cells) + " |")
    lines += ["", "The correct engine on 32 random float64 and 12 float32 configurations fails no check "
              "(`test_correct_engine_raises_no_false_alarm`).", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def results():
    return mutant_results()


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.key)
def test_every_mutant_is_caught_on_every_problem(results, mutant):
    escaped = [p for p, failed in zip(MUTANT_PROBLEMS, results[mutant.key], strict=True) if not failed]
    assert not escaped, f"{mutant.key} escaped every check on {escaped}"


def test_mutants_table_is_up_to_date(results):
    text = mutants_markdown(results)
    audit_section = "<!-- audit table: begin -->"  # the audit's own table follows (tests/test_audit_order.py)
    if os.environ.get("BCD_UPDATE_MUTANTS_MD"):
        rest = MUTANTS_MD.read_text(encoding="utf-8").partition(audit_section) if MUTANTS_MD.is_file() else ("", "", "")
        MUTANTS_MD.write_text(text + ("\n" + rest[1] + rest[2] if rest[1] else ""), encoding="utf-8")
    engine_part = MUTANTS_MD.read_text(encoding="utf-8").partition(audit_section)[0] if MUTANTS_MD.is_file() else ""
    assert engine_part.rstrip("\n") == text.rstrip("\n"), (
        "verification/MUTANTS.md differs from the measured results; regenerate it with "
        "BCD_UPDATE_MUTANTS_MD=1 pytest tests/test_verification_mutants.py"
    )


def test_mutants_differ_from_the_engine():
    """Sanity: each mutant schedule really changes the iterates (so a pass would be a real escape)."""
    ref, _ = run_problem(None, **MUTANT_PROBLEMS[0])
    for m in MUTANTS:
        tr, _ = run_problem(m.schedule, **MUTANT_PROBLEMS[0])
        assert not np.allclose(tr.sweeps[sc.OBJECTIVE], ref.sweeps[sc.OBJECTIVE], rtol=1e-12, atol=0), m.key


def random_config(seed: int) -> dict:
    rng = np.random.default_rng(1000 + seed)
    gamma, alpha = 10 ** rng.uniform(-1, 1, size=2)
    cfg = dict(
        hidden=tuple(int(w) for w in rng.integers(2, 7, size=rng.integers(1, 4))),
        activation=str(rng.choice(["relu", "relu", "identity"])),
        gamma=float(gamma), alpha=float(alpha),
        lam=float(rng.choice([0.0, 0.0, 0.01, 1.0])),
        reduction=str(rng.choice(["sum", "mean"])),
        vn_update=str(rng.choice(["prox", "prox", "prox_linear"])),
        init=str(rng.choice(["authors", "kaiming"])),
        seed=seed,
    )
    if cfg["vn_update"] == "prox_linear":  # keep Theorem 2's derived condition α > (L_R − γ)/2 (L_R ≤ 1)
        cfg["alpha"] = max(cfg["alpha"], tc.prox_linear_alpha_bound(1.0, cfg["gamma"]) + 0.05)
    return cfg


FINITE_T_CLAIMS = (tc.MONOTONE, tc.SUFFICIENT_DESCENT, tc.RELATIVE_ERROR, tc.RATE, tc.BLOCK_EXACTNESS)


@pytest.mark.parametrize(("dtype", "n_configs"), [("float64", 32), ("float32", 12)])
def test_correct_engine_raises_no_false_alarm(dtype, n_configs):
    """32 random float64 (and 12 float32) configurations: no check fails, every guaranteed finite-T claim passes
    (convergence, an asymptotic claim, may be inconclusive after a few sweeps), and the rounding error
    of the computed decreases — |Σ block decreases − (L̄^{k−1} − L̄^k)|, zero in exact arithmetic — stays
    far below the tolerance factor κ_L (in units of eps·max(|L̄|, 1))."""
    noise = []
    for seed in range(n_configs):
        cfg = random_config(seed)
        rng = np.random.default_rng(seed)
        trace, config = run_problem(None, n=int(rng.integers(5, 26)), d0=int(rng.integers(1, 6)),
                                    k=int(rng.integers(2, 5)), sweeps=int(rng.integers(8, 16)), dtype=dtype, **cfg)
        for v in verify(trace, config):
            assert v.status != FAIL, f"config {cfg}: false alarm {v.claim}: {v.explanation}"
            if v.guaranteed and v.claim in FINITE_T_CLAIMS:
                assert v.status == PASS, f"config {cfg}: {v.claim} {v.status}: {v.explanation}"
        sw = trace.sweeps.set_index(sc.SWEEP)
        sums = trace.blocks.groupby(sc.SWEEP)[sc.BLOCK_DECREASE].sum()
        k = sums.index.to_numpy()
        scale = np.maximum.reduce([np.abs(sw.loc[k, sc.OBJECTIVE].to_numpy()),
                                   np.abs(sw.loc[k - 1, sc.OBJECTIVE].to_numpy()), np.ones(len(k))])
        gap = np.abs(sums.to_numpy() - sw.loc[k, sc.DECREASE].to_numpy())
        noise.append(float((gap / (machine_eps(dtype) * scale)).max()))
    assert max(noise) < KAPPA_OBJECTIVE / 10, f"decrease rounding up to {max(noise):.3g}·eps·|L̄|: κ_L too small?"


@pytest.mark.parametrize(("preset", "record_every"), [("cheap", None), ("standard", None), ("full", 3)])
def test_cheaper_presets_and_schedules_skip_what_they_do_not_record(preset, record_every):
    ds = gaussian_mixture(n=20, d=4, k=3, seed=0)
    cfg = BCDConfig(hidden=(5,), sweeps=12, dtype="float64")
    trace, _ = trace_arrays(ds.X_train, ds.y_train, cfg, preset=preset, record_every=record_every, n_classes=3)
    v = {x.claim: x for x in verify(trace)}
    assert v[tc.MONOTONE].status == v[tc.SUFFICIENT_DESCENT].status == PASS
    assert all(x.status != FAIL for x in v.values())
    if preset == "cheap":
        for claim in (tc.RELATIVE_ERROR, tc.RATE, tc.KL_EXPONENT, tc.BLOCK_EXACTNESS):
            assert v[claim].status == INCONCLUSIVE and "not checked" in v[claim].explanation
        assert v[tc.MONOTONE].details["levels"] == ["sweep"]
    if preset == "standard":
        assert v[tc.BLOCK_EXACTNESS].status == INCONCLUSIVE and v[tc.RATE].status == PASS
    if record_every == 3:  # block rows and g^k on sweeps 1, 3, 6, 9, 12 only: the partial sums have holes
        assert v[tc.RATE].status == INCONCLUSIVE and "not recorded on every sweep" in v[tc.RATE].explanation
        assert v[tc.BLOCK_EXACTNESS].status == PASS
        assert v[tc.MONOTONE].details["n_observations"] == {"sweep": 12, "block": 5 * 3 * cfg.N}


def test_a_run_with_nothing_to_descend_is_inconclusive_not_pass():
    """Started at the teacher of a realisable problem, L̄ = 0 and no block moves: the descent claims
    cannot be resolved, and the verdicts say so instead of passing."""
    ds, teacher = teacher_student(n=16, widths=(3, 4, 2), seed=3)
    cfg = BCDConfig(hidden=(4,), sweeps=6, dtype="float64")
    trace, _ = trace_arrays(ds.X_train, ds.y_train, cfg, init_weights=[torch.tensor(w) for w in teacher])
    verdicts = {v.claim: v for v in verify(trace)}
    for claim in (tc.MONOTONE, tc.SUFFICIENT_DESCENT, tc.RELATIVE_ERROR, tc.RATE):
        assert verdicts[claim].status == INCONCLUSIVE, (claim, verdicts[claim].explanation)
    assert not any(v.status == FAIL for v in verdicts.values())
