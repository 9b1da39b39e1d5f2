# artifactapi: `make run` serves the embedded shape; `make test` runs the whole suite.
# Both create the virtualenv and install pinned dependencies first. `make lint` runs ruff, the
# import contracts in pyproject.toml and mypy --strict; `make test` fails under 90% coverage.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MUTATE_STAMP := $(VENV)/.mutate-stamp
PYTEST_ARGS ?=

.PHONY: install run test lint format bench mutate clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/artifactapi serve

test: install
	$(BIN)/coverage erase
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check app pipelines collector tests bench
	$(BIN)/ruff format --check app pipelines collector tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy --strict app pipelines collector

format: install
	$(BIN)/ruff format app pipelines collector tests bench
	$(BIN)/ruff check --fix app pipelines collector tests bench

bench: install
	$(BIN)/python -m bench

$(MUTATE_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test,mutate]'
	touch $(MUTATE_STAMP)

# Mutation testing of the core modules, each against its own tests (slow; not in CI):
# prints each one's kill score. MUTATE_MODULES="pipelines/ app/config.py" picks some,
# MUTATE_JOBS sets how many mutants run at once (default: one per core).
mutate: $(MUTATE_STAMP)
	$(BIN)/python -m tests.mutate $(MUTATE_MODULES)

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov .pytest_cache .mutate .venv-bench bench/peers/verdaccio/node_modules
