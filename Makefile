# PilotLab — everything the project needs is installed from here into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: install test demo protos lint typecheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	$(PY) -m labctl.demo --out demo-report

protos: install
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/pilotlab/v1/*.proto

lint: install
	$(VENV)/bin/ruff check pilotlab labd agents labctl evalsuites tests

typecheck: install
	$(VENV)/bin/mypy pilotlab labd agents labctl evalsuites

clean:
	rm -rf $(VENV) demo-report build *.egg-info .pytest_cache
