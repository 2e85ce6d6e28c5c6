PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

# Idempotent: reinstalls only when pyproject.toml changes.
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot,dataframe,distributed]'
	touch $(STAMP)

demo: install
	cd examples/demo && ../../$(BIN)/python train.py
	cd examples/demo && ../../$(BIN)/replicate ls
	cd examples/demo && ../../$(BIN)/replicate show "$$(../../$(BIN)/replicate ls -q | tail -n 1)"

lint: install
	$(BIN)/ruff format --check replicate tests benchmarks examples
	$(BIN)/ruff check replicate tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
