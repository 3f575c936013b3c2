# The two commands that matter: `make run` and `make test`. Both work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
GATEWAYS ?= 1
STAMP := $(VENV)/.installed
# The directories `make test` type-checks with mypy ([tool.mypy] in pyproject.toml). Add one here
# once `mypy <dir>` passes; the goal is every first-party package.
TYPED ?= models actors services gateway store payments cluster web hyperlocal_client

.PHONY: run test unit lint typecheck fmt bench clean-data screenshots

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A development stack: the sandbox payment provider (test cards) is on here and nowhere by default.
run: $(STAMP)
	HL_SANDBOX_PAYMENTS=$${HL_SANDBOX_PAYMENTS:-1} $(BIN)/hyperlocal up --port $(PORT) --gateways $(GATEWAYS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy $(TYPED)

fmt: $(STAMP)
	$(BIN)/ruff format .

# A short smoke run of the feed fanout benchmark (docs/benchmarks.md has the full commands).
bench: $(STAMP)
	$(BIN)/python -m bench.feed_fanout --quick

# The screenshots of docs/screenshots/ (docs/web.md): a private deployment, seeded, in chromium.
screenshots: $(STAMP)
	$(BIN)/python -m tests.browser.screenshots docs/screenshots

clean-data:
	rm -rf .hyperlocal
