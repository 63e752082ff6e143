"""Checkpoints of a run, written between two sweeps, and the resume that continues them bit for bit.

A checkpoint is written atomically, file by file, into the run directory: ``checkpoint.safetensors`` (every block
W̃_i, V_i[, U_i] of the iterate after sweep k, with k in its metadata, and the CPU RNG state),
``checkpoint_recorder.pt`` when the run records a trace (the recorder's carried state), and ``checkpoint.json`` (k
and the per-sweep log so far).  The tensors are written first, so the JSON, written last, always names a complete
state (each file carries k, and a torn checkpoint is refused).  The engine and the recorder are deterministic
functions of that state, so ``bcd train|record|verify --resume RUN_DIR`` continuing from sweep k ends with the same
weights, log, trace and verdicts as the uninterrupted run (the timing columns aside), on the same machine and
threads.

A sample-sharded run (:mod:`bcd.distributed`) checkpoints too: each rank writes its own columns of V and U (and its
recorder's column-local state) as ``checkpoint-<k>.rank<r>.*``; after a barrier rank 0 moves ``checkpoint.json``,
which records the world size, and a second barrier lets every rank delete its older files.  ``--resume`` with the
same ``--nproc`` continues it; another world size is refused (the columns are split by rank).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bcd.distributed import collectively
from bcd.problem import BCDState, Problem
from bcd.rundir import atomic_write, json_safe, load_tensors, write_text

EVERY = 10  # sweeps between two checkpoints by default (--checkpoint-every)
CHECKPOINT = "checkpoint.safetensors"  # stored as checkpoint-<k>.safetensors
CHECKPOINT_LOG = "checkpoint.json"


CHECKPOINT_HOOKS = "checkpoint_recorder.pt"  # stored as checkpoint_recorder-<k>.pt


def save(out: str | Path, state: BCDState, rows: list[dict[str, Any]], recorder=None, shard=None) -> None:
    """Write the checkpoint of ``state`` (after sweep ``state.sweep``), the log ``rows`` and, when the run records a
    trace, the recorder's carried state (:meth:`verification.recorder.Recorder.state_dict`).

    The data files are named by their sweep (``checkpoint-<k>.*``); ``checkpoint.json``, written last, points at
    them, and only then are older sets deleted — so a stop at any moment leaves a complete checkpoint (the previous
    one until the pointer moves).  SIGINT/SIGTERM are held back while it writes.  ``shard``: the rank's
    :class:`bcd.distributed.Shard` in a sharded run (per-rank files, rank 0 moves the pointer between two barriers)."""
    out = Path(out)
    k = state.sweep
    rank = None if shard is None else shard.rank
    tensors = {f"{b}{i}": t.detach().cpu().contiguous() for b, i, t in state.blocks()}
    tensors["rng_cpu"] = torch.get_rng_state()  # no sweep draws from it today; kept for a step that would
    with _signals_held():
        def data() -> None:
            atomic_write(out / _name(CHECKPOINT, k, rank),
                         lambda p: save_file(tensors, str(p), metadata={"sweep": str(k)}))
            if recorder is not None:
                saved = recorder.state_dict()
                atomic_write(out / _name(CHECKPOINT_HOOKS, k, rank), lambda p: torch.save(saved, p))

        def pointer() -> None:
            if shard is None or shard.writer:
                write_text(out / CHECKPOINT_LOG, json.dumps({"sweep": k, "log": json_safe(rows),
                                                             "recorder": recorder is not None,
                                                             "world_size": 1 if shard is None else shard.world})
                           + "\n")

        # in a sharded run each phase ends in a barrier that also shares a failure (a full disk on one rank raises
        # the same error on every rank): every rank's data is on disk before the pointer moves, and the pointer
        # names sweep k before any rank deletes its older files
        collectively(shard, data)
        collectively(shard, pointer)
        current = (_name(CHECKPOINT, k, rank), _name(CHECKPOINT_HOOKS, k, rank))
        for old in out.iterdir():
            if _OWN.fullmatch(old.name) and _rank_of(old.name) == rank and old.name not in current:
                old.unlink(missing_ok=True)


def _name(base: str, k: int, rank: int | None = None) -> str:
    stem, ext = base.rsplit(".", 1)
    return f"{stem}-{k}{'' if rank is None else f'.rank{rank}'}.{ext}"


_OWN = re.compile(r"checkpoint(?:_recorder)?-\d+(?:\.rank\d+)?\.(?:safetensors|pt)")


def _rank_of(name: str) -> int | None:
    m = re.search(r"\.rank(\d+)\.", name)
    return None if m is None else int(m.group(1))


def check_world(out: str | Path, meta: dict, world: int) -> None:
    """Refuse a resume with another world size than the checkpoint's (its columns are split by rank)."""
    saved = int(meta.get("world_size", 1))
    if saved != world:
        how = "in one process (without --nproc)" if saved == 1 else f"with --nproc {saved}"
        raise ValueError(f"the checkpoint in {str(out)!r} was written by {saved} process(es), this run has {world}: "
                         f"resume it {how}")


@contextlib.contextmanager
def _signals_held():
    """Defer SIGINT/SIGTERM until the block ends, then deliver them.  Python runs signal handlers in the main thread
    whichever thread the kernel picked (BLAS and gloo threads exist here), so the deferral is a Python handler that
    records the signal, not a thread's signal mask; off the main thread handlers cannot be set: no deferral."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in caught:
            signal.raise_signal(sig)


def recorded(out: str | Path) -> bool:
    """Whether the checkpoint in ``out`` carries a recorder (a `bcd verify` / `bcd record` run)."""
    try:
        return bool(json.loads((Path(out) / CHECKPOINT_LOG).read_text()).get("recorder"))
    except (OSError, ValueError, AttributeError):
        return False


def checkpoint_sweep(out: str | Path) -> int | None:
    """The sweep of the checkpoint in ``out``, or None when there is none (or it is unreadable)."""
    try:
        return int(json.loads((Path(out) / CHECKPOINT_LOG).read_text())["sweep"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkpoint_world(out: str | Path) -> int:
    """How many processes wrote the checkpoint in ``out`` (1 when there is none or it predates sharded checkpoints)."""
    try:
        return int(json.loads((Path(out) / CHECKPOINT_LOG).read_text()).get("world_size", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 1


def load_recorder(out: str | Path, device: str = "cpu", rank: int | None = None, world: int = 1):
    """The recorder saved with the checkpoint of ``out`` (loaded without arbitrary pickles: weights_only), or None
    when the checkpointed run recorded no trace.  ``rank``, ``world``: this process's rank and the world size of a
    sharded run (its own file; a checkpoint written by another number of processes is refused first)."""
    from verification.recorder import SAFE_GLOBALS, Recorder

    out = Path(out)
    k = checkpoint_sweep(out)
    if k is None:
        raise ValueError(f"{str(out)!r} holds no checkpoint ({CHECKPOINT_LOG}): nothing to resume")
    meta = json.loads((out / CHECKPOINT_LOG).read_text())
    check_world(out, meta, world)
    if not meta.get("recorder"):
        return None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            saved = torch.load(out / _name(CHECKPOINT_HOOKS, k, rank), weights_only=True, map_location=device)
    except Exception as e:
        raise ValueError(f"the recorder checkpoint in {str(out)!r} is unreadable: {e}") from None
    if saved.get("sweep") != meta["sweep"]:
        raise ValueError(f"the checkpoint in {str(out)!r} is torn: its log is at sweep {meta['sweep']}, its recorder "
                         f"at {saved.get('sweep')}")
    return Recorder.from_state_dict(saved)


def load(out: str | Path, problem: Problem, shard=None) -> tuple[BCDState, list[dict[str, Any]]]:
    """The checkpointed state (on the problem's device and dtype, every shape checked) and its log; in a sharded run
    (``shard``) this rank's columns, from a checkpoint written by as many ranks."""
    out = Path(out)
    k = checkpoint_sweep(out)
    rank, world = (None, 1) if shard is None else (shard.rank, shard.world)
    if k is not None:
        check_world(out, json.loads((out / CHECKPOINT_LOG).read_text()), world)  # readable: k was read
    if k is None or not (out / _name(CHECKPOINT, k, rank)).is_file():
        raise ValueError(f"{str(out)!r} holds no checkpoint ({CHECKPOINT_LOG} and its data): nothing to resume")
    try:
        meta = json.loads((out / CHECKPOINT_LOG).read_text())
        k, rows = int(meta["sweep"]), [
            {key: (math.nan if v is None else v) for key, v in row.items()} for row in meta["log"]]
        tensors = load_tensors(out / _name(CHECKPOINT, k, rank))  # aligned copies: bit-for-bit resume
        with safe_open(str(out / _name(CHECKPOINT, k, rank)), "pt") as fh:
            tensor_sweep = int((fh.metadata() or {}).get("sweep", -1))
    except Exception as e:
        raise ValueError(f"the checkpoint in {str(out)!r} is unreadable: {e}") from None
    if tensor_sweep != k:
        raise ValueError(f"the checkpoint in {str(out)!r} is torn: its log is at sweep {k}, its state at "
                         f"{tensor_sweep}")
    if len(rows) != k + 1 or any(int(r.get("sweep", -1)) != j for j, r in enumerate(rows)):
        raise ValueError(f"the checkpoint log in {str(out)!r} does not run from sweep 0 to {k}")
    widths, n = problem.widths, problem.n
    W, V, U = [None], [problem.X], [None]
    dtype, device = problem.X.dtype, problem.X.device
    for i in range(1, len(widths)):
        for key, shape, dest in ((f"W{i}", (widths[i], widths[i - 1] + 1), W), (f"V{i}", (widths[i], n), V),
                                 (f"U{i}", (widths[i], n), U)):
            if key.startswith("U") and ("U", i) not in problem.variables:
                dest.append(None)
                continue
            t = tensors.get(key)
            if t is None or tuple(t.shape) != shape:
                raise ValueError(f"the checkpoint in {str(out)!r} does not fit this run: {key} is "
                                 f"{None if t is None else tuple(t.shape)}, expected {shape}")
            dest.append(t.to(dtype=dtype, device=device))
    if "rng_cpu" in tensors:
        torch.set_rng_state(tensors["rng_cpu"])
    return BCDState(W, V, U, k), rows
