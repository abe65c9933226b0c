# Two commands on a fresh machine: `make serve` and `make test`. Both idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install migrate demo-user serve test lint typecheck pytest bench clean

# Reinstalls only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/batchin db upgrade

demo-user: migrate
	$(BIN)/batchin users demo

serve: demo-user
	$(BIN)/batchin serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check batchin tests bench
	$(BIN)/ruff format --check batchin tests bench

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	@for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
