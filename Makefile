# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
EDGETYPE := $(VENV)/bin/edgetype

.PHONY: demo test install toolchain

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[dev,train]'
	touch $@

install: $(VENV)/.installed

toolchain: install
	$(EDGETYPE) toolchain install

demo: toolchain
	$(EDGETYPE) demo

test: toolchain
	$(VENV)/bin/python -m pytest -ra --timeout=1200 tests
