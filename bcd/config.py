"""Configuration records, validated on construction.

A bad value raises ``ValueError`` naming the field, the value and what is allowed, before
anything is computed or written.  Glossary (paper symbols, MATH.md §1):

* ``gamma`` (γ > 0): weight of the splitting penalties ‖V_i − σ(U_i)‖², ‖U_i − W̃_iṼ_{i-1}‖².
* ``alpha`` (α > 0): weight of the proximal terms α/2‖· − ·⁻‖².
* ``lam`` (λ ≥ 0): r_i(W̃_i) = λ/2‖W̃_i‖² on the whole augmented weight (bias included) — the shortcut for
  ``r = "l2(λ)"``.
* ``hidden``: widths d_1..d_{N-1}; d_0 and d_N come from the data.
* ``loss``, ``activation``, ``r`` (on W̃_i), ``s`` (on V_i): catalogue specs (:mod:`bcd.catalogue`), e.g.
  ``cross_entropy``, ``leaky_relu(0.01)``, ``l1(1e-4)``, ``box(-1, 1)``; ``r`` and ``s`` take one spec for every
  layer or a list of N (one per layer i = 1..N).  ``reg_bias`` (default true): r_i acts on the whole W̃_i = [Ŵ_i b_i];
  false: on Ŵ_i only.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bcd import catalogue

REDUCTIONS = ("sum", "mean")
SPLITTINGS = ("three", "two")
SKIPS = ("none", "auto")
VN_UPDATES = ("prox", "prox_linear")
INITS = ("authors", "kaiming")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
DATASETS = ("mnist", "fashion-mnist", "teacher", "mixture", "npz")
SUBSETS = ("stratified", "leading")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(allowed)}")


MIN_WEIGHT, MAX_WEIGHT = 1e-12, catalogue.MAX_PARAM  # γ, α, λ: outside this range float64 arithmetic on L̄ breaks down


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be {bound}")
    if 0 < abs(value) < MIN_WEIGHT or abs(value) > MAX_WEIGHT:  # subnormal or absurd: every constant breaks down
        raise ValueError(f"{name}={value!r} is not allowed; a nonzero {name} must lie in [{MIN_WEIGHT:g}, "
                         f"{MAX_WEIGHT:g}] (the constants of the theory divide by it or square it)")


SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes an unsigned 64-bit integer


def check_seed(name: str, value: Any) -> None:
    """A seed: an integer in [0, 2⁶⁴), the range every generator it seeds accepts (torch's, numpy's)."""
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT):
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be an integer in [0, 2**64)")


def _positive_int(name: str, value: Any, *, allow_zero: bool = False, optional: bool = False) -> None:
    if optional and value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = "an integer >= 0" if allow_zero else "an integer >= 1"
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be {bound}")


@dataclass(frozen=True)
class BCDConfig:
    """Hyperparameters of one BCD run (Algorithms 1–3 of Zeng et al., 2019).

    ``splitting``: ``three`` (Algorithm 2) or ``two`` (Algorithm 1); ``skip="auto"`` with the
    three-splitting is Algorithm 3 (a ResNet skip on every layer with d_i = d_{i-1}, MATH.md §8).
    ``vn_update="prox_linear"`` selects the prox-linear V_N step of Theorem 2 (MATH.md §4.7).
    ``inner_max_iter`` and ``inner_eta`` (η, default α/10) steer the inner solver of Algorithm 1's nonconvex
    W_i and V_i blocks (MATH.md §7: stop when dist(0, ∂Φ) ≤ η‖X − X⁻‖, or at the cap, which is reported).
    ``eval_every`` is how often (in sweeps) the forward-pass accuracy is computed; the
    objective L̄ is evaluated every sweep.
    """

    hidden: tuple[int, ...] = (1500, 1500, 1500)
    activation: str = "relu"
    gamma: float = 1.0
    alpha: float = 5.0
    lam: float = 0.0
    loss: str = "squared"
    reduction: str = "sum"
    splitting: str = "three"
    skip: str = "none"
    vn_update: str = "prox"
    sweeps: int = 50
    init: str = "authors"
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    eval_every: int = 1
    inner_max_iter: int = 50
    inner_eta: float | None = None
    r: str | tuple[str, ...] | None = None
    s: str | tuple[str, ...] | None = None
    reg_bias: bool = True

    def __post_init__(self) -> None:
        hidden = tuple(self.hidden) if isinstance(self.hidden, (list, tuple)) else self.hidden
        if not isinstance(hidden, tuple) or len(hidden) == 0:
            raise ValueError(
                f"hidden={self.hidden!r} is not allowed; give at least one hidden width, e.g. [1500, 1500]"
            )
        for j, d in enumerate(hidden):
            _positive_int(f"hidden[{j}]", d)
        object.__setattr__(self, "hidden", hidden)
        for name in ("gamma", "alpha"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
            _positive(name, getattr(self, name))
        _positive("lam", self.lam, allow_zero=True)
        object.__setattr__(self, "lam", float(self.lam))
        object.__setattr__(self, "activation", catalogue.build("activation", self.activation).spec)
        object.__setattr__(self, "loss", catalogue.build("loss", self.loss).spec)
        if not isinstance(self.reg_bias, bool):
            raise ValueError(f"reg_bias={self.reg_bias!r} is not allowed; reg_bias must be true or false")
        self._resolve_regularisers()
        _choice("reduction", self.reduction, REDUCTIONS)
        _choice("splitting", self.splitting, SPLITTINGS)
        _choice("skip", self.skip, SKIPS)
        if self.skip != "none" and self.splitting != "three":
            raise ValueError(
                f"skip={self.skip!r} needs splitting='three' (Algorithm 3 is the three-splitting ResNet); "
                f"got splitting={self.splitting!r}"
            )
        _choice("vn_update", self.vn_update, VN_UPDATES)
        _choice("init", self.init, INITS)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        _positive_int("sweeps", self.sweeps, allow_zero=True)
        check_seed("seed", self.seed)
        _positive_int("eval_every", self.eval_every)
        _positive_int("inner_max_iter", self.inner_max_iter)
        self._check_combination()
        if self.inner_eta is not None:
            _positive("inner_eta", self.inner_eta)
            object.__setattr__(self, "inner_eta", float(self.inner_eta))

    def _resolve_regularisers(self) -> None:
        """Validate ``r`` and ``s`` through the catalogue and bring them to a canonical form: a tuple of N specs, or
        ``None`` for the default (r: λ/2‖W̃‖² from ``lam``; s: none).  A uniform ``l2(λ)`` r with the bias
        regularised *is* the ``lam`` shortcut and is stored as such, so one configuration has one spelling."""
        N = len(self.hidden) + 1
        for name in ("r", "s"):
            value = getattr(self, name)
            if value is None:
                continue
            specs = [value] * N if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) \
                else None
            if specs is None or len(specs) != N:
                raise ValueError(f"{name}={value!r} is not allowed; give one spec or a list of N={N} specs "
                                 f"(layers 1..N); allowed specs: {catalogue.allowed('regulariser')}")
            try:
                canon = tuple(catalogue.build("regulariser", v).spec for v in specs)
            except ValueError as e:
                raise ValueError(f"{name} ({'on W̃_i' if name == 'r' else 'on V_i'}): {e}") from None
            object.__setattr__(self, name, None if all(c == "none" for c in canon) else canon)
        if self.r is not None:
            if self.lam > 0:
                raise ValueError(f"lam={self.lam:g} and r={self.r!r} are both given; lam is the shortcut for "
                                 f"r = 'l2(lam)': give one of them")
            first = catalogue.build("regulariser", self.r[0])
            if self.reg_bias and first.ridge is not None and len(set(self.r)) == 1:
                object.__setattr__(self, "lam", float(first.ridge))
                object.__setattr__(self, "r", None)

    def _check_combination(self) -> None:
        """Combinations of records the engine cannot run, refused with what to do instead."""
        loss = self.loss_record
        if self.vn_update == "prox_linear" and not loss.smooth:
            raise ValueError(f"vn_update='prox_linear' needs a differentiable loss (Theorem 2 linearises R with its "
                             f"L_R-Lipschitz gradient); loss={self.loss!r} is not: use vn_update='prox' (its exact "
                             f"prox is closed form)")
        s_N = self.s_records[-1]
        if self.vn_update == "prox" and not s_N.is_zero and self.loss != "squared":
            raise ValueError(f"s_N={s_N.spec!r} on V_N with loss={self.loss!r} and vn_update='prox' has no exact V_N "
                             f"step here; use vn_update='prox_linear' (then s_N's prox is exact) or the squared loss")

    @property
    def N(self) -> int:
        """Number of weight layers N = len(hidden) + 1."""
        return len(self.hidden) + 1

    @property
    def loss_record(self) -> catalogue.Record:
        return catalogue.build("loss", self.loss)

    @property
    def activation_record(self) -> catalogue.Record:
        return catalogue.build("activation", self.activation)

    @property
    def r_records(self) -> tuple:
        """r_1..r_N (index 0 ↔ layer 1)."""
        specs = self.r if self.r is not None else (f"l2({self.lam!r})" if self.lam > 0 else "none",) * self.N
        return tuple(catalogue.build("regulariser", v) for v in specs)

    @property
    def s_records(self) -> tuple:
        """s_1..s_N on V_1..V_N (index 0 ↔ layer 1)."""
        return tuple(catalogue.build("regulariser", v) for v in (self.s or ("none",) * self.N))

    @property
    def classic(self) -> bool:
        """The original family (squared loss, ReLU or identity, r_i = λ/2‖W̃_i‖² with the bias, no s_i): the
        closed forms of MATH.md §3–§7 and the recorder's in-stream fast path apply."""
        return (self.loss == "squared" and self.activation in ("relu", "identity") and self.r is None
                and self.s is None and self.reg_bias)

    @property
    def eta(self) -> float:
        """η of the inner stopping rule dist(0, ∂Φ_X) ≤ η‖X − X⁻‖: ``inner_eta``, by default α/10 (the proximal
        term contributes α(X⁺ − X⁻) to g^k, so η = α/10 enlarges that part of the relative-error bound by 10%)."""
        return 0.1 * self.alpha if self.inner_eta is None else self.inner_eta


@dataclass(frozen=True)
class DataConfig:
    """Where the samples come from.

    ``n_train`` / ``n_test`` take a subset (``subset="stratified"``: equal share per class,
    in the official order within each class; ``"leading"``: the first n).  ``None`` = all.
    ``path`` is the ``.npz`` file for ``dataset="npz"`` (arrays ``X_train``, ``y_train`` and
    optionally ``X_test``, ``y_test``; samples are rows).
    """

    dataset: str = "mnist"
    n_train: int | None = None
    n_test: int | None = None
    subset: str = "stratified"
    path: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, DATASETS)
        _choice("subset", self.subset, SUBSETS)
        _positive_int("n_train", self.n_train, optional=True)
        _positive_int("n_test", self.n_test, optional=True)
        check_seed("data seed", self.seed)
        if self.dataset == "npz" and not self.path:
            raise ValueError("dataset='npz' needs path=<file.npz> (arrays X_train, y_train[, X_test, y_test])")
        if self.dataset != "npz" and self.path:
            raise ValueError(f"path={self.path!r} is for dataset='npz' only; dataset={self.dataset!r} reads its own "
                             "data (leave out path / --data-path, or give dataset='npz')")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: data + hyperparameters + where to write the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    bcd: BCDConfig = field(default_factory=BCDConfig)
    out: str = "runs/latest"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bcd"]["hidden"] = list(self.bcd.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        unknown = set(d) - {"data", "bcd", "out"}
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; allowed: data, bcd, out")
        _check_sections(d, "the config")
        return cls(
            data=_build(DataConfig, d.get("data", {}), "data"),
            bcd=_build(BCDConfig, d.get("bcd", {}), "bcd"),
            out=str(d.get("out", "runs/latest")),
        )


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in [{section}]; allowed: {', '.join(sorted(names))}")
    return cls(**values)


def load_config(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None,
                base: dict[str, Any] | None = None) -> RunConfig:
    """Read a TOML file with ``[data]`` and ``[bcd]`` tables (and optional ``out``) on top of ``base`` (the
    command's documented default, so that an empty or partial file means "the default, except …"); apply
    overrides."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a TOML file" if path.is_dir() else "does not exist"
        raise ValueError(f"config file {str(path)!r} {what}")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {str(path)!r} is not UTF-8 text") from None
    _check_sections(raw, str(path))
    return merge_overrides(raw if base is None else _deep_merge(base, raw), overrides)


def _check_sections(raw: dict[str, Any], where: str) -> None:
    for section in ("data", "bcd"):
        if section in raw and not isinstance(raw[section], dict):
            raise ValueError(f"{section} in {where} must be a table ([{section}] with keys); got "
                             f"{type(raw[section]).__name__} {raw[section]!r}")
    if "out" in raw and not isinstance(raw["out"], str):
        raise ValueError(f"out in {where} must be a string (the run directory); got {raw['out']!r}")


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in top.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_overrides(raw: dict[str, Any], overrides: dict[str, dict[str, Any]] | None) -> RunConfig:
    """Merge ``{"data": {...}, "bcd": {...}, "out": ...}`` overrides into a raw config dict."""
    _check_sections(raw, "the config")
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    return RunConfig.from_dict(merged)
