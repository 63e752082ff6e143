"""The ``bcd`` command line.  Exit codes: 0 success, 1 a verified claim failed on a numerically sound run, 2 bad
input (one line naming the value or file), 3 the run could not be completed (it diverged, naming the block and
sweep; a rank of a sharded run died; the disk is full; out of memory).  ``bcd --debug ...`` shows the traceback.

Sub-commands are contributed by modules listed in ``COMMANDS``; each has ``register(subparsers)``
which adds its parser and sets ``func(args) -> int``; a command in ``SHARDABLE`` also sets ``preflight(args) ->
RunConfig``, every flag and the config checked with nothing written, which ``--nproc`` runs once before it launches.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from bcd.checkpoint import EVERY as CHECKPOINT_EVERY
from bcd.config import RunConfig, load_config, merge_overrides
from bcd.fusion import fuse_mode

COMMANDS = ("bcd.cli", "reports.cli", "theory.cli", "verification.cli")

DEFAULT_TRAIN_CONFIG = "train_default.toml"

# flag -> (section, key, type)
RUN_FLAGS: dict[str, tuple[str, str, Any]] = {
    "dataset": ("data", "dataset", str),
    "n_train": ("data", "n_train", int),
    "n_test": ("data", "n_test", int),
    "subset": ("data", "subset", str),
    "data_path": ("data", "path", str),
    "hidden": ("bcd", "hidden", None),
    "activation": ("bcd", "activation", str),
    "loss": ("bcd", "loss", str),
    "r": ("bcd", "r", "specs"),
    "s": ("bcd", "s", "specs"),
    "reg_bias": ("bcd", "reg_bias", "bool"),
    "gamma": ("bcd", "gamma", float),
    "alpha": ("bcd", "alpha", float),
    "lam": ("bcd", "lam", float),
    "reduction": ("bcd", "reduction", str),
    "vn_update": ("bcd", "vn_update", str),
    "splitting": ("bcd", "splitting", str),
    "skip": ("bcd", "skip", str),
    "sweeps": ("bcd", "sweeps", int),
    "init": ("bcd", "init", str),
    "seed": ("bcd", "seed", int),
    "device": ("bcd", "device", str),
    "dtype": ("bcd", "dtype", str),
    "eval_every": ("bcd", "eval_every", int),
}


FLAG_HELP = {  # the catalogue's specs and the widths, for every command that takes them
    "hidden": "hidden widths d_1..d_{N-1}, comma-separated; DEPTHxWIDTH repeats one (3x1500 = 1500,1500,1500)",
    "loss": "squared | logistic | cross_entropy | hinge",
    "activation": "relu | leaky_relu(s) | identity | sigmoid | tanh | softplus | polynomial(c0,..,ck) | quadratic",
    "r": "regulariser on W̃_i: none | l2(λ) | l1(λ) | elastic_net(λ1,λ2) | nonneg | box(l,u) | unit_interval; one per "
         "layer separated by ';'",
    "s": "regulariser on V_i (same specs as --r)", "reg_bias": "true | false: r_i acts on the bias too"}


MAX_DEPTH = 1000  # layers in one DEPTHxWIDTH item of --hidden (a list is built before the config checks it)


def parse_widths(text: str) -> list[int]:
    """``--hidden``: widths separated by commas, each a width or DEPTHxWIDTH (``10x600`` = ten layers of 600, the
    benchmarks' notation), e.g. ``1500,1500,1500`` = ``3x1500``.  An empty item is refused, not skipped."""
    widths: list[int] = []
    for item in text.split(","):
        depth, x, width = item.strip().rpartition("x")
        try:
            layers = int(depth) if x else 1
            if not 1 <= layers <= MAX_DEPTH:
                raise ValueError
            widths += [int(width)] * layers
        except ValueError:
            raise ValueError(f"--hidden {text!r} is not allowed: {item.strip()!r} is not a width or DEPTHxWIDTH "
                             f"(1 <= DEPTH <= {MAX_DEPTH}); give comma-separated integers, e.g. 1500,1500,1500 or "
                             "3x1500") from None
    return widths


def out_path(text: str) -> str:
    """``--out``'s argparse type: a non-empty path (an empty one used to fall back to the default silently)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; give a directory path")
    return text


def add_run_arguments(p: argparse.ArgumentParser, trains: bool = True) -> None:
    """Config file + per-field overrides shared by every command that trains (``trains``), and by one that only reads
    a config (``bcd theory``: the run-only flags are still parsed, so that it can refuse them by name, but not listed
    in its --help)."""
    def shown(text: str) -> str:
        return text if trains else argparse.SUPPRESS

    p.add_argument("config", nargs="?", help="TOML file with [data] and [bcd] tables (default: the embedded one)")
    p.add_argument("--out", type=out_path, help=shown("run directory to write"))
    p.add_argument("--overwrite", action="store_true", help=shown("replace an existing run in --out"))
    p.add_argument("--no-progress", action="store_true", help=shown("no progress bar"))
    p.add_argument("--nproc", type=int, default=None, metavar="K",
                   help=shown("shard the samples over K processes on this machine (gloo on CPU, NCCL on CUDA; the "
                              "same iterates as one process); under torchrun leave it out"))
    g = p.add_argument_group("overrides of the config file")
    for flag in RUN_FLAGS:
        g.add_argument("--" + flag.replace("_", "-"), dest=flag, default=None, metavar=flag.upper(),
                       help=FLAG_HELP.get(flag))


def resolve_run_config(args: argparse.Namespace, default_file: str, base: dict[str, Any] | None = None) -> RunConfig:
    """The run config: the TOML file (or ``base``, or the embedded default) with the flags on top."""
    overrides: dict[str, Any] = {"data": {}, "bcd": {}}
    for flag, (section, key, typ) in RUN_FLAGS.items():
        raw = getattr(args, flag, None)
        if raw is None:
            continue
        if typ is None:
            overrides[section][key] = parse_widths(raw)
        elif typ == "specs":  # one catalogue spec, or one per layer separated by ';'
            overrides[section][key] = [x.strip() for x in raw.split(";")] if ";" in raw else raw.strip()
        elif typ == "bool":
            if raw.lower() not in ("true", "false"):
                raise ValueError(f"--{flag.replace('_', '-')} {raw!r} is not allowed; give true or false")
            overrides[section][key] = raw.lower() == "true"
        else:
            try:
                overrides[section][key] = typ(raw)
            except ValueError:
                raise ValueError(f"--{flag.replace('_', '-')} {raw!r} is not a valid {typ.__name__}") from None
    if args.out:
        overrides["out"] = args.out
    if args.config:
        return load_config(args.config, overrides, base=base if base is not None else embedded_config(default_file))
    return merge_overrides(base if base is not None else embedded_config(default_file), overrides)


def embedded_config(name: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(resources.files("bcd.configs").joinpath(name).read_text())


def given_run_flags(args: argparse.Namespace) -> list[str]:
    """The config overrides given on the command line, as flags (``--gamma``, …)."""
    return ["--" + f.replace("_", "-") for f in RUN_FLAGS if getattr(args, f, None) is not None]


def resume_config(args: argparse.Namespace) -> RunConfig:
    """The config of the run ``--resume RUN_DIR`` continues (its ``config.json``); flags that would change it are
    refused."""
    given = given_run_flags(args) \
        + ([f"CONFIG ({args.config})"] if args.config else []) + (["--out"] if args.out else []) \
        + (["--overwrite"] if args.overwrite else [])
    if given:
        raise ValueError(f"--resume continues the run as its config.json says; {', '.join(given)} do not apply")
    from bcd.rundir import CONFIG

    path = Path(args.resume) / CONFIG
    if not path.is_file():
        raise ValueError(f"{args.resume!r} holds no bcd run (no {CONFIG}): nothing to resume")
    from bcd.rundir import damaged, read_json

    raw = read_json(path)
    try:
        return RunConfig.from_dict({**raw, "out": str(args.resume)})
    except (TypeError, ValueError, KeyError) as e:
        raise damaged(path, str(e)) from None




def add_resume_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or interrupted run from its checkpoint "
                   "(bit-identical to the uninterrupted run on the same machine)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                   help=f"write a checkpoint every K sweeps and at every clean stop (default {CHECKPOINT_EVERY}; 0: "
                   "only at stops)")


def checkpoint_every(args: argparse.Namespace) -> int:
    """``--checkpoint-every``, checked (an integer >= 0), or the default."""
    k = args.checkpoint_every
    if k is None:
        return CHECKPOINT_EVERY
    if k < 0:
        raise ValueError(f"--checkpoint-every {k} is not allowed; give an integer >= 0 (0: only at stops)")
    return k


def run_config(args: argparse.Namespace, default_file: str) -> RunConfig:
    """The config a training command runs, resumed (``--resume``) or new, with its flags checked; nothing written."""
    checkpoint_every(args)
    return resume_config(args) if args.resume else resolve_run_config(args, default_file)


def _train(args: argparse.Namespace) -> int:
    from bcd.runner import train_from_config

    cfg = run_config(args, DEFAULT_TRAIN_CONFIG)
    result, out = train_from_config(cfg, progress=not args.no_progress, overwrite=args.overwrite,
                                    resume=bool(args.resume), checkpoint_every=checkpoint_every(args))
    if writes():
        print((out / "summary.txt").read_text().strip())
        print(f"run directory: {out}")
    incomplete(result, out)
    return 0


def incomplete(result, out, command: str = "train") -> None:
    """Raise RunIncomplete (exit 3) for a run that diverged or was interrupted; its files are already written."""
    from bcd.engine import RunIncomplete

    if result.stop_reason == "non_finite_objective":
        raise RunIncomplete(f"the run diverged: {result.stop_detail}; the run directory {str(out)!r} keeps the log "
                            "up to that sweep")
    if result.stop_reason == "interrupted":
        from bcd.checkpoint import checkpoint_sweep, checkpoint_world

        k = checkpoint_sweep(out)
        world = checkpoint_world(out)
        nproc = f" --nproc {world}" if world > 1 else ""
        how = (f"continue it from sweep {k} with: bcd {command} --resume {out}{nproc}" if k is not None else
               "no checkpoint was written (stopped before the first one): run it again")
        raise RunIncomplete(f"interrupted: {result.stop_detail or 'aborted mid-sweep'}; {how}")


def writes() -> bool:
    """Whether this process writes and prints (always, except the ranks > 0 of a sharded run)."""
    from bcd.distributed import current

    shard = current()
    return shard is None or shard.writer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a fully connected network with Algorithm 1, 2 or 3 "
                       "(--splitting, --skip) and write a run directory")
    add_run_arguments(p)
    add_resume_arguments(p)
    p.set_defaults(func=_train, preflight=lambda args: run_config(args, DEFAULT_TRAIN_CONFIG))


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit 2), like every other bad input, instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bcd", description=__doc__.split("\n\n")[0].replace("\n", " ").replace("``", ""))
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    parser.set_defaults(commands=sub.choices)  # for an unknown option, the subcommand's parser names it (main)
    return parser


SHARDABLE = ("train", "verify", "record")  # the commands that train; the others read files in one process
FUSES = (*SHARDABLE, "reproduce", "audit")  # the commands that run block updates, and so read BCD_FUSE


def main(argv: list[str] | None = None) -> int:
    from bcd import distributed

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # argparse would report it from `bcd` itself; the subcommand's parser points to its own --help
            after = argv.index(unknown[0]) > argv.index(args.command)
            (args.commands[args.command] if after else parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as e:  # --help (0) or a bad option (2, its one line already printed): an exit code, like the rest
        return e.code if isinstance(e.code, int) else 2
    nproc = getattr(args, "nproc", None)
    try:
        if args.command in FUSES:
            fuse_mode()  # BCD_FUSE (bcd/fusion.py): a bad value is refused before anything is written
        if nproc is not None and args.command not in SHARDABLE:  # before launching: one line, not one per rank
            raise ValueError(f"--nproc does not apply to bcd {args.command}: it runs in one process; only "
                             f"{', '.join(SHARDABLE)} run sharded")
        from bcd.inputs import memory_limit_gib

        # the environment's settings, checked once before any use (a bad one would otherwise be named once per rank)
        distributed.launched_rank(), distributed.timeout_seconds(), memory_limit_gib()
        if nproc is not None and not distributed.launched():
            if nproc < 1:
                raise ValueError(f"--nproc {nproc} is not allowed; give an integer >= 1")
            if nproc > 1:
                _check_world(nproc, args.preflight(args))  # every flag and the config, once, before any rank starts
                if getattr(args, "resume", None):  # the checkpoint's world size too (each rank would say it)
                    from bcd.checkpoint import check_world, checkpoint_world

                    check_world(args.resume, {"world_size": checkpoint_world(args.resume)}, nproc)
                return distributed.launch(nproc, _without_nproc(argv))
        if distributed.launched() and args.command not in SHARDABLE:
            raise ValueError(f"bcd {args.command} runs in one process; only {', '.join(SHARDABLE)} run sharded")
        with distributed.session():
            return int(args.func(args))
    except Exception as exc:
        if args.debug:
            raise
        code, text = _classify(exc, _quietly(distributed.launched, False))
        print(f"bcd {args.command}{_rank()}: error: {text}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"bcd {args.command}{_rank()}: interrupted", file=sys.stderr)
        return 3


MAX_RANKS_PER_CORE = 4  # beyond this a CPU rank has under a quarter of a core: more communication, no more compute


def _check_world(nproc: int, cfg: RunConfig) -> None:
    """--nproc K against what the run can use: at most one rank per sample, and on CPU at most
    ``MAX_RANKS_PER_CORE`` ranks per core (each rank is a process with its own copy of W)."""
    n = cfg.data.n_train
    if n is not None and nproc > n:
        raise ValueError(f"--nproc {nproc} is more ranks than the {n} training samples (n_train); give at most {n}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cfg.bcd.device == "cpu" and nproc > MAX_RANKS_PER_CORE * cores:
        raise ValueError(f"--nproc {nproc} is more than {MAX_RANKS_PER_CORE} ranks per CPU this process may use "
                         f"({cores}); give at most {MAX_RANKS_PER_CORE * cores}")


def _classify(exc: Exception, sharded: bool) -> tuple[int, str]:
    """(exit code, one line) for a failure: 2 bad input (a value or a file the user gave), 3 the run could not be
    completed (it diverged, a rank died, the disk is full, memory ran out, or an internal error)."""
    from bcd.engine import RunIncomplete

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return 2, str(exc) if isinstance(exc, ValueError) else f"{first} ({type(exc).__name__})"
    if isinstance(exc, RunIncomplete):
        return 3, str(exc)
    oom = isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and any(w in first for w in ("out of memory", "can't allocate",
                                                                   "DefaultCPUAllocator")))
    if oom:
        return 3, "out of memory: use fewer samples (--n-train), narrower layers (--hidden) or float32 (--dtype)"
    if isinstance(exc, OSError):
        return 3, f"could not read or write a file: {first} ({type(exc).__name__})"
    if sharded and isinstance(exc, RuntimeError):  # a collective of a sharded run failed
        return 3, (f"the sharded run could not be completed (another rank stopped or a collective timed out): "
                   f"{first}")
    return 3, f"internal error {type(exc).__name__}: {first} (run with bcd --debug ... for the traceback)"


def _quietly(read, fallback):
    """``read()``, or ``fallback`` where a launcher variable is bad: an error message must not raise again."""
    try:
        return read()
    except ValueError:
        return fallback


def _rank() -> str:
    from bcd import distributed

    rank = _quietly(distributed.launched_rank, None)
    return "" if rank is None else f" (rank {rank})"


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
