# PilotLab — everything the project needs is installed from here into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: install system-deps test demo protos lint typecheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@# PP-OCRv4 models for the terminal-vision suite; the wheel's OpenCV-heavy dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps "rapidocr-onnxruntime==1.4.4"
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium renders report.html in the report tests (headless). Installed when missing and root.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report-rendering test"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's chromium package to run the report-rendering test"; fi; }

test: install system-deps
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
