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

.PHONY: dev test test-slow test-all test-torch lint format schemas bench bootstrap clean

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

# The default run leaves out the tests marked slow (fault injection, process restarts, the
# browser): it must stay under 15 minutes on 2 cores. CI runs both. The slowest tests of each
# run are listed at its end.
test: bootstrap ## the suite but the tests marked slow, against real broker, Postgres and S3 servers
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) -m "not slow" --durations=15

test-slow: bootstrap ## the tests marked slow
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) -m slow --durations=15

test-all: bootstrap ## every test in one run
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) --durations=15

# torch is no dependency of any service (a plugin's own requirement): this target puts it into
# .venv with pip, which takes a wheel lying on the machine's disk where there is one
# (/opt/wheels here: the CPU build, 0.75 GB installed) and PyPI's otherwise (a CUDA build of
# several GB on Linux x86_64; TORCH_SPEC may name another build). `uv sync` removes it again.
TORCH_SPEC ?= torch==2.13.0
test-torch: bootstrap ## the PyTorch plugin's tests, with torch installed into .venv
	python3 -m pip --python $(VENV)/bin/python install --quiet "$(TORCH_SPEC)"
	$(PY) -c "import torch; print('torch', torch.__version__)"
	$(VENV)/bin/pytest tests/test_pytorch_train_plugin.py

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
