# The README's two quick-start commands live here: `make demo` and `make test`.
# Each does all of its own set-up (venv, install, local services) on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/footfall demo

test: $(STAMP)
	$(BIN)/footfall services install
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

services: $(STAMP)
	$(BIN)/footfall services up

clean:
	-$(BIN)/footfall services down
	rm -rf $(VENV) .footfall .mypy_cache .ruff_cache .pytest_cache .hypothesis
