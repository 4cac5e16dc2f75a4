# Two entry points for a fresh machine (see README): `make run` and `make test`.
# Each builds its own virtualenv in .venv from pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
# Strict editable mode links every file into build/, so mypy and tools see the
# installed `p2pos.*` names while edits in the work tree take effect at once.
EDITABLE := --config-settings editable_mode=strict

.PHONY: run test lint typecheck unit conformance vectors bench install clean compiled test-compiled

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=69" wheel
	$(PY) -m pip install -q -e '.[test]' $(EDITABLE)
	touch $(STAMP)

# Re-link on every run so that files added since the last install are importable.
install: $(STAMP)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . $(EDITABLE)

run: install
	$(VENV)/bin/p2pos demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy -p p2pos.proto -p p2pos.transports -p p2pos.adapters -p p2pos.conformance
	$(VENV)/bin/mypy tests bench spec/vectors tools

vectors: install
	$(PY) spec/vectors/generate.py --check

unit: install
	$(VENV)/bin/pytest -q

conformance: install
	mkdir -p results
	$(PY) -m conformance --json results/conformance.json

# The wheel with the core compiled by mypyc (setup.py, tools/compile_core.py), unpacked into
# build/compiled: the tests and the conformance suite run against it too, so that what a
# compiled install ships is held to the same behaviour. (tools/compile_core.py caches the
# compiled modules in build/mypyc-core: only changed sources are compiled again.)
COMPILED := build/compiled

compiled: install
	rm -rf build/wheel build/lib.* $(COMPILED)
	P2POS_COMPILE=1 $(PY) -m pip wheel -q --no-deps --no-build-isolation -w build/wheel .
	$(PY) -m zipfile -e build/wheel/p2pos-*.whl $(COMPILED)

test-compiled: compiled
	PYTHONPATH=$(COMPILED) $(VENV)/bin/pytest -q
	mkdir -p results
	PYTHONPATH=$(COMPILED) $(PY) -m conformance --json results/conformance-compiled.json

test: lint typecheck vectors unit conformance test-compiled

bench: install compiled
	$(PY) bench/handshake_record.py
	$(PY) bench/channels.py
	PYTHONPATH=$(COMPILED) $(PY) bench/channels.py

clean:
	rm -rf $(VENV) build *.egg-info results .mypy_cache .pytest_cache .ruff_cache .hypothesis
