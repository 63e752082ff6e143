"""The run directory: everything a run leaves on disk, written atomically (temp file + rename).

    config.json          the resolved RunConfig
    environment.json     package versions, device, hardware, git commit, wall time
    sweeps.parquet       the per-sweep log (row 0 = initial point)
    weights.safetensors  W1..WN (augmented, bias = last column)
    summary.txt          one line
"""

from __future__ import annotations

import json
import math
import os
import platform
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


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
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


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_table(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse to clobber an earlier run unless asked (nothing already written is lost)."""
    out = Path(out)
    if (out / CONFIG).exists() and not overwrite:
        raise ValueError(f"run directory {str(out)!r} already holds a run; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


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
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "git_commit": _git_commit(),
    }
    return env


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def save_weights(path: Path, weights: list[torch.Tensor]) -> None:
    tensors = {f"W{i}": w.detach().cpu().contiguous() for i, w in enumerate(weights, start=1)}
    atomic_write(path, lambda p: save_file(tensors, str(p)))


def load_weights(path: str | Path) -> list[torch.Tensor]:
    """W̃_1..W̃_N from a ``weights.safetensors`` file."""
    try:
        tensors = load_file(str(path))
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
