"""``bcd report``: re-render saved runs without recomputing.

(``bcd verify``, which trains or reads a run, checks every claim and writes the report, is registered by
:mod:`verification.cli`; it renders through :func:`parse_formats`, :func:`add_formats` and
:func:`reports.document.render_report`.)

Exit codes: 0 success, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from reports import style
from reports.document import render_report
from reports.runs import load_run
from verification.trace import TRACE_SWEEPS


def parse_formats(text: str) -> tuple[str, ...]:
    """``"png,pdf"`` → ("png", "pdf"); PNG is always written (the HTML embeds it)."""
    formats = tuple(dict.fromkeys(["png", *(f.strip().lower() for f in text.split(",") if f.strip())]))
    style.Target(Path("."), formats)  # validates, naming what is allowed
    return formats


def add_formats(p: argparse.ArgumentParser) -> None:
    """The ``--figure-formats`` option of every command that renders a report."""
    p.add_argument(
        "--figure-formats",
        default=",".join(style.FIGURE_FORMATS),
        help="figure files besides the PNG the HTML embeds: pdf, svg (comma-separated; default png,pdf)",
    )


def _report(args: argparse.Namespace) -> int:
    dirs = [Path(d) for d in args.run_dirs]
    seen: dict[Path, Path] = {}
    for d in dirs:
        if d.resolve() in seen:
            raise ValueError(f"{str(d)!r} is given twice (as {str(seen[d.resolve()])!r} too); give each run once")
        seen[d.resolve()] = d
    runs = [load_run(d) for d in dirs]
    if args.out:
        out = Path(args.out)
    elif len(dirs) == 1:
        out = dirs[0]
    else:
        common = Path(os.path.commonpath([d.resolve() for d in dirs]))
        if common == Path(common.anchor):  # runs in unrelated trees: never write at the filesystem root
            raise ValueError(f"the runs {', '.join(map(str, dirs))} share no parent directory but the root; give "
                             "--out DIR for the combined report")
        out = common / "report"
    _folder(out)
    if out.resolve() not in {d.resolve() for d in dirs}:
        if (out / TRACE_SWEEPS).is_file():
            raise ValueError(f"--out {str(out)!r} is the directory of another run, whose report would be replaced; "
                             "give a folder of its own")
        if out.is_dir() and any(out.iterdir()) and not (out / REPORT_MARKER).is_file():
            raise ValueError(f"--out {str(out)!r} holds files that bcd report did not write (they could be replaced); "
                             "give a new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_MARKER).touch()
    report = render_report(runs, out, title=args.title, formats=parse_formats(args.figure_formats))
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"report: {report.html}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bcd.cli import out_path

    q = sub.add_parser("report", help="re-render report.html / report.md from saved run directories")
    q.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    q.add_argument("--out", type=out_path,
                   help="where to write (default: the run directory; several runs: <common parent>/report)")
    q.add_argument("--title", help="report title")
    add_formats(q)
    q.set_defaults(func=_report)
    r = sub.add_parser("reproduce", help="the paper's experiments: BCD against SGD and Adam over seeds, one folder")
    r.add_argument("experiment", nargs="?", help="a packaged experiment (--list) or an experiment .toml file")
    r.add_argument("--list", action="store_true", help="list the packaged experiments and exit")
    r.add_argument("--out", type=out_path,
                   help="folder to write (default runs/reproduce/<experiment>); rerun to continue")
    r.add_argument("--seeds", help="comma-separated seeds (default: the experiment's)")
    r.add_argument("--sweeps", type=int, help="BCD sweeps = baseline epochs (default: the experiment's)")
    r.add_argument("--n-train", type=int, dest="n_train",
                   help="a subset of the training set (chosen as the experiment's [data] subset says)")
    r.add_argument("--n-test", type=int, dest="n_test", help="a subset of the test set")
    r.add_argument("--methods", help="comma-separated subset of the experiment's gradient methods (BCD always "
                   "runs: bcd alone runs only BCD)")
    r.add_argument("--no-progress", action="store_true", help="no progress lines")
    r.add_argument("--status", action="store_true",
                   help="show which runs in --out are done, partial or not started, and exit (runs nothing)")
    r.set_defaults(func=_reproduce)


def _seed_list(text: str) -> list[int]:
    """--seeds: the comma-separated integers, at least one (their range and uniqueness: ``check_seeds``)."""
    from reports.reproduce import check_seeds

    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r} is not a comma-separated list of integers, e.g. 0,1,2") from None
    if not values:
        raise ValueError(f"--seeds {text!r} names no seed; give e.g. 0,1,2")
    try:
        return list(check_seeds(values))
    except ValueError as e:
        raise ValueError(f"--seeds {text!r}: {e}") from None


def _method_list(text: str) -> list[str]:
    """--methods: the comma-separated names (checked against the experiment by ``load_experiment``)."""
    return [m.strip() for m in text.split(",") if m.strip()]


REPORT_MARKER = ".bcd-report"  # marks a folder that bcd report wrote a combined report into (it may replace it)


def _folder(out: Path) -> Path:
    """--out: a folder (it may not exist yet), refused before anything is written when it is a file."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder")
    return out


def _reproduce(args: argparse.Namespace) -> int:
    from reports.reproduce import (
        GLOBAL_MINIMUM,
        folder_experiment,
        global_minimum,
        guaranteed_failures,
        load_experiment,
        packaged,
        reproduce,
        status,
    )

    if args.list:
        given = [name for name, on in (("EXPERIMENT", args.experiment), ("--status", args.status),
                                       ("--out", args.out), ("--seeds", args.seeds is not None),
                                       ("--sweeps", args.sweeps is not None), ("--n-train", args.n_train is not None),
                                       ("--n-test", args.n_test is not None),
                                       ("--methods", args.methods is not None)) if on]
        if given:
            raise ValueError(f"--list lists the packaged experiments and takes nothing else (given: "
                             f"{', '.join(given)}); run `bcd reproduce --list` alone")
        for name in sorted(packaged()):
            exp = load_experiment(name)
            print(f"{name}: {exp.description} ({len(exp.seeds)} seeds, {exp.sweeps} sweeps)")
        print(f"{GLOBAL_MINIMUM}: the teacher–student global-minimum claim: BCD started near the teacher vs far")
        return 0
    if args.experiment == GLOBAL_MINIMUM:
        out = _folder(Path(args.out) if args.out else Path("runs") / "reproduce" / GLOBAL_MINIMUM)
        ignored = [flag for flag, value in (("--n-train", args.n_train), ("--n-test", args.n_test),
                                            ("--methods", args.methods)) if value is not None]
        if ignored:
            raise ValueError(f"{', '.join(ignored)} do(es) not apply to {GLOBAL_MINIMUM} (BCD alone on its n = 512 "
                             "teacher problem); allowed: --seeds, --sweeps, --out, --no-progress, --status")
        kw = {"seeds": tuple(_seed_list(args.seeds))} if args.seeds is not None else {}
        if args.sweeps is not None:
            if args.sweeps < 1:
                raise ValueError(f"sweeps={args.sweeps} is not allowed; give an integer >= 1")
            kw["sweeps"] = args.sweeps
        if args.status:
            page = out / "global_minimum.md"
            print(f"{out}: {'done: ' + str(page) if page.is_file() else 'not done (no global_minimum.md)'}")
            return 0
        global_minimum(out, progress=not args.no_progress, **kw)
        print(f"report: {out / 'global_minimum.md'}")
        return 0
    if not args.experiment:
        raise ValueError("give an experiment (bcd reproduce --list shows the packaged ones) or an experiment .toml")
    exp = load_experiment(args.experiment, seeds=_seed_list(args.seeds) if args.seeds is not None else None,
                          sweeps=args.sweeps, n_train=args.n_train, n_test=args.n_test,
                          methods=_method_list(args.methods) if args.methods is not None else None)
    out = _folder(Path(args.out) if args.out else Path("runs") / "reproduce" / exp.name)
    if args.status:
        folder_experiment(exp, out)  # read only: a folder a run would refuse (another experiment's, a run's) is refused
        rows = status(exp, out)
        for r in rows:
            print(f"{r['method']:>6} seed {r['seed']}: {r['state']}" + (f" ({r['detail']})" if r["detail"] else ""))
        done = sum(r["state"] == "done" for r in rows)
        print(f"{out}: {done} of {len(rows)} runs done")
        return 0
    reproduce(exp, out, progress=not args.no_progress)
    print(f"report: {out / 'report.html'}")
    failed = guaranteed_failures(exp, out)
    if failed:
        print(f"a guaranteed BCD claim failed: {', '.join(failed)}")
        return 1
    return 0
