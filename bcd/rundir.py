"""The run directory: everything a run leaves on disk, written atomically (temp file + rename).

    config.json          the resolved RunConfig
    environment.json     package versions, device, hardware, git commit, wall time
    sweeps.parquet       the per-sweep log (row 0 = initial point)
    weights.safetensors  W1..WN (augmented, bias = last column)
    summary.txt          one line
    checkpoint.json, checkpoint-<k>.safetensors[, checkpoint_recorder-<k>.pt]   the last checkpoint (bcd.checkpoint)
    .bcd-run, .bcd-lock  the marker of a bcd run directory and the writer's lock

plus the trace, verdicts and report that verification and reports add (:data:`ARTEFACTS` lists every name).
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from bcd.config import RunConfig

CONFIG = "config.json"
ENVIRONMENT = "environment.json"
SWEEPS = "sweeps.parquet"
WEIGHTS = "weights.safetensors"
SUMMARY = "summary.txt"


MARKER = ".bcd-run"  # marks a directory as a bcd run directory (what --overwrite may clear)
LOCK = ".bcd-lock"  # held by the one process writing a run directory
# Every name a run directory may hold: the run (this module), the trace (verification.trace), the verdicts
# (verification.verdict), the report and its figures (reports.document), the audit's config (verification.cli).
# A test checks that a `bcd verify` run writes nothing else, so this list cannot go stale silently.
ARTEFACTS = (CONFIG, ENVIRONMENT, SWEEPS, WEIGHTS, SUMMARY, "trace_sweeps.parquet", "trace_blocks.parquet",
             "trace_meta.json", "verdicts.json", "report.html", "report.md", "figures", "audit_config.json",
             "checkpoint.json", MARKER, LOCK)
CHECKPOINT_DATA = ("checkpoint-", "checkpoint_recorder-")  # prefixes of the per-sweep checkpoint files


def is_artefact(name: str) -> bool:
    """Whether a run writes a file of this name (what --overwrite may remove)."""
    return name in ARTEFACTS or name.startswith(CHECKPOINT_DATA)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_out_dir(out: Path) -> None:
    """Create the folder ``--out`` names (and its parents).  A path that cannot be a folder (a parent is a file, no such
    file system, no permission, read-only) is bad input, one line naming it; a full or failing disk stays an OSError
    (the run could not be completed)."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
        raise ValueError(f"the output folder {str(out)!r} cannot be created ({e.strerror or e}); give an --out you "
                         "can write to") from None


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` so readers never see a partial file.  The rename replaces
    a symbolic link at ``path`` instead of writing through it, and the file gets the mode the umask allows (the
    temporary file's 0600 would otherwise stay)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats as None, tuples as lists, keys as str and 0-d arrays/tensors as scalars."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return json_safe(x.item())
    return x


def damaged(path: str | Path, why: str) -> ValueError:
    """The error for a file of a run directory that bcd cannot read back: it names the file (exit 2, one line)."""
    return ValueError(f"{str(path)!r} is damaged ({why}); restore it, or delete the run directory and run again")


def read_json(path: str | Path, shape: type = dict) -> Any:
    """A JSON file bcd wrote, checked to be a ``shape`` (``dict`` or ``list``); otherwise :func:`damaged`."""
    try:
        value = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged(path, f"not JSON: {e}") from None
    if not isinstance(value, shape):
        raise damaged(path, f"a JSON {type(value).__name__}, not a{'n object' if shape is dict else ' list'}")
    return value


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_table(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Make ``out`` a run directory for a new run, losing nothing that is not an earlier run's artefact.

    A new or empty directory is taken.  An earlier bcd run (its marker) is refused unless ``overwrite``, and then
    *every* artefact of it is removed, so that no stale trace, verdicts or report can be read with the new run; a
    file that no run writes is never removed (the directory is refused, naming it).  Any other non-empty directory is
    refused.  The directory is locked for this process (:data:`LOCK`) until it exits: a second writer is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a directory")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present:
        if MARKER not in present and CONFIG not in present:
            listed = ", ".join(present[:5]) + (", …" if len(present) > 5 else "")
            raise ValueError(f"--out {str(out)!r} is a non-empty directory that holds no bcd run ({listed}); choose "
                             "a new or empty directory")
        if not overwrite:
            raise ValueError(f"run directory {str(out)!r} already holds a run; choose another --out or pass "
                             "--overwrite")
        foreign = [n for n in present if not is_artefact(n) and not n.startswith(".")]
        if foreign:
            raise ValueError(f"--overwrite would leave {', '.join(foreign)} in {str(out)!r}, which no bcd run writes; "
                             "move them away or choose another --out")
    make_out_dir(out)
    _lock(out)
    for name in present:
        if is_artefact(name) and name != LOCK:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    write_text(out / MARKER, json.dumps({"tool": "bcd-verify", "pid": os.getpid()}) + "\n")
    return out


def lock_run_dir(out: str | Path) -> Path:
    """Lock an existing run directory for this process (a resumed run), refusing one that holds no bcd run."""
    out = Path(out)
    if not (out / CONFIG).is_file():
        raise ValueError(f"{str(out)!r} holds no bcd run (no {CONFIG}): nothing to resume")
    _lock(out)
    return out


_HELD: dict[str, int] = {}  # run directory → the open file descriptor holding its lock (kept until exit)


def _lock(out: Path) -> None:
    """Hold an exclusive ``flock`` on ``out/.bcd-lock`` for the rest of this process: the kernel releases it when the
    process ends however it ends, so a lock is never stale, and a second writer is refused at once."""
    key = str(out.resolve())
    if key in _HELD:
        return
    fd = os.open(out / LOCK, os.O_CREAT | os.O_RDWR, 0o666 & ~_umask())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise ValueError(f"run directory {str(out)!r} is being written by another bcd process (pid {holder}); wait "
                         "for it or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[key] = fd


def release_locks() -> None:
    """Give up every run-directory lock this process holds (they are otherwise held until it exits)."""
    for fd in _HELD.values():
        os.close(fd)
    _HELD.clear()


def environment(device: str) -> dict[str, Any]:
    import numpy
    import pandas

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "git_commit": _COMMIT_AT_IMPORT,
    }
    return env


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows: timings differ across machines."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


_COMMIT_AT_IMPORT = _git_commit()  # the code this process runs, not whatever HEAD is when a long run ends


def save_weights(path: Path, weights: list[torch.Tensor]) -> None:
    tensors = {f"W{i}": w.detach().cpu().contiguous() for i, w in enumerate(weights, start=1)}
    atomic_write(path, lambda p: save_file(tensors, str(p)))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, each copied into fresh memory.  The file's buffers sit at arbitrary offsets, and
    MKL's kernels round differently on unaligned operands (measured on an AVX-512 CPU: a resumed run ended 1 ulp away
    from the uninterrupted one), so a tensor read back must be as aligned as the one that was saved."""
    return {k: t.clone() for k, t in load_file(str(path)).items()}


def load_weights(path: str | Path) -> list[torch.Tensor]:
    """W̃_1..W̃_N from a ``weights.safetensors`` file."""
    try:
        tensors = load_tensors(path)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{str(path)!r} is not a readable weights file: {e}") from None
    missing = [f"W{i}" for i in range(1, len(tensors) + 1) if f"W{i}" not in tensors]
    if missing or not tensors:
        raise ValueError(f"{str(path)!r} holds {sorted(tensors)}; expected W1..WN")
    return [tensors[f"W{i}"] for i in range(1, len(tensors) + 1)]


def load_run(run_dir: str | Path) -> tuple[RunConfig, pd.DataFrame]:
    """The resolved config and the per-sweep log of a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise ValueError(f"{str(run_dir)!r} is not a run directory (no {CONFIG})")
    cfg = RunConfig.from_dict(json.loads((run_dir / CONFIG).read_text()))
    return cfg, pd.read_parquet(run_dir / SWEEPS)
