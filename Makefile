# Set-up and everyday commands. `make run` and `make test` work on a fresh Debian machine with
# Python 3.11 and root: they create the virtual environment and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLES := manifests/examples
PORT ?= 9090

.PHONY: run test lint fmt check bench system-deps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "python3-venv is missing: installing it with apt-get"; \
		apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server is missing: installing Debian's package"; \
		apt-get update -qq && apt-get install -y -qq redis-server; }
	@command -v promtool >/dev/null 2>&1 || { \
		echo "promtool is missing: installing Debian's prometheus package"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }

run: $(STAMP)
	$(BIN)/cronwf lint $(EXAMPLES)
	@echo "cronwf: serving $(EXAMPLES); metrics on http://127.0.0.1:$(PORT)/metrics (this" \
		"machine only: --host 127.0.0.1)," \
		"health on /healthz and /readyz, run logs in .state/runs; Ctrl-C stops"
	$(BIN)/cronwf serve --manifests $(EXAMPLES) --state-dir .state --host 127.0.0.1 --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check scheduler policies tests bench
	$(BIN)/ruff format --check scheduler policies tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff check --fix scheduler policies tests bench
	$(BIN)/ruff format scheduler policies tests bench

# End-to-end tests start real processes: they run last, after everything else passed.
test: $(STAMP) system-deps lint
	$(BIN)/pytest -m "not e2e"
	$(BIN)/pytest -m e2e

# The serve benchmark starts its own redis-server and takes about eight minutes.
bench: $(STAMP) system-deps
	$(BIN)/python -m bench.schedule_bench
	$(BIN)/python -m bench.simulate_bench
	$(BIN)/python -m bench.serve_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
