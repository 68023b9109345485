# The README's two set-up commands are `make demo` and `make test`; everything else is a step.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
EDGETYPE := $(VENV)/bin/edgetype
# Debian packages the tests drive: tmux (demo end-to-end test), debootstrap + qemu-user-static
# (riscv64 user space of the board), shellcheck + busybox (init script lint and run), valgrind
# (headers and callgrind for the counted CPU term: make native-count, tests/test_cpu_count.py).
SYSTEM_PACKAGES := tmux debootstrap qemu-user-static shellcheck busybox valgrind

.PHONY: demo test install toolchain system-deps native native-count

# The native keystroke core (runtime/native/keystroke_core.c): one libc-free .so per architecture,
# cross-built with PyPI's ziglang (a clang + linker for every target); runtime/keystroke_core.py loads
# runtime/native/build/$$(uname -m)/libedgetype_core.so. ZIGCC may point at another `zig cc`.
NATIVE_SRC := runtime/native/keystroke_core.c
NATIVE_LIBS := runtime/native/build/x86_64/libedgetype_core.so runtime/native/build/riscv64/libedgetype_core.so
NATIVE_CFLAGS := -O2 -ffp-contract=off -fPIC -shared -nostdlib -ffreestanding -fno-builtin -Wall -Wextra -Werror -s
ZIGCC ?= $(VENV)/bin/python -m ziglang cc

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,train]'
	touch $@

install: $(VENV)/.installed

$(VENV)/.ziglang: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet ziglang
	touch $@

native: $(NATIVE_LIBS)

# x86-64 build whose et_mark asks callgrind for a dump per key (measure/cpu_count.py); valgrind's header
native-count: runtime/native/build/x86_64-count/libedgetype_core.so

runtime/native/build/x86_64-count/libedgetype_core.so: $(NATIVE_SRC)
	mkdir -p $(@D)
	$(CC) -DET_COUNTING -I/usr/include/valgrind $(filter-out -s,$(NATIVE_CFLAGS)) -o $@ $(NATIVE_SRC)

runtime/native/build/x86_64/libedgetype_core.so: $(NATIVE_SRC) $(if $(filter $(VENV)/%,$(ZIGCC)),$(VENV)/.ziglang)
	mkdir -p $(@D)
	$(ZIGCC) -target x86_64-linux-musl -mcpu=x86_64 $(NATIVE_CFLAGS) -o $@ $(NATIVE_SRC)

runtime/native/build/riscv64/libedgetype_core.so: $(NATIVE_SRC) $(if $(filter $(VENV)/%,$(ZIGCC)),$(VENV)/.ziglang)
	mkdir -p $(@D)
	$(ZIGCC) -target riscv64-linux-musl -mcpu=baseline_rv64 $(NATIVE_CFLAGS) -o $@ $(NATIVE_SRC)

toolchain: install
	$(EDGETYPE) toolchain install

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: toolchain native
	$(EDGETYPE) demo

# the fuzz test (tests/test_fuzz_inputs.py) gets a fixed budget here: 2 minutes in all
test: toolchain system-deps native native-count
	EDGETYPE_FUZZ_SECONDS=$${EDGETYPE_FUZZ_SECONDS:-120} $(VENV)/bin/python -m pytest -ra --timeout=1200 tests
