# The README's quick start: `make run` and `make test`, each from a fresh clone.
# Both set up .venv from the pinned lock (a no-op when nothing changed).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= $(shell nproc)

.PHONY: setup run test test-fast lint bench clean-results

setup: $(STAMP) .dvc/plots.html

# `dvc plots diff`'s page with vega inlined (DVC's own loads it from a CDN): generated, not committed
.dvc/plots.html: $(STAMP) src/llmqfl/dvc_plots.py
	$(BIN)/python -m llmqfl.dvc_plots

$(STAMP): requirements.lock pyproject.toml scripts/patch_dvc.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/patch_dvc.py   # DVC's unreleased fix for `dvc repro --dry` on a fresh clone
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	@$(BIN)/python -m llmqfl.stages.where --config config/config.yaml

# Every tier: unit and integration spread over the cores (pytest-xdist, one module per worker so a
# module's fixtures are built once), then e2e over the cores too: the tests that read the shared tiny
# pipeline run sit in one xdist group (conftest.py), so it is built once; the rest (Flower sites, DVC
# flows, kill tests) mostly wait on subprocesses and overlap well.
test: $(STAMP)
	@status=0; \
	$(BIN)/pytest -q -n $(CORES) --dist loadscope tests/unit tests/integration || status=$$?; \
	$(BIN)/pytest -q -n $(CORES) --dist loadgroup tests/e2e || status=$$?; \
	exit $$status

# The unit tier alone (functions in process), under two minutes.
test-fast: $(STAMP)
	$(BIN)/pytest -q -n $(CORES) --dist loadscope tests/unit

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/snakemake --lint

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done
