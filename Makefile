# Two entry points for a fresh machine (see README): `make run` and `make test`.
# Each builds its own virtualenv in .venv from pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
# Strict editable mode links every file into build/, so mypy and tools see the
# installed `p2pos.*` names while edits in the work tree take effect at once.
EDITABLE := --config-settings editable_mode=strict

.PHONY: system-deps run test lint typecheck unit conformance vectors bench install clean compiled test-compiled test-install mutation

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=69" wheel
	$(PY) -m pip install -q -e '.[test]' $(EDITABLE)
	touch $(STAMP)

# Re-link on every run so that files added since the last install are importable.
install: $(STAMP)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . $(EDITABLE)

# The main job runs what users run: the core compiled by mypyc (build/compiled, below) where this
# machine can build it, else the pure-Python core, saying why; `p2pos version` shows which one runs.
run: install
	@mkdir -p build; core=$(COMPILED); \
	if ! why=$$($(PY) tools/compile_core.py --check); then \
	    core=; echo "make run: running the pure-Python core: $$why"; \
	else \
	    $(MAKE) -s -q $(COMPILED_STAMP) || echo "make run: building the compiled core (a few minutes the first time; log: build/compile.log)"; \
	    if ! $(MAKE) -s --no-print-directory $(COMPILED_STAMP) >build/compile.log 2>&1; then \
	        core=; echo "make run: running the pure-Python core: building the compiled one failed (see build/compile.log)"; \
	    fi; \
	fi; \
	PYTHONPATH=$$core $(VENV)/bin/p2pos version && PYTHONPATH=$$core $(VENV)/bin/p2pos demo

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
	$(PY) -m conformance.quic --json results/conformance-quic.json

# The wheel with the core compiled by mypyc (setup.py, tools/compile_core.py), unpacked into
# build/compiled: `make run` runs it, and the tests and the conformance suite run against it
# too, so that what a compiled install ships is held to the same behaviour. It is rebuilt when
# a packaged source changes (and tools/compile_core.py caches the compiled modules in
# build/mypyc-core: only changed sources are compiled again).
COMPILED := build/compiled
COMPILED_STAMP := $(COMPILED)/.built
PACKAGED := $(shell find p2pos_proto transports adapters conformance -name '*.py' -o -name py.typed) \
	setup.py pyproject.toml MANIFEST.in tools/compile_core.py tools/build_backend.py

$(COMPILED_STAMP): $(STAMP) $(PACKAGED)
	rm -rf build/wheel $(COMPILED)
	P2POS_COMPILE=1 $(PY) -m pip wheel -q --no-deps --no-build-isolation -w build/wheel .
	$(PY) -m zipfile -e build/wheel/p2pos-*.whl $(COMPILED)
	touch $@

compiled: $(COMPILED_STAMP)

test-compiled: install compiled
	PYTHONPATH=$(COMPILED) $(VENV)/bin/pytest -q -m "not pure_core"
	mkdir -p results
	PYTHONPATH=$(COMPILED) $(PY) -m conformance --json results/conformance-compiled.json

# `P2POS_COMPILE=1 pip install .` with build isolation in a fresh virtualenv, from a copy of the
# files a clone has: the compiled core must install (mypyc compiles it from scratch there) and
# run the demo, and a wheel built without the variable must be pure Python (tools/check_install.py).
test-install: install
	$(PY) tools/check_install.py --python $(PYTHON)

test: system-deps lint typecheck vectors unit conformance test-compiled test-install

# The system programs the tests use: ip and nft for the namespace tests, coturn (turnserver) for
# the TURN tests. Installed from Debian's packages when missing and we are root (as CI is);
# elsewhere those tests skip and say why.
system-deps:
	@if [ "$$(id -u)" = 0 ] && ! { command -v ip && command -v nft && command -v turnserver && command -v miniupnpd; } >/dev/null 2>&1; then \
	    echo "installing iproute2, nftables, coturn and miniupnpd for the namespace, TURN and port-mapping tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables coturn miniupnpd >/dev/null; \
	fi

bench: install compiled
	$(PY) bench/handshake_record.py
	$(PY) bench/channels.py
	PYTHONPATH=$(COMPILED) $(PY) bench/channels.py
	PYTHONPATH=$(COMPILED) $(PY) bench/node.py
	PYTHONPATH=$(COMPILED) $(PY) bench/daemon.py
	PYTHONPATH=$(COMPILED) $(PY) bench/carriers.py
	PYTHONPATH=$(COMPILED) $(PY) bench/rendezvous.py
	$(PY) bench/goodput_loss.py
	$(PY) bench/quic_carrier.py
	PYTHONPATH=$(COMPILED) $(PY) bench/nat_punch.py
	PYTHONPATH=$(COMPILED) $(PY) bench/keepalive.py

# Mutation testing of the conformance suite (conformance/MUTATION.md): on demand, not part of
# `make test`. Its own virtualenv holds cosmic-ray, coverage and p2pos installed from a wheel of
# this tree (not linked to it), so the runner's reference peer never runs a mutant; only the
# IUT's copy of the core in build/mutation is mutated. MUTATION_ARGS: e.g. `--sample 2000`.
MUTATION := build/mutation
MUTATION_ARGS ?= --sample 1500
mutation:
	test -x $(MUTATION)/venv/bin/cosmic-ray || { $(PYTHON) -m venv $(MUTATION)/venv && \
	    $(MUTATION)/venv/bin/pip install -q --upgrade pip "setuptools>=69" wheel && \
	    $(MUTATION)/venv/bin/pip install -q "cosmic-ray==8.7.0" "coverage>=7.4" && \
	    $(MUTATION)/venv/bin/pip install -q --no-build-isolation .; }
	$(MUTATION)/venv/bin/pip install -q --no-deps --no-build-isolation --force-reinstall .
	nice -n 10 $(MUTATION)/venv/bin/python -m conformance.mutation all $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info results .mypy_cache .pytest_cache .ruff_cache .hypothesis
