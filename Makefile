# `make run` and `make test` work from nothing: they build .venv when it is missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.modelforge-installed
ARGS ?=

.PHONY: run test test-fast bench plan clean-venv

# Rebuilt when pyproject.toml changes, or when the venv's interpreter no longer runs (a moved or
# upgraded Python leaves a venv whose bin/python is a dead link). editable_mode=compat puts the repo root
# itself on sys.path: Hydra finds plugins with pkgutil, which cannot see into setuptools' default editable
# finder, and modelforge/conf is a link to conf/, so the checkout imports exactly as the wheel does.
$(STAMP): pyproject.toml
	@$(VPY) -c "" 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	@touch $(STAMP)

run: $(STAMP)
	$(VPY) -m modelforge $(ARGS)

plan: $(STAMP)
	$(VPY) -m modelforge.plan $(ARGS)

test: $(STAMP)
	$(VPY) -m pytest $(ARGS)

test-fast: $(STAMP)
	$(VPY) -m pytest -m "not slow" $(ARGS)

bench: $(STAMP)
	$(VPY) benchmarks/bench.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
