"""``bcd reproduce``: the paper's experiments in one command — BCD against SGD and Adam over seeds.

An *experiment* is a TOML file (the packaged ones are in ``reports/experiments/``; ``bcd reproduce --list``)::

    [experiment]   name, description, seeds = [...], sweeps = K (BCD sweeps = baseline epochs), reference = "…"
    [data]         a DataConfig (dataset, n_train, n_test, subset)
    [bcd]          a BCDConfig without seed/sweeps (they come from [experiment])
    [methods.NAME] a BaselineConfig (optimizer, lr, batch_size, loss, …) per gradient method

For every seed s, BCD runs as ``bcd verify --preset standard`` does (every check, verdicts saved) with weight seed
s, and each gradient method trains the *same* network from the *same* initial weights (:func:`bcd.problem.init_weights`
with seed s) on the same data for the same number of epochs (:mod:`bcd.baselines`).  One folder holds everything::

    OUT/<method>/seed-<s>/log.csv       epoch, train_acc, test_acc, loss, seconds (+ the BCD run directory);
                                        loss: BCD's objective L̄, a baseline's mean training loss over the epoch
                                        (epoch 0: over the training set)
    OUT/<method>/seed-<s>/environment.json   versions, hardware, threads, git commit, wall time of that run
    OUT/<method>/seed-<s>.fingerprint.json   the configuration the run belongs to (written before it starts)
    OUT/results.csv                     every log, long format
    OUT/summary.csv                     final and best test accuracy per method: mean ± std, min–max
    OUT/accuracy.png                    test accuracy vs epoch, mean ± std band per method
    OUT/report.md, OUT/report.html      the page: table, figure, BCD verdicts per seed, each run's environment

A seed's run is *done* when its ``log.csv`` exists (written last, atomically, and only by a run that reached its last
sweep); a killed or interrupted reproduction reruns only the runs not done (a BCD run with a checkpoint continues from
it).  A run whose fingerprint differs from the experiment (an edited TOML, other ``--sweeps`` or ``--n-train``) is
refused, never continued or mixed, and so is another experiment in the folder (:func:`folder_experiment`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bcd.config import BCDConfig, DataConfig, RunConfig
from bcd.rundir import ENVIRONMENT, atomic_write, damaged, environment, make_out_dir, read_json, write_text

BCD = "bcd"
METHOD_NAME = re.compile(r"[A-Za-z0-9_-]+")
LOG = "log.csv"
COLUMNS = ("method", "seed", "epoch", "train_acc", "test_acc", "loss", "seconds")


@dataclass(frozen=True)
class Experiment:
    """One experiment: the data, the BCD configuration, the gradient methods and the seeds."""

    name: str
    description: str
    seeds: tuple[int, ...]
    sweeps: int
    data: dict[str, Any]
    bcd: dict[str, Any]
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: str = ""

    def data_config(self) -> DataConfig:
        return DataConfig(**self.data)

    def bcd_config(self, seed: int) -> BCDConfig:
        return BCDConfig(**{**self.bcd, "seed": seed, "sweeps": self.sweeps})

    def baseline_config(self, method: str, seed: int):
        from bcd.baselines import BaselineConfig

        return BaselineConfig(**{**self.methods[method], "seed": seed, "epochs": self.sweeps})

    @property
    def method_names(self) -> tuple[str, ...]:
        return (BCD, *self.methods)

    def validate(self) -> None:
        """Build every configuration once, so that a bad value (or key) fails before any run starts."""
        from bcd.baselines import BaselineConfig

        _check_keys(DataConfig, self.data, "[data]")
        _check_keys(BCDConfig, self.bcd, "[bcd]")
        for m, values in self.methods.items():
            _check_keys(BaselineConfig, values, f"[methods.{m}]")
        bad = [m for m in self.methods if m == BCD or not METHOD_NAME.fullmatch(m)]
        if bad:
            raise ValueError(f"method name(s) {bad} are not allowed: a gradient method is named by letters, digits, "
                             f"'-' and '_' (it names its folder), and not {BCD!r}")
        self.data_config()
        for s in self.seeds:
            cfg = self.bcd_config(s)
            for m in self.methods:
                self.baseline_config(m, s)
        if self.methods:  # the gradient methods train the plain MLP from BCD's initial weights (bcd.baselines)
            if cfg.skip != "none":
                raise ValueError(f"[bcd] skip = {cfg.skip!r} with gradient methods: the baselines train the plain MLP "
                                 f"(no skip connections), so the comparison would not be of one network; use skip = "
                                 f"'none' or run BCD alone (--methods bcd)")
            indicators = sorted({r.spec for r in cfg.r_records if r.indicator})
            if indicators:
                raise ValueError(f"[bcd] r = {', '.join(indicators)} with gradient methods: BCD starts from the "
                                 f"projection of the initial weights onto r's set and the baselines do not, so they "
                                 f"would not start from the same weights; run BCD alone (--methods bcd)")

    def fingerprint(self, method: str, seed: int) -> dict[str, Any]:
        """What a (method, seed) run depends on: the data, the network and its initial weights, the method."""
        out: dict[str, Any] = {"data": dataclasses.asdict(self.data_config()),
                               "bcd": RunConfig(bcd=self.bcd_config(seed)).to_dict()["bcd"]}
        if method != BCD:
            out["method"] = dataclasses.asdict(self.baseline_config(method, seed))
        return json.loads(json.dumps(out))  # tuples → lists, as read back from disk


def _check_keys(cls, values: Any, section: str) -> None:
    if not isinstance(values, dict):
        raise ValueError(f"{section} must be a table of keys; got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {section}; allowed: {', '.join(sorted(names))}")


def check_seeds(seeds: Any) -> tuple[int, ...]:
    """A non-empty list of distinct seeds, each one :func:`bcd.config.check_seed` allows."""
    from bcd.config import check_seed

    try:
        if not isinstance(seeds, list | tuple) or not seeds:
            raise ValueError
        for s in seeds:
            check_seed("seed", s)
    except ValueError:
        raise ValueError(f"seeds={seeds!r} is not allowed; give a list of integers in [0, 2**64), e.g. [0, 1, 2]") \
            from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={list(seeds)!r} names a seed twice; give each seed once")
    return tuple(seeds)


def packaged() -> dict[str, str]:
    """{name: TOML text} of the experiments shipped with the package."""
    root = resources.files("reports.experiments")
    return {p.name[:-5]: p.read_text(encoding="utf-8") for p in root.iterdir() if p.name.endswith(".toml")}


def load_experiment(name_or_path: str, *, seeds: list[int] | None = None, sweeps: int | None = None,
                    n_train: int | None = None, n_test: int | None = None,
                    methods: list[str] | None = None) -> Experiment:
    """A packaged experiment by name, or a TOML file by path, with the command line's overrides applied."""
    shipped = packaged()
    known = ", ".join(sorted([*shipped, GLOBAL_MINIMUM]))  # what `bcd reproduce` runs by name (--list)
    path = Path(name_or_path)
    if name_or_path in shipped:
        text, where = shipped[name_or_path], f"experiment {name_or_path!r}"
    elif path.suffix == ".toml":
        if not path.is_file():
            raise ValueError(f"experiment file {str(path)!r} {'is not a file' if path.exists() else 'does not exist'}; "
                             f"give an experiment .toml, or a packaged one: {known}")
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as e:
            raise ValueError(f"{str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start}); an experiment file is "
                             "TOML, which is UTF-8") from None
    else:
        raise ValueError(f"experiment {name_or_path!r} is neither packaged nor a .toml file; packaged: "
                         f"{known}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{where} is not valid TOML: {e}") from None
    unknown = set(raw) - {"experiment", "data", "bcd", "methods"}
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)} in {where}; allowed: experiment, data, bcd, methods")
    exp = raw.get("experiment", {})
    for section in ("experiment", "data", "bcd", "methods"):
        if not isinstance(raw.get(section, {}), dict):
            raise ValueError(f"[{section}] in {where} must be a table; got {raw[section]!r}")
    bad = set(exp) - {"name", "description", "seeds", "sweeps", "reference"}
    if bad:
        raise ValueError(f"unknown key(s) {sorted(bad)} in [experiment] of {where}; allowed: name, description, "
                         f"seeds, sweeps, reference")
    for key in ("seed", "sweeps"):
        if key in raw.get("bcd", {}):
            raise ValueError(f"[bcd] {key} in {where}: seeds and sweeps belong to [experiment]")
    data = dict(raw.get("data", {}))
    if n_train is not None:
        data["n_train"] = n_train
    if n_test is not None:
        data["n_test"] = n_test
    for k, v in raw.get("methods", {}).items():
        if not isinstance(v, dict):
            raise ValueError(f"[methods.{k}] in {where} must be a table (optimizer, lr, batch_size, ...); got {v!r}")
    all_methods = {k: dict(v) for k, v in raw.get("methods", {}).items()}
    if methods is not None:
        unknown_m = [m for m in methods if m != BCD and m not in all_methods]
        if unknown_m or not methods or len(set(methods)) != len(methods):
            why = (f"method(s) {unknown_m} are not in {where}" if unknown_m else
                   f"methods={list(methods)!r} {'names a method twice' if methods else 'names no method'}")
            raise ValueError(f"{why}; allowed: {', '.join((BCD, *all_methods))}, each once")
        all_methods = {k: v for k, v in all_methods.items() if k in methods}
    chosen_seeds = check_seeds(seeds if seeds is not None else exp.get("seeds", [0]))
    k = sweeps if sweeps is not None else exp.get("sweeps", 50)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"sweeps={k!r} is not allowed; give an integer >= 1")
    name = exp.get("name", path.stem if path.suffix else name_or_path)
    if not isinstance(name, str) or not METHOD_NAME.fullmatch(name):
        raise ValueError(f"[experiment] name = {name!r} in {where} is not allowed: letters, digits, '-' and '_' (it "
                         "names the default output folder runs/reproduce/NAME)")
    out = Experiment(name=name,
                     description=str(exp.get("description", "")), seeds=chosen_seeds, sweeps=k, data=data,
                     bcd=dict(raw.get("bcd", {})), methods=all_methods, reference=str(exp.get("reference", "")))
    out.validate()
    return out


# ----------------------------------------------------------------------------------------------- running


def _run_dir(out: Path, method: str, seed: int) -> Path:
    return out / method / f"seed-{seed}"


def _fingerprint_file(out: Path, method: str, seed: int) -> Path:
    """Beside the run directory (a BCD run directory holds only what ``bcd`` writes)."""
    return out / method / f"seed-{seed}.fingerprint.json"


def is_done(out: Path, method: str, seed: int) -> bool:
    return (_run_dir(out, method, seed) / LOG).is_file()


def read_log(f: Path, method: str, seed: int) -> pd.DataFrame:
    """A finished run's log.csv: the COLUMNS, this method and seed, epochs 0, 1, …, K."""
    try:
        df = pd.read_csv(f)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise damaged(f, f"not a CSV table: {e}") from None
    if list(df.columns) != list(COLUMNS):
        raise damaged(f, f"columns {list(df.columns)}, expected {list(COLUMNS)}")
    if df.empty or (df["method"] != method).any() or (df["seed"] != seed).any() or \
            list(df["epoch"]) != list(range(len(df))):
        raise damaged(f, f"not the log of {method} seed {seed} over epochs 0, 1, …")
    return df


def _differs(have: dict, want: dict) -> list[str]:
    """The ``section.key`` entries in which two fingerprints differ."""
    return sorted(f"{sec}.{k}" for sec in set(have) | set(want) for k in set(have.get(sec, {})) | set(want.get(sec, {}))
                  if have.get(sec, {}).get(k) != want.get(sec, {}).get(k))


def run_is_done(exp: Experiment, method: str, seed: int, out: Path) -> bool:
    """Whether (method, seed) is already done, reading only.  A run directory holds one configuration: one whose
    fingerprint differs from the experiment's (an edited TOML, other --sweeps or --n-train) is refused rather than
    continued or mixed, and so is a directory that holds files but no fingerprint."""
    d = _run_dir(out, method, seed)
    f = _fingerprint_file(out, method, seed)
    if f.is_file():
        diff = _differs(read_json(f), exp.fingerprint(method, seed))
        if diff:
            raise ValueError(f"{d} holds a {method} run of another configuration (differs in {', '.join(diff)}); "
                             f"give a new --out, or delete {d} to rerun it")
        return is_done(out, method, seed)
    if d.exists() and any(d.iterdir()):
        raise ValueError(f"{d} holds files but no {f.name}: it was not written by `bcd reproduce` for this "
                         f"experiment; give a new --out, or delete {d}")
    return False


def claim_run_dir(exp: Experiment, method: str, seed: int, out: Path) -> None:
    """Write (method, seed)'s fingerprint before its run starts (checked first by :func:`run_is_done`)."""
    f = _fingerprint_file(out, method, seed)
    if not f.is_file():
        f.parent.mkdir(parents=True, exist_ok=True)
        write_text(f, json.dumps(exp.fingerprint(method, seed), indent=1, sort_keys=True) + "\n")


def status(exp: Experiment, out: Path) -> list[dict[str, Any]]:
    """Where each (method, seed) of ``exp`` stands in ``out``, without running or writing anything: ``done`` (with its
    final test accuracy and wall time), ``partial`` (a BCD run with a checkpoint at sweep k: a rerun continues
    there), ``started`` (claimed, nothing to continue from: a rerun starts it over), ``other config`` (a rerun refuses
    it), ``damaged`` (a file of that run cannot be read back: the detail names it), or ``not started``."""
    from bcd.checkpoint import checkpoint_sweep

    rows = []
    for s in exp.seeds:
        for m in exp.method_names:
            row: dict[str, Any] = {"method": m, "seed": s, "state": "not started", "detail": ""}
            try:
                row.update(_run_status(exp, out, m, s, checkpoint_sweep))
            except ValueError as e:  # a damaged file of one run: that row says so, the others are still shown
                row["state"], row["detail"] = "damaged", str(e)
            rows.append(row)
    return rows


def _run_status(exp: Experiment, out: Path, m: str, s: int, checkpoint_sweep) -> dict[str, str]:
    """{state, detail} of one (method, seed) for :func:`status` (nothing when it is not started)."""
    d, f = _run_dir(out, m, s), _fingerprint_file(out, m, s)
    diff = _differs(read_json(f), exp.fingerprint(m, s)) if f.is_file() else []
    if diff:
        return {"state": "other config", "detail": f"differs in {', '.join(diff)}; a rerun refuses it"}
    if is_done(out, m, s):
        log, env = read_log(d / LOG, m, s), d / ENVIRONMENT
        wall = _wall(read_json(env) if env.is_file() else {})
        return {"state": "done", "detail": f"final test acc {log['test_acc'].iloc[-1]:.4f} after "
                                           f"{int(log['epoch'].iloc[-1])} epochs, wall time {wall}"}
    if f.is_file():
        k = checkpoint_sweep(d) if m == BCD else None
        return {"state": "partial" if k is not None else "started",
                "detail": f"checkpoint at sweep {k} of {exp.sweeps}" if k is not None else ""}
    return {}


def _write_log(directory: Path, rows: list[dict[str, Any]]) -> None:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    atomic_write(directory / LOG, lambda p: df.to_csv(p, index=False))


def run_bcd(exp: Experiment, seed: int, out: Path, *, progress: bool) -> None:
    """One BCD seed as ``bcd verify`` runs it (standard preset, verdicts saved), then its log."""
    from bcd.checkpoint import checkpoint_sweep, recorded
    from verification.pipeline import verify_run

    d = _run_dir(out, BCD, seed)
    resume = checkpoint_sweep(d) is not None and recorded(d)  # a killed run continues from its checkpoint
    cfg = RunConfig(data=exp.data_config(), bcd=exp.bcd_config(seed), out=str(d))
    result, trace, _verdicts_list, _ = verify_run(cfg, preset="standard", progress=progress, overwrite=True,
                                                  resume=resume)
    sw = trace.sweeps
    if result.stop_reason != "max_sweeps" or int(sw["sweep"].iloc[-1]) != exp.sweeps:  # no log.csv: not done
        from bcd.checkpoint import checkpoint_sweep
        from bcd.engine import RunIncomplete

        if result.stop_reason == "interrupted":
            k = checkpoint_sweep(d)
            where = f"from sweep {k}" if k is not None else "from the start (no checkpoint was written)"
            raise RunIncomplete(f"interrupted: {result.stop_detail or 'aborted mid-sweep'}; run the same bcd "
                                f"reproduce command again to continue BCD seed {seed} {where} and the runs after it")
        raise RunIncomplete(f"BCD seed {seed} stopped at sweep {int(sw['sweep'].iloc[-1])} of {exp.sweeps} "
                            f"({result.stop_reason}{': ' + result.stop_detail if result.stop_detail else ''}); "
                            f"{d} keeps its log up to there and is not counted as done")
    rows = [{"method": BCD, "seed": seed, "epoch": int(r["sweep"]), "train_acc": r.get("train_acc", math.nan),
             "test_acc": r.get("test_acc", math.nan), "loss": r["objective"],
             "seconds": 0.0 if int(r["sweep"]) == 0 else float(r.get("time_engine_s", math.nan))}
            for r in sw.to_dict("records")]
    _write_log(d, rows)


def run_baseline(exp: Experiment, method: str, seed: int, out: Path, data, *, progress: bool) -> None:
    """One gradient-method seed from BCD's initial weights of the same seed."""
    from bcd.baselines import train_baseline
    from bcd.problem import init_weights

    X_train, y_train, X_test, y_test, n_classes = data
    cfg = exp.bcd_config(seed)
    widths = (X_train.shape[1], *cfg.hidden, n_classes)
    weights = init_weights(cfg, widths)

    def tick(row):
        if progress:
            print(f"  {method} seed {seed} epoch {row['epoch']}/{exp.sweeps}: test acc {row['test_acc']:.4f}",
                  flush=True)

    t0 = time.perf_counter()
    rows = train_baseline(X_train, y_train, X_test, y_test, weights=weights, activation=cfg.activation,
                          config=exp.baseline_config(method, seed), device=cfg.device, dtype=cfg.dtype, on_epoch=tick)
    d = _run_dir(out, method, seed)
    d.mkdir(parents=True, exist_ok=True)
    env = {**environment(cfg.device), "wall_time_s": time.perf_counter() - t0}
    write_text(d / ENVIRONMENT, json.dumps(env, indent=2, sort_keys=True) + "\n")
    _write_log(d, [{"method": method, "seed": seed, "epoch": r["epoch"], "train_acc": r["train_acc"],
                    "test_acc": r["test_acc"], "loss": r["train_loss"], "seconds": r["seconds"]} for r in rows])


def reproduce(exp: Experiment, out: str | Path, *, progress: bool = True) -> Path:
    """Run every (method, seed) not done yet, then write the summary, the figure and the page."""
    from bcd.data import load_dataset

    out = Path(out)
    # Nothing is written before the folder, every run's folder and the data have been checked: another experiment in
    # OUT, a run of another configuration, an --n-train the data set cannot give or data without a test set fail
    # here and leave OUT as it was.
    page = folder_experiment(exp, out)
    todo = [(m, s) for s in exp.seeds for m in exp.method_names if not run_is_done(exp, m, s, out)]
    data = None
    if todo:
        ds = load_dataset(exp.data_config())
        if ds.X_test is None or len(ds.X_test) == 0:
            raise ValueError(f"{exp.data_config().dataset} data with no test set: the comparison is of test "
                             "accuracy; give [data] n_test (mixture) or a file with X_test and y_test")
        data = (ds.X_train, ds.y_train, ds.X_test, ds.y_test, ds.n_classes or int(ds.y_train.max()) + 1)
    make_out_dir(out)
    _write_experiment(page, out)  # the seeds and methods this folder holds or is about to run
    for m, s in todo:
        claim_run_dir(exp, m, s, out)
    for j, (method, seed) in enumerate(todo, start=1):
        if progress:
            print(f"[{j}/{len(todo)}] {exp.name}: {method}, seed {seed}", flush=True)
        t0 = time.perf_counter()
        if method == BCD:
            run_bcd(exp, seed, out, progress=progress)
        else:
            run_baseline(exp, method, seed, out, data, progress=progress)
        if progress:
            print(f"    done in {time.perf_counter() - t0:.1f} s", flush=True)
    summarise(page, out)
    return out


# ----------------------------------------------------------------------------------------------- summary


def results(exp: Experiment, out: Path) -> pd.DataFrame:
    frames = []
    for m in exp.method_names:
        for s in exp.seeds:
            if is_done(out, m, s):
                f = _run_dir(out, m, s) / LOG
                frames.append(read_log(f, m, s))
                if frames[-1]["epoch"].iloc[-1] != exp.sweeps:
                    raise damaged(f, f"it ends at epoch {frames[-1]['epoch'].iloc[-1]}, not {exp.sweeps}")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: final and best test accuracy over seeds (mean, sample std with n − 1, min, max; one seed: std 0),
    and mean seconds per epoch.  *Best* is the highest test accuracy of a seed over epochs 0..K, epoch 0 (the shared
    initial weights) included, so a method that never improves shows its starting accuracy there."""
    rows = []
    for method, g in df.groupby("method", sort=False):
        per_seed = g.groupby("seed")
        final = per_seed.apply(lambda x: x.sort_values("epoch")["test_acc"].iloc[-1], include_groups=False)
        best = per_seed["test_acc"].max()
        rows.append({"method": method, "seeds": len(final), "epochs": int(g["epoch"].max()),
                     "final_mean": final.mean(), "final_std": final.std(ddof=1) if len(final) > 1 else 0.0,
                     "final_min": final.min(), "final_max": final.max(),
                     "best_mean": best.mean(), "best_std": best.std(ddof=1) if len(best) > 1 else 0.0,
                     "best_min": best.min(), "best_max": best.max(),
                     "seconds_per_epoch": g.loc[g["epoch"] > 0, "seconds"].mean()})
    return pd.DataFrame(rows)


def accuracy_curves(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per method: epoch, mean, sample std (0 for one seed) and count of test accuracy over seeds, at the epochs where
    it was evaluated (BCD with ``eval_every`` > 1 evaluates every k-th sweep and the last; the others are NaN)."""
    curves = {}
    for method, g in df.groupby("method", sort=False):
        stats = g.dropna(subset=["test_acc"]).groupby("epoch")["test_acc"].agg(["mean", "std", "count"]).reset_index()
        curves[str(method)] = stats.assign(std=stats["std"].fillna(0.0))
    return curves


def accuracy_figure(df: pd.DataFrame, path: Path, title: str) -> Path:
    """Test accuracy vs epoch, mean ± sample std over seeds per method (:func:`accuracy_curves`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for method, stats in accuracy_curves(df).items():
        line, = ax.plot(stats["epoch"], stats["mean"], label=f"{method} ({int(stats['count'].max())} seeds)")
        ax.fill_between(stats["epoch"], stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch (BCD: sweep)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return path


def _verdicts(out: Path, seed: int) -> list[dict[str, Any]]:
    """BCD seed ``seed``'s saved verdicts (reports.runs.load_verdicts: a damaged file is named), as dicts."""
    from reports.runs import load_verdicts

    return [v.to_dict() for v in load_verdicts(_run_dir(out, BCD, seed)) or []]


TABLE_NOTE = ("Final: test accuracy after the last epoch (BCD: sweep); best: a seed's highest test accuracy over "
              "epochs 0..K, epoch 0 (the shared initial weights) included; ± is the sample standard deviation over "
              "seeds (n − 1).")


def _pm(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def _wall(env: dict[str, Any]) -> str:
    """The run's wall time over its recorded segments (bcd.runner.run_segments); ``+`` when sweeps ran in a process
    killed before it recorded its own."""
    wall = env.get("wall_time_s")
    if not isinstance(wall, int | float):
        return "–"
    more = "+" if env.get("wall_time_note") else ""
    return (f"{wall:.1f} s" if wall < 120 else f"{wall / 60:.1f} min") + more


def _environments(exp: Experiment, out: Path) -> tuple[list[str], list[list[str]]]:
    """One row per finished run from its ``environment.json`` (a reproduction continued in another session or on
    another machine shows it here: the machine and commit of a resumed BCD run's last segment, the wall time of all
    its recorded segments)."""
    rows = []
    for m in exp.method_names:
        for s in exp.seeds:
            f = _run_dir(out, m, s) / ENVIRONMENT
            if is_done(out, m, s) and f.is_file():
                env = read_json(f)
                rows.append([m, str(s), *(str(env.get(k, "–")) for k in ("device_name", "cpu_model", "cpu_count",
                                                                          "torch", "torch_threads")),
                             str(env.get("git_commit") or "–")[:10], _wall(env)])
    return ["method", "seed", "device", "CPU", "CPUs", "torch", "threads", "commit",
            "wall time (+: a killed segment not counted)"], rows


def seeds_done(exp: Experiment, out: Path) -> tuple[int, ...]:
    """``exp``'s seeds and every other seed that ``out`` holds finished for all of ``exp``'s methods under the same
    configuration: a folder filled one seed at a time (``--seeds 3``) is summarised whole."""
    found = set(exp.seeds)
    for f in out.glob(f"{exp.method_names[0]}/seed-*.fingerprint.json"):  # a seed done for all has this one
        try:
            s = int(f.name[len("seed-"):-len(".fingerprint.json")])
        except ValueError:
            continue
        if all(is_done(out, m, s) and _fingerprint_file(out, m, s).is_file()
               and not _differs(read_json(_fingerprint_file(out, m, s)), exp.fingerprint(m, s))
               for m in exp.method_names):
            found.add(s)
    return tuple(sorted(found))


def folder_experiment(exp: Experiment, out: Path) -> Experiment:
    """The experiment ``out`` holds, merged with ``exp``, reading only.  A folder holds one configuration (data,
    network, BCD, sweeps; a gradient method of one name one configuration): ``exp`` is refused if it differs, and so
    is a non-empty folder without ``experiment.json`` (another experiment's page, or a run directory, would be
    overwritten).  Methods accumulate (``--methods bcd`` first, the baselines later), as seeds do
    (:func:`seeds_done`)."""
    f = out / "experiment.json"
    if not f.is_file():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"{out} is not empty and holds no experiment.json: it is not a bcd reproduce folder; "
                             "give a new --out")
        return exp
    held = read_json(f)
    try:
        have = Experiment(**{**held, "seeds": tuple(held.get("seeds") or (0,))})
        have.validate()
    except (TypeError, ValueError) as e:
        raise damaged(f, str(e)) from None
    seed = exp.seeds[0]
    mine, theirs = exp.fingerprint(BCD, seed), have.fingerprint(BCD, seed)
    diff = _differs(theirs, mine)  # bcd.sweeps among them: the baselines' epochs are the same number

    def method(e: Experiment, m: str) -> dict[str, Any]:
        return {k: v for k, v in e.fingerprint(m, seed)["method"].items() if k != "epochs"}

    diff += [f"methods.{m}" for m in exp.methods if m in have.methods and method(exp, m) != method(have, m)]
    if diff:
        raise ValueError(f"{out} holds experiment {have.name!r} of another configuration (differs in "
                         f"{', '.join(diff)}); give a new --out")
    if have.name != exp.name:  # the same runs under another name: the folder's page keeps one
        raise ValueError(f"{out} holds experiment {have.name!r}, of the same configuration as {exp.name!r}; name the "
                         f"experiment {have.name!r} to continue that folder, or give a new --out")
    return dataclasses.replace(exp, methods={**have.methods, **exp.methods})


def _write_experiment(exp: Experiment, out: Path) -> Experiment:
    """experiment.json: the experiment as run, its ``seeds`` those of :func:`seeds_done` (with ``exp``'s own), so
    that a folder filled one seed at a time describes every seed it holds, not the last command's; returned."""
    exp = dataclasses.replace(exp, seeds=seeds_done(exp, out))
    write_text(out / "experiment.json", json.dumps(dataclasses.asdict(exp), indent=1) + "\n")
    return exp


def summarise(exp: Experiment, out: Path) -> dict[str, Path]:
    """results.csv, summary.csv, accuracy.png, report.md and report.html (and experiment.json) from the logs that
    exist, over :func:`seeds_done`."""
    exp = _write_experiment(exp, out)
    df = results(exp, out)
    atomic_write(out / "results.csv", lambda p: df.to_csv(p, index=False))
    table = summary_table(df)
    atomic_write(out / "summary.csv", lambda p: table.to_csv(p, index=False))
    fig = accuracy_figure(df, out / "accuracy.png", f"{exp.name}: test accuracy, mean ± std over seeds")
    header = ["method", "seeds", "epochs", "final test acc (mean ± std)", "final min–max",
              "best test acc (mean ± std)", "best min–max", "s / epoch"]
    body = [[r["method"], str(r["seeds"]), str(r["epochs"]), _pm(r["final_mean"], r["final_std"]),
             f"{r['final_min']:.4f}–{r['final_max']:.4f}", _pm(r["best_mean"], r["best_std"]),
             f"{r['best_min']:.4f}–{r['best_max']:.4f}", f"{r['seconds_per_epoch']:.3g}"]
            for r in table.to_dict("records")]
    claims = sorted({v["claim"] for s in exp.seeds for v in _verdicts(out, s)})
    vheader = ["seed", *claims]
    vbody = [[str(s), *(next((f"{v['status']}{'' if v.get('guaranteed') else ' (observed)'}"
                              for v in _verdicts(out, s) if v["claim"] == c), "–") for c in claims)]
             for s in exp.seeds if _verdicts(out, s)]
    eheader, ebody = _environments(exp, out)
    cfg = exp.bcd_config(exp.seeds[0])
    setup = (f"{exp.data.get('dataset', 'mnist')}, n_train = {exp.data.get('n_train') or 'all'}, n_test = "
             f"{exp.data.get('n_test') or 'all'}; hidden layers {_widths(cfg.hidden)} ({cfg.activation}), "
             f"loss {cfg.loss}; "
             f"BCD γ = {cfg.gamma:g}, α = {cfg.alpha:g}, {cfg.splitting}-splitting, {cfg.dtype}; "
             + "; ".join(f"{m}: " + ", ".join(f"{k} {v}" for k, v in exp.methods[m].items()) for m in exp.methods)
             + f"; {exp.sweeps} sweeps/epochs; seeds {list(exp.seeds)}; the same initial weights per seed")
    md = [f"# {exp.name}", "", exp.description, "", f"**Setup.** {setup}", "", f"*{TABLE_NOTE}*", ""]
    if exp.reference:
        md += [f"**The paper's figures.** {exp.reference}", ""]
    md += [_md_table(header, body), "", "![test accuracy](accuracy.png)", ""]
    if vbody:
        md += ["**BCD verdicts** (standard preset; `(observed)`: the theory does not guarantee the claim for this "
               "configuration)", "", _md_table(vheader, vbody), ""]
    if ebody:
        md += ["**Environment of each run**", "", _md_table(eheader, ebody), ""]
    write_text(out / "report.md", "\n".join(md))
    from reports.document import _e, _table

    html = ["<!doctype html><html><head><meta charset='utf-8'><title>", _e(exp.name), "</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .5em}</style></head><body>",
            f"<h1>{_e(exp.name)}</h1><p>{_e(exp.description)}</p><p><b>Setup.</b> {_e(setup)}</p>",
            f"<p><i>{_e(TABLE_NOTE)}</i></p>"]
    if exp.reference:
        html.append(f"<p><b>The paper's figures.</b> {_e(exp.reference)}</p>")
    html += [_table(header, body), f"<p><img src='{fig.name}' alt='test accuracy' width='640'></p>"]
    if vbody:
        html += ["<h2>BCD verdicts</h2>", _table(vheader, vbody)]
    if ebody:
        html += ["<h2>Environment of each run</h2>", _table(eheader, ebody)]
    html.append("</body></html>")
    write_text(out / "report.html", "".join(html))
    return {"results": out / "results.csv", "summary": out / "summary.csv", "figure": fig,
            "markdown": out / "report.md", "html": out / "report.html"}


def _widths(hidden: tuple[int, ...]) -> str:
    """(600, …, 600) → "600×10"; mixed widths → "400-300"."""
    return f"{hidden[0]}×{len(hidden)}" if len(set(hidden)) == 1 else "-".join(map(str, hidden))


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def guaranteed_failures(exp: Experiment, out: Path) -> list[str]:
    """'seed s: claim' for every guaranteed BCD claim that failed (the exit code's business)."""
    return [f"seed {s}: {v['claim']}" for s in exp.seeds for v in _verdicts(out, s)
            if v.get("guaranteed") and v["status"] == "fail"]



# --------------------------------------------------------------------------------- the global-minimum claim

GLOBAL_MINIMUM = "global-minimum"


def global_minimum(out: str | Path, *, sweeps: int = 10_000, n: int = 512, seeds: tuple[int, ...] = (0, 1, 2),
                   near: float = 0.01, gamma: float = 1.0, alpha: float = 0.05, progress: bool = True) -> Path:
    """The paper's "global minimum" claim on the realisable teacher–student problem (:func:`bcd.data.teacher_student`,
    784 is replaced by a 8-16-3 ReLU teacher, so the student of the same shape attains L̄* = 0): BCD started *near*
    the teacher (its W̃_i plus ``near``·N(0, 1) noise per entry) drives L̄ → 0; started *far* (the authors' random
    initialisation) it converges to a critical point (‖g^k‖ → 0) with L̄* > 0.  Writes ``global_minimum.csv`` (every
    run's L̄ and ‖g‖ per sweep), ``global_minimum.png`` and ``global_minimum.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bcd.data import teacher_student
    from verification.pipeline import trace_arrays

    out = Path(out)
    make_out_dir(out)
    rows = []
    for seed in seeds:
        ds, teacher = teacher_student(n=n, seed=seed)
        rng = np.random.default_rng(1000 + seed)
        cfg = BCDConfig(hidden=(teacher[0].shape[0],), gamma=gamma, alpha=alpha, sweeps=sweeps, seed=seed,
                        dtype="float64", eval_every=sweeps + 1)
        starts = {"near": [W + near * rng.normal(size=W.shape) for W in teacher], "far": None}
        for start, weights in starts.items():
            if progress:
                print(f"global minimum: seed {seed}, start {start}", flush=True)
            trace, _ = trace_arrays(ds.X_train, ds.y_train, cfg, preset="standard", init_weights=weights)
            sw = trace.sweeps
            rows += [{"seed": seed, "start": start, "sweep": int(k), "objective": float(L), "g_norm": float(g)}
                     for k, L, g in zip(sw["sweep"], sw["objective"], sw["g_norm"], strict=True)]
    df = pd.DataFrame(rows)
    atomic_write(out / "global_minimum.csv", lambda p: df.to_csv(p, index=False))
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6), dpi=120)
    colours = {"near": "tab:green", "far": "tab:red"}
    for (seed, start), g in df.groupby(["seed", "start"]):
        label = {"near": "near the teacher", "far": "far from the teacher"}[start] if seed == seeds[0] else None
        g = g[g["sweep"] >= 1]  # log-log: a power law k^(-p) is a straight line, and the late sweeps get the room
        axes[0].loglog(g["sweep"], g["objective"].clip(lower=1e-300), color=colours[start], alpha=0.8, label=label)
        axes[1].loglog(g["sweep"], g["g_norm"], color=colours[start], alpha=0.8, label=label)
    axes[0].set_ylabel("L̄(Q^k)")
    axes[1].set_ylabel("‖g^k‖ (least-norm subgradient)")
    for ax in axes:
        ax.set_xlabel("sweep k")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"teacher–student 8-16-3 ReLU, n = {n}: started near the teacher vs far from it", fontsize=10)
    fig.tight_layout()
    atomic_write(out / "global_minimum.png", lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    last = df[df["sweep"] == df["sweep"].max()]
    table = _md_table(["seed", "start", "final L̄", "final ‖g‖"],
                      [[str(r["seed"]), r["start"], f"{r['objective']:.3e}", f"{r['g_norm']:.3e}"]
                       for r in last.to_dict("records")])
    write_text(out / "global_minimum.md", "\n".join([
        "# The global-minimum claim (teacher–student)", "",
        f"8-16-3 ReLU teacher, n = {n}, γ = {gamma:g}, α = {alpha:g}, {sweeps} sweeps, float64; *near*: the teacher's "
        f"weights plus {near:g}·N(0, 1) per entry; *far*: the authors' initialisation (0.01·N(0, 1), b = 0.1).", "",
        table, "", "![L and g](global_minimum.png)", ""]))
    return out
