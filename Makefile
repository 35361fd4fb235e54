# bluebutton-ingest: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration services schemas bench chaos clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

services:
	@scripts/services.sh bbingest bbingest_test bbingest_bench bbingest_chaos

.demo/token.key: | $(STAMP)
	@mkdir -p .demo && $(BIN)/bbingest keygen > $@ && chmod 600 $@

demo: $(STAMP) services .demo/token.key
	TOKEN_ENCRYPTION_KEY=$$(cat .demo/token.key) LOG_FORMAT=console $(BIN)/bbingest demo

lint: $(STAMP)
	$(BIN)/ruff check worker tests
	$(BIN)/ruff format --check worker tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck services
	$(BIN)/pytest

# Benchmarks print figures (README quotes them); tests never check wall-clock time.
# They own their database and Redis database 13, and empty both first.
BENCH_ENV = DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bbingest_bench \
	REDIS_URL=redis://127.0.0.1:6379/13 TOKEN_ENCRYPTION_KEY=$$(cat .demo/token.key) \
	LOG_FORMAT=console

bench: $(STAMP) services .demo/token.key
	$(BENCH_ENV) $(BIN)/python -m tests.bench.budget
	$(BENCH_ENV) $(BIN)/python -m tests.bench.lanes
	$(BENCH_ENV) $(BIN)/python -m tests.bench.store

# Crash and fault scenarios on 50 beneficiaries, and their table (README quotes it); exits 1
# if anything is lost, duplicated or leaked. Own database and Redis database 12, emptied
# first; the restart scenarios start private Redis and Postgres servers of their own.
CHAOS_ENV = DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bbingest_chaos \
	REDIS_URL=redis://127.0.0.1:6379/12

chaos: $(STAMP) services
	$(CHAOS_ENV) $(BIN)/python -m tests.chaos

schemas: $(STAMP)
	$(BIN)/python -m worker.jobs.schemas schemas/jobs

clean:
	rm -rf $(VENV) .demo .bench .chaos .pytest_cache .mypy_cache .ruff_cache
