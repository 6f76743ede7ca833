# Two commands set up a fresh machine:   make demo   (install + main job)   and   make test   (install + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the release available offline on the build machines; pip resolves mlflow and
# fiftyone (which pin starlette differently) in the same call so both are satisfied.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/ensure_mongod.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS) -e '.[test]'
	$(PY) scripts/ensure_mongod.py
	touch $@

demo: install
	$(VENV)/bin/avml demo

test: install
	FIFTYONE_DO_NOT_TRACK=true $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) avml-workspace .pytest_cache
