# Developer and CI tasks for mcpwall. `make install` once, then `make test` runs the whole suite.
# Everything runs inside the clone: the virtualenv in .venv, tool caches under .cache/.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
LOCK := requirements/dev.lock
SCHEMA := docs/config.schema.json

export UV_CACHE_DIR ?= $(CURDIR)/.cache/uv
export PIP_CACHE_DIR ?= $(CURDIR)/.cache/pip

.PHONY: help install install-py lock test lint typecheck schema schema-check bench demo

help:
	@echo "make install       create $(VENV) ($(PYTHON)), install $(LOCK) + mcpwall, the Node test peers, and"
	@echo "                   make sure Redis and PostgreSQL answer on loopback (installed if absent)"
	@echo "make test          run the whole test suite"
	@echo "make lint          ruff check src tests"
	@echo "make typecheck     mypy (strict, config in pyproject.toml)"
	@echo "make schema        regenerate $(SCHEMA) from the config model"
	@echo "make schema-check  fail if $(SCHEMA) is stale"
	@echo "make lock          re-resolve $(LOCK) from pyproject.toml (after changing dependencies)"
	@echo "make bench         run the benchmarks (python -m bench)"
	@echo "make demo          run the gateway on embedded defaults in front of the demo upstream"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(UV): $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Exact pins from the lock, then mcpwall itself without re-resolving anything.
install-py: $(UV)
	@[[ "$$($(UV) --version)" == "uv $(UV_VERSION)"* ]] || \
		$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) pip install --quiet --python $(PY) -r $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .

install: install-py
	scripts/test-deps.sh >/dev/null
	scripts/services.sh >/dev/null

lock: $(UV)
	$(UV) pip compile --quiet pyproject.toml --extra dev --extra bench --extra otel --extra postgres --extra redis \
		--python-version 3.11 --universal \
		--generate-hashes --output-file $(LOCK)

test: install
	$(PY) -m pytest -p no:cacheprovider

lint:
	$(PY) -m ruff check src tests

typecheck:
	$(PY) -m mypy

schema:
	$(PY) -m mcpwall.config.schema --write $(SCHEMA)

schema-check:
	$(PY) -m mcpwall.config.schema --check $(SCHEMA)

bench:
	$(PY) -m bench

demo: install-py
	$(PY) -m mcpwall demo
