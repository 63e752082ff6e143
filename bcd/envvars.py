"""The environment variables bcd reads, each parsed and checked here, once: a bad value is a ``ValueError`` that names
the variable, its value and what it allows (exit 2), never Python's own conversion error or a failure deep inside a
collective.  Unset (or empty) means the default."""

from __future__ import annotations

import math
import os


def env_int(name: str, default: int, minimum: int) -> int:
    """An integer ≥ ``minimum`` (the launcher's ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"{name}={raw!r} is not allowed; {name} must be an integer >= {minimum}")
    return value


def env_positive(name: str, default: float | None, unit: str) -> float | None:
    """A finite number > 0 of ``unit`` (``BCD_DIST_TIMEOUT_S`` seconds, ``BCD_MEMORY_LIMIT_GB`` GiB)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={raw!r} is not allowed; {name} must be a finite number of {unit} > 0")
    return value
