"""pytest plugin ``bcd_verify``: regression-test monotone descent (and the other claims) of a BCD variant.

Registered through the ``pytest11`` entry point, so installing bcd-verify makes these available in
any test suite:

* assertion helpers :func:`assert_monotone_descent`, :func:`assert_sufficient_descent`,
  :func:`assert_rate`, :func:`assert_exact_updates` and :func:`assert_verified` — each runs the
  corresponding check of :mod:`verification.checks` and, on failure, raises ``AssertionError`` naming
  the sweep, the block, the increase (or shortfall) and the tolerance;
* fixtures ``bcd_config`` (a small float64 configuration), ``bcd_data`` (a small Gaussian mixture),
  ``bcd_schedule`` (``None`` = the configuration's own variant; override it to test yours),
  ``bcd_trace`` (the trace of that run under ``Recorder(preset="full")``) and ``bcd_run`` (a
  factory for other runs in the same test).

Imports of torch and the engine happen inside the fixtures and helpers, so loading the plugin costs
nothing for test suites that do not use it.  See verification/PLUGIN.md for an example.
"""

from __future__ import annotations

from typing import Any

import pytest

MAX_LISTED = 5


def _located(w: dict[str, Any]) -> str:
    where = f"sweep {w['sweep']}"
    return where + (f", block {w['block']} (step {w['step']})" if w.get("block") else " (whole sweep)")


def _fail(v, lines: list[str]) -> None:
    __tracebackhide__ = True
    head = f"{v.title}: {v.status.upper()} — {v.explanation}"
    tail = [f"tolerance: {v.tolerance_reason}"] if v.tolerance_reason else []
    pytest.fail("\n".join([head, *lines, *tail]), pytrace=False)


def _settle(v, allow_inconclusive: bool, lines: list[str]):
    __tracebackhide__ = True
    from verification.verdict import FAIL, INCONCLUSIVE

    if v.status == FAIL or (v.status == INCONCLUSIVE and not allow_inconclusive):
        if v.status == INCONCLUSIVE:
            lines = [*lines, "(inconclusive counts as a failure here; pass allow_inconclusive=True to accept it)"]
        _fail(v, lines)
    return v


def assert_monotone_descent(trace, *, config=None, per_block: bool = True, allow_inconclusive: bool = False):
    """Assert that L̄ never increases beyond the dtype/|L̄| tolerance, per sweep and (``per_block``) per
    block update.  Returns the :class:`~verification.verdict.Verdict`; the failure message lists every
    increase as ``L̄ increased at sweep k, block X (step j) by Δ > tolerance τ``."""
    __tracebackhide__ = True
    from verification.checks import monotone_descent

    v = monotone_descent(trace, config, per_block=per_block)
    lines = [f"L̄ increased at {_located(x)} by {-x['decrease']:.4g} > tolerance {x['tolerance']:.3g}"
             for x in v.details.get("violations", [])[:MAX_LISTED]]
    return _settle(v, allow_inconclusive, lines)


def assert_sufficient_descent(trace, *, config=None, a: float | None = None, per_block: bool = True,
                              allow_inconclusive: bool = False):
    """Assert L̄^{k−1} − L̄^k ≥ a‖ΔQ^k‖² per sweep and c_blk‖Δ‖² per block update (``a`` defaults to the
    theory's constant for the configuration)."""
    __tracebackhide__ = True
    from verification.checks import sufficient_descent

    v = sufficient_descent(trace, config, a=a, per_block=per_block)
    lines = [f"at {_located(x)}: L̄ fell by {x['decrease']:.4g} < required {x['bound']:.4g} = {x['constant']:.4g}·‖Δ‖² "
             f"(shortfall {x['shortfall']:.4g} > tolerance {x['tolerance']:.3g})"
             for x in v.details.get("violations", [])[:MAX_LISTED]]
    return _settle(v, allow_inconclusive, lines)


def assert_rate(trace, *, config=None, a: float | None = None, b: float | None = None,
                allow_inconclusive: bool = False):
    """Assert the O(1/T) bound Σ_{k≤T}‖g^k‖² ≤ C = b²(L̄⁰ − L̄*)/a of Theorem 1(c) on every prefix."""
    __tracebackhide__ = True
    from verification.checks import rate

    v = rate(trace, config, a=a, b=b)
    d = v.details
    lines = [f"at sweep {v.worst['sweep']}: Σ‖g^k‖² = {d['sum_g_sq']:.4g} vs C = {d['C']:.4g} "
             f"(a = {d['a']:.4g}, b = {d['b']:.4g}, L̄⁰ = {d['L0']:.4g})"] if "C" in d and v.worst else []
    return _settle(v, allow_inconclusive, lines)


def assert_exact_updates(trace, *, config=None, allow_inconclusive: bool = False):
    """Assert every block update is the exact minimiser of its subproblem (relative residual ≤ √eps)."""
    __tracebackhide__ = True
    from verification.checks import block_exactness

    v = block_exactness(trace, config)
    lines = [f"inexact update at sweep {x['sweep']}, block {x['block']} (step {x['step']}): residual "
             f"{x['residual']:.3g} > tolerance {x['tolerance']:.3g}"
             for x in v.details.get("violations", [])[:MAX_LISTED]]
    return _settle(v, allow_inconclusive, lines)


def assert_verified(trace, *, config=None):
    """Assert that no check of :func:`verification.checks.verify` fails.  Returns the verdicts."""
    __tracebackhide__ = True
    from verification.checks import verify
    from verification.verdict import FAIL

    verdicts = verify(trace, config)
    failed = [v for v in verdicts if v.status == FAIL]
    if failed:
        pytest.fail("\n".join(f"{v.claim}: {v.explanation}" for v in failed), pytrace=False)
    return verdicts


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def bcd_config():
    """A small float64 configuration (one hidden ReLU layer of 6, γ = 1, α = 2, 15 sweeps); override
    this fixture in your conftest.py or test module to change it."""
    from bcd.config import BCDConfig

    return BCDConfig(hidden=(6,), gamma=1.0, alpha=2.0, sweeps=15, dtype="float64", seed=0)


@pytest.fixture
def bcd_data():
    """(X, y, n_classes): 40 samples of a 3-class Gaussian mixture in R^5, samples as rows."""
    from bcd.data import gaussian_mixture

    ds = gaussian_mixture(n=40, d=5, k=3, seed=0)
    return ds.X_train, ds.y_train, 3


@pytest.fixture
def bcd_schedule():
    """The variant under test: ``None`` (the configuration's own schedule), a tuple of
    :class:`bcd.schedule.Step`, or a function ``N -> tuple[Step, ...]``.  Override it to test yours."""
    return None


def _run(config, data, schedule, preset: str):
    from verification.pipeline import trace_arrays

    X, y, n_classes = data
    steps = schedule(config.N) if callable(schedule) else schedule
    trace, _ = trace_arrays(X, y, config, schedule=steps, preset=preset, n_classes=n_classes)
    return trace


@pytest.fixture
def bcd_trace(bcd_config, bcd_data, bcd_schedule):
    """The :class:`~verification.trace.Trace` of ``bcd_schedule`` run on ``bcd_data`` with
    ``bcd_config`` under ``Recorder(preset="full")``."""
    return _run(bcd_config, bcd_data, bcd_schedule, "full")


@pytest.fixture
def bcd_run(bcd_config, bcd_data):
    """Factory: ``bcd_run(schedule=None, preset="full", data=None, **config_changes) -> Trace`` runs a
    variant on ``bcd_data`` (or ``data``) with ``bcd_config`` changed by ``config_changes``."""
    import dataclasses

    def run(schedule=None, *, preset: str = "full", data=None, **config_changes):
        config = dataclasses.replace(bcd_config, **config_changes)
        return _run(config, data if data is not None else bcd_data, schedule, preset)

    return run
