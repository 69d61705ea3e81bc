# qkdnet — two commands do everything on a fresh machine:
#   make demo   virtual environment, install, run the main job on the embedded defaults
#   make test   install what the tests need (incl. PostgreSQL, Chromium), run the whole suite

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEMO_OUT ?= demo-out

.PHONY: demo test install install-test system-deps lint bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps

# PostgreSQL (for the real-server store tests) and Chromium (dashboard tests) come from
# Debian's packages; the tests start and stop their own server instances.
system-deps:
	@bash scripts/system-deps.sh

demo: install
	$(VENV)/bin/qkdnet demo --out $(DEMO_OUT)

test: install-test
	$(PY) -m pytest -q tests

lint:
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: install-test
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache $(DEMO_OUT)
