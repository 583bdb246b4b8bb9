# `make run` and `make test` work from nothing: they build .venv when it is missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.modelforge-installed
ARGS ?=

EXTRAS ?= sweeps,slurm

.PHONY: run test test-fast test-kernels test-cold experiments lint browser bench plan extras clean-venv

# Rebuilt when pyproject.toml changes, or when the venv's interpreter no longer runs (a moved or
# upgraded Python leaves a venv whose bin/python is a dead link). The editable install is a plain .pth of the
# repo root (pyproject's `package-dir = {"" = "."}`), so Hydra's plugin scan finds hydra_plugins/ and
# modelforge/conf (a link to conf/) imports exactly as the wheel's modelforge.conf does.
$(STAMP): pyproject.toml
	@$(VPY) -c "" 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(VPY) -m modelforge $(ARGS)

plan: $(STAMP)
	$(VPY) -m modelforge plan $(ARGS)

# Style, types (strict on the pure core), and the layer contracts of pyproject's [tool.importlinter].
lint: $(STAMP)
	$(VPY) -m ruff check modelforge hydra_plugins tests benchmarks examples
	$(VPY) -m mypy
	$(VPY) -m mypy --strict modelforge/core modelforge/system modelforge/errors.py
	$(VENV)/bin/lint-imports

# The summary.html test opens the page in a real headless browser: Debian's chromium, installed when missing
# where apt-get runs as root (CI). Elsewhere `make test` says in one line that the browser check did not run.
CAN_BROWSE := $(shell { command -v chromium || command -v chromium-browser || \
	{ command -v apt-get && [ "$$(id -u)" = 0 ]; }; } >/dev/null 2>&1 && echo yes)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make: the browser test needs chromium (Debian: apt-get install chromium)"; exit 1; }

# The test suite (with the doctests of the package) after the linters, on both cores, the slowest 15 listed.
PYTEST := $(VPY) -m pytest -n 2 --dist loadgroup --durations=15
ifeq ($(CAN_BROWSE),yes)
test: lint browser
	$(PYTEST) $(ARGS)
else
test: lint
	@echo "make: the browser check of summary.html did not run: it needs chromium (as root on Debian: apt-get install chromium)"
	$(PYTEST) -m "not browser" $(ARGS)
endif

# The whole suite with every command started cold (no fork server, tests/warm.py), as a user's commands start:
# for a change to start-up or to the test runner itself.
test-cold: $(STAMP)
	MODELFORGE_TESTS_COLD=1 $(PYTEST) -m "not browser" $(ARGS)

# No subprocess runs and no browser: what a change to the core needs first.
test-fast: lint
	$(PYTEST) -m "not slow and not browser" $(ARGS)

# The tests whose results rest on floating-point rounding, with TensorFlow's oneDNN kernels off (as on a CPU where
# TensorFlow does not turn them on) and on.
test-kernels: $(STAMP)
	TF_ENABLE_ONEDNN_OPTS=0 $(PYTEST) -m numeric $(ARGS)
	TF_ENABLE_ONEDNN_OPTS=1 $(PYTEST) -m numeric $(ARGS)

# Every experiment the docs quote, on its full grid (make test runs smaller ones), with oneDNN off and on; then
# the fused launcher against the basic one, step by step, beside a twin pair of basic runs.
EXPERIMENTS := tests/analysis/test_experiments.py tests/analysis/test_init_report.py tests/initializers/test_lsuv.py
experiments: $(STAMP)
	MODELFORGE_EXPERIMENTS=full TF_ENABLE_ONEDNN_OPTS=0 $(PYTEST) -m numeric $(EXPERIMENTS) $(ARGS)
	MODELFORGE_EXPERIMENTS=full TF_ENABLE_ONEDNN_OPTS=1 $(PYTEST) -m numeric $(EXPERIMENTS) $(ARGS)
	$(VPY) benchmarks/fused_steps.py

# Optional extras into the same venv, e.g. `make extras EXTRAS=ray`; the editable install stays a plain .pth.
extras: $(STAMP)
	$(VPY) -m pip install --quiet -e '.[$(EXTRAS)]'

bench: $(STAMP)
	$(VPY) benchmarks/bench.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
