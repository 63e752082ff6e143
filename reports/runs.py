"""What a report is built from: one :class:`RunData` per run directory (trace + verdicts + environment).

Nothing here recomputes a check: the trace and the verdicts are read as saved.  Whether the
theory guarantees a claim for a run comes from the verdict, explained by ``theory.assumptions``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bcd.config import BCDConfig
from bcd.rundir import CONFIG, ENVIRONMENT, damaged, read_json
from theory.assumptions import applicability
from verification.consistency import table_problem
from verification.trace import TRACE_BLOCKS, TRACE_META, TRACE_SWEEPS, Trace
from verification.verdict import FAIL, VERDICTS_FILE, Verdict

# Keys that distinguish seeds of one configuration, not configurations.
SEED_KEYS = (("bcd", "seed"), ("data", "seed"))
_NOT_CONFIG = ("out",)


@dataclass
class RunData:
    """One run as the report sees it.  ``config``: the RunConfig as a dict (``{"data", "bcd"}``);
    ``verdicts`` is None when the run was never verified (no ``verdicts.json``)."""

    name: str
    trace: Trace
    verdicts: list[Verdict] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def bcd(self) -> BCDConfig:
        raw = self.config.get("bcd") or self.trace.meta.get("config")
        if raw is None:
            raise ValueError(f"run {self.name!r} has neither config.json nor a config in its trace meta")
        try:
            return BCDConfig(**raw)
        except TypeError as e:  # a key or a value of another kind than BCDConfig's (its own checks raise ValueError)
            raise damaged(Path(self.path or ".") / CONFIG if self.config else self.path, str(e)) from None

    @property
    def constants(self):
        """The theory's constants for this run (:class:`theory.constants.RunConstants`, what the verdicts use)."""
        from theory.constants import RunConstants

        widths = self.trace.meta.get("widths")
        n = self.trace.meta.get("n")
        return RunConstants(self.bcd, tuple(widths) if widths else None, int(n) if n is not None else None)

    @property
    def terms(self):
        """The declared terms of the run's objective (:func:`bcd.model.terms_for`): columns and labels."""
        from bcd.model import terms_for

        cfg = self.bcd
        widths = self.trace.meta.get("widths")
        if not widths:
            if cfg.skip != "none":
                raise ValueError(f"run {self.name!r} has no widths in its trace meta: its ResNet skips are unknown")
            widths = [0] * (cfg.N + 1)  # without skips the terms do not depend on the widths
        return terms_for(cfg, tuple(widths))

    @property
    def seed(self) -> int:
        return self.bcd.seed

    @property
    def group_key(self) -> str:
        """The config without its seeds: runs with equal keys are seeds of one configuration."""
        cfg = {s: dict(v) for s, v in self.config.items() if isinstance(v, dict)}
        if "bcd" not in cfg:
            cfg["bcd"] = dict(self.trace.meta.get("config", {}))
        for section, key in SEED_KEYS:
            cfg.get(section, {}).pop(key, None)
        cfg["widths"] = list(self.trace.meta.get("widths", []))
        cfg["n"] = self.trace.meta.get("n")
        return json.dumps(cfg, sort_keys=True, default=str)

    def verdict(self, claim: str) -> Verdict | None:
        for v in self.verdicts or ():
            if v.claim == claim:
                return v
        return None


def load_verdicts(directory: str | Path) -> list[Verdict] | None:
    path = Path(directory) / VERDICTS_FILE
    if not path.is_file():
        return None
    raw = read_json(path, list)
    try:
        return [Verdict.from_dict(d) for d in raw]
    except (TypeError, ValueError) as e:
        raise damaged(path, f"not a list of verdicts: {e}") from None


def load_run(directory: str | Path, name: str | None = None) -> RunData:
    """Read a run directory: its trace (required), verdicts, environment and config (optional)."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file, not a run directory" if directory.exists() else "does not exist"
        raise ValueError(f"run directory {str(directory)!r} {what}")
    trace = Trace.load(directory)
    for part in (TRACE_BLOCKS, TRACE_META):  # Trace.save writes all three files; only TRACE_SWEEPS is checked above
        if not (directory / part).is_file():
            raise ValueError(f"{str(directory / part)!r} is missing: a trace is {TRACE_SWEEPS}, {TRACE_BLOCKS} and "
                             f"{TRACE_META}; restore it, or record the run again")
    problem = table_problem(trace)
    if problem is not None:
        raise damaged(directory / problem[0], problem[1])
    env_path, cfg_path = directory / ENVIRONMENT, directory / CONFIG
    env = read_json(env_path) if env_path.is_file() else {}
    cfg = read_json(cfg_path, dict) if cfg_path.is_file() else {}
    for section in ("bcd", "data"):
        if not isinstance(cfg.get(section, {}), dict):
            raise damaged(cfg_path, f"its {section!r} section is {type(cfg[section]).__name__}, not an object of "
                                    "settings")
    cfg = {k: v for k, v in cfg.items() if k not in _NOT_CONFIG}
    _check_meta(directory, trace, cfg, cfg_path)
    return RunData(name or directory.absolute().name, trace, load_verdicts(directory), env, cfg, directory)


def _check_meta(directory: Path, trace: Trace, cfg: dict[str, Any], cfg_path: Path) -> None:
    """The trace meta's sample count and the config.json beside it, which the constants are computed from (the
    meta's widths were checked with the trace's shape, :func:`verification.consistency.table_problem`): a value of
    another kind, or a config.json of another network, is named here instead of giving wrong constants later."""
    meta_path = directory / TRACE_META
    widths, n = trace.meta.get("widths"), trace.meta.get("n")
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
        raise damaged(meta_path, f"its n {n!r} is not a positive integer")
    hidden = (cfg.get("bcd") or {}).get("hidden")
    if widths and isinstance(hidden, list) and list(hidden) != widths[1:-1]:
        raise damaged(cfg_path, f"its hidden widths {hidden} are not those of the run's trace, {widths[1:-1]} "
                                f"({TRACE_META}): the two files belong to different runs")


def unique_names(runs: list[RunData]) -> None:
    """Make run names unique (``name``, ``name#2``...) so legends and sections never collide."""
    seen: dict[str, int] = {}
    for r in runs:
        n = seen.get(r.name, 0) + 1
        seen[r.name] = n
        if n > 1:
            r.name = f"{r.name}#{n}"


def groups(runs: list[RunData]) -> list[list[RunData]]:
    """Runs grouped by configuration minus seed, in first-seen order.  A run whose seed its group already holds (a
    copy, or a rerun of that seed) goes to a group of its own: a mean ± std band is over distinct seeds."""
    out: list[tuple[str, set, list[RunData]]] = []
    for r in runs:
        seed = (r.config.get("bcd") or r.trace.meta.get("config") or {}).get("seed")
        seed = object() if seed is None else seed  # unknown: never taken for a repeat
        for key, seeds, members in out:
            if key == r.group_key and seed not in seeds:
                seeds.add(seed)
                members.append(r)
                break
        else:
            out.append((r.group_key, {seed}, [r]))
    return [members for _, _, members in out]


def group_labels(grouped: list[list[RunData]]) -> list[str]:
    """A short label per group naming only the config keys that differ between groups."""
    if len(grouped) == 1:
        g = grouped[0]
        return [g[0].name if len(g) == 1 else f"mean ± std over {len(g)} seeds"]
    flat = [_flatten(json.loads(g[0].group_key)) for g in grouped]
    keys = sorted({k for f in flat for k in f}, key=lambda k: (not k.startswith("bcd."), k))  # hyperparameters first
    differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1]

    def texts(used: list[str]) -> list[str]:
        return [", ".join(f"{k.split('.')[-1]}={_short(f.get(k))}" for k in used) or g[0].name
                for g, f in zip(grouped, flat, strict=True)]

    used = differing[:3]  # short labels; more keys only while two groups would read the same
    for k in differing[3:]:
        if len(set(texts(used))) == len(grouped):
            break
        used.append(k)
    labels = texts(used)
    if len(set(labels)) < len(labels):  # equal in every key shown (e.g. only widths differ in a list): name the run
        labels = [f"{t} [{g[0].name}]" for t, g in zip(labels, grouped, strict=True)]
    return [t if len(g) == 1 else f"{t} ({len(g)} seeds)" for t, g in zip(labels, grouped, strict=True)]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v: Any) -> str:
    if isinstance(v, list):
        return "-".join(str(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- which claims the theory guarantees
@dataclass(frozen=True)
class Guarantee:
    """Whether the theory guarantees a claim for a run (None = undecided) and why."""

    guaranteed: bool | None
    basis: str  # the result that would guarantee it ("Theorem 1(c)", ...)
    reason: str


def guarantee(run: RunData, verdict: Verdict) -> Guarantee:
    """The verdict's ``guaranteed`` (the checks decide it with theory.assumptions), explained by
    ``theory.assumptions.applicability(config).claim_status(claim)``; when the verdict left it open,
    theory.assumptions decides; a claim theory does not know stays undecided."""
    try:
        status = applicability(run.bcd, n=run.trace.meta.get("n")).claim_status(verdict.claim)
    except ValueError as exc:
        why = verdict.details.get("guaranteed_reason", "") if isinstance(verdict.details, dict) else ""
        return Guarantee(verdict.guaranteed, "", str(why or exc))
    decided = status.guaranteed if verdict.guaranteed is None else verdict.guaranteed
    return Guarantee(decided, status.basis, status.reason)


def failed_guaranteed(run: RunData) -> list[Verdict]:
    """The verdicts of guaranteed claims that failed (the ones that make ``bcd verify`` exit 1)."""
    return [v for v in run.verdicts or () if v.status == FAIL and guarantee(run, v).guaranteed]
