"""``bcd verify`` (train with full instrumentation or read a run, check every claim, write the report)
and ``bcd report`` (re-render saved runs without recomputing).

Exit codes: 0 every guaranteed claim passed (inconclusive is not a failure), 1 a guaranteed claim
failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bcd.cli import RUN_FLAGS, add_run_arguments, resolve_run_config
from reports import style
from reports.document import render_report
from reports.runs import RunData, failed_guaranteed, guarantee, load_run
from verification.pipeline import save_verdicts, verify_run
from verification.trace import TRACE_SWEEPS
from verification.verdict import INCONCLUSIVE

DEFAULT_VERIFY_CONFIG = "verify_default.toml"
DEFAULT_VERIFY_CONFIG_GPU = "verify_default_gpu.toml"
PRESETS = ("cheap", "standard", "full")


def default_config_name() -> str:
    """The embedded default: the full-size GPU job when CUDA is present, the 2-core CPU job otherwise."""
    import torch

    return DEFAULT_VERIFY_CONFIG_GPU if torch.cuda.is_available() else DEFAULT_VERIFY_CONFIG


def verdict_lines(run: RunData) -> list[str]:
    out = []
    for v in run.verdicts or ():
        g = guarantee(run, v).guaranteed
        tag = {True: "guaranteed", False: "not guaranteed", None: "conditional"}[g]
        mt = f"measured {v.measured:.4g}" if v.measured is not None else "measured —"
        th = f", theory {v.theoretical:.4g}" if v.theoretical is not None else ""
        rel = f"  [{v.relation}]" if v.relation else ""
        out.append(f"  {v.status:<12} {v.claim:<20} {tag:<15} {mt}{th}{rel}")
    return out


def parse_formats(text: str) -> tuple[str, ...]:
    """``"png,pdf"`` → ("png", "pdf"); PNG is always written (the HTML embeds it)."""
    formats = tuple(dict.fromkeys(["png", *(f.strip().lower() for f in text.split(",") if f.strip())]))
    style.Target(Path("."), formats)  # validates, naming what is allowed
    return formats


def finish(run: RunData, out: Path, formats: tuple[str, ...], strict: bool = False) -> int:
    """Render the report into ``out``, print the verdicts; 1 if a guaranteed claim failed
    (with ``strict``, also if one was left inconclusive)."""
    report = render_report([run], out, formats=formats)
    print("\n".join(verdict_lines(run)))
    for w in report.warnings:
        print(f"  warning: {w}")
    failed = failed_guaranteed(run)
    open_ = [v.claim for v in run.verdicts or () if v.status == INCONCLUSIVE and guarantee(run, v).guaranteed]
    if open_:
        kind = "a failure under --strict" if strict else "not a failure; --strict makes it one"
        print(f"note: guaranteed claim(s) left inconclusive ({kind}): {', '.join(open_)}")
    print(f"report: {report.html}")
    if failed:
        print("FAILED guaranteed claim(s): " + ", ".join(v.claim for v in failed))
        return 1
    return 1 if strict and open_ else 0


def _verify(args: argparse.Namespace) -> int:
    from verification.checks import verify

    if args.config and Path(args.config).is_dir():
        overrides = [f for f in RUN_FLAGS if getattr(args, f, None) is not None]
        if overrides or args.out:
            flags = ", ".join("--" + f.replace("_", "-") for f in overrides) or "--out"
            raise ValueError(f"{flags} only apply when training; {args.config!r} is an existing run directory")
        if not (Path(args.config) / TRACE_SWEEPS).is_file():
            raise ValueError(
                f"run directory {args.config!r} has no trace ({TRACE_SWEEPS}): it was trained without the recorder; "
                "train and verify in one go with `bcd verify CONFIG.toml --out DIR`"
            )
        run = load_run(args.config)
        run.verdicts = verify(run.trace, run.bcd)
        save_verdicts(args.config, run.verdicts)
        return finish(run, Path(args.config), parse_formats(args.figure_formats), args.strict)

    cfg = resolve_run_config(args, default_config_name())
    # The embedded default is a demo: re-running it replaces its own run directory (idempotent `make demo`).
    overwrite = args.overwrite or (args.config is None and args.out is None)
    _result, _trace, _verdicts, out = verify_run(cfg, preset=args.preset, progress=not args.no_progress,
                                                 overwrite=overwrite)
    print((out / "summary.txt").read_text().strip())
    return finish(load_run(out), out, parse_formats(args.figure_formats), args.strict)


def _report(args: argparse.Namespace) -> int:
    dirs = [Path(d) for d in args.run_dirs]
    runs = [load_run(d) for d in dirs]
    if args.out:
        out = Path(args.out)
    elif len(dirs) == 1:
        out = dirs[0]
    else:
        out = Path(os.path.commonpath([d.resolve() for d in dirs])) / "report"
    report = render_report(runs, out, title=args.title, formats=parse_formats(args.figure_formats))
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"report: {report.html}")
    return 0


def _add_formats(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--figure-formats",
        default=",".join(style.FIGURE_FORMATS),
        help="figure files besides the PNG the HTML embeds: pdf, svg (comma-separated; default png,pdf)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="train with full instrumentation (or read a run directory), check every claim, write the report",
        description="CONFIG is a TOML file (train, then verify) or an existing run directory (re-verify its "
        "saved trace). Without CONFIG: the embedded default (real MNIST; full size on CUDA). "
        "Exit 0 if every guaranteed claim passes, 1 if one fails, 2 on bad input.",
    )
    add_run_arguments(p)
    p.add_argument("--preset", choices=PRESETS, default="full", help="recorder cost preset (default: full)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 also when a guaranteed claim is left inconclusive (e.g. too few sweeps to resolve it)")
    _add_formats(p)
    p.set_defaults(func=_verify)
    q = sub.add_parser("report", help="re-render report.html / report.md from saved run directories")
    q.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    q.add_argument("--out", help="where to write (default: the run directory; several runs: <common parent>/report)")
    q.add_argument("--title", help="report title")
    _add_formats(q)
    q.set_defaults(func=_report)
