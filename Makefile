PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FRAMEWORKS := $(VENV)/.installed-frameworks
CHROMIUM := /usr/bin/chromium

.PHONY: install frameworks demo test lint bench bench-peers chaos keepsake clean

# Idempotent: reinstalls only when pyproject.toml changes.
install: $(STAMP)

# The browser tests drive Debian's chromium (never `playwright install`: no browser downloads).
$(CHROMIUM):
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot,dataframe]'
	touch $(STAMP)

# Lightning, Transformers and Keras for the integration tests and benchmarks (not the demo).
# The extras pin torch==2.13.0, the CPU wheel on these machines.
frameworks: $(FRAMEWORKS) $(CHROMIUM)

$(FRAMEWORKS): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,plot,dataframe,lightning,transformers,keras,distributed]'
	touch $(FRAMEWORKS)

demo: install
	cd examples/demo && ../../$(BIN)/python train.py
	cd examples/demo && ../../$(BIN)/replicate ls
	cd examples/demo && ../../$(BIN)/replicate show "$$(../../$(BIN)/replicate ls -q | tail -n 1)"
	@echo
	@echo "To look at it in a browser: cd examples/demo && ../../$(BIN)/replicate ui --open"

lint: frameworks
	$(BIN)/ruff format --check replicate tests benchmarks examples
	$(BIN)/ruff check replicate tests benchmarks examples
	$(BIN)/mypy

# Two workers: most tests wait on subprocesses and servers, so the suite takes about 60% of
# its one-process time here. PYTEST_ARGS= runs it in one process.
PYTEST_ARGS ?= -n 2
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# BENCH_ARGS=--quick for the short run (under 10 minutes here), --big for 1 GiB / 2 GiB sizes.
BENCH_ARGS ?=
bench: frameworks
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Other tools measured side by side with replicate, each in a venv of its own (none of them is
# a dependency of the project): Keepsake 0.4.2 (needs protobuf<4), MLflow, W&B, tarfile+boto3.
PEERS := .venv-peers
PEER_PACKAGES_keepsake := keepsake==0.4.2 'protobuf<4' boto3
PEER_PACKAGES_mlflow := mlflow-skinny boto3
PEER_PACKAGES_wandb := wandb
PEER_PACKAGES_boto3 := boto3

$(PEERS)/%/.installed:
	test -x $(PEERS)/$*/bin/python || $(PYTHON) -m venv $(PEERS)/$*
	$(PEERS)/$*/bin/python -m pip install --quiet $(PEER_PACKAGES_$*)
	touch $@

bench-peers: frameworks $(foreach p,keepsake mlflow wandb boto3,$(PEERS)/$(p)/.installed)
	$(BIN)/python -m benchmarks peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .mypy_cache .ruff_cache

# Opt-in, not in `make test`: the real Keepsake 0.4.2 (the peers' venv: it needs protobuf<4)
# reads an experiment that replicate resumed after a kill.
keepsake: install $(PEERS)/keepsake/.installed
	KEEPSAKE_PYTHON=$(CURDIR)/$(PEERS)/keepsake/bin/python $(BIN)/python -m pytest -m keepsake tests/test_keepsake_resumed.py

# The crash suite's long soak: CHAOS_TRIALS SIGKILLed training runs on disk and SeaweedFS.
CHAOS_TRIALS ?= 300
chaos: install
	cd tests && CHAOS_TRIALS=$(CHAOS_TRIALS) PYTHONPATH=. ../$(BIN)/python -m crash.chaos
