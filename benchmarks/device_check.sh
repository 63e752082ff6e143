#!/usr/bin/env bash
# The device check: everything this suite verifies only on a CUDA machine, as one script of about 8 minutes.
#
#   run it with the device tool from the repository root, carrying the MNIST cache:
#     command: bash benchmarks/device_check.sh      carry: [".cache"]      timeout_s: 590
#
# The machine's own python3 (with its CUDA torch, pandas, pyarrow, sympy, matplotlib, hypothesis) runs the suite
# from the source tree; nothing is installed or fetched.  Results go to $OUT (or ./out when $OUT is unset).
# 1. tests/test_cuda.py: CPU and CUDA iterates, traces and verdicts agree (Algorithms 1, 2, 3, prox-linear);
# 2. the sharded engine's NCCL path on one GPU (K = 1; K = 2 only where the machine has two GPUs);
# 3. the engine benchmark on CUDA (float32, 10×600 and 3×1500 at n = 10 000);
# 4. the GPU default job, shortened: bcd verify on the embedded CUDA config (full MNIST, 3×1500, float64), 10 sweeps.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step() { echo; echo "=== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))" \
  | tee -a "$OUT/gpu.txt"

step "1. CUDA tests"
timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"

step "2. sharded engine, NCCL"
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
KS=1; [ "$NGPU" -ge 2 ] && KS=1,2
timeout 120 $PY benchmarks/bench_sharded.py --ks "$KS" --device cuda --backend nccl --n 60000 --hidden 1500,1500 \
  --json "$OUT/sharded_nccl.json" 2>&1 | tee "$OUT/sharded_nccl.txt"

step "3. engine benchmark, CUDA float32"
timeout 150 $PY benchmarks/bench_engine.py --device cuda --dtype float32 --json "$OUT/engine_cuda.json" 2>&1 \
  | tee "$OUT/engine_cuda.txt"

step "4. the GPU default job (10 sweeps)"
timeout 180 $PY -m bcd verify --sweeps 10 --no-progress --figure-formats png --out "$OUT/verify-gpu" 2>&1 \
  | tee "$OUT/verify_gpu.txt"
rm -rf "$OUT/verify-gpu/figures" "$OUT/verify-gpu"/*.parquet "$OUT/verify-gpu"/*.safetensors  # keep the text only
echo; echo "=== done ($(date +%T))"
