# artifactapi: `make run` serves the embedded shape; `make test` runs the whole suite.
# Both create the virtualenv and install pinned dependencies first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/artifactapi serve

test: install
	$(BIN)/coverage erase
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check app pipelines collector tests bench
	$(BIN)/ruff format --check app pipelines collector tests bench

format: install
	$(BIN)/ruff format app pipelines collector tests bench
	$(BIN)/ruff check --fix app pipelines collector tests bench

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov .pytest_cache
