#!/usr/bin/env bash
# The device check: everything this suite verifies only on a CUDA machine, as one script of at most 8 minutes.
#
#   bash benchmarks/device_check.sh [OUTDIR]        (OUTDIR defaults to $OUT, else ./out)
#   with the device tool, from the repository root:  command: bash benchmarks/device_check.sh
#                                                     carry: [".cache"]      timeout_s: 540
#
# The machine's own python3 (with its CUDA torch, pandas, pyarrow, sympy, matplotlib, hypothesis) runs the suite
# from the source tree; nothing is installed or fetched.  Every step writes its text log to OUTDIR, and the last one
# gathers them into OUTDIR/device_check.json (GPU, test counts, engine numbers and targets, verify verdicts).
# 1. the CUDA tests: tests/test_cuda.py (CPU and CUDA iterates, traces and verdicts agree: Algorithms 1, 2, 3,
#    prox-linear) and every test that takes the `device` fixture (tests/conftest.py) on its cuda parameter;
# 2. the sharded engine's NCCL path on one GPU (K = 1; K = 2 only where the machine has two GPUs);
# 3. the engine benchmark at full MNIST size (n = 60 000; 10×600 and 3×1500; float32 with TF32 off and on, float64)
#    against the GPU's own square-GEMM rate measured in the same run; targets: 10×600 float32 (TF32 off) ≤ 1.3× that
#    floor and ≤ 40 ms per sweep;
# 4. the GPU default job, shortened: bcd verify on the embedded CUDA config (full MNIST, 3×1500, float64), 10 sweeps.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-${OUT:-$PWD/out}}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step() { echo; echo "=== $1 ($(date +%T))"; echo "$1 $(date +%s)" >> "$OUT/steps.txt"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))" \
  | tee -a "$OUT/gpu.txt"

step "1. CUDA tests"
timeout 150 $PY -m pytest -q -p no:cacheprovider -k cuda tests/test_cuda.py tests/test_engine_descent.py \
  tests/test_verification_recorder.py tests/test_verification_checks.py 2>&1 | tee "$OUT/cuda_tests.txt"

step "2. sharded engine, NCCL"
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
KS=1; [ "$NGPU" -ge 2 ] && KS=1,2
timeout 90 $PY benchmarks/bench_sharded.py --ks "$KS" --device cuda --backend nccl --n 60000 --hidden 1500,1500 \
  --json "$OUT/sharded_nccl.json" 2>&1 | tee "$OUT/sharded_nccl.txt"

step "3. engine benchmark, CUDA, n = 60000"
timeout 150 $PY benchmarks/bench_engine.py --device cuda --n 60000 --nets 10x600,3x1500 --dtype float32 \
  --tf32 off,on --rounds 5 --json "$OUT/engine_cuda_fp32.json" 2>&1 | tee "$OUT/engine_cuda.txt"
timeout 90 $PY benchmarks/bench_engine.py --device cuda --n 60000 --nets 10x600,3x1500 --dtype float64 \
  --rounds 3 --json "$OUT/engine_cuda_fp64.json" 2>&1 | tee -a "$OUT/engine_cuda.txt"

step "4. the GPU default job (10 sweeps)"
timeout 150 $PY -m bcd verify --sweeps 10 --no-progress --figure-formats png --out "$OUT/verify-gpu" 2>&1 \
  | tee "$OUT/verify_gpu.txt"
cp "$OUT/verify-gpu/verdicts.json" "$OUT/verify_gpu_verdicts.json" 2>/dev/null
rm -rf "$OUT/verify-gpu"  # keep the text and the verdicts only

step "summary"
$PY - "$OUT" <<'EOF'
import json, re, sys
from pathlib import Path

out = Path(sys.argv[1])


def read(name):
    p = out / name
    return p.read_text() if p.exists() else ""


def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None


tests = re.findall(r"(\d+) (passed|failed|skipped|error)", read("cuda_tests.txt"))
engine = [r for f in ("engine_cuda_fp32.json", "engine_cuda_fp64.json") if load(f) for r in load(f)["results"]]
targets = [dict(network=r["network"], dtype=r["dtype"], tf32=r["tf32"], sweep_ms=1e3 * r["sweep_s"], ratio=r["ratio"],
                ratio_ok=r["ratio"] <= 1.3, sweep_ok=1e3 * r["sweep_s"] <= 40.0)
           for r in engine if r["network"] == "10x600" and r["dtype"] == "float32" and not r["tf32"]]
steps = [line.rsplit(" ", 1) for line in read("steps.txt").splitlines()]
summary = {
    "gpu": read("gpu.txt").strip().splitlines(),
    "cuda_tests": {kind: int(n) for n, kind in tests},
    "engine": engine,
    "targets_10x600_fp32": targets,
    "sharded_nccl": load("sharded_nccl.json"),
    "verify_gpu_verdicts": load("verify_gpu_verdicts.json"),
    "step_seconds": {a[0]: int(b[1]) - int(a[1]) for a, b in zip(steps, steps[1:])},
}
(out / "device_check.json").write_text(json.dumps(summary, indent=2, default=str))
print(json.dumps({k: summary[k] for k in ("cuda_tests", "targets_10x600_fp32", "step_seconds")}, indent=2))
EOF
echo; echo "=== done ($(date +%T))"
