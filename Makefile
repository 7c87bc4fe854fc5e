# runmesh developer entry points. Every target bootstraps what it needs on a fresh machine:
# uv (installed with pip when missing) and the workspace virtualenv (`uv sync`).

SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
VENV := .venv
PY := $(VENV)/bin/python
# CI passes UV_SYNC_FLAGS=--locked so a stale uv.lock fails instead of being rewritten.
UV_SYNC_FLAGS ?=

.PHONY: dev test test-fast lint format schemas bench bootstrap clean

$(VENV)/.synced: pyproject.toml uv.lock $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.5"
	$(UV) sync --compile-bytecode $(UV_SYNC_FLAGS)
	@touch $@

bootstrap: $(VENV)/.synced ## install uv and the workspace

dev: bootstrap ## start the embedded sandbox (broker, Postgres, S3) until Ctrl-C
	$(VENV)/bin/runmesh dev

# Two pytest workers, each with its own sandbox, a test file per worker at a time (module-scoped
# service workers stay shared): the suite mostly waits on brokers and processes, not on CPU.
PYTEST_PARALLEL := -n 2 --dist loadfile

# The slowest tests are listed at the end: the suite must stay under 15 minutes in CI.
test: bootstrap ## the whole suite, against real broker, Postgres and S3 servers
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) --durations=15

test-fast: bootstrap ## the suite without tests marked slow
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) -m "not slow"

lint: bootstrap ## ruff (lint + format check), mypy, stale generated docs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m tools.schemas --check docs

format: bootstrap
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

schemas: bootstrap ## regenerate docs/schemas/*.json, docs/asyncapi.yaml and docs/events.md from runmesh.core.events (tools/schemas)
	$(PY) -m tools.schemas docs

bench: bootstrap ## every benchmark; each prints a JSON line with its ratio to a same-run baseline
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
