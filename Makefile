# Set-up commands that work on a fresh machine (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint localnet bench-tps bench-crash bench-24 clean

$(STAMP): pyproject.toml node/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e node/ -e '.[dev]'
	touch $(STAMP)

## the whole suite: lint, types, unit and integration tests (slow ones included)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

## unit tests only (seconds)
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

## start a local 4-delegate network and watch it finalize blocks
localnet: $(STAMP)
	$(BIN)/iotex-ops localnet --delegates 4 --seconds 30

bench-tps: $(STAMP)
	$(BIN)/python bench/tps.py

bench-crash: $(STAMP)
	$(BIN)/python bench/crash_consistency.py

bench-24: $(STAMP)
	$(BIN)/python bench/delegates24.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
