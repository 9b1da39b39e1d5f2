# artifactapi: `make run` serves the embedded shape; `make test` runs the whole suite.
# Both create the virtualenv and install pinned dependencies first. `make lint` runs ruff, the
# import contracts in pyproject.toml and mypy --strict; `make test` fails under 90% coverage.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MUTATE_STAMP := $(VENV)/.mutate-stamp
# Clients the tests drive beside those in the venv: pnpm and yarn, pinned in
# tests/clients/package-lock.json; twine 6.1, the last twine whose --skip-existing works
# against an index other than pypi.org, its dependencies pinned by the lock.
NODE_DIR := $(VENV)/node
NODE_STAMP := $(NODE_DIR)/.installed-stamp
TWINE6 := $(VENV)/twine6
TWINE6_STAMP := $(TWINE6)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install clients run test lint format bench mutate clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

$(NODE_STAMP): tests/clients/package.json tests/clients/package-lock.json
	mkdir -p $(NODE_DIR)
	cp tests/clients/package.json tests/clients/package-lock.json $(NODE_DIR)/
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(TWINE6_STAMP): requirements.lock
	$(PYTHON) -m venv $(TWINE6)
	grep -v '^twine==' requirements.lock > $(TWINE6)/constraints.txt
	$(TWINE6)/bin/pip install --quiet --disable-pip-version-check -c $(TWINE6)/constraints.txt twine==6.1.0
	touch $(TWINE6_STAMP)

install: $(STAMP)

clients: $(NODE_STAMP) $(TWINE6_STAMP)

run: install
	$(BIN)/artifactapi serve

test: install clients
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
