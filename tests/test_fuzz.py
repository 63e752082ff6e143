"""Fuzzing the loaders through the command line (hypothesis): config TOML, user ``.npz`` data, saved traces and
audit folders.  Whatever the input, ``bcd`` answers with a documented exit code (0, 1, 2 or 3) and at most one line
on stderr — never a traceback — and writes nothing outside the directory it was given."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcd.cli import main

FUZZ = settings(max_examples=int(os.environ.get("BCD_FUZZ_EXAMPLES", "25")),  # measured clean at 200 each
                deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SMALL = ["--dataset", "mixture", "--n-train", "30", "--n-test", "10", "--hidden", "4", "--sweeps", "2",
         "--no-progress"]


def _run(argv: list[str], root: Path) -> tuple[int, str]:
    """Run ``bcd argv``; check the exit code, the one-line error and that nothing appeared beside ``root``."""
    before = sorted(p.name for p in root.parent.iterdir())
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    text = err.getvalue()
    assert code in (0, 1, 2, 3), (code, text)
    assert "Traceback" not in text and len(text.strip().splitlines()) <= 1, text
    assert "internal error" not in text, text  # an unforeseen exception is a bug even when it is one line
    assert sorted(p.name for p in root.parent.iterdir()) == before, "a file was written outside the directory"
    return code, text


@pytest.fixture(scope="module")
def saved_run():
    root = Path(tempfile.mkdtemp(prefix="bcd-fuzz-"))
    assert main(["record", *SMALL, "--preset", "full", "--out", str(root / "run")]) == 0
    yield root / "run"
    shutil.rmtree(root, ignore_errors=True)


VALUES = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.text(max_size=8), st.lists(st.integers(-5, 5000), max_size=4))
KEYS = st.sampled_from(["dataset", "n_train", "hidden", "gamma", "alpha", "lam", "activation", "sweeps", "dtype",
                        "splitting", "skip", "reduction", "vn_update", "seed", "bogus", "device"])


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


@FUZZ
@given(raw=st.text(max_size=200),
       tables=st.dictionaries(st.sampled_from(["data", "bcd", "extra"]), st.dictionaries(KEYS, VALUES, max_size=4),
                              max_size=3))
def test_fuzzed_config_files(tmp_path, raw, tables):
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    (d / "raw.toml").write_text(raw)
    _run(["theory", str(d / "raw.toml")], d)
    text = "\n".join(f"[{t}]\n" + "\n".join(f"{k} = {_toml_value(v)}" for k, v in kv.items())
                     for t, kv in tables.items())
    (d / "cfg.toml").write_text(text)
    _run(["theory", str(d / "cfg.toml")], d)


ARRAYS = st.one_of(
    st.builds(lambda r, c, s: np.random.default_rng(s).standard_normal((r, c)), st.integers(0, 12), st.integers(0, 4),
              st.integers(0, 9)),
    st.builds(lambda r, s: np.random.default_rng(s).integers(-3, 12, r), st.integers(0, 12), st.integers(0, 9)),
    st.builds(lambda r: np.full(r, np.nan), st.integers(0, 6)),
    st.builds(lambda r: np.array(["a"] * r), st.integers(0, 3)),
    st.just(np.zeros(())),
)


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["X_train", "y_train", "X_test", "y_test", "other"]), ARRAYS,
                              max_size=4),
       garbage=st.one_of(st.none(), st.binary(max_size=64)))
def test_fuzzed_npz_data(tmp_path, arrays, garbage):
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    path = d / "data.npz"
    if garbage is not None:
        path.write_bytes(garbage)
    else:
        np.savez(path, **arrays)
    _run(["train", "--dataset", "npz", "--data-path", str(path), "--n-train", "5", "--hidden", "3", "--sweeps", "1",
          "--no-progress", "--out", str(d / "run")], d)


@FUZZ
@given(target=st.sampled_from(["trace_sweeps.parquet", "trace_blocks.parquet", "trace_meta.json", "config.json"]),
       how=st.sampled_from(["bytes", "drop_column", "scale_value", "nan_value", "empty"]),
       seed=st.integers(0, 10_000), blob=st.binary(max_size=40))
def test_fuzzed_saved_traces(tmp_path, saved_run, target, how, seed, blob):
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    run = d / "run"
    shutil.copytree(saved_run, run)
    path = run / target
    rng = np.random.default_rng(seed)
    if how == "bytes" or target.endswith(".json"):
        path.write_bytes(blob if how != "empty" else b"")
    else:
        df = pd.read_parquet(path)
        if how == "drop_column" and len(df.columns):
            df = df.drop(columns=[df.columns[rng.integers(len(df.columns))]])
        elif how in ("scale_value", "nan_value") and len(df):
            num = [c for c in df.columns if df[c].dtype.kind == "f"]
            if num:
                c, r = num[rng.integers(len(num))], int(rng.integers(len(df)))
                df.loc[r, c] = np.nan if how == "nan_value" else df.loc[r, c] * 3 + 1
        elif how == "empty":
            df = df.iloc[0:0]
        df.to_parquet(path, index=False)
    _run(["verify", str(run), "--figure-formats", "png"], d)


@FUZZ
@given(files=st.dictionaries(st.sampled_from(["iter_0.npz", "iter_1.npz", "iter_2.npz", "data.npz", "audit.toml",
                                              "x_0.safetensors", "meta.npz", "iter_3.npz"]),
                             st.one_of(st.binary(max_size=48), ARRAYS), max_size=5))
def test_fuzzed_audit_folders(tmp_path, files):
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    folder = d / "iters"
    folder.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        elif name.endswith(".npz"):
            np.savez(folder / name, W1=content, V1=content, X=content)
        else:
            (folder / name).write_text(str(content.tolist())[:200])
    _run(["audit", str(folder), "--gamma", "1", "--alpha", "1", "--out", str(folder / "out")], d)
