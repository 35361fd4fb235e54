# bluebutton-ingest: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration services schemas bench bench-more chaos audit clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@# CMS's SDK (a test dependency) pins certifi==2025.1.31 exactly; installed with its
	@# dependencies it would hold the service's CA bundle (constraints.txt, the image) back.
	$(BIN)/pip install -q --no-deps cms-bluebutton-sdk==1.1.0
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

# Benchmarks print figures (README quotes them) and draw charts into bench/ (the README shows
# them); tests never check wall-clock time. Each run prints its time, and the total at the end:
# `make bench` what issue 16's "Done when" names (about 20 minutes), `make bench-more` the rest
# (replicas started before the work, the lanes, the connect storm).
# They own their database and Redis database 13, and empty both first.
BENCH_ENV = DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bbingest_bench \
	REDIS_URL=redis://127.0.0.1:6379/13 TOKEN_ENCRYPTION_KEY=$$(cat .demo/token.key) \
	LOG_FORMAT=console

bench: $(STAMP) services .demo/token.key
	$(BENCH_ENV) $(BIN)/python -m tests.bench

bench-more: $(STAMP) services .demo/token.key
	$(BENCH_ENV) $(BIN)/python -m tests.bench --more

# Crash and fault scenarios on 50 beneficiaries, and their table (README quotes it); exits 1
# if anything is lost, duplicated or leaked. Own database and Redis database 12, emptied
# first; the restart scenarios start private Redis and Postgres servers of their own.
CHAOS_ENV = DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bbingest_chaos \
	REDIS_URL=redis://127.0.0.1:6379/12

chaos: $(STAMP) services
	$(CHAOS_ENV) $(BIN)/python -m tests.chaos

# Known vulnerabilities in the pinned set (constraints.txt), from the PyPI advisory database
# (pip-audit's default source). Fails, loudly, when the advisories cannot be fetched: an audit
# that could not look is never a pass. Offline (as on the development machines, which reach
# only the package registries' download paths) it therefore fails; run it where the advisory
# source is reachable (CI with internet, a release machine). Not part of `make test`.
# --strict: a package whose advisories could not be fetched fails the audit (without it,
# pip-audit skips the package and may exit 0 having checked nothing).
audit: $(STAMP)
	@$(BIN)/pip-audit --requirement constraints.txt --no-deps --disable-pip --strict \
		--progress-spinner off \
	|| { echo "make audit: FAILED: a known vulnerability, or the advisory database could not" \
		"be reached (then nothing was audited; see above)" >&2; exit 1; }

schemas: $(STAMP)
	$(BIN)/python -m worker.jobs.schemas schemas/jobs
	$(BIN)/python -m worker.events.schemas schemas/events

clean:
	rm -rf $(VENV) .demo .bench .chaos .pytest_cache .mypy_cache .ruff_cache
