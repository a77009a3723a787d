# The README's quick start: `make run` and `make test`, each from a fresh clone.
# Both set up .venv from the pinned lock (a no-op when nothing changed).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= $(shell nproc)

.PHONY: setup run test lint bench clean-results

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml scripts/patch_dvc.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/patch_dvc.py   # DVC's unreleased fix for `dvc repro --dry` on a fresh clone
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	@$(BIN)/python -m llmqfl.stages.where --config config/config.yaml

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/snakemake --lint

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done
