"""A verification trace: the sweep table, the block table and their metadata, on disk as Parquet + JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bcd.config import BCDConfig
from bcd.rundir import read_json, write_json, write_table

TRACE_SWEEPS = "trace_sweeps.parquet"
TRACE_BLOCKS = "trace_blocks.parquet"
TRACE_META = "trace_meta.json"


@dataclass
class Trace:
    """``sweeps``: one row per sweep k = 0..T; ``blocks``: one row per block update (may be empty);
    ``meta``: at least ``config`` (a BCDConfig as dict), ``dtype``, ``n``, ``widths`` (d_0..d_N),
    ``preset`` and ``source`` ("engine" or "audit")."""

    sweeps: pd.DataFrame
    blocks: pd.DataFrame = field(default_factory=pd.DataFrame)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> BCDConfig:
        return BCDConfig(**self.meta["config"])

    def theory_inputs(self) -> dict[str, Any]:
        """What the theory's constants need from a run: B (the largest running iterate bound), L0 = L̄(Q⁰),
        n and the widths — keyword arguments of :func:`theory.symbolic.numeric_constants`."""
        from verification.schema import BOUND_B, META_N_SAMPLES, META_WIDTHS, OBJECTIVE

        sw = self.sweeps
        widths = self.meta.get(META_WIDTHS)
        return {
            "B": float(sw[BOUND_B].max()) if BOUND_B in sw and len(sw) else None,
            "L0": float(sw[OBJECTIVE].iloc[0]) if OBJECTIVE in sw and len(sw) else None,
            "n": self.meta.get(META_N_SAMPLES),
            "widths": tuple(widths) if widths else None,
        }

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        write_table(directory / TRACE_SWEEPS, self.sweeps)
        write_table(directory / TRACE_BLOCKS, self.blocks)
        write_json(directory / TRACE_META, self.meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Trace:
        directory = Path(directory)
        if not (directory / TRACE_SWEEPS).is_file():
            raise ValueError(f"{str(directory)!r} holds no trace ({TRACE_SWEEPS} is missing)")
        blocks_path = directory / TRACE_BLOCKS
        blocks = pd.read_parquet(blocks_path) if blocks_path.is_file() else pd.DataFrame()
        meta_path = directory / TRACE_META
        meta = read_json(meta_path) if meta_path.is_file() else {}
        return cls(pd.read_parquet(directory / TRACE_SWEEPS), blocks, meta)
