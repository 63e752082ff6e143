"""Verification sub-commands.

``bcd record [CONFIG] --preset standard``: train like ``bcd train`` with a :class:`Recorder` and save
the trace in the run directory next to ``config.json``.

``bcd audit DIR``: audit iterates written by any implementation (see :mod:`verification.audit`).
Writes the trace and the resolved audit config to ``--out`` (default ``DIR/audit``), prints a summary
and the verdicts of the checks that do not depend on how the iterates were produced.

Exit code 1 when a check fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bcd.rundir import write_json
from verification import schema as S  # noqa: N812
from verification.verdict import VERDICTS_FILE

AUDIT_CONFIG = "audit_config.json"


def _audit(args: argparse.Namespace) -> int:
    from verification.audit import audit
    from verification.checks import verify

    overrides = {k: getattr(args, k) for k in ("gamma", "alpha", "lam", "activation", "reduction", "vn_update")}
    trace = audit(args.directory, overrides, device=args.device, dtype=args.dtype)
    out = Path(args.out) if args.out else Path(args.directory) / "audit"
    trace.save(out)
    write_json(out / AUDIT_CONFIG, trace.meta[S.META_CONFIG])
    print(summary(trace))
    verdicts = verify(trace, trace.config)
    write_json(out / VERDICTS_FILE, [v.to_dict() for v in verdicts])
    for v in verdicts:
        print(f"  {v.status:<12} {v.claim:<20} {v.explanation}")
    print(f"trace, config and verdicts: {out}")
    return 1 if any(v.status == "fail" for v in verdicts) else 0


def summary(trace) -> str:
    """A few lines: iterates, L̄ first → last, the smallest sweep decrease, the last ‖ΔQ‖ and least-norm ‖g‖."""
    sw = trace.sweeps
    dec = sw[S.DECREASE].iloc[1:]
    worst = float(dec.min()) if len(dec) else math.nan
    at = int(sw[S.SWEEP].iloc[1 + int(dec.values.argmin())]) if len(dec) else -1
    last = sw.iloc[-1]
    return "\n".join([
        f"audit of {len(sw)} iterates ({len(sw) - 1} sweeps), widths {trace.meta[S.META_WIDTHS]}",
        f"  L̄: {sw[S.OBJECTIVE].iloc[0]:.10g} -> {last[S.OBJECTIVE]:.10g}",
        f"  smallest sweep decrease {worst:.3g} at sweep {at} (negative = L̄ rose)",
        f"  last ‖ΔQ‖ = {math.sqrt(last[S.DQ_SQ]) if len(sw) > 1 else math.nan:.3g}, "
        f"least-norm ‖g‖ = {last[S.G_NORM]:.3g}, B = {last[S.BOUND_B]:.3g}",
    ])


def _record(args: argparse.Namespace) -> int:
    from bcd.cli import DEFAULT_TRAIN_CONFIG, resolve_run_config
    from verification.pipeline import record
    from verification.recorder import Schedule

    cfg = resolve_run_config(args, DEFAULT_TRAIN_CONFIG)
    if args.every is not None and args.per_decade is not None:
        raise ValueError("give --every or --per-decade, not both")
    schedule = Schedule.log_spaced(args.per_decade) if args.per_decade is not None else args.every
    _result, trace, out = record(cfg, preset=args.preset, schedule=schedule, progress=not args.no_progress,
                                     overwrite=args.overwrite)
    print((out / "summary.txt").read_text().strip())
    print(f"trace ({args.preset}, {len(trace.sweeps)} sweep rows, {len(trace.blocks)} block rows): {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from bcd.cli import add_run_arguments
    from verification.recorder import PRESETS

    r = sub.add_parser("record", help="train like `bcd train` and save a verification trace next to the config")
    add_run_arguments(r)
    r.add_argument("--preset", default="standard", choices=PRESETS, help="what to record (default standard)")
    r.add_argument("--every", type=int, help="per-block quantities every k sweeps (default every sweep)")
    r.add_argument("--per-decade", dest="per_decade", type=int, help="per-block quantities on log-spaced sweeps")
    r.set_defaults(func=_record)

    p = sub.add_parser("audit", help="verify iterates (one .npz/.safetensors per sweep) from any implementation")
    p.add_argument("directory", help="iterate files W1..WN, V1..VN, U1..UN per sweep, data.npz, audit.toml")
    p.add_argument("--out", help="where to write the trace (default DIR/audit)")
    p.add_argument("--gamma", type=float, help="γ (overrides audit.toml)")
    p.add_argument("--alpha", type=float, help="α (overrides audit.toml)")
    p.add_argument("--lam", type=float, help="λ of r_i = λ/2‖W̃_i‖² (overrides audit.toml)")
    p.add_argument("--activation", help="relu | identity (overrides audit.toml)")
    p.add_argument("--reduction", help="sum | mean (overrides audit.toml)")
    p.add_argument("--vn-update", dest="vn_update", help="prox | prox_linear (overrides audit.toml)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--dtype", default="float64", help="float64 | float32")
    p.set_defaults(func=_audit)


__all__ = ["register", "summary"]
