# Two commands for a fresh machine:
#   make lab    install nbremind and everything its notebooks use into .venv (extra lab),
#               and open JupyterLab on notebooks/
#   make test   install nbremind with its test tools into .venv and run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lab test install install-test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# This venv's JupyterLab saves widget state with a notebook, so a live panel saved while its
# kernel runs reopens as its last rows (a default: Settings -> Widgets turns it off).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d/nbremind.json

$(LAB_SETTINGS): etc/jupyterlab/overrides.d/nbremind.json $(BIN)/python
	mkdir -p $(dir $@)
	cp $< $@

install: $(BIN)/python $(LAB_SETTINGS)
	$(BIN)/python -m pip install -q -e ".[lab]"

install-test: $(BIN)/python $(LAB_SETTINGS)
	$(BIN)/python -m pip install -q -e ".[test,lab]"

# (--allow-root only when run as root, e.g. in a container)
lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

test: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $${TMPDIR:-/tmp}/nbremind-site
	$(BIN)/python -m pytest $(PYTEST_ARGS)
