# Every target creates (or reuses) a local virtual environment and installs what it needs,
# so `make demo` and `make test` work on a fresh machine with only python3 available.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: help venv install demo test test-slow test-fuzz test-all ci bench lint format docs clean

help:
	@echo "make demo   - install and run the whole pipeline on the built-in phantom"
	@echo "make test   - install and run the test suite (slow cases skipped) and the doctests"
	@echo "make test-slow - the slow cases only (detector training, registration accuracy)"
	@echo "make test-fuzz - the long fuzz runs (property cases, kill points; reader mutations for FASTCT_FUZZ_SECONDS, default 200)"
	@echo "make ci     - what CI runs (.ci/run): test, lint, docs, test-slow, test-fuzz"
	@echo "make bench  - install and run the benchmarks, writing docs/benchmarks/*.md"
	@echo "make docs   - build the Sphinx documentation into docs/_build/html"
	@echo "make lint   - ruff check and format check"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# One stamp per extra set, rebuilt when pyproject.toml changes.
$(VENV)/.stamp-%: pyproject.toml | $(PY)
	$(PIP) install -e ".[$*]"
	@touch $@

venv install: $(VENV)/.stamp-io,report

demo: $(VENV)/.stamp-io,report
	$(VENV)/bin/fastct demo --out demo-out

test: $(VENV)/.stamp-test
	$(PY) -m pytest -m "not slow and not fuzz" -q --durations=30 tests fastct --doctest-modules

test-slow: $(VENV)/.stamp-test
	$(PY) -m pytest -m slow -q --durations=10 tests

# The long fuzz runs: property cases, kill points, and FASTCT_FUZZ_SECONDS (default 200) of
# reader mutations; counts printed at the end.
test-fuzz: $(VENV)/.stamp-test
	$(PY) -m pytest -m fuzz -q -s -p no:cacheprovider --durations=10 tests

test-all: $(VENV)/.stamp-test
	$(PY) -m pytest -q tests fastct --doctest-modules

ci:
	.ci/run

bench: $(VENV)/.stamp-bench $(VENV)/.stamp-test
	$(PY) -m pytest benchmarks -q -p no:cacheprovider --benchmark-columns=min,mean,max,rounds
	$(PY) -m pytest -m slow -q

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check fastct tests benchmarks
	$(VENV)/bin/ruff format --check fastct tests benchmarks

format: $(VENV)/.stamp-test
	$(VENV)/bin/ruff format fastct tests benchmarks
	$(VENV)/bin/ruff check --fix fastct tests benchmarks

# Warnings are errors (-W); --keep-going reports all of them before failing.
docs: $(VENV)/.stamp-docs
	$(PY) docs/_ext/cli_reference.py
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info docs/_build .pytest_cache .benchmarks
