"""The native keystroke core (runtime/native/keystroke_core.c) against its numpy twin (PythonCore).

Property tests with random inputs: identical top-k within a prefix (values, ids, order, ties),
log-softmax within float32 rounding, and whole typing sessions with identical suggestions. Also:
a missing or foreign library is reported by name with the path tried; the riscv64 build runs
under qemu on the riscv64 Debian user space (ci/riscv64.sh's root file system)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.keystroke_core import NativeCore, NativeCoreError, PythonCore, native_library_path, open_core

REPO = Path(__file__).resolve().parents[1]
V = 512


def _native():
    try:
        return NativeCore(V)
    except NativeCoreError as error:
        pytest.fail(f"{error} (the native core is part of the build: run `make native`)")


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(0, V), want=st.integers(1, 12),
       levels=st.sampled_from([0, 3, 50]))
def test_top_prefix_is_identical_to_the_numpy_twin(seed, m, want, levels):
    rng = np.random.default_rng(seed)
    log_probs = rng.normal(-8, 3, V).astype(np.float32)
    if levels:  # few distinct values: many ties, at the k-th value too
        log_probs = np.round(log_probs / 3 * levels) / levels * 3
        log_probs = log_probs.astype(np.float32)
    log_probs[rng.integers(0, V, 3)] = -np.inf
    ids = np.sort(rng.choice(V, size=m, replace=False)).astype(np.int64)
    native, python = _native(), PythonCore(V)
    assert native.top_prefix(log_probs, ids, want) == python.top_prefix(log_probs, ids, want)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 3.0, 30.0]))
def test_log_softmax_matches_within_float32_rounding(seed, scale):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(0, scale, V) + rng.normal(0, 50)).astype(np.float32)
    a, b = np.zeros(V, np.float32), np.zeros(V, np.float32)
    _native().log_softmax_into(logits, a)
    PythonCore(V).log_softmax_into(logits, b)
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6 * max(1.0, float(np.abs(b).max())))
    assert np.array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"))


def test_a_missing_or_foreign_library_is_named_with_its_path(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETYPE_CORE_LIB", str(tmp_path / "nothing.so"))
    with pytest.raises(NativeCoreError, match="nothing.so: no such file"):
        open_core("native", V)
    foreign = tmp_path / "libforeign.so"
    foreign.write_bytes(b"\x7fELF" + b"\0" * 60)
    monkeypatch.setenv("EDGETYPE_CORE_LIB", str(foreign))
    with pytest.raises(NativeCoreError, match="libforeign.so: cannot load"):
        open_core("native", V)
    said = []
    core = open_core("auto", V, warn=said.append)
    assert core.name == "python" and "libforeign.so" in core.fallback_reason
    assert len(said) == 1 and said[0].startswith("edgetype: keystroke core: python") and "libforeign.so" in said[0]
    riscv = REPO / "runtime/native/build/riscv64/libedgetype_core.so"  # wrong architecture on x86
    if riscv.exists() and os.uname().machine != "riscv64":
        monkeypatch.setenv("EDGETYPE_CORE_LIB", str(riscv))
        with pytest.raises(NativeCoreError, match="cannot load"):
            open_core("native", V)


def test_sessions_on_both_cores_show_identical_suggestions(tmp_path):
    from test_bundle import make_tiny_bundle

    from runtime.bundle import load_bundle
    from runtime.engine import open_session

    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", window=32))
    rng = np.random.default_rng(3)
    pieces = ["the", "cat", "t", "h", "e", " ", " ", ",", ".", "\n", "dog", "I", "'", "s"]
    with open_session(bundle, backend="numpy", core="native") as native, \
            open_session(bundle, backend="numpy", core="python") as python:
        assert (native.core_name, python.core_name) == ("native", "python")
        for step in range(250):
            r = rng.random()
            for session in (native, python):
                if r < 0.7:
                    session.insert(pieces[int(r * 1000) % len(pieces)])
                elif r < 0.85:
                    session.backspace()
                elif r < 0.9:
                    session.delete_word()
            a, b = native.suggestions(3), python.suggestions(3)
            assert [s.word for s in a] == [s.word for s in b], (step, native.text)
            np.testing.assert_allclose([s.prob for s in a], [s.prob for s in b], rtol=1e-5)
            if a and r > 0.95:
                assert native.accept(0) == python.accept(0)


ROOTFS_GLOB = "rootfs-riscv64-trixie-*"


def _riscv64_rootfs() -> Path | None:
    cache = Path(os.environ.get("EDGETYPE_CACHE", Path.home() / ".cache" / "edgetype"))
    found = sorted(p for p in cache.glob(ROOTFS_GLOB) if (p / "usr/bin/python3").exists())
    return found[-1] if found else None


@pytest.mark.slow
def test_the_riscv64_build_gives_the_same_answers_under_qemu(tmp_path):
    """The riscv64 .so in the riscv64 Debian Python (qemu-riscv64-static), same inputs as on x86."""
    rootfs, qemu = _riscv64_rootfs(), "/usr/bin/qemu-riscv64-static"
    library = REPO / "runtime/native/build/riscv64/libedgetype_core.so"
    if rootfs is None or not os.path.exists(qemu):
        pytest.skip("no riscv64 root file system (ci/riscv64.sh --rootfs-only) or qemu-user-static")
    assert library.exists(), "run `make native`"
    script = (
        "import json, sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "from runtime.keystroke_core import NativeCore;"
        "core = NativeCore(512); rng = np.random.default_rng(5); out = [];"
        "exec('for i in range(50):\\n lp = rng.normal(-8, 3, 512).astype(np.float32); ids = np.sort(rng.choice(512, 200, replace=False)).astype(np.int64)\\n"
        " row = np.zeros(512, np.float32); core.log_softmax_into(lp, row)\\n"
        " out.append([core.top_prefix(row, ids, 7), row[:4].tolist()])');"
        "print(json.dumps(out))"
    )
    env = {"EDGETYPE_CORE_LIB": "/opt/edgetype-core/libedgetype_core.so", "PATH": "/usr/bin:/bin"}
    target = rootfs / "opt" / "edgetype-core"
    target.mkdir(parents=True, exist_ok=True)
    (target / "libedgetype_core.so").write_bytes(library.read_bytes())
    (target / "runtime").mkdir(exist_ok=True)
    for name in ("__init__.py", "keystroke_core.py", "errors.py"):
        (target / "runtime" / name).write_bytes((REPO / "runtime" / name).read_bytes())
    run = subprocess.run([qemu, "-L", str(rootfs), str(rootfs / "usr/bin/python3"), "-c", script, "/opt/edgetype-core"],
                         capture_output=True, text=True, timeout=300, env={**env, "QEMU_LD_PREFIX": str(rootfs)})
    assert run.returncode == 0, run.stderr[-2000:]
    riscv = json.loads(run.stdout)
    host = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGETYPE_CORE_LIB": str(REPO / "runtime/native/build/x86_64/libedgetype_core.so")})
    assert host.returncode == 0, host.stderr[-2000:]
    assert riscv == json.loads(host.stdout)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lo=st.integers(0, V - 1), size=st.integers(1, V), want=st.integers(1, 12))
def test_top_prefix_on_a_span_is_the_gather_of_that_range(seed, lo, size, want):
    """Issue #15: a words-sorted bundle passes span=(lo, hi) (ids == arange(lo, hi)): both twins read
    the slice and give exactly what the gather of those ids gives."""
    hi = min(V, lo + size)
    rng = np.random.default_rng(seed)
    log_probs = (np.round(rng.normal(-8, 3, V) * 2) / 2).astype(np.float32)  # ties included
    ids = np.arange(lo, hi, dtype=np.int64)
    want_result = PythonCore(V).top_prefix(log_probs, ids, want)
    assert PythonCore(V).top_prefix(log_probs, ids, want, span=(lo, hi)) == want_result
    assert _native().top_prefix(log_probs, ids, want, span=(lo, hi)) == want_result
