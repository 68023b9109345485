# The README's two set-up commands are `make demo` and `make test`; everything else is a step.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
EDGETYPE := $(VENV)/bin/edgetype
# Debian packages the tests drive: tmux (demo end-to-end test), debootstrap + qemu-user-static
# (riscv64 user space of the board), shellcheck + busybox (init script lint and run).
SYSTEM_PACKAGES := tmux debootstrap qemu-user-static shellcheck busybox

.PHONY: demo test install toolchain system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,train]'
	touch $@

install: $(VENV)/.installed

toolchain: install
	$(EDGETYPE) toolchain install

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: toolchain
	$(EDGETYPE) demo

test: toolchain system-deps
	$(VENV)/bin/python -m pytest -ra --timeout=1200 tests
