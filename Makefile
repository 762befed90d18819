# deepfake-detection: every target installs what it needs into .venv first.
#   make test    the test suite (what CI runs)
#   make demo    the whole pipeline on the embedded synthetic dataset
#   make bench   benchmarks (not part of `make test`); figures go to BENCHMARKS.md
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,test
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: install test test-all demo bench clean

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

# The default suite skips tests marked `slow` or `gpu`; `make test-all` runs the slow ones too.
test: install
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

demo: install
	$(PY) -m preprocessing.synthetic --output_dir=$(DEMO_DIR)/raw
	$(PY) -m preprocessing.build --manual_dir=$(DEMO_DIR)/raw --data_dir=$(DEMO_DIR)/data

# tf-keras is installed without its dependencies: it pins the full `tensorflow`
# distribution, which would land beside tensorflow-cpu.
bench: install
	$(PY) -m pip install --quiet --no-deps "tf-keras>=2.21,<2.22"
	$(PY) tests/benchmarks/run_all.py

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info .pytest_cache
