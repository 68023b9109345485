"""Where the on-board suite finds things, and whether it runs on a board at all.

Python 3 stdlib only (numpy is imported by the tests that need it), no pytest: the stock Milk-V
image has no pytest, so `runner.py` runs these tests there; on a host pytest collects the same
files and every test skips (the one allowed skip: "not on a board").

Board paths can be moved with environment variables (the simulated board points them into its
sandbox; docs/board.md lists them):
    EDGETYPE_BOARD          set by the simulated board ("sim"); a real board is recognised by
                            /dev/cvi-tpu0 or a cvitek/sophgo device-tree model
    EDGETYPE_BACKEND        backend for the tests: tpu (default on a board), cmodel (simulated)
    EDGETYPE_BUNDLE         bundle directory (default /opt/edgetype/bundle, where firmware/ puts it)
    EDGETYPE_ION_SUMMARY    /sys/kernel/debug/ion/cvi_carveout_heap_dump/summary
    EDGETYPE_INPUT_DEVICES  /proc/bus/input/devices
    EDGETYPE_DEV_DIR        /dev
    EDGETYPE_ION_LOADS      model loads of the ION leak test (100)
    EDGETYPE_LATENCY_STEPS  timed decode steps (50)
"""
from __future__ import annotations

import json
import os
import sys

DEFAULT_BUNDLE = "/opt/edgetype/bundle"
DEFAULT_ION_SUMMARY = "/sys/kernel/debug/ion/cvi_carveout_heap_dump/summary"
BOARD_MODEL_WORDS = ("cvitek", "sophgo", "milk-v", "milkv", "licheerv", "cv180", "cv181", "sg200")


class Skip(Exception):
    """Raised by skip() when pytest is not there (the runner reports it as skipped)."""


def skip(reason: str):
    try:
        import pytest
    except ImportError:
        raise Skip(reason) from None
    pytest.skip(reason)


def board_kind() -> str | None:
    """'sim' on the simulated board, 'board' on real hardware, None elsewhere."""
    if os.environ.get("EDGETYPE_BOARD"):
        return os.environ["EDGETYPE_BOARD"]
    try:
        with open("/proc/device-tree/model", "rb") as f:
            model = f.read().decode("ascii", "replace").lower()
        if any(word in model for word in BOARD_MODEL_WORDS):
            return "board"
    except OSError:
        pass
    if os.path.exists("/dev/cvi-tpu0"):
        return "board"
    return None


def require_board() -> str:
    kind = board_kind()
    if kind is None:
        skip("not on a board (no /dev/cvi-tpu0, no cvitek device-tree model, EDGETYPE_BOARD "
             "unset): run it with `edgetype board test --port URL`")
    return kind


def is_simulated() -> bool:
    return board_kind() == "sim"


def backend_name() -> str:
    return os.environ.get("EDGETYPE_BACKEND", "tpu")


def bundle_dir() -> str:
    path = os.environ.get("EDGETYPE_BUNDLE", DEFAULT_BUNDLE)
    if not os.path.isfile(os.path.join(path, "manifest.json")):
        raise AssertionError(f"no bundle at {path} (manifest.json missing): install one with "
                             "`edgetype board deploy` or set EDGETYPE_BUNDLE")
    return path


def ion_summary_path() -> str:
    return os.environ.get("EDGETYPE_ION_SUMMARY", DEFAULT_ION_SUMMARY)


def input_devices_path() -> str:
    return os.environ.get("EDGETYPE_INPUT_DEVICES", "/proc/bus/input/devices")


def dev_dir() -> str:
    return os.environ.get("EDGETYPE_DEV_DIR", "/dev")


def int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def measure(name: str, value: float, unit: str, **extra) -> None:
    """Report a number to the harness: one `ET-MEASURE {json}` line on stdout."""
    record = {"name": name, "value": round(float(value), 4), "unit": unit,
              "backend": backend_name(), "board": board_kind() or "host"}
    if is_simulated():
        record["note"] = (f"simulated board: measured on the host with backend {backend_name()}"
                          f"{' (tpu-mlir cmodel simulator)' if backend_name() == 'cmodel' else ''}"
                          ", not a board number")
    record.update(extra)
    print("ET-MEASURE " + json.dumps(record, sort_keys=True), flush=True)


# ------------------------------------------------------------------ the bundle's golden.json
GOLDEN_FORMAT_VERSION = 1  # model_export/export.py golden_data()


def _field(record: dict, name: str, where: str):
    if not isinstance(record, dict) or name not in record:
        has = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
        raise AssertionError(f"{where}: no {name!r} (has {has}): golden.json is not in "
                             "model_export's format; re-export the bundle")
    return record[name]


def read_golden(bundle: str) -> dict:
    """The bundle's golden.json, as model_export/export.py golden_data() writes it (format 1):

        {"format_version": 1, "backend": "onnx (onnxruntime, float32)", "window": "...", "bos": true,
         "steps": [{"token": id, "top5_ids": [5 ids], "top5_logits": [5 floats]}, ...],
         "suggestions": [{"context": str, "prefix": str, "context_ids": [ids],
                          "top3_ids": [<=3 ids], "suggestions": [<=3 words]}, ...],
         "note": "..."}

    steps[t] holds the top-5 next-token logits after tokens steps[0..t] with slots filled in
    order (append-only window). Returns {'tokens': [int], 'top_ids': [[int]*5],
    'top_logits': [[float]*5], 'cases': [{context, prefix, context_ids, top3_ids, suggestions}],
    'backend': str}. Anything else raises AssertionError naming what is missing.
    """
    path = os.path.join(bundle, "golden.json")
    if not os.path.isfile(path):
        raise AssertionError(f"{path} missing: the bundle has no golden outputs (re-export it)")
    with open(path) as f:
        golden = json.load(f)
    version = _field(golden, "format_version", path)
    if version != GOLDEN_FORMAT_VERSION:
        raise AssertionError(f"{path}: format_version {version}, this suite reads "
                             f"{GOLDEN_FORMAT_VERSION}: update board_tests or re-export the bundle")
    steps = _field(golden, "steps", path)
    if not steps:
        raise AssertionError(f"{path}: 'steps' is empty")
    tokens, top_ids, top_logits = [], [], []
    for i, step in enumerate(steps):
        where = f"{path} steps[{i}]"
        tokens.append(int(_field(step, "token", where)))
        ids = [int(t) for t in _field(step, "top5_ids", where)]
        logits = [float(v) for v in _field(step, "top5_logits", where)]
        if len(ids) != 5 or len(logits) != 5:
            raise AssertionError(f"{where}: {len(ids)} top5_ids and {len(logits)} top5_logits, want 5")
        top_ids.append(ids)
        top_logits.append(logits)
    cases = []
    for i, case in enumerate(_field(golden, "suggestions", path)):
        where = f"{path} suggestions[{i}]"
        top3 = [int(t) for t in _field(case, "top3_ids", where)]
        words = [str(w) for w in _field(case, "suggestions", where)]
        if len(top3) != len(words) or not top3:
            raise AssertionError(f"{where}: {len(top3)} top3_ids but {len(words)} suggestions")
        cases.append({"context": str(_field(case, "context", where)),
                      "prefix": str(_field(case, "prefix", where)),
                      "context_ids": [int(t) for t in _field(case, "context_ids", where)],
                      "top3_ids": top3, "suggestions": words})
    if not cases:
        raise AssertionError(f"{path}: 'suggestions' has no cases")
    return {"tokens": tokens, "top_ids": top_ids, "top_logits": top_logits, "cases": cases,
            "backend": str(golden.get("backend", ""))}


def read_manifest(bundle: str) -> dict:
    with open(os.path.join(bundle, "manifest.json")) as f:
        return json.load(f)


def python_info() -> str:
    return f"python {sys.version.split()[0]} on {os.uname().machine}"
