"""Sample-sharded BCD on ``torch.distributed`` (MATH.md §10): the same iterates as one process.

Every block update of Algorithms 1 (σ = Id), 2 and 3 is column-local except the W steps, whose Grams and cross
products are sums over samples; every term of L̄, every squared norm of an n-sized block and every accuracy count
is a sum over samples too.  All of them already pass through one seam, :func:`bcd.reduction.over_samples`.  A
sharded run therefore changes nothing in the engine or the recorder: each of K processes holds its own block of
columns of X, Y, U, V (and of the test set), W is replicated, and :class:`AllReduce` is installed at the seam.
The result equals the single-process run up to the order of the floating-point sums.

Launch with ``torchrun --nproc-per-node K -m bcd verify CONFIG`` (or ``bcd verify CONFIG --nproc K``, which
starts the K processes itself): gloo on CPU, NCCL on CUDA.  Rank 0 alone writes the run directory; every rank
computes the same trace and verdicts.  Misuse is refused with a message on every rank — more processes than
samples, ranks with different configurations, an unavailable backend — and a dead rank stops the others through
the collective timeout (``BCD_DIST_TIMEOUT_S``, default 300 s) or the launcher, never a silent hang.

Algorithm 1 with a nonlinear σ is sharded too.  Its proximal-gradient blocks are sums over samples like the rest.
The piecewise Newton solver (ReLU with a ridge) solves its V_i columns on their own rank, but gathers the two
n-sized operands of each W̃_i step, whose rows couple the samples by more than sums (:mod:`bcd.reduction`): exact,
without the memory or time saving for those steps.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from bcd.envvars import env_int, env_positive
from bcd.reduction import Reduction, using

Tensor = torch.Tensor
DEFAULT_TIMEOUT_S = 300.0


class AllReduce(Reduction):
    """The seam's sum over every rank (in place), counting what it moves."""

    def __init__(self) -> None:
        self.bytes = 0
        self.calls = 0
        self.seconds = 0.0  # wall time inside all_reduce (waiting for the other ranks included)

    def sum_(self, t: Tensor) -> Tensor:
        t0 = time.perf_counter()
        if t.is_contiguous():
            dist.all_reduce(t)
        else:  # all_reduce needs contiguous memory; the seam's contract is in place
            tmp = t.contiguous()
            dist.all_reduce(tmp)
            t.copy_(tmp)
        if t.is_cuda:  # NCCL returns at enqueue: time the reduction itself
            torch.cuda.synchronize(t.device)
        self.seconds += time.perf_counter() - t0
        self.bytes += t.numel() * t.element_size()
        self.calls += 1
        return t

    def gather(self, t: Tensor) -> Tensor:
        """Every rank's columns of ``t`` (d × n_r), concatenated in rank order: shards are contiguous blocks of
        samples (:meth:`Shard.rows`), so this is the single process's tensor.  Counted with the reductions."""
        t0 = time.perf_counter()
        world = dist.get_world_size()
        sizes = torch.tensor([t.shape[-1]], dtype=torch.int64, device=t.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
        dist.all_gather(all_sizes, sizes)
        counts = [int(c.item()) for c in all_sizes]
        width = max(counts)
        local = t.new_zeros(*t.shape[:-1], width)  # all_gather needs equal shapes: pad to the widest shard
        local[..., : t.shape[-1]] = t
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local)
        if t.is_cuda:
            torch.cuda.synchronize(t.device)
        self.seconds += time.perf_counter() - t0
        self.bytes += world * local.numel() * local.element_size()
        self.calls += 2
        return torch.cat([p[..., :c] for p, c in zip(parts, counts, strict=True)], dim=-1)

    def broadcast_(self, t: Tensor) -> Tensor:
        """Rank 0's ``t`` on every rank, in place."""
        t0 = time.perf_counter()
        tmp = t if t.is_contiguous() else t.contiguous()
        dist.broadcast(tmp, src=0)
        if tmp is not t:
            t.copy_(tmp)
        if t.is_cuda:
            torch.cuda.synchronize(t.device)
        self.seconds += time.perf_counter() - t0
        self.bytes += t.numel() * t.element_size()
        self.calls += 1
        return t


@dataclass(frozen=True)
class Shard:
    """This process's place in a sharded run: rank, world size and its block of sample rows [start, stop)."""

    rank: int
    world: int
    backend: str
    reduction: AllReduce

    @property
    def writer(self) -> bool:
        """Rank 0 writes the run directory and prints; the others compute the same numbers silently."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """The contiguous block of the n samples this rank holds (sizes differ by at most one)."""
        if self.world > n:
            raise ValueError(f"{self.world} processes for {n} samples: every rank needs at least one sample; "
                             f"use at most {n} processes")
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def take(self, a, n: int | None = None):
        """Rows of ``a`` (samples as rows) held by this rank; None stays None."""
        if a is None:
            return None
        return a[self.rows(len(a) if n is None else n)]

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order (on every rank)."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def agree(self, error: str | None) -> None:
        """Raise the same ValueError on every rank when any rank reports an error (so none waits for the others)."""
        errors = self.gather(error)
        bad = [(r, e) for r, e in enumerate(errors) if e]
        if bad:
            r, e = bad[0]
            raise ValueError(e if r == self.rank or self.world == 1 else f"rank {r}: {e}")

    def check_same(self, what: str, value: Any) -> None:
        """Every rank must hold the same ``value`` (e.g. the configuration); the message names the ranks."""
        digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
        digests = self.gather(digest)
        if len(set(digests)) > 1:
            groups: dict[str, list[int]] = {}
            for r, d in enumerate(digests):
                groups.setdefault(d, []).append(r)
            raise ValueError(f"the ranks were given different {what}: " + "; ".join(
                f"ranks {ranks} hold {d}" for d, ranks in groups.items()) + "; give every rank the same one")


_current: Shard | None = None
_session: AllReduce | None = None  # set while a launched process runs a command (installed at the seam)


def current() -> Shard | None:
    """The shard of this process once it has joined a sharded run (:func:`join`), else None."""
    return _current


def launched() -> bool:
    """Whether a launcher (torchrun, ``--nproc``) started this process as one of several ranks."""
    return launched_world() > 1


def launched_rank() -> int | None:
    """This process's rank when it was launched as one of several (``WORLD_SIZE`` > 1), else None; every launcher
    variable is checked with it (:func:`launcher`)."""
    launch = launcher()
    return None if launch is None else launch.rank


def launched_world() -> int:
    """How many processes were launched together (1 for a plain run)."""
    return env_int("WORLD_SIZE", 1, 1)


@dataclass(frozen=True)
class Launch:
    """What the launcher (torchrun, ``--nproc``) told this process: its rank, the world size, and its place among
    the ranks on this machine."""

    rank: int
    world: int
    local_rank: int
    local_world: int


MAX_PORT = 65535


def launcher() -> Launch | None:
    """The launcher's variables of a process started as one of several ranks (``WORLD_SIZE`` > 1), each checked, or
    None for a plain run: RANK < WORLD_SIZE, LOCAL_RANK < LOCAL_WORLD_SIZE <= WORLD_SIZE and the MASTER_PORT that
    ``torch.distributed`` reads (a bad one failed inside c10d, or waited for ranks that never come).  An unset one
    that torch needs is named by torch itself."""
    world = launched_world()
    if world == 1:
        return None
    rank = env_int("RANK", 0, 0, world, f"WORLD_SIZE={world}")
    local_world = env_int("LOCAL_WORLD_SIZE", world, 1, world + 1, f"at most WORLD_SIZE={world}")
    local_rank = env_int("LOCAL_RANK", 0, 0, local_world, f"LOCAL_WORLD_SIZE={local_world}")
    env_int("MASTER_PORT", 1, 1, MAX_PORT + 1, "a TCP port")
    return Launch(rank, world, local_rank, local_world)


def timeout_seconds() -> float:
    """How long a rank waits on the others (``BCD_DIST_TIMEOUT_S``, default :data:`DEFAULT_TIMEOUT_S`)."""
    return env_positive("BCD_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S, "seconds")


def backend_for(device: str) -> str:
    """gloo on CPU, NCCL on CUDA; a clear error when the backend is not built into this torch."""
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed; a sharded run is not possible here")
    if device == "cuda":
        if not (torch.cuda.is_available() and dist.is_nccl_available()):
            raise ValueError("device='cuda' in a sharded run needs CUDA and the NCCL backend; this machine has "
                             f"CUDA={torch.cuda.is_available()}, NCCL={dist.is_nccl_available()}")
        return "nccl"
    if not dist.is_gloo_available():
        raise ValueError("the gloo backend is not available in this torch build: no sharded CPU run")
    return "gloo"


@contextlib.contextmanager
def session() -> Iterator[bool]:
    """For the whole of a command in a launched process: every sum over samples goes through :class:`AllReduce`
    (the process group itself is joined by :func:`join`, once the device is known).  Yields whether this process is
    one of several ranks; a no-op otherwise."""
    global _session, _current
    if not launched():
        yield False
        return
    _session = AllReduce()
    try:
        with using(_session):
            yield True
    finally:
        _session, _current = None, None
        if dist.is_initialized():
            dist.destroy_process_group()


def join(device: str, *, timeout_s: float | None = None) -> Shard | None:
    """Join the process group the launcher set up (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) with the backend
    of ``device``; None outside a :func:`session` of a launched process."""
    global _current
    if _session is None:
        return None
    if _current is not None:
        return _current
    backend = backend_for(device)
    timeout = timeout_seconds() if timeout_s is None else timeout_s
    if not dist.is_initialized():
        if backend == "nccl":
            local = launcher().local_rank
            if local >= torch.cuda.device_count():
                raise ValueError(f"rank with LOCAL_RANK={local} has no GPU: this machine has "
                                 f"{torch.cuda.device_count()}; start at most that many processes per machine")
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    _current = Shard(dist.get_rank(), dist.get_world_size(), backend, _session)
    return _current


def collectively(shard: Shard | None, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; in a sharded run a bad-input error on any rank is raised on every rank (so that
    no rank waits in a collective for one that gave up)."""
    if shard is None:
        return fn(*args, **kwargs)
    try:
        out, failure = fn(*args, **kwargs), None
    except Exception as e:  # any failure: the others must hear of it before they wait in a collective
        out, failure = None, e
    try:
        shard.agree(None if failure is None else f"{failure}")
    except ValueError:
        if failure is not None:
            raise failure from None  # this rank's own error keeps its type (and so its exit code)
        raise
    return out


def rank_record(shard: Shard, n_local: int, wall_s: float, engine_s: float, sweeps: int) -> list[dict[str, Any]]:
    """Per-rank timings, gathered on every rank (the environment record of a sharded run)."""
    mine = {"rank": shard.rank, "n_local": n_local, "wall_s": wall_s, "engine_s": engine_s,
            "allreduce_calls": shard.reduction.calls, "allreduce_bytes": shard.reduction.bytes,
            "allreduce_s": shard.reduction.seconds,
            "allreduce_bytes_per_sweep": shard.reduction.bytes / max(sweeps, 1),
            "peak_rss_mb": _peak_rss_mb()}
    return shard.gather(mine)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- the --nproc launcher


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, argv: Sequence[str], *, grace_s: float = 10.0) -> int:
    """Run ``python -m bcd ARGV`` as ``nproc`` ranks on this machine and return rank 0's exit code (or the first
    failing rank's, when rank 0 succeeded; 3 when the ranks were killed).  When a rank exits with an error the others
    are stopped after ``grace_s`` seconds.

    The ranks run in their own process group, so a Ctrl-C in the terminal reaches the launcher alone; the launcher
    passes every SIGINT, SIGTERM or SIGHUP it gets on to each rank as one SIGINT.  So a sharded run stops as one
    process does: the first signal finishes the sweep in progress on every rank (the stop request is all-reduced),
    writes the checkpoint and exits 3 saying how to resume; a second one aborts at once; a third terminates the
    ranks (then kills them).  Each rank starts with the default SIGINT disposition (not an ignored one inherited from
    a background launcher) and, on Linux, receives SIGTERM if the launcher dies."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc {nproc!r} is not allowed; give an integer >= 1")
    env = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    env.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: K ranks share the cores
    procs = [subprocess.Popen([sys.executable, "-m", "bcd", *argv], process_group=0, preexec_fn=_rank_signals,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    codes: list[int | None] = [None] * nproc
    failed_at: float | None = None
    received = [0]

    def forward(signum, frame) -> None:
        received[0] += 1
        if received[0] >= 3:
            _stop(procs, codes, "interrupted three times")
            return
        for r, p in enumerate(procs):
            if codes[r] is None and p.poll() is None:
                p.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while any(c is None for c in codes):
            for r, p in enumerate(procs):
                if codes[r] is None:
                    codes[r] = p.poll()
                    if codes[r] not in (None, 0) and failed_at is None:
                        failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > grace_s:
                _stop(procs, codes, "another rank failed")
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(procs, codes, "the launcher stopped")
    if not any(codes):
        return 0
    if codes[0] is not None and codes[0] > 0:
        return int(codes[0])  # rank 0's verdict (1: a claim failed, 2: bad input, 3: could not complete)
    return next((int(c) for c in codes if c and c > 0), 3)  # only killed ranks: the run could not be completed


def _rank_signals() -> None:
    """In a rank, before it runs: SIGINT to its default (Python then installs KeyboardInterrupt), and SIGTERM when the
    launcher dies (Linux prctl PR_SET_PDEATHSIG; elsewhere nothing)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _stop(procs: list, codes: list, why: str) -> None:
    for r, p in enumerate(procs):
        if codes[r] is None and p.poll() is None:
            p.terminate()
            print(f"bcd: rank {r} stopped: {why}", file=sys.stderr)
    for r, p in enumerate(procs):
        if codes[r] is None:
            try:
                codes[r] = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[r] = p.wait()
