"""The report documents: one self-contained ``report.html`` (figures as base64 PNG data URIs, inline CSS,
no script, nothing fetched) and ``report.md`` referencing the PNG files, built from runs + verdicts.

    out/report.html   out/report.md   out/figures/<name>.png|.pdf|.svg
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from bcd.rundir import make_out_dir, write_text
from reports import style
from reports.figures import Figure, Skipped, render_figures
from reports.runs import RunData, group_labels, groups, guarantee, unique_names
from theory import constants
from theory.assumptions import run_description
from verification import schema
from verification.verdict import FAIL, INCONCLUSIVE, PASS

HTML_NAME = "report.html"
MD_NAME = "report.md"
FIGURES_DIR = "figures"

CLAIM_ORDER = constants.CLAIM_ORDER  # the verdict table's order (claims theory does not list follow)
VERDICT_COLUMNS = (
    "claim",
    "guaranteed",
    "relation",
    "theoretical",
    "measured",
    "status",
    "worst sweep",
    "margin / tolerance",
    "explanation",
)


@dataclass
class Report:
    """What :func:`render_report` wrote and what it found."""

    html: Path
    markdown: Path
    figures: list[Figure | Skipped]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- formatting
def num(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "—" if math.isnan(f) else f"{f:.4g}"


def worst_text(worst: dict[str, Any] | None) -> str:
    """``{"sweep": 9, "block": "V3", "level": "block", ...}`` → ``sweep 9, block V3``."""
    if not worst:
        return "—"
    parts = [f"sweep {worst['sweep']}"] if "sweep" in worst else []
    if "block" in worst:
        parts.append(f"block {worst['block']}")
    elif worst.get("level") == "sweep":
        parts[-1:] = [p + " (whole sweep)" for p in parts[-1:]]
    parts += [f"{k} {v}" for k, v in worst.items() if k not in ("sweep", "block", "level", "step")]
    return ", ".join(parts) or "—"


def guaranteed_parts(run: RunData, v) -> tuple[str, str]:
    """("yes" | "no" | "undecided", "basis: reason") for the verdict table."""
    g = guarantee(run, v)
    head = {True: "yes", False: "no", None: "undecided"}[g.guaranteed]
    return head, f"{g.basis}: {g.reason}" if g.basis else g.reason


def verdict_rows(run: RunData) -> list[dict[str, Any]]:
    """The verdict table of one run as display strings, claims in MATH.md §4 order."""
    order = {c: j for j, c in enumerate(CLAIM_ORDER)}
    rows = []
    for v in sorted(run.verdicts or (), key=lambda v: order.get(v.claim, len(order))):
        head, why = guaranteed_parts(run, v)
        tol = f"margin {num(v.margin)}; tol {num(v.tolerance)}"
        rows.append(
            {
                "claim": f"{v.title} [{v.claim}]",
                "guaranteed": f"{head} — {why}",
                "relation": v.relation,
                "theoretical": num(v.theoretical),
                "measured": num(v.measured),
                "status": v.status,
                "worst sweep": worst_text(v.worst),
                "margin / tolerance": tol + (f" ({v.tolerance_reason})" if v.tolerance_reason else ""),
                "explanation": v.explanation or "",
                # the HTML shows the short part and puts the long part in small print
                "_guaranteed": (head, why),
                "_tolerance": (tol, v.tolerance_reason),
            }
        )
    return rows


def environment_rows(run: RunData) -> list[tuple[str, str]]:
    """Package versions, device, dtype, seed, hardware, commit, wall time split engine / instrumentation."""
    env, meta, sw = run.environment, run.trace.meta, run.trace.sweeps
    cfg = run.bcd

    def total(c: str) -> float | None:
        return float(np.nansum(sw[c].to_numpy(float))) if c in sw.columns else None

    eng, hooks, ev = total(schema.TIME_ENGINE), total(schema.TIME_HOOKS), total(schema.TIME_EVAL)
    versions = ", ".join(f"{k} {env[k]}" for k in ("python", "torch", "numpy", "pandas") if k in env)
    rows = [
        ("packages", (versions + ", " if versions else "") + f"matplotlib {matplotlib.__version__} (report)"),
        ("device", f"{env.get('device', cfg.device)} — {env.get('device_name', 'unknown')}"),
        ("dtype", str(meta.get("dtype", cfg.dtype))),
        ("seed", str(cfg.seed)),
        (
            "hardware",
            f"{env.get('platform', 'unknown')}; {env.get('processor', '')}; "
            f"{env.get('cpu_count', '?')} CPUs, torch threads {env.get('torch_threads', '?')}",
        ),
        ("git commit", str(env.get("git_commit") or "unknown")),
        (
            "network",
            f"{'-'.join(str(d) for d in meta.get('widths', []))} (n = {meta.get('n', '?')}), "
            f"{run_description(cfg)}, γ = {cfg.gamma:g}, α = {cfg.alpha:g}, "
            f"{cfg.splitting}-splitting, V_N update {cfg.vn_update}, init {cfg.init}",
        ),
        (
            "trace",
            f"preset {meta.get('preset', '?')}, source {meta.get('source', '?')}, "
            f"{len(sw)} sweep rows, {len(run.trace.blocks)} block rows",
        ),
        (
            "wall time",
            f"{num(env.get('wall_time_s'))} s in total: engine {num(eng)} s, hooks (instrumentation) "
            f"{num(hooks)} s, evaluation {num(ev)} s",
        ),
        ("stop reason", str(env.get("stop_reason", "—"))),
    ]
    if run.config.get("data"):
        d = run.config["data"]
        rows.insert(
            6,
            (
                "data",
                f"{d.get('dataset')} (n_train {env.get('n_train', d.get('n_train'))}, n_test "
                f"{env.get('n_test', d.get('n_test'))}, subset {d.get('subset')})",
            ),
        )
    return rows


def theory_rows(run: RunData) -> list[tuple[str, str]]:
    """The theory's constants for this run's hyperparameters."""
    from reports.figures import a_const, b_theory, theory_text

    cfg = run.bcd
    a, b = a_const(run), b_theory(run)
    K = run.constants
    text = theory_text(run)  # the theory's own expressions for this variant (no formula is written here)
    a_text, b_text = text.a, text.b
    rows = [
        (f"a = {a_text} (sufficient descent)", num(a)),
        (f"b ({b_text}) at the iterate bound B (relative error)", num(b)),
    ]
    if schema.OBJECTIVE in run.trace.sweeps.columns and b is not None:
        L0 = float(run.trace.sweeps[schema.OBJECTIVE].iloc[0])
        C = num(constants.rate_constant(a, b, L0, 0.0)) if a > 0 else \
            "— (a ≤ 0: no sufficient descent, so no rate constant)"
        rows.append((f"C = {text.C} with L̄* = 0 (rate)", C))
    if cfg.vn_update == "prox_linear":
        try:
            bound = num(K.alpha_bound())
        except constants.UnknownConstant:
            bound = f"— ({cfg.loss} has no L_R)"
        rows.append((f"α bound for prox-linear V_N: α > (L_R − γ)/2, L_R of {cfg.loss}", bound))
    return rows


def overall(run: RunData) -> str:
    """'fail' if a guaranteed claim failed, 'pass' if every guaranteed claim passed (and there is one), else
    'inconclusive'."""
    if run.verdicts is None:
        return "not verified"
    statuses = [v.status for v in run.verdicts if guarantee(run, v).guaranteed]
    if FAIL in statuses:
        return FAIL
    return PASS if statuses and all(s == PASS for s in statuses) else INCONCLUSIVE  # nothing guaranteed: no pass


# ---------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#1f2328;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}th,td{border:1px solid #d0d7de;padding:4px 7px;
vertical-align:top;text-align:left}th{background:#f6f8fa}
.status{font-weight:600;color:#fff;border-radius:4px;padding:1px 7px;white-space:nowrap}
.pass{background:#1a7f37}.fail{background:#cf222e}.inconclusive{background:#9a6700}.not-verified{background:#6e7781}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.5em 1em;border-radius:6px}
figure{margin:1.2em 0;border:1px solid #d0d7de;border-radius:6px;padding:.6em}figure img{max-width:100%;height:auto;
display:block;margin:auto}figcaption{font-size:.88em;color:#424a53;margin-top:.4em}
.skipped{color:#9a6700}small{color:#57606a;font-size:.82em}code{background:#f6f8fa;padding:0 .2em}
"""


def _e(s: Any) -> str:
    return html.escape(str(s))


def _status(s: str) -> str:
    return f'<span class="status {_e(s.replace(" ", "-"))}">{_e(s)}</span>'


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]], raw_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if j in raw_cols else _e(c)}</td>" for j, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _verdict_html(run: RunData) -> str:
    if run.verdicts is None:
        return '<p class="warn">This run has no <code>verdicts.json</code>: run <code>bcd verify RUN_DIR</code>.</p>'

    def cell(r: dict[str, Any], c: str) -> str:
        if c == "status":
            return _status(r[c])
        if c in ("guaranteed", "margin / tolerance"):
            short, detail = r["_guaranteed" if c == "guaranteed" else "_tolerance"]
            return f"<b>{_e(short)}</b>" + (f"<br><small>{_e(detail)}</small>" if detail else "")
        if c == "explanation":
            return f"<small>{_e(r[c])}</small>"
        return _e(r[c])

    cells = [[cell(r, c) for c in VERDICT_COLUMNS] for r in verdict_rows(run)]
    return _table(VERDICT_COLUMNS, cells, raw_cols=tuple(range(len(VERDICT_COLUMNS))))


def _summary_matrix(runs: list[RunData]) -> tuple[list[str], list[list[str]]]:
    claims: list[str] = []
    for r in runs:
        for v in r.verdicts or ():
            if v.claim not in claims:
                claims.append(v.claim)
    order = {c: j for j, c in enumerate(CLAIM_ORDER)}
    claims.sort(key=lambda c: order.get(c, len(order)))
    header = ["run", "seed", "overall", *claims]
    rows = []
    for r in runs:
        row = [r.name, str(r.seed), overall(r)]
        for c in claims:
            v = r.verdict(c)
            row.append(v.status if v else "—")
        rows.append(row)
    return header, rows


def render_html(runs: list[RunData], figures: list[Figure | Skipped], warnings: list[str], title: str) -> str:
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Zeng, Lau, Lin, Yao, <i>Global Convergence of Block Coordinate Descent in Deep Learning</i> (ICML 2019):"
        f" every claim of MATH.md §4 checked on {len(runs)} run(s). Generated "
        f"{_e(_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC'))}.</p>",
    ]
    header, rows = _summary_matrix(runs)
    parts.append("<h2>Summary</h2>")
    parts.append(
        _table(
            header,
            [[_e(c) if j < 2 else _status(c) if c != "—" else "—" for j, c in enumerate(r)] for r in rows],
            raw_cols=tuple(range(len(header))),
        )
    )
    grouped = groups(runs)
    if len(runs) > 1:
        labels = group_labels(grouped)
        parts.append(
            "<p>Configurations (runs differing only in seed are grouped): "
            + "; ".join(
                f"<b>{_e(lab)}</b>: {_e(', '.join(r.name for r in g))}" for lab, g in zip(labels, grouped, strict=True)
            )
            + "</p>"
        )
    if warnings:
        parts.append(
            "<h2>Warnings</h2><div class='warn'><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>"
        )
    for r in runs:
        parts.append(f"<h2>Verdicts — {_e(r.name)} {_status(overall(r))}</h2>")
        parts.append(_verdict_html(r))
    parts.append("<h2>Figures</h2>")
    for j, f in enumerate(figures, start=1):
        if isinstance(f, Skipped):
            parts.append(f"<p class='skipped'>Figure {j} ({_e(f.title)}) skipped: {_e(f.reason)}</p>")
            continue
        parts.append(
            f"<figure id='{_e(f.name)}'>{_img(f.paths['png'], f.title)}<figcaption><b>Figure {j}. "
            f"{_e(f.title)}.</b> {_e(f.caption)}</figcaption></figure>"
        )
    for r in runs:
        parts.append(f"<h2>Theory constants — {_e(r.name)}</h2>")
        parts.append(_table(("constant", "value"), [list(x) for x in theory_rows(r)]))
        parts.append(f"<h2>Environment — {_e(r.name)}</h2>")
        parts.append(_table(("", ""), [list(x) for x in environment_rows(r)]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ---------------------------------------------------------------- Markdown
def _md_text(s: str) -> str:
    """Text from a run (names, config strings, warnings) made inert in Markdown: renderers pass raw HTML through."""
    return html.escape(str(s), quote=False)


def _md_cell(s: str) -> str:
    return _md_text(s).replace("|", "\\|").replace("\n", " ")


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(
    runs: list[RunData], figures: list[Figure | Skipped], warnings: list[str], title: str, out: Path
) -> str:
    parts = [f"# {_md_text(title)}", "", f"Every claim of MATH.md §4 checked on {len(runs)} run(s).", "",
             "## Summary", ""]
    header, rows = _summary_matrix(runs)
    parts += [_md_table(header, rows), ""]
    if warnings:
        parts += ["## Warnings", ""] + [f"- {_md_text(w)}" for w in warnings] + [""]
    for r in runs:
        parts += [f"## Verdicts — {_md_text(r.name)} ({overall(r)})", ""]
        if r.verdicts is None:
            parts += ["No `verdicts.json`: run `bcd verify RUN_DIR`.", ""]
        else:
            parts += [_md_table(VERDICT_COLUMNS, [[row[c] for c in VERDICT_COLUMNS] for row in verdict_rows(r)]), ""]
    parts += ["## Figures", ""]
    for j, f in enumerate(figures, start=1):
        if isinstance(f, Skipped):
            parts += [f"*Figure {j} ({f.title}) skipped: {_md_text(f.reason)}*", ""]
            continue
        rel = f.paths["png"].relative_to(out).as_posix()
        vector = " ".join(
            f"([{ext.upper()}]({p.relative_to(out).as_posix()}))" for ext, p in f.paths.items() if ext != "png"
        )
        parts += [f"![{_md_text(f.title)}]({rel})", "",
                  f"**Figure {j}. {_md_text(f.title)}.** {_md_text(f.caption)} {vector}".rstrip(), ""]
    for r in runs:
        parts += [f"## Theory constants — {_md_text(r.name)}", "", _md_table(("constant", "value"), theory_rows(r)),
                  ""]
        parts += [f"## Environment — {_md_text(r.name)}", "", _md_table(("", ""), environment_rows(r)), ""]
    return "\n".join(parts)


def render_report(
    runs: list[RunData], out: str | Path, title: str | None = None, formats: tuple[str, ...] = style.FIGURE_FORMATS
) -> Report:
    """Draw the figures (``formats``: PNG plus PDF and/or SVG); write ``report.html`` + ``report.md`` into ``out``."""
    if not runs:
        raise ValueError("render_report needs at least one run")
    unique_names(runs)
    out = Path(out)
    make_out_dir(out)
    title = title or ("BCD convergence report — " + (runs[0].name if len(runs) == 1 else f"{len(runs)} runs"))
    for r in runs:  # the tables read from each run's files first: a damaged one stops here, before a figure is replaced
        verdict_rows(r), theory_rows(r), environment_rows(r)
    figures, warnings = render_figures(runs, out / FIGURES_DIR, formats)
    for r in runs:
        if r.verdicts is None:
            warnings.append(f"run {r.name!r} has no verdicts.json: its verdict table is empty (run `bcd verify`)")
    html_path, md_path = out / HTML_NAME, out / MD_NAME
    write_text(html_path, render_html(runs, figures, warnings, title))
    write_text(md_path, render_markdown(runs, figures, warnings, title, out))
    return Report(html_path, md_path, figures, warnings)
