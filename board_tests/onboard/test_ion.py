"""On the board: ION carve-out usage returns to its start after 100 model loads (no leak).

A process that keeps ION makes later runs fail with "ion ioctl fail:: Out of memory" (PLATFORM.md),
so every load/close pair must give back what it took.
"""
from __future__ import annotations

import os
import re

from board_tests.onboard import boardenv

LEAK_TOLERANCE_BYTES = 64 * 1024  # page-rounding noise of the heap dump, far below one model


def ion_used_bytes(summary_text: str) -> int:
    """Bytes in use from cvi_carveout_heap_dump/summary. Its first line reads
    `carveout heap size:78643200 bytes, used:41254912 bytes usage rate:53%,` (some kernels print
    `used:87MB`); without it, the sum of the per-buffer sizes of the buffer list."""
    match = re.search(r"\bused\s*:?\s*(\d+)\s*(bytes|b|kb|mb)?", summary_text, re.IGNORECASE)
    if match:
        unit = (match.group(2) or "bytes").lower()
        return int(match.group(1)) * {"bytes": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20}[unit]
    sizes = re.findall(r"size[^0-9]*(\d+)", summary_text, re.IGNORECASE)
    if sizes:
        return sum(int(s) for s in sizes)
    raise AssertionError(f"cannot read ION usage from: {summary_text[:200]!r}")


def read_ion_used(path: str) -> int:
    with open(path) as f:
        return ion_used_bytes(f.read())


def test_no_ion_leak_after_repeated_model_loads():
    boardenv.require_board()
    path = boardenv.ion_summary_path()
    if not os.path.exists(path):
        if boardenv.is_simulated():
            boardenv.skip("simulated board: the cmodel has no ION carve-out to measure")
        raise AssertionError(f"{path} missing: mount debugfs (mount -t debugfs none "
                             "/sys/kernel/debug) or set EDGETYPE_ION_SUMMARY")
    from runtime.bundle import load_bundle
    from tpu_driver.backends import open_backend

    bundle = load_bundle(boardenv.bundle_dir())
    loads = boardenv.int_env("EDGETYPE_ION_LOADS", 100)
    before = read_ion_used(path)
    peak = before
    for _ in range(loads):
        backend = open_backend(boardenv.backend_name(), bundle)
        peak = max(peak, read_ion_used(path))
        backend.close()
    after = read_ion_used(path)
    boardenv.measure("ion_used_before_bytes", before, "bytes")
    boardenv.measure("ion_used_peak_bytes", peak, "bytes", loads=loads)
    boardenv.measure("ion_used_after_bytes", after, "bytes", loads=loads)
    assert after - before <= LEAK_TOLERANCE_BYTES, (
        f"ION in use grew by {after - before} bytes after {loads} load/close cycles")
