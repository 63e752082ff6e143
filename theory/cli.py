"""``bcd theory [CONFIG]``: Assumption 1, Theorem 1's conditions, the claims and their constants as tables.

Takes the same config file / override flags as ``bcd train`` (default: the embedded
``train_default.toml``).  B (bound on ‖W̃_i‖, ‖U_i‖, ‖Ṽ_i‖, X̃ included) and L̄⁰ come from ``--trace DIR`` or
``--B`` / ``--L0``;
without them the constants that need them are shown as "needs B".  Nothing here imports sympy
until the command runs, so ``bcd train`` stays sympy-free.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import textwrap
from typing import Any

from bcd.cli import DEFAULT_TRAIN_CONFIG, add_run_arguments, resolve_run_config
from theory import constants as tc


def _finite(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"--{name} {text!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"--{name} {text!r} is not allowed; give a finite number >= 0")
    return v


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def table(headers: list[str], rows: list[list[Any]], wrap: dict[int, int] | None = None) -> str:
    """A plain-text table; columns listed in ``wrap`` (index → width) are word-wrapped."""
    wrap = wrap or {}
    cells = [[textwrap.wrap(_fmt(v), wrap[j]) or [""] if j in wrap else [_fmt(v)] for j, v in enumerate(r)]
             for r in rows]
    widths = [max([len(h)] + [len(line) for r in cells for line in r[j]]) for j, h in enumerate(headers)]
    sep = "  "
    out = [sep.join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
           sep.join("-" * w for w in widths)]
    for r in cells:
        height = max(len(c) for c in r)
        for k in range(height):
            out.append(sep.join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def unavailable(report: dict[str, Any]) -> dict[str, str]:
    """Why a, δ, b or C has no usable value in a :func:`theory_report`: an input (B, L̄⁰) is missing, a condition of
    the theory fails (read from the report's applicability: T2(L_R), Theorem 2's α condition), or (Algorithm 1, σ
    nonsmooth) b is not derived ("—": the b row's expression says so).  Constants with a value are left out."""
    from theory.assumptions import FAILS
    from theory.symbolic import NOT_DERIVED

    consts = report["constants"]
    failing = {c["id"]: c for c in report["applicability"]["extra"] if c["status"] == FAILS}

    def fails(cid: str) -> str:
        c = failing[cid]
        return f"{cid} fails: {c['statement']}; {c['reason']}"

    no_L_R = "none: " + fails("T2(L_R)") if "T2(L_R)" in failing else None
    out: dict[str, str] = {}
    if consts["a"] is None:
        out["a"] = no_L_R or "—"
    for name in ("delta", "b"):
        if consts[name] is None:
            out[name] = ("—" if consts["expressions"]["b"] == NOT_DERIVED else
                         "needs B" if consts["B"] is None else no_L_R or "—")
    if consts["C"] is None:
        a, missing = consts["a"], [s for s, v in (("B", consts["B"]), ("L̄⁰", consts["L0"])) if v is None]
        if consts["expressions"]["b"] == NOT_DERIVED:
            out["C"] = "—"
        elif a is None:
            out["C"] = out["a"]
        elif not a > 0:
            cond = fails("T2(alpha, derived)") if "T2(alpha, derived)" in failing else None
            out["C"] = (f"none: a = {a:.6g} ≤ 0, so there is no sufficient-descent constant and no rate constant C = "
                        "b²(L̄⁰ − L̄*)/a" + (f" ({cond})" if cond else ""))
        elif missing:
            out["C"] = "needs " + " and ".join(missing)
        else:
            out["C"] = no_L_R or "—"
    return out


def render(report: dict[str, Any]) -> str:
    """The readable report of :func:`theory_report` (one string)."""
    from theory.assumptions import run_description

    cfg, app, claims, consts = report["config"], report["applicability"], report["claims"], report["constants"]
    why = report.get("unavailable") or unavailable(report)

    def value(name: str) -> Any:
        return consts[name] if consts[name] is not None else why.get(name, "—")

    hidden = ",".join(str(h) for h in cfg["hidden"])
    lines = [
        f"Configuration: N = {len(cfg['hidden']) + 1} (hidden {hidden}), {run_description(cfg)}; "
        f"γ = {cfg['gamma']:g}, α = {cfg['alpha']:g}, {cfg['splitting']}-splitting, V_N update: {cfg['vn_update']}",
        f"Theorem at stake: {app['theorem']}",
        "",
        "Assumption 1",
        table(["item", "status", "statement", "reason"],
              [[c["id"], c["status"], c["statement"], c["reason"]] for c in app["assumption"]], {2: 34, 3: 60}),
        "",
        "Theorem 1 conditions (one of (i)–(iii) is needed)",
        table(["item", "status", "statement", "reason"],
              [[c["id"], c["status"], c["statement"], c["reason"]] for c in app["conditions"]], {2: 34, 3: 60}),
        "",
        "Other hypotheses",
        table(["item", "status", "statement", "reason"],
              [[c["id"], c["status"], c["statement"], c["reason"]] for c in app["extra"]], {2: 34, 3: 60}),
        "",
        "Claims (guaranteed = implied by the theory for this configuration; observed = only measured)",
        table(
            ["claim", "status", "relation", "constant", "value", "bound", "source", "why"],
            [[c["id"], "guaranteed" if c["guaranteed"] else "observed", c["relation"],
              c["constant_name"] or "", c["constant"], c["bound"], c["source"], c["guarantee_reason"]]
             for c in claims],
            {7: 50},
        ),
        "",
        "Constants",
        table(["name", "expression", "value"], [
            ["a", consts["expressions"]["a"], value("a")],
            ["a (sharp)", "min over blocks with exact Hessian moduli", consts["a_sharp"]],
            ["L_R", consts["L_R_note"], consts["L_R"]],
            ["L_B", "Lipschitz constant of σ on [−B, B]: " + consts["L_B_note"],
             consts["L_B"] if consts["L_B"] is not None else "needs B"],
            *([["η", "inner solver's rule dist(0, ∂Φ_X) ≤ η_X‖ΔX‖, η_X = min(η, μ_X/4) (blocks "
                + ", ".join(consts["inner_blocks"]) + ")", consts["eta"]]] if consts["inner_blocks"] else []),
            ["B", "bound on all iterates (from a trace)", consts["B"] if consts["B"] is not None else "needs B"],
            ["δ", consts["expressions"]["delta"], value("delta")],
            ["b", consts["expressions"]["b"], value("b")],
            ["C", consts["expressions"]["C"] + f"  (L̄* = {consts['L_star']:g})", value("C")],
            ["α bound (seeds)", consts["expressions"]["alpha_bound_seeds"], consts["alpha_bound_seeds"]],
            ["α bound (derived)", consts["expressions"]["alpha_bound_derived"], consts["alpha_bound_derived"]],
        ], {1: 70, 2: 60}),
        "",
        "Per-block descent constants (MATH.md §4.1)",
        table(["block", "constant", "value", "tight", "sharp"],
              [[k, v["expr"], v["value"], v["tight"], v["sharp_expr"]]
               for k, v in next(c for c in claims if c["id"] == tc.MONOTONE)["details"]["blocks"].items()]),
        "",
        "Proposition 1 catalogue (every registered record of bcd.catalogue; classes read with the example spec)",
        table(["kind", "spec", "formula", "class (A1(d))", "in engine", "note"],
              [[e["kind"], e["usage"], e["formula"], e["kl_class"], e["supported"], e["note"]]
               for e in app["catalogue"]], {2: 28, 3: 20, 5: 60}),
    ]
    return "\n".join(lines)


def theory_report(config, *, B=None, L0=None, L_star=0.0, n=None, widths=None) -> dict[str, Any]:
    """Applicability, claims and constants for a BCDConfig, as one JSON-serialisable dict."""
    from theory.assumptions import applicability
    from theory.claims import claims_for
    from theory.symbolic import numeric_constants

    app = applicability(config, n=n, B=B)
    report = {
        "config": app.config,
        "applicability": app.to_dict(),
        "claims": [c.to_dict() for c in claims_for(config, B=B, L0=L0, L_star=L_star, n=n, widths=widths)],
        "constants": numeric_constants(config, B=B, L0=L0, L_star=L_star, n=n, widths=widths).to_dict(),
    }
    report["unavailable"] = unavailable(report)
    return report


RUN_ONLY = ("device", "dtype", "eval_every")  # BCDConfig fields that change neither L̄ nor the iterates (to rounding)


def _theory(args: argparse.Namespace) -> int:
    ignored = [flag for flag, on in (("--out", args.out), ("--overwrite", args.overwrite),
                                     ("--no-progress", args.no_progress)) if on]
    if ignored:
        raise ValueError(f"{', '.join(ignored)} do(es) not apply to bcd theory: it prints, and writes no run")
    unread = [f"--{f.replace('_', '-')}" for f in ("dataset", "n_test", "subset", "data_path")
              if getattr(args, f) is not None]
    if unread and not args.trace:
        raise ValueError(f"{', '.join(unread)} do(es) not apply to bcd theory without --trace: it reads no data, its "
                         "constants need only n (--n-train) and the configuration")
    cfg = resolve_run_config(args, DEFAULT_TRAIN_CONFIG)
    B, L0 = _finite("B", args.B), _finite("L0", args.L0)
    n = cfg.data.n_train
    bcd_cfg, widths = cfg.bcd, None
    if args.trace:  # the command front end reads a saved trace; theory's library modules never import verification
        from verification.trace import Trace

        tr = Trace.load(args.trace)
        got = tr.theory_inputs()
        B = got["B"] if B is None else B
        L0 = got["L0"] if L0 is None else L0
        n = got["n"] if got["n"] is not None else n
        widths = got["widths"]
        if args.config is None and tr.meta.get("config"):  # the trace's own run, with the flags on top
            bcd_cfg = resolve_run_config(args, DEFAULT_TRAIN_CONFIG, base={"bcd": tr.meta["config"]}).bcd
        if widths is not None and tuple(widths[1:-1]) != tuple(bcd_cfg.hidden):
            raise ValueError(f"the trace's network has hidden widths {list(widths[1:-1])} but the configuration "
                             f"{list(bcd_cfg.hidden)}: its B and L̄⁰ belong to another network; leave out --hidden, or "
                             "give the trace of this one")
        data_flags = [f"--{f.replace('_', '-')}" for f in ("dataset", "n_train", "n_test", "subset", "data_path")
                      if getattr(args, f) is not None]
        if data_flags:
            raise ValueError(f"{', '.join(data_flags)} with --trace: the trace's B and L̄⁰ are of its own data (n = "
                             f"{got['n']}); leave out {', '.join(data_flags)}")
        if tr.meta.get("config") and (args.B is None or args.L0 is None):
            recorded = tr.config
            diff = [f"{f.name}={getattr(bcd_cfg, f.name)!r} (the trace: {getattr(recorded, f.name)!r})"
                    for f in dataclasses.fields(bcd_cfg)
                    if f.name not in RUN_ONLY and getattr(bcd_cfg, f.name) != getattr(recorded, f.name)]
            if diff:
                raise ValueError(f"the configuration differs from the trace's run in {', '.join(diff)}: the trace's B "
                                 "and L̄⁰ belong to another objective or run; leave those out, or give --B and --L0 "
                                 "for this configuration")
    L_star = _finite("L-star", args.L_star) or 0.0
    from theory.symbolic import LStarAboveL0Error

    try:
        report = theory_report(bcd_cfg, B=B, L0=L0, L_star=L_star, n=n, widths=widths)
    except LStarAboveL0Error as e:  # the library's rule, reworded with the flags that set each side
        src = "--L0" if args.L0 is not None else "the trace's first objective"
        raise ValueError(f"--L-star {e.L_star:g} is above L̄⁰ = {e.L0:g} ({src}): L̄* is a lower bound of L̄, so it "
                         f"cannot exceed L̄(Q⁰); give --L-star <= {e.L0:g}") from None
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        print(render(report))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("theory", help="print Assumption 1, Theorem 1's conditions, the claims and constants")
    add_run_arguments(p, trains=False)
    p.add_argument("--trace", help="trace directory: B = its bound on the iterates (‖W̃_i‖, ‖U_i‖, ‖Ṽ_i‖, "
                   "X̃ included), L̄⁰ = its first objective")
    p.add_argument("--B", dest="B", default=None, help="bound on ‖W̃_i‖, ‖U_i‖, ‖Ṽ_i‖ = (‖V_i‖² + n)^½ and ‖X̃‖ "
                   "(overrides --trace)")
    p.add_argument("--L0", dest="L0", default=None, help="L̄(Q⁰) (overrides --trace)")
    p.add_argument("--L-star", dest="L_star", default=None, help="lower bound of L̄* (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_theory)
