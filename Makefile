# Two commands on a fresh machine: `make serve` and `make test`.
# Each creates or updates the virtualenv it needs in .venv.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test lint bench bench-quick bench-design clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-base

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-base

serve: $(VENV)/.installed-base
	@echo "MCP server (HTTP+SSE) at http://$(HOST):$(PORT)/sse"
	$(BIN)/hypercorn --worker-class trio --bind $(HOST):$(PORT) examples.echo_server:app

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(wildcard trio_mcp_sse tests examples benchmarks)
	$(BIN)/mypy

# Full comparison with the official SDK, HTTP+SSE and Streamable HTTP (about 15
# minutes on 2 cores): prints one table per transport, writes
# benchmarks/results/full.{json,md} and docs/performance.png (HTTP+SSE servers).
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

# Same tables with shorter windows and 1,000 idle sessions (about 3 minutes).
bench-quick: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run --quick

# Design comparison: ours vs plain Quart-Trio routes vs a bare ASGI echo.
bench-design: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run --design

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
