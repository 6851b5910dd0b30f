# Interlend: the two README commands, and a few helpers.
#   make run   - virtual environment, install, demo data if absent, daemon in the foreground
#   make test  - virtual environment with the test extras, the linters (make lint), the whole suite
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= config/interlend.toml
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
STAMP_TEST = $(VENV)/.installed-test

.PHONY: run test lint venv check-config demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/interlend check-config -c $(CONFIG)
	$(BIN)/interlend demo -c $(CONFIG) --if-absent
	exec $(BIN)/interlend serve -c $(CONFIG)

# ruff and mypy (with mypy-zope) as configured in pyproject.toml, both reported before failing;
# CI runs them through `make test`
lint: $(STAMP_TEST)
	@status=0; \
	$(BIN)/python -m ruff check . || status=1; \
	$(BIN)/python -m mypy || status=1; \
	exit $$status

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check-config: $(STAMP)
	$(BIN)/interlend check-config -c $(CONFIG)

demo: $(STAMP)
	$(BIN)/interlend demo -c $(CONFIG)

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache
