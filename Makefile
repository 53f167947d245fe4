# Two commands on a fresh machine: `make demo` and `make test`. Everything else is optional.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv demo test bench lint migration clean browser

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/parley demo

test: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: venv
	$(PY) -m bench.run

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

migration: venv
	$(PY) -m parley.store.migrate regenerate

# Debian's Chromium and CJK fonts for the browser tests (needs root; .ci/run does this).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk)

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
