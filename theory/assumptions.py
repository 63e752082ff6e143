"""Assumption 1, Theorem 1's conditions (i)–(iii) and Theorem 2's, decided for one configuration.

``applicability(config)`` returns plain data: each item as holds / fails / undecided with its reason,
the Proposition 1 catalogue, and for every claim whether the theory *guarantees* it for this run or
whether it can only be *observed*.  No sympy here (numbers come from :mod:`theory.constants`).

Everything about the run's functions is read from their catalogue records (:mod:`bcd.catalogue`, MATH.md §9):
the loss, activation and regularisers of the configuration (``config.loss_record``, ``activation_record``,
``r_records``, ``s_records``) decide every item, and the catalogue table lists every registered record — there is
no table of functions here, so a new record shows up and is decided by its own attributes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bcd import catalogue
from bcd.activations import Activation, Polynomial, SmoothActivation
from bcd.config import BCDConfig
from theory import constants as tc

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"
STATUSES = (HOLDS, FAILS, UNDECIDED)
GUARANTEED, OBSERVED = "guaranteed", "observed"


@dataclass(frozen=True)
class Condition:
    """One hypothesis of the theory, decided for a configuration."""

    id: str  # "A1(a)", ..., "T1(i)", "T2(L_R)", ...
    source: str  # where it is stated
    statement: str
    status: str  # holds | fails | undecided
    reason: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not allowed; allowed: {', '.join(STATUSES)}")


@dataclass(frozen=True)
class CatalogueEntry:
    """A registered record of Proposition 1 (:mod:`bcd.catalogue`), with its classes and what the engine does."""

    kind: str  # loss | activation | regulariser
    name: str
    usage: str  # how to write its spec, e.g. box(lower, upper)
    spec: str  # the example the classes below were read from
    formula: str
    semialgebraic: bool
    real_analytic: bool
    kl_class: str  # why Assumption 1(d) holds for it
    smooth: bool
    note: str  # Lipschitz data, coercivity, how its block step is solved (from the record)
    supported: bool  # BCDConfig accepts it (the three-splitting engine runs it)


@dataclass(frozen=True)
class ClaimStatus:
    claim: str
    guaranteed: bool
    basis: str  # which result would guarantee it
    reason: str


# ----------------------------------------------------------------------------- the catalogue, from the registry


def u_prox_method(act: Activation) -> tuple[bool, str]:
    """(certified, description) of how the engine solves the elementwise U_i prox for ``act`` (MATH.md §9): a global
    minimiser by construction (closed form, all real roots) or a numerical search without a certificate."""
    if act.is_identity:
        return True, "closed form (a linear equation)"
    if act.kink is not None:
        return True, "closed form: the better of the two branch candidates u ≥ 0, u ≤ 0 (global minimiser)"
    if isinstance(act, Polynomial):
        return True, ("all real roots of f′ (companion eigenvalues, Newton polish) and the best of them: the global "
                      "minimiser up to the roots' accuracy")
    if isinstance(act, SmoothActivation):
        return False, ("nonconvex in general: a bracket |u* − m| ≤ |a − σ(m)|/√β, the best of a grid, then safeguarded "
                       "Newton — the global minimiser unless a basin narrower than a grid cell is missed (no "
                       "certificate)")
    return False, f"the record's own prox ({type(act).__name__}): global minimality not established here"


def _accepts(**kw: Any) -> bool:
    try:
        BCDConfig(hidden=(2,), **kw)
    except ValueError:
        return False
    return True


def _coercivity_note(entry: catalogue.Entry, rec: catalogue.Record) -> str:
    if not rec.coercive:
        return "not coercive" + (" (an unbounded set)" if rec.indicator else "")
    if rec.indicator:
        return "coercive (+∞ off a bounded set)"
    try:  # a weighted record: is it still coercive with its weights at 0?
        zero = catalogue.build("regulariser", f"{entry.name}({', '.join('0' for _ in entry.params)})")
    except ValueError:
        return "coercive"
    return "coercive" if zero.coercive else f"coercive iff {' or '.join(f'{p} > 0' for p in entry.params)}"


def _note(kind: str, entry: catalogue.Entry, rec: catalogue.Record) -> str:
    """What the theory and the engine need to know about one record, read from its attributes."""
    if kind == "loss":
        factor = rec.lipschitz(1.0)
        if factor is None:
            return "not differentiable: no L_R, Theorem 2 (prox-linear V_N) does not apply; V_N by its exact prox"
        what = "c" if factor == 1.0 else f"{factor:g}·c"
        return f"∇R Lipschitz, L_R = {what}: prox-linear V_N (Theorem 2) available; V_N by its exact prox"
    if kind == "activation":
        L = rec.lipschitz(None)
        lip = f"{L:g}-Lipschitz on ℝ" if math.isfinite(L) else \
            "Lipschitz on bounded sets only: L_B = Σ k|c_k|B^(k−1) on [−B, B]"
        return f"{lip}; U-prox: {u_prox_method(rec)[1]}"
    parts = ["convex, ≥ 0"]
    if rec.indicator:
        parts.append("indicator of a nonempty closed convex set (proper, lsc)")
    parts.append(_coercivity_note(entry, rec))
    parts.append("W step: closed form (Cholesky)" if rec.ridge is not None else "W step: monotone inner solver")
    parts.append("V_i step (i < N): closed form" if rec.is_zero else "V_i step (i < N): monotone inner solver")
    return "; ".join(parts)


@functools.cache
def _catalogue(registered: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[CatalogueEntry, ...]:
    field_of = {"loss": ("loss",), "activation": ("activation",), "regulariser": ("r", "s")}
    out = []
    for kind, _names in registered:
        for entry, rec in zip(catalogue.REGISTRY[kind].values(), catalogue.records(kind), strict=True):
            out.append(CatalogueEntry(
                kind, entry.name, entry.usage, rec.spec, rec.formula, rec.semialgebraic, rec.real_analytic,
                rec.kl_class, rec.smooth, _note(kind, entry, rec),
                all(_accepts(**{f: rec.spec}) for f in field_of[kind]),
            ))
    return tuple(out)


def catalogue_entries() -> tuple[CatalogueEntry, ...]:
    """Every registered record of every kind (:func:`bcd.catalogue.records`, with the registry's example parameters),
    in registration order: what ``bcd theory`` lists as the Proposition 1 catalogue."""
    return _catalogue(tuple((k, catalogue.names(k)) for k in catalogue.KINDS))


ASSUMPTION_IDS = ("A1(a)", "A1(b)", "A1(c)", "A1(d)")
THEOREM1_IDS = ("T1(i)", "T1(ii)", "T1(iii)")


@dataclass(frozen=True)
class Applicability:
    """Which hypotheses hold for ``config`` and therefore which claims are guaranteed."""

    config: dict[str, Any]
    theorem: str  # the theorem whose claims are at stake
    assumption: tuple[Condition, ...]  # Assumption 1 (a)–(d)
    conditions: tuple[Condition, ...]  # Theorem 1 (i)–(iii): one of them is needed
    extra: tuple[Condition, ...]  # α, γ > 0; exact block updates; Theorem 2's conditions
    claims: tuple[ClaimStatus, ...]
    catalogue: tuple[CatalogueEntry, ...] = field(default_factory=catalogue_entries)

    def condition(self, cid: str) -> Condition:
        for c in (*self.assumption, *self.conditions, *self.extra):
            if c.id == cid:
                return c
        known = [c.id for c in (*self.assumption, *self.conditions, *self.extra)]
        raise ValueError(f"no condition {cid!r}; known: {known}")

    def claim_status(self, claim_id: str) -> ClaimStatus:
        for s in self.claims:
            if s.claim == claim_id:
                return s
        raise ValueError(f"claim {claim_id!r} is unknown; allowed: {', '.join(s.claim for s in self.claims)}")

    def guaranteed(self, claim_id: str) -> bool:
        """True when the theory guarantees ``claim_id`` for this configuration (else it is only observed)."""
        return self.claim_status(claim_id).guaranteed

    @property
    def assumption_holds(self) -> bool:
        return all(c.status == HOLDS for c in self.assumption)

    @property
    def theorem1_condition_holds(self) -> bool:
        return any(c.status == HOLDS for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- describing the run's records


def _layer_groups(prefix: str, records: tuple) -> list[tuple[str, Any]]:
    """[(label, record)] with one label per distinct spec: ``r_i`` when every layer has it, else ``r_1, r_3``."""
    by_spec: dict[str, list[int]] = {}
    for i, rec in enumerate(records, start=1):
        by_spec.setdefault(rec.spec, []).append(i)
    first = {rec.spec: rec for rec in reversed(records)}
    if len(by_spec) == 1:
        return [(f"{prefix}_i", records[0])]
    return [(", ".join(f"{prefix}_{i}" for i in layers), first[spec]) for spec, layers in by_spec.items()]


def _as_config(config: BCDConfig | dict[str, Any]) -> BCDConfig:
    if isinstance(config, BCDConfig):
        return config
    return BCDConfig(**config)


def describe_r(config: BCDConfig) -> str:
    """r_i as configured: the λ shortcut, or the per-layer specs, and whether the bias is penalised."""
    if config.r is None:
        text = f"r_i = l2({config.lam:g}) = λ/2‖·‖², λ = {config.lam:g}" if config.lam > 0 else "r_i = none (λ = 0)"
    else:
        text = "; ".join(f"{label} = {rec.spec}" for label, rec in _layer_groups("r", config.r_records))
    return text + (" on W̃_i (bias included)" if config.reg_bias else " on Ŵ_i only (reg_bias = false: bias not "
                                                                       "penalised)")


def describe_s(config: BCDConfig) -> str:
    return "; ".join(f"{label} = {rec.spec}" for label, rec in _layer_groups("s", config.s_records))


def run_description(config: BCDConfig | dict[str, Any]) -> str:
    """The run's functions by their catalogue specs, e.g. ``loss squared (sum), σ = relu, r_i = l1(0.01) on W̃_i
    (bias included), s_i = none`` (for ``bcd theory`` and the report; a config dict as saved is accepted)."""
    cfg = _as_config(config)
    return (f"loss {cfg.loss} ({cfg.reduction}), σ = {cfg.activation}, {describe_r(cfg)}, {describe_s(cfg)}")


# ----------------------------------------------------------------------------- Assumption 1


def _finite_at(rec: Any, value: float) -> bool:
    """Whether a regulariser record is finite at the constant ``value`` (its domain contains it)."""
    return bool(torch.isfinite(rec.value(torch.full((1,), value, dtype=torch.float64))))


def _sigma0(config: BCDConfig) -> float:
    return float(config.activation_record.apply(torch.zeros(1, dtype=torch.float64))[0])


def _regulariser_phrase(rec: Any) -> str:
    if rec.indicator:
        return f"{rec.formula}: indicator of a nonempty closed convex set — proper, lsc, convex, ≥ 0"
    if rec.is_zero:
        return "≡ 0"
    return f"{rec.formula}: finite, continuous, convex, ≥ 0"


def _activation_L_B(config: BCDConfig, B: float | None) -> tuple[str, str]:
    """(status, reason) of A1(b) from the activation record's Lipschitz data."""
    act = config.activation_record
    L = act.lipschitz(None)
    if math.isfinite(L):
        return HOLDS, (f"σ = {act.spec} ({act.formula}) is {L:g}-Lipschitz on all of ℝ (L_B = {L:g} on every bounded "
                       "set); σ_N = Id")
    base = (f"σ = {act.spec} ({act.formula}) is a polynomial of degree ≥ 2: Lipschitz on bounded sets only, with "
            "L_B = Σ k|c_k|B^(k−1) on [−B, B] (not globally Lipschitz, which the assumption does not ask)")
    if B is None:
        return HOLDS, base + "; B (the bound on the iterates) is not known here, so L_B has no value yet: give a trace"
    return HOLDS, base + f"; with B = {B:g} from the trace: L_B = {act.lipschitz(B):g}"


def _assumption(config: BCDConfig, B: float | None = None) -> tuple[Condition, ...]:
    src = "Assumption 1"
    loss = config.loss_record
    regs = [(label, rec) for label, rec in _layer_groups("r", config.r_records)] + \
        [(label, rec) for label, rec in _layer_groups("s", config.s_records)]
    reg_txt = "; ".join(f"{label} = {rec.spec} ({_regulariser_phrase(rec)})" for label, rec in regs)
    st_b, why_b = _activation_L_B(config, B)
    bias = "" if config.reg_bias else "; r_i acts on Ŵ_i only (reg_bias = false), still a convex lsc function of W̃_i"
    pieces = [("R", loss), ("σ", config.activation_record), *regs]
    unclassed = [f"{label} = {rec.spec}" for label, rec in pieces if not (rec.semialgebraic or rec.real_analytic)]
    classes = "; ".join(f"{label} = {rec.spec}: {rec.kl_class}" for label, rec in pieces)
    if unclassed:
        st_d, why_d = FAILS, f"{', '.join(unclassed)} is neither semialgebraic nor real analytic ({classes})"
    elif all(rec.semialgebraic for _, rec in pieces):
        st_d, why_d = HOLDS, (f"{classes} — all semialgebraic, so L̄ is semialgebraic and has the Kurdyka–Łojasiewicz "
                              "property")
    else:
        st_d, why_d = HOLDS, (f"{classes} — each piece is semialgebraic or real analytic, as Assumption 1(d) asks; the "
                              "paper derives the Kurdyka–Łojasiewicz property of L̄ from it (the real analytic pieces "
                              "here are built from exp and log)")
    smooth = "continuous" if loss.smooth else "continuous, piecewise linear"
    return (
        Condition(
            "A1(a)", src, "the loss R is proper, lower semicontinuous and nonnegative (r_i, s_i: proper, lsc, bounded "
            "below)", HOLDS,
            f"R = {loss.spec} ({loss.formula}) is finite and {smooth} on all of ℝ^(d_N×n) (so proper and lsc) and "
            f"a sum of nonnegative per-sample terms (≥ 0); {reg_txt} — every catalogue regulariser is ≥ 0, and the "
            "indicators are proper (nonempty sets) and lsc (closed sets)",
        ),
        Condition("A1(b)", src, "each σ_i (i < N) is Lipschitz continuous on bounded sets", st_b, why_b),
        Condition("A1(c)", src, "r_i and s_i are nonnegative, lsc and convex", HOLDS, reg_txt + bias),
        Condition("A1(d)", src, "R, σ_i, r_i, s_i are real analytic or semialgebraic and continuous on their domains",
                  st_d, why_d),
    )


# ----------------------------------------------------------------------------- Theorem 1 (i)–(iii)


def _not_coercive_why(rec: Any) -> str:
    if rec.is_zero:
        return "r ≡ 0"
    if rec.indicator:
        return f"its set ({rec.formula}) is unbounded"
    return "its weight is 0"


def _flat_along(rec: Any, direction: list[float]) -> bool:
    """Whether the regulariser record is finite at 0 and constant along t·(±direction), t → ∞ (checked on the record's
    own ``value`` at t = 1, 10³, 10⁶; the catalogue's records are separable and convex or indicators, so a value that
    is constant at these points is constant on the ray)."""
    d = torch.tensor(direction, dtype=torch.float64)
    at0 = rec.value(torch.zeros_like(d))
    if not bool(torch.isfinite(at0)):
        return False
    return any(all(bool(rec.value(sign * t * d) == at0) for t in (1.0, 1e3, 1e6)) for sign in (1.0, -1.0))


def _flat_direction(config: BCDConfig) -> str | None:
    """An explicit unbounded direction along which L̄ is constant (so L̄ is not coercive), when the records give one.

    At layer i = k − 1 < N take a point with row j of W̃_i and of U_i zero and row j of V_i equal to σ(0) (feasible
    when r_i is finite at 0 and s_i at σ(0)); then the row vector e_j − σ(0)e_bias annihilates Ṽ_i, so
    W̃_k + t·w(e_j − σ(0)e_bias)ᵀ leaves every coupling term unchanged and L̄ changes only through r_k — which is
    constant along it when r_k ≡ 0, or e.g. for the orthant with σ(0) = 0 (checked on the record); with
    ``reg_bias = false`` r_k sees only the Ŵ_k part w e_jᵀ.  None when no layer gives such a direction."""
    N = config.N
    sigma0 = _sigma0(config)
    direction = [1.0, -sigma0] if config.reg_bias else [1.0]
    for k in range(2, N + 1):
        r_k, r_i, s_i = config.r_records[k - 1], config.r_records[k - 2], config.s_records[k - 2]
        if not _flat_along(r_k, direction) or not _finite_at(r_i, 0.0) or not _finite_at(s_i, sigma0):
            continue
        i = k - 1
        skip = " (Algorithm 3: at a layer i without a skip)" if config.skip != "none" else ""
        flat = f"r_{k} = {r_k.spec} ≡ 0" if r_k.is_zero else f"r_{k} = {r_k.spec} is constant along it"
        return (f"N = {N} ≥ 2{skip}: at any point with row j of W̃_{i} and of U_{i} equal to zero and row j of V_{i} "
                f"equal to σ(0) = {sigma0:g} (feasible: r_{i} = {r_i.spec} is finite at 0, s_{i} = {s_i.spec} at "
                f"σ(0)), the row vector e_j − σ(0)e_bias annihilates Ṽ_{i}, so W̃_{k} + t·w(e_j − σ(0)e_bias)ᵀ leaves "
                f"the coupling terms unchanged and {flat} as t → ∞: L̄ has unbounded sublevel sets")
    return None


def _theorem1(config: BCDConfig) -> tuple[Condition, ...]:
    """Theorem 1's (i)–(iii) from the r_i records (coercive or not), ``reg_bias`` and the layer count.

    (ii) holds when every r_i is coercive in W̃_i: a coercive record (ℓ1, elastic net, ℓ2 with λ > 0, a box,
    unit_interval) on the whole W̃_i.  With ``reg_bias = false`` r_i sees Ŵ_i only, so it stays bounded as the bias
    column grows: not coercive in W̃_i.  (iii) holds when (ii) does (bounded W̃_i, then U_1, V_1, …, in turn); it
    fails when some r_k ≡ 0 (k ≥ 2) leaves a flat unbounded direction (:func:`_flat_direction`); otherwise it is not
    decided.  (i) follows from (iii), and is otherwise a property of the run, not of the configuration."""
    src = "Theorem 1"
    groups = _layer_groups("r", config.r_records)
    bad = [(label, rec) for label, rec in groups if not rec.coercive]
    if bad:
        ii = Condition("T1(ii)", src, "every r_i is coercive", FAILS, "; ".join(
            f"{label} = {rec.spec} is not coercive ({_not_coercive_why(rec)})" for label, rec in bad) + (
            "" if config.reg_bias else "; and reg_bias = false leaves the bias column unpenalised"))
    elif not config.reg_bias:
        ii = Condition("T1(ii)", src, "every r_i is coercive", FAILS, (
            "reg_bias = false: r_i acts on Ŵ_i only, so the bias column b_i of W̃_i is not penalised and r_i is not "
            "coercive in W̃_i (it stays bounded as ‖b_i‖ → ∞); "
            + ", ".join(f"{label} = {rec.spec}" for label, rec in groups) + " would be coercive on Ŵ_i"))
    else:
        why = "; ".join(
            f"{label} = {rec.spec} is coercive: " + ("+∞ off its bounded set, so → +∞ as ‖W̃_i‖ → ∞" if rec.indicator
                                                      else "it tends to +∞ as ‖W̃_i‖ → ∞")
            for label, rec in groups)
        ii = Condition("T1(ii)", src, "every r_i is coercive", HOLDS, why + " (bias included)")
    if ii.status == HOLDS:
        iii = Condition(
            "T1(iii)", src, "L̄ is coercive", HOLDS,
            "coercive r_i bound every W̃_i on a sublevel set; then U_1 (via ‖U_1 − W̃_1X̃‖), V_1 (via ‖V_1 − σ(U_1)‖, "
            "σ continuous), U_2, V_2, …, U_N, V_N are bounded in turn",
        )
    else:
        flat = _flat_direction(config)
        if flat is not None:
            iii = Condition("T1(iii)", src, "L̄ is coercive", FAILS, flat)
        else:
            iii = Condition("T1(iii)", src, "L̄ is coercive", UNDECIDED, (
                "(ii) fails, but the records give no explicit flat direction (one needs N ≥ 2 and some r_k, k ≥ 2, "
                "constant along W̃_k + t·w(e_j − σ(0)e_bias)ᵀ with r_(k−1) finite at 0 and s_(k−1) at σ(0))"
                + ("; with the bias unpenalised the loss and the penalties may or may not bound b_i" if not
                   config.reg_bias else "") + ": whether L̄ has bounded sublevel sets is not decided here"))
    if iii.status == HOLDS:
        i = Condition(
            "T1(i)", src, "the iterates have a convergent subsequence", HOLDS,
            "implied by (iii): L̄(Q^k) ≤ L̄(Q⁰) (sufficient descent) keeps Q^k in a bounded sublevel set, "
            "so Bolzano–Weierstrass gives a convergent subsequence",
        )
    else:
        i = Condition(
            "T1(i)", src, "the iterates have a convergent subsequence", UNDECIDED,
            "cannot be decided from the configuration (the r_i do not bound the iterates); a trace's "
            "max‖W_i‖, max‖V_i‖, max‖U_i‖ columns give evidence of boundedness, which no finite run can prove",
        )
    return (i, ii, iii)


# ----------------------------------------------------------------------------- exact block updates


def _inner_text(config: BCDConfig, K: tc.RunConstants) -> list[str]:
    """One phrase per kind of inner-solver block (convex, no closed form: :mod:`bcd.prox_solvers`)."""
    out = []
    w = [(label, rec) for label, rec in _layer_groups("r", config.r_records) if rec.ridge is None]
    if w:
        out.append(f"W_i with {', '.join(f'{label} = {rec.spec}' for label, rec in w)}: monotone inner solver from W̃⁻ "
                   f"under dist(0, ∂Φ_W) ≤ η_W‖ΔW‖, η_W = min(η, α/4) = {K.block_eta('W', 1):g}")
    v = [(label, rec) for label, rec in _layer_groups("s", config.s_records[:-1]) if not rec.is_zero]
    if v and config.splitting == "three":
        out.append(f"V_i (i < N) with {', '.join(f'{label} = {rec.spec}' for label, rec in v)}: monotone inner solver "
                   f"from V⁻ under dist(0, ∂Φ_V) ≤ η_V‖ΔV‖, η_V = min(η, γρ/4) = {K.block_eta('V', 1, 1.0):g} "
                   "(ρ = 1 + τ_(i+1))")
    if out:
        out[-1] += (f" — or the cap of {config.inner_max_iter} iterations, which the trace records (the stopping rule "
                    "then did not fire for that block)")
    return out


def _v_n_text(config: BCDConfig) -> tuple[bool, str]:
    loss, s_N = config.loss_record, config.s_records[-1]
    then = "" if s_N.is_zero else f", then the exact prox of s_N = {s_N.spec}"
    if config.vn_update == "prox_linear":
        if not loss.smooth:
            return False, (f"V_N: the prox-linear step needs ∇R, and R = {loss.spec} is not differentiable: the "
                           "step is not defined")
        return True, f"V_N: prox-linear closed form (R linearised at V_N⁻){then}"
    if loss.name == "squared":
        return True, f"V_N: closed form{then}"
    return True, (f"V_N: the exact prox of R = {loss.spec} (its record's prox: closed form, or Newton safeguarded by "
                  "bisection / a line search on a strictly convex problem, exact up to rounding)")


def _exactness(config: BCDConfig) -> Condition:
    K = tc.RunConstants(config)
    act = config.activation_record
    if config.splitting == "two" and not act.is_identity:
        return Condition(
            "exact", "Algorithm 1 (MATH.md §7)",
            "every block update is monotone in its subproblem, and stationary up to η‖X⁺ − X⁻‖", HOLDS,
            "closed forms for V_N, W_N and V_{N-1}; the nonconvex W_i, V_i use a monotone inner solver started at "
            f"the old block that stops on dist(0, ∂Φ) ≤ η‖ΔX‖ (η = {config.eta:g}) or at {config.inner_max_iter} "
            "iterations — the trace records which; the relative-error argument needs the rule to hold",
        )
    alg = "Algorithm 1" if config.splitting == "two" else ("Algorithm 3" if config.skip != "none" else "Algorithm 2")
    vn_ok, vn = _v_n_text(config)
    inner = _inner_text(config, K)
    parts = [vn, "U_N: closed form"] if config.splitting == "three" else [vn, "V_i (i < N): closed form (σ = Id)"]
    if not any(t.startswith("W_i") for t in inner):
        parts.append("W_i: closed form (Cholesky solve" + ("" if config.reg_bias else ", the bias unpenalised") + ")")
    if not any(t.startswith("V_i") for t in inner) and config.splitting == "three":
        parts.append("V_i (i < N): closed form (linear solve)")
    parts += inner
    if config.splitting == "three":
        parts.append(f"U_i (σ = {act.spec}): {u_prox_method(act)[1]}")
    statement = "every block update is the exact minimiser of its subproblem" + (
        " (inner-solver blocks: monotone, and stationary up to η_X‖X⁺ − X⁻‖)" if inner else "")
    reason = "; ".join(parts) + f"; exact up to {config.dtype} rounding"
    problem = exactness_problem(config)
    if problem is None:
        return Condition("exact", alg, statement, HOLDS, reason)
    return Condition("exact", alg, statement, FAILS if not vn_ok else UNDECIDED, f"{problem} ({reason})")


def exactness_problem(config: BCDConfig) -> str | None:
    """Why the block updates cannot be taken as exact minimisers (one sentence), or None when they can."""
    loss, act = config.loss_record, config.activation_record
    if config.vn_update == "prox_linear" and not loss.smooth:
        return f"the prox-linear V_N step needs ∇R, which R = {loss.spec} does not have (not differentiable)"
    if config.splitting == "three" and not u_prox_method(act)[0]:
        return (f"the U_i prox for σ = {act.spec} is a numerical global search without a certificate (bracket, grid, "
                "safeguarded Newton): its global minimality, which the per-block descent (α/2 needs "
                "Φ_U(U⁺) ≤ Φ_U(U⁻)) and the relative-error argument (stationarity) use, is measured by the exactness "
                "check, not guaranteed")
    return None


# ----------------------------------------------------------------------------- Theorem 2 and the other hypotheses


def _theorem2(config: BCDConfig, n: int | None) -> list[Condition]:
    loss = config.loss_record
    L_R = tc.loss_lipschitz_constant(config.reduction, n, loss)
    if L_R is None:
        why = (f"R = {loss.spec} ({loss.formula}) is not differentiable, so ∇R does not exist everywhere and Theorem 2 "
               "does not apply (its prox-linear V_N step linearises R); use vn_update='prox' (the exact prox of R)")
        no = f"needs L_R, which R = {loss.spec} does not have (T2(L_R) fails)"
        return [Condition("T2(L_R)", "Theorem 2", "∇R is Lipschitz continuous", FAILS, why),
                Condition("T2(alpha, seeds)", "Theorem 2 (seeds)", "α > max{0, (L_R − 1)/2}", UNDECIDED, no),
                Condition("T2(alpha, derived)", "Theorem 2, derived for the implemented update",
                          "α > max{0, (L_R − γ)/2}", UNDECIDED, no)]
    factor = loss.lipschitz(1.0)
    what = "c" if factor == 1.0 else f"{factor:g}·c"
    c_txt = "c = 1, sum" if config.reduction == "sum" else ("c = 1/n ≤ 1: n unknown, the upper bound used"
                                                             if n is None else f"c = 1/n = 1/{n}")
    lr_txt = f"L_R = {L_R:g}"
    out = [Condition("T2(L_R)", "Theorem 2", "∇R is Lipschitz continuous", HOLDS,
                     f"R = {loss.spec} ({loss.formula}): ∇R is Lipschitz with L_R = {what} ({c_txt}), {lr_txt}")]
    seeds = tc.seeds_prox_linear_alpha_bound(L_R)
    derived = tc.prox_linear_alpha_bound(L_R, config.gamma)
    out.append(Condition(
        "T2(alpha, seeds)", "Theorem 2 (seeds)", "α > max{0, (L_R − 1)/2}",
        HOLDS if config.alpha > seeds else FAILS, f"α = {config.alpha:g} vs bound {seeds:g} ({lr_txt}, {loss.spec})",
    ))
    margin = tc.prox_linear_block_constant(config.gamma, config.alpha, L_R)
    out.append(Condition(
        "T2(alpha, derived)", "Theorem 2, derived for the implemented update", "α > max{0, (L_R − γ)/2}",
        HOLDS if config.alpha > derived else FAILS,
        f"α = {config.alpha:g} vs bound {derived:g}; V_N block constant (2α + γ − L_R)/2 = {margin:g} ({lr_txt}, "
        f"{loss.spec})",
    ))
    return out


def _extra(config: BCDConfig, n: int | None) -> tuple[Condition, ...]:
    out = [
        Condition("hyper", "Theorems 1–2", "α > 0 and γ > 0", HOLDS,
                  f"α = {config.alpha:g}, γ = {config.gamma:g} (validated by BCDConfig)"),
        _exactness(config),
    ]
    if config.skip != "none":
        out.append(Condition(
            "T3(skip)", "Theorem 3 (Algorithm 3)", "a skip V_i − V_{i-1} − σ_i(U_i) only where d_i = d_{i-1}", HOLDS,
            "skip='auto' places a skip on exactly the layers with d_i = d_{i-1} (bcd.model.skips); the block steps "
            "of MATH.md §8 are those of Algorithm 2 with the skip's terms, and the per-block constants are §8's "
            "(a V_i before a skip layer: γ(1 + τ_{i+1})/2)",
        ))
    if config.vn_update == "prox_linear":
        out += _theorem2(config, n)
    return tuple(out)


# ----------------------------------------------------------------------------- the claims


def _inner_descent(config: BCDConfig) -> str:
    """Why the inner-solver blocks keep a per-block descent constant (empty when there are none)."""
    K = tc.RunConstants(config)
    parts = []
    if any(b == "W" for b, _ in K.inner_blocks):
        parts.append("W_i (non-ridge r_i, inner solver): α/2 by monotonicity alone (Φ_W(W⁺) ≤ Φ_W(W⁻), the proximal "
                     "term inside Φ_W); with the rule, strong convexity (μ_W = α + γλ_min(ṼṼᵀ) ≥ α) adds μ_W/2 − η_W")
    if config.splitting == "three" and any(b == "V" for b, _ in K.inner_blocks):
        parts.append(f"V_i (nonzero s_i, inner solver, no proximal term): μ_V/2 − η_V = γ/2 − min(η, γ/4) = "
                     f"{tc.inner_V_block_constant(config.gamma, config.eta):g} by strong convexity (μ_V = γ in "
                     "Algorithm 2, γρ with a skip) and the rule dist(0, ∂Φ_V) ≤ η_V‖ΔV‖ — provided the rule fired (a "
                     "solve stopped at the iteration cap keeps only monotonicity, ≥ 0; the trace records it)")
    return "; ".join(parts)


def _claims(config: BCDConfig, assumption, conditions, extra) -> tuple[ClaimStatus, ...]:
    a_ok = all(c.status == HOLDS for c in assumption)
    t1 = [c.id for c in conditions if c.status == HOLDS]
    pl = config.vn_update == "prox_linear"
    exact = next(c for c in extra if c.id == "exact")
    exact_ok = exact.status == HOLDS
    pl_cond = next((c for c in extra if c.id == "T2(alpha, derived)"), None)
    lr_cond = next((c for c in extra if c.id == "T2(L_R)"), None)
    pl_ok = pl_cond is None or pl_cond.status == HOLDS
    inner = _inner_descent(config)
    problem = exactness_problem(config)
    not_exact = f"exact block updates are not established: {problem}"
    lemma_basis = "Lemma (sufficient descent)" + (" + Theorem 2's derived α condition" if pl else "")
    if lr_cond is not None and lr_cond.status != HOLDS:
        lemma_reason = "Theorem 2 does not apply: " + lr_cond.reason
    elif not exact_ok:
        lemma_reason = not_exact
    elif not pl:
        lemma_reason = "holds for any α, γ > 0 with exact block updates"
        if config.loss != "squared" or not config.s_records[-1].is_zero or config.r is not None:
            lemma_reason += (" (the descent lemma needs only the minimality of each block's step: a convex loss, "
                             "r_i or s_i added to an exact prox only raises its modulus)")
    elif pl_ok:
        lemma_reason = f"the prox-linear V_N step decreases L̄ since α > (L_R − γ)/2 (L_R of R = {config.loss})"
    else:
        seeds_ok = next(c for c in extra if c.id == "T2(alpha, seeds)").status == HOLDS
        lemma_reason = ("the prox-linear V_N step can increase L̄: α ≤ (L_R − γ)/2 (derived condition fails"
                        + (", although the seeds' condition holds)" if seeds_ok else ")"))
    if inner and exact_ok:
        lemma_reason += "; " + inner
    descent_ok = pl_ok and exact_ok
    thm = "Theorem 2" if pl else ("Theorem 3" if config.skip != "none" else "Theorem 1")
    if not a_ok:
        why_not = "Assumption 1 is not established: " + ", ".join(c.id for c in assumption if c.status != HOLDS)
    elif lr_cond is not None and lr_cond.status != HOLDS:
        why_not = "Theorem 2 does not apply: " + lr_cond.reason
    elif not exact_ok:
        why_not = not_exact
    elif not t1:
        why_not = "none of Theorem 1's conditions (i)–(iii) is known to hold: " + "; ".join(
            f"{c.id} {c.status}" for c in conditions)
    elif not pl_ok:
        why_not = "Theorem 2's α condition for the implemented update fails"
    else:
        why_not = ""
    thm_ok = not why_not
    b_unknown = config.splitting == "two" and not config.activation_record.is_identity
    thm_reason = (f"Assumption 1 holds and {', '.join(t1)} holds" + (" and α satisfies Theorem 2" if pl else "")
                  if thm_ok else why_not)
    K = tc.RunConstants(config)
    rel_extra = (" (inner-solver blocks: b gains + η, the rule's error ‖e_X‖ ≤ η_X‖ΔX‖ added to their components)"
                 if K.inner_blocks else "")
    if b_unknown:
        rel_reason = B_UNKNOWN_REASON
    elif not exact_ok:
        rel_reason = "needs each block's optimality condition: " + not_exact
    elif a_ok:
        rel_reason = ("holds on any finite trace with B = the largest ‖W̃_i‖, ‖U_i‖, ‖Ṽ_i‖ (X̃ included) it reached "
                      f"(A1(b): L_B of σ = {config.activation} on [−B, B])" + rel_extra)
    else:
        rel_reason = "needs Assumption 1(b)"
    exact_reason = (("each update solves its subproblem exactly (derived and checked symbolically)" if config.classic
                     else "each update solves its subproblem exactly: " + exact.reason) if not K.inner_blocks
                    else "the closed-form blocks solve their subproblems exactly; the inner-solver blocks stop on "
                         "dist(0, ∂Φ_X) ≤ η_X‖ΔX‖ (the exactness check reads that rule for them; a block stopped at "
                         "the iteration cap is reported)")
    if not exact_ok:
        exact_reason = not_exact
    return (
        ClaimStatus(tc.BLOCK_EXACTNESS, exact_ok, "closed forms (theory.derivations)" + (
            " and MATH.md §7's stopping rule" if K.inner_blocks else ""), exact_reason),
        ClaimStatus(tc.MONOTONE, descent_ok, "per-block descent (MATH.md §4.1)" + (" + Theorem 2 α" if pl else ""),
                    lemma_reason),
        ClaimStatus(tc.SUFFICIENT_DESCENT, descent_ok, lemma_basis, lemma_reason),
        ClaimStatus(tc.RELATIVE_ERROR, a_ok and exact_ok and not b_unknown,
                    "Lemma (relative error), B = bound of the iterates" + (
                        "; Algorithm 1 with σ = Id: b = 3δ [derived]" if config.splitting == "two" else ""),
                    rel_reason),
        ClaimStatus(tc.RATE, thm_ok and not b_unknown, f"{thm}(c)", (
            "the rate constant C needs Algorithm 1's b, not derived here for a nonsmooth σ" if b_unknown else
            thm_reason + ("" if thm_ok else
                          "; the finite-T bound Σ‖g^k‖² ≤ C with B from the trace still follows from the lemmas"))),
        ClaimStatus(tc.CONVERGENCE, thm_ok, f"{thm}(a),(b)", thm_reason),
        ClaimStatus(tc.GLOBAL_MINIMUM, False, "Theorem (global minimum)",
                    "needs an initialisation sufficiently close to a global minimiser, which a configuration "
                    "cannot certify"),
        ClaimStatus(tc.KL_EXPONENT, False, "beyond the paper",
                    "A1(d) gives the KL property, so an exponent θ exists, but no result predicts its value"),
    )


B_UNKNOWN_REASON = (
    "Algorithm 1's constant b is derived here for σ = Id only (MATH.md §7.4: with a kink in σ the W_i component's "
    "factor σ′(W̃_iṼ_{i-1}) jumps when V_{i-1}, updated after W_i, flips an activation, so the simple argument fails); "
    "b_emp is observed")


def theorem_name(config: BCDConfig) -> str:
    """The result that covers the configured algorithm."""
    if config.vn_update == "prox_linear":
        return "Theorem 2 (prox-linear V_N)"
    if config.skip != "none":
        return "Theorem 3 (Algorithm 3, ResNet)"
    return "Theorem 1 (Algorithm 1)" if config.splitting == "two" else "Theorem 1 (Algorithm 2)"


def applicability(config: BCDConfig, *, n: int | None = None, B: float | None = None) -> Applicability:
    """Decide Assumption 1, Theorem 1 (i)–(iii) and Theorem 2's conditions for ``config``.

    ``n`` (number of samples) only matters for the prox-linear step with mean reduction (L_R = factor/n); ``B`` (the
    bound on the iterates, from a trace) gives L_B a value for an activation that is Lipschitz on bounded sets only
    (a polynomial)."""
    if not isinstance(config, BCDConfig):
        raise ValueError(f"config must be a BCDConfig; got {type(config).__name__}")
    assumption = _assumption(config, B)
    conditions = _theorem1(config)
    extra = _extra(config, n)
    cfg = asdict(config)
    cfg["hidden"] = list(config.hidden)
    return Applicability(
        config=cfg,
        theorem=theorem_name(config),
        assumption=assumption,
        conditions=conditions,
        extra=extra,
        claims=_claims(config, assumption, conditions, extra),
        catalogue=catalogue_entries(),
    )
