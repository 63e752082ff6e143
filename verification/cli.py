"""Verification sub-commands.

``bcd verify [CONFIG | RUN_DIR]``: train with full instrumentation (or read a run directory's saved trace),
check every claim, write the report.  Exit 0 if every guaranteed claim passed (inconclusive is not a failure
unless ``--strict``), 1 if a guaranteed claim failed, 2 on bad input.

``bcd record [CONFIG] --preset standard``: train like ``bcd train`` with a :class:`Recorder` and save
the trace in the run directory next to ``config.json``.

``bcd audit DIR``: audit iterates written by any implementation (see :mod:`verification.audit`).
Writes the trace and the resolved audit config to ``--out`` (default ``DIR/audit``), prints a summary
and the verdicts of the checks that do not depend on how the iterates were produced.

Exit code 1 when a check fails, 2 on bad input.  ``reports`` imports ``verification``, so the report
rendering used by ``bcd verify`` is imported inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from bcd.rundir import CONFIG, lock_run_dir, prepare_run_dir, write_json
from verification import schema as S  # noqa: N812
from verification.trace import TRACE_SWEEPS
from verification.verdict import INCONCLUSIVE, VERDICTS_FILE

if TYPE_CHECKING:
    from reports.runs import RunData

AUDIT_CONFIG = "audit_config.json"
DEFAULT_VERIFY_CONFIG = "verify_default.toml"
DEFAULT_VERIFY_CONFIG_GPU = "verify_default_gpu.toml"


def default_config_name() -> str:
    """The embedded default: the full-size GPU job when CUDA is present, the 2-core CPU job otherwise."""
    import torch

    return DEFAULT_VERIFY_CONFIG_GPU if torch.cuda.is_available() else DEFAULT_VERIFY_CONFIG


def verdict_lines(run: RunData) -> list[str]:
    from reports.runs import guarantee

    out = []
    for v in run.verdicts or ():
        g = guarantee(run, v).guaranteed
        tag = {True: "guaranteed", False: "not guaranteed", None: "conditional"}[g]
        mt = f"measured {v.measured:.4g}" if v.measured is not None else "measured —"
        th = f", theory {v.theoretical:.4g}" if v.theoretical is not None else ""
        rel = f"  [{v.relation}]" if v.relation else ""
        out.append(f"  {v.status:<12} {v.claim:<20} {tag:<15} {mt}{th}{rel}")
    return out


def finish(run: RunData, out: Path, formats: tuple[str, ...], strict: bool = False) -> int:
    """Render the report into ``out``, print the verdicts; 1 if a guaranteed claim failed
    (with ``strict``, also if one was left inconclusive)."""
    from reports.document import render_report
    from reports.runs import failed_guaranteed, guarantee

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


def _verify_plan(args: argparse.Namespace):
    """What ``bcd verify`` will do, with every flag checked and nothing written: (None, formats) to re-verify the
    run directory CONFIG, or ((config, overwrite), formats) to train and verify."""
    from bcd.cli import given_run_flags, run_config
    from bcd.distributed import launched
    from reports.cli import parse_formats

    formats = parse_formats(args.figure_formats)  # before a run that would end without its report
    if args.config and Path(args.config).is_dir():
        if launched() or args.nproc not in (None, 1):
            raise ValueError(f"{args.config!r} is a run directory: re-verifying a saved trace reads files in one "
                             "process; leave out --nproc")
        given = given_run_flags(args) + [
            flag for flag, on in (("--out", args.out), ("--resume", args.resume), ("--overwrite", args.overwrite),
                                  ("--checkpoint-every", args.checkpoint_every is not None),
                                  ("--preset", args.preset)) if on]
        if given:
            raise ValueError(f"{', '.join(given)}: for a run to train; {args.config!r} is an existing run directory, "
                             "re-verified as its trace was recorded (--strict, --figure-formats, --no-progress apply)")
        if not (Path(args.config) / TRACE_SWEEPS).is_file():
            what = "it was trained without the recorder" if (Path(args.config) / CONFIG).is_file() else \
                "it is not a bcd run directory"
            raise ValueError(
                f"{args.config!r} holds no trace ({TRACE_SWEEPS}): {what}; train and verify in one go with "
                "`bcd verify CONFIG.toml --out DIR`"
            )
        if not (Path(args.config) / CONFIG).is_file():
            raise ValueError(f"{args.config!r} holds a trace but no {CONFIG}: an audit's folder (bcd audit writes "
                             "its verdicts there; run the audit again to re-check) or not a bcd run; bcd report "
                             "renders it")
        return None, formats
    cfg = run_config(args, default_config_name())
    if args.resume:
        _recorder_flags_on_resume(args)
        return (cfg, False), formats
    # The embedded default is a demo: re-running it replaces its own run directory (idempotent `make demo`), but only a
    # run of the same configuration (another one there, e.g. the demo with other flags, is refused).
    return (cfg, args.overwrite or (args.config is None and args.out is None and _same_run(cfg))), formats


def _verify_preflight(args: argparse.Namespace):
    """The config ``bcd verify --nproc K`` will train (a run directory is refused there: one process re-verifies)."""
    plan, _ = _verify_plan(args)
    return plan[0]


def _verify(args: argparse.Namespace) -> int:
    from bcd.cli import checkpoint_every, incomplete, writes
    from reports.runs import load_run
    from verification.checks import verify
    from verification.pipeline import save_verdicts, verify_run

    plan, formats = _verify_plan(args)
    if plan is None:
        lock_run_dir(args.config)  # re-verifying writes verdicts and a report: one writer at a time
        run = load_run(args.config)
        run.verdicts = verify(run.trace, run.bcd)
        save_verdicts(args.config, run.verdicts)
        return finish(run, Path(args.config), formats, args.strict)
    cfg, overwrite = plan
    _result, _trace, _verdicts, out = verify_run(cfg, preset=args.preset or "full", progress=not args.no_progress,
                                                 overwrite=overwrite, resume=bool(args.resume),
                                                 checkpoint_every=checkpoint_every(args))
    if not writes():  # ranks > 0 of a sharded run: rank 0 reports, and its exit code is the run's
        incomplete(_result, out, "verify")
        return 0
    print((out / "summary.txt").read_text().strip())
    incomplete(_result, out, "verify")  # a diverged run keeps its trace and verdicts; no theorem failed: exit 3
    return finish(load_run(out), out, formats, args.strict)


def _recorder_flags_on_resume(args: argparse.Namespace) -> None:
    """A resumed run continues its recorder as checkpointed: a preset or a recording schedule cannot change."""
    flags = ("preset", "every", "per_decade")
    given = [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f, None) is not None]
    if given:
        raise ValueError(f"--resume continues the recorder as it was checkpointed; {', '.join(given)} do not apply")


def _same_run(cfg) -> bool:
    """Whether ``cfg.out`` holds a run of exactly ``cfg`` (or no run at all)."""
    try:
        held = json.loads((Path(cfg.out) / CONFIG).read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return held == json.loads(json.dumps(cfg.to_dict()))


def _audit(args: argparse.Namespace) -> int:
    from verification.audit import audit
    from verification.auditor import unchecked_claims
    from verification.checks import verify

    overrides = {k: getattr(args, k) for k in ("gamma", "alpha", "lam", "activation", "reduction", "vn_update")}
    trace = audit(args.directory, overrides, order=args.order, device=args.device, dtype=args.dtype)
    out = Path(args.out) if args.out else Path(args.directory) / "audit"
    verdicts = verify(trace, trace.config)
    if (out / CONFIG).exists():
        raise ValueError(f"--out {str(out)!r} holds a training run: the audit's trace and verdicts would mix with "
                         "it; choose another --out")
    prepare_run_dir(out, overwrite=True)  # a former audit's artefacts are replaced, a user's files are never touched
    trace.save(out)
    write_json(out / AUDIT_CONFIG, trace.meta[S.META_CONFIG])
    write_json(out / VERDICTS_FILE, [v.to_dict() for v in verdicts])
    print(summary(trace))
    for v in verdicts:
        print(f"  {v.status:<12} {v.claim:<20} {v.explanation}")
    unchecked = unchecked_claims(verdicts, trace)
    if unchecked:
        print(f"not checked ({len(unchecked)} guaranteed claim(s) left inconclusive):")
        for claim, why in unchecked:
            print(f"  {claim}: {why}")
    print(f"trace, config and verdicts: {out}")
    if any(v.status == "fail" for v in verdicts):
        return 1
    return 1 if args.strict and unchecked else 0


def summary(trace) -> str:
    """A few lines: iterates, L̄ first → last, the smallest sweep decrease, the last ‖ΔQ‖ and least-norm ‖g‖."""
    sw = trace.sweeps
    dec = sw[S.DECREASE].iloc[1:]
    worst = float(dec.min()) if len(dec) else math.nan
    at = int(sw[S.SWEEP].iloc[1 + int(dec.values.argmin())]) if len(dec) else -1
    last = sw.iloc[-1]
    from verification.auditor import META_ORDER

    order, ignored = trace.meta.get(META_ORDER), trace.meta.get("ignored_files") or []
    return "\n".join([
        f"audit of {len(sw)} iterates ({len(sw) - 1} sweeps), widths {trace.meta[S.META_WIDTHS]}",
        f"  L̄: {sw[S.OBJECTIVE].iloc[0]:.10g} -> {last[S.OBJECTIVE]:.10g}",
        f"  smallest sweep decrease {worst:.3g} at sweep {at} (negative = L̄ rose)",
        f"  last ‖ΔQ‖ = {math.sqrt(last[S.DQ_SQ]) if len(sw) > 1 else math.nan:.3g}, "
        f"‖g‖ = {last[S.G_NORM]:.3g} ({trace.meta.get(S.META_G_DEFINITION)}), B = {last[S.BOUND_B]:.3g}",
        "  update order: " + (" ".join(order) if order else "not declared (per-update claims unchecked; --order)"),
        *([f"  ignored (not <stem>_<k>.npz|.safetensors): {', '.join(ignored)}"] if ignored else []),
    ])


def _record_plan(args: argparse.Namespace):
    """(config, schedule) of ``bcd record``, with every flag checked and nothing written."""
    from bcd.cli import DEFAULT_TRAIN_CONFIG, run_config
    from verification.recorder import Schedule, as_schedule

    cfg = run_config(args, DEFAULT_TRAIN_CONFIG)
    if args.resume:
        _recorder_flags_on_resume(args)
        if (Path(args.resume) / VERDICTS_FILE).is_file():  # extending its trace would leave its verdicts stale
            raise ValueError(f"{args.resume!r} is a `bcd verify` run (it holds {VERDICTS_FILE}): continue it with "
                             f"bcd verify --resume {args.resume}")
    if args.every is not None and args.per_decade is not None:
        raise ValueError("give --every or --per-decade, not both")
    return cfg, Schedule.log_spaced(args.per_decade) if args.per_decade is not None else as_schedule(args.every)


def _record(args: argparse.Namespace) -> int:
    from bcd.cli import checkpoint_every, incomplete, writes
    from verification.pipeline import record

    cfg, schedule = _record_plan(args)
    _result, trace, out = record(cfg, preset=args.preset or "standard", schedule=schedule,
                                 progress=not args.no_progress,
                                 overwrite=args.overwrite, resume=bool(args.resume),
                                 checkpoint_every=checkpoint_every(args))
    if writes():
        print((out / "summary.txt").read_text().strip())
        print(f"trace ({trace.meta.get(S.META_PRESET)}, {len(trace.sweeps)} sweep rows, {len(trace.blocks)} block "
              f"rows): {out}")
    incomplete(_result, out, "record")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bcd.cli import FLAG_HELP, add_resume_arguments, add_run_arguments, out_path
    from reports.cli import add_formats
    from verification.recorder import PRESETS

    v = sub.add_parser(
        "verify",
        help="train with full instrumentation (or read a run directory), check every claim, write the report",
        description="CONFIG is a TOML file (train, then verify) or an existing run directory (re-verify its "
        "saved trace). Without CONFIG: the embedded default (real MNIST; full size on CUDA). "
        "Exit 0 if every guaranteed claim passes, 1 if one fails, 2 on bad input.",
    )
    add_run_arguments(v)
    add_resume_arguments(v)
    v.add_argument("--preset", choices=PRESETS, help="recorder cost preset (default: full; a resumed run keeps "
                   "its own)")
    v.add_argument("--strict", action="store_true",
                   help="exit 1 also when a guaranteed claim is left inconclusive (e.g. too few sweeps to resolve it)")
    add_formats(v)
    v.set_defaults(func=_verify, preflight=_verify_preflight)

    r = sub.add_parser("record", help="train like `bcd train` and save a verification trace next to the config")
    add_run_arguments(r)
    add_resume_arguments(r)
    r.add_argument("--preset", choices=PRESETS, help="what to record (default standard; a resumed run keeps its "
                   "own)")
    r.add_argument("--every", type=int, help="per-block quantities every k sweeps (default every sweep)")
    r.add_argument("--per-decade", dest="per_decade", type=int, help="per-block quantities on log-spaced sweeps")
    r.set_defaults(func=_record, preflight=lambda args: _record_plan(args)[0])

    p = sub.add_parser(
        "audit", help="verify iterates (one .npz/.safetensors per sweep) from any implementation",
        description="Exit 0 if no claim fails, 1 if a claim fails (or, with --strict, a guaranteed claim is left "
        "unchecked), 2 on bad input.")
    p.add_argument("directory", help="iterate files <stem>_<k>.npz|.safetensors (k = 0 for Q⁰) with blocks W1..WN, "
                   "V1..VN, U1..UN; data.npz (X, Y or y); audit.toml (hyperparameters). Other files are ignored")
    p.add_argument("--order", help="the update order of the implementation: three-splitting (Algorithm 2: V_N, U_N, "
                   "W_N, then V_i, U_i, W_i backwards), two-splitting (Algorithm 1), resnet (Algorithm 3), or a TOML "
                   "file with blocks = [\"V3\", \"U3\", ...]. Default: not declared, so only iterate-level claims "
                   "are checked; with it every block's subproblem is rebuilt and checked (exactness, per-block "
                   "descent)")
    p.add_argument("--strict", action="store_true", help="exit 1 also when a guaranteed claim is left unchecked")
    p.add_argument("--out", type=out_path, help="where to write the trace (default DIR/audit)")
    p.add_argument("--gamma", type=float, help="γ (overrides audit.toml)")
    p.add_argument("--alpha", type=float, help="α (overrides audit.toml)")
    p.add_argument("--lam", type=float, help="λ of r_i = λ/2‖W̃_i‖² (overrides audit.toml)")
    p.add_argument("--activation", help=f"{FLAG_HELP['activation']} (overrides audit.toml)")
    p.add_argument("--reduction", help="sum | mean (overrides audit.toml)")
    p.add_argument("--vn-update", dest="vn_update", help="prox | prox_linear (overrides audit.toml)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--dtype", default="float64", help="float64 | float32")
    p.set_defaults(func=_audit)


__all__ = [
    "DEFAULT_VERIFY_CONFIG", "DEFAULT_VERIFY_CONFIG_GPU", "default_config_name", "finish", "register", "summary",
    "verdict_lines",
]
