# tessera-daemon: `make run` and `make test` each do their own set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
SCENARIO ?= demo

.PHONY: run demo test lint typecheck check bench system-deps dist clean

$(STAMP): pyproject.toml
	@python3 -m venv $(VENV) 2>/dev/null || { bash scripts/install-system-deps.sh python-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

## run: set up and run the daemon on its embedded default (in-memory transport, simulated cluster)
run: $(STAMP)
	$(VENV)/bin/tessera-daemon run $(ARGS)

## demo: the simulator fast-forwarded through warm-up, watched in the web console (SCENARIO=name, default demo)
demo: $(STAMP)
	$(VENV)/bin/tessera-daemon demo $(SCENARIO) $(ARGS)

## system-deps: apt-get the servers the tests talk to, only those that are absent
system-deps:
	@bash scripts/install-system-deps.sh

## test: set up, install the servers the tests need, lint, type-check and run the whole suite
test: $(STAMP) system-deps
	$(MAKE) --no-print-directory check
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check tessera_daemon tests bench scripts
	$(VENV)/bin/ruff format --check tessera_daemon tests bench scripts
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck

bench: $(STAMP)
	$(PY) bench/detector.py
	$(PY) bench/transport.py
	$(PY) bench/replay.py
	$(PY) bench/scale.py

## dist: build the sdist and the wheel (with the alert rules, dashboards, deploy files and examples) into dist/
dist: $(STAMP)
	@git rev-parse HEAD > tessera_daemon/REVISION 2>/dev/null || rm -f tessera_daemon/REVISION
	$(PY) -m build --outdir dist .; status=$$?; rm -f tessera_daemon/REVISION; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info tessera_daemon/REVISION
