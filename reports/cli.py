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
    report = render_report(runs, out, title=args.title, formats=parse_formats(args.figure_formats))
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"report: {report.html}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("report", help="re-render report.html / report.md from saved run directories")
    q.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    q.add_argument("--out", help="where to write (default: the run directory; several runs: <common parent>/report)")
    q.add_argument("--title", help="report title")
    add_formats(q)
    q.set_defaults(func=_report)
