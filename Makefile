# PilotLab — everything the project needs is installed from here into .venv, exactly as locked.
#   requirements/lock.txt          every package the lab, labctl, tests, benches and suite builder use (hashes)
#   requirements/nodeps.txt        rapidocr-onnxruntime for its PP-OCRv4 model files only (no OpenCV stack)
#   requirements/agent-oldest.txt  the agent at the oldest onnxruntime it supports (.venv-agent-oldest)
# `make lock` refreshes all three from pyproject.toml with a pinned uv; pip installs them with --require-hashes.
PYTHON ?= python3
VENV ?= .venv
OLDEST_VENV ?= .venv-agent-oldest
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-lock
OLDEST_STAMP := $(OLDEST_VENV)/.installed-lock
EDITABLE := $(VENV)/.installed-project
OLDEST_EDITABLE := $(OLDEST_VENV)/.installed-project
LOCKS := requirements/lock.txt requirements/nodeps.txt
UV_VERSION := 0.13.9
PIP_LOCKED := -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps
PYTEST_ARGS ?=

.PHONY: install install-agent-oldest system-deps test test-main test-agent-oldest demo protos lint typecheck \
        bench lock clean

# A venv holds exactly the locked set: when a lock changes, the venv is made anew rather than patched. The project
# itself is an editable install on top, redone (cheaply) when pyproject.toml changes.
$(STAMP): $(LOCKS)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_LOCKED) -r requirements/lock.txt -r requirements/nodeps.txt
	touch $(STAMP)

$(EDITABLE): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(EDITABLE)

$(OLDEST_STAMP): requirements/agent-oldest.txt
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python $(PIP_LOCKED) -r requirements/agent-oldest.txt
	touch $(OLDEST_STAMP)

$(OLDEST_EDITABLE): $(OLDEST_STAMP) pyproject.toml
	$(OLDEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(OLDEST_EDITABLE)

# SmolLM2 converted to ONNX, with its prompt and perplexity sets, for the terminal-genai suite (git-ignored; the
# build skips itself while its stamp is current and prints the seconds it took when it runs).
GENAI_DIR := evalsuites/terminal-genai

install: $(EDITABLE)
	$(PY) -m evalsuites.genai build $(GENAI_DIR)

install-agent-oldest: $(OLDEST_EDITABLE)

lock:
	$(PYTHON) -m venv build/uv
	build/uv/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	UV=$(CURDIR)/build/uv/bin/uv requirements/lock.sh

# Debian's chromium renders report.html in the report tests (headless); Debian's chromedriver drives it in the web
# console's tests (tests/web, Selenium: never a downloaded browser or driver). Installed when missing and root.
system-deps:
	@{ command -v chromium && command -v chromedriver && command -v pdftotext; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium, chromium-driver and poppler-utils for the report-rendering, report PDF" \
	      "and web console tests"; \
	    apt-get update -qq >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver poppler-utils >/dev/null; \
	  else echo "chromium, chromedriver or pdftotext missing: install Debian's chromium, chromium-driver and" \
	    "poppler-utils packages to run the report-rendering, report PDF and web console tests"; fi; }

test: test-main test-agent-oldest

# Two workers (pytest-xdist), a test file each at a time, its tests in order: most tests wait on real processes
# (labd, agents, a browser) rather than use a core. TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2
test-main: install system-deps
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# The agent's own tests under the oldest supported onnxruntime, then one smoke run end to end: labd from .venv,
# lab-agent from the oldest venv (PILOTLAB_AGENT_BIN), as on a device that brings its own runtime.
test-agent-oldest: install install-agent-oldest
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/agents $(PYTEST_ARGS)
	PILOTLAB_AGENT_BIN=$(CURDIR)/$(OLDEST_VENV)/bin/lab-agent $(PY) -m pytest -q -p no:cacheprovider \
	  tests/e2e/test_agent_oldest.py $(PYTEST_ARGS)

demo: install
	$(PY) -m labctl.demo --out demo-report

protos: install
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/pilotlab/v1/*.proto

lint: install
	$(VENV)/bin/ruff check pilotlab labd agents labctl evalsuites tests bench

# Strict on the shared core and labd (pyproject.toml [tool.mypy]); generated protobuf code is not checked.
typecheck: install
	$(VENV)/bin/mypy pilotlab labd agents labctl evalsuites

# Property-based fuzzing (tests/fuzz) past what `make test` runs: random seeds and about FUZZ_SECONDS in all; a
# failure found is kept in build/hypothesis and tried first the next time.
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz: install
	HYPOTHESIS_PROFILE=fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) HYPOTHESIS_STORAGE_DIRECTORY=$(CURDIR)/build/hypothesis \
	  $(PY) -m pytest -q -p no:cacheprovider --timeout=0 tests/fuzz $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) demo-report build *.egg-info .pytest_cache
