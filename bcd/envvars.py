"""The environment variables bcd reads, each parsed and checked here, once: a bad value is a ``ValueError`` that names
the variable, its value and what it allows (exit 2), never Python's own conversion error or a failure deep inside a
collective.  Unset (or empty) means the default."""

from __future__ import annotations

import math
import os


def _read(name: str, default, convert, ok, allowed: str):
    """``convert(value)`` of ``name`` when ``ok`` holds for it, ``default`` when it is unset; else the error."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = convert(raw)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise ValueError(f"{name}={raw!r} is not allowed; {name} must be {allowed}")
    return value


def env_int(name: str, default: int, minimum: int, below: int | None = None, why: str = "") -> int:
    """An integer ≥ ``minimum`` and, with ``below``, < ``below`` (``why`` says where that bound comes from): the
    launcher's ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_PORT``."""
    if below is None:
        return _read(name, default, int, lambda v: v >= minimum, f"an integer >= {minimum}")
    return _read(name, default, int, lambda v: minimum <= v < below,
                 f"an integer in {minimum}..{below - 1}" + (f" ({why})" if why else ""))


def env_positive(name: str, default: float | None, unit: str) -> float | None:
    """A finite number > 0 of ``unit`` (``BCD_DIST_TIMEOUT_S`` seconds, ``BCD_MEMORY_LIMIT_GB`` GiB)."""
    return _read(name, default, float, lambda v: math.isfinite(v) and v > 0, f"a finite number of {unit} > 0")
