# `make demo` and `make test` set everything up on a fresh machine and are quiet when there is
# nothing to do: the virtual environment is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first and pinned: pip takes the local CPU build of exactly this version.
TORCH := torch==2.13.0
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# pip's failure must fail make; the noise filter must not.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
QUIET := { grep -v '^WARNING: Location' || true; }

.PHONY: demo test test-slow format clean

demo: $(VENV)/.installed-run
	$(BIN)/polysemy demo

test: $(VENV)/.installed-test
	$(BIN)/ruff format --check --quiet src tests benchmarks
	$(BIN)/ruff check --quiet src tests benchmarks
	$(BIN)/mypy --no-error-summary
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

format: $(VENV)/.installed-test
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix --quiet src tests benchmarks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) $(TORCH) 2>&1 | $(QUIET)
	$(PIP) -e '.[hf,report,explore]' 2>&1 | $(QUIET)
	$(BIN)/python -c "import polysemy, torch; assert torch.__version__.startswith('2.13.0')"
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) $(TORCH) 2>&1 | $(QUIET)
	$(PIP) -e '.[test]' 2>&1 | $(QUIET)
	$(BIN)/python -c "import polysemy, torch, pytest; assert torch.__version__.startswith('2.13.0')"
	@touch $@ $(VENV)/.installed-run

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# Benchmark-only virtual environment with the peer SAE libraries (benchmarks/sae_throughput.py);
# they are never polysemy dependencies. torch is pinned through a constraint file so no peer
# can swap it for a multi-GB CUDA build.
BENCH_VENV := .venv-bench
.PHONY: bench-venv
bench-venv: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(TORCH) 2>&1 | $(QUIET)
	echo "$(TORCH)" > $(BENCH_VENV)/torch-pin.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c $(BENCH_VENV)/torch-pin.txt sae-lens eai-sparsify scikit-learn -e '.[hf]' 2>&1 | $(QUIET)
	$(BENCH_VENV)/bin/python -c "import sae_lens, sparsify, sklearn, polysemy"
	@touch $@
