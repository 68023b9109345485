"""ci/riscv64.sh: the board's TPU-free code on a riscv64 Debian user space under qemu-user.

The slow tests build (first time, ~25 s here plus the download) or reuse the cached rootfs in
~/.cache/edgetype/rootfs-riscv64-trixie-*/; they need root or preinstalled debootstrap +
qemu-user-static (the script installs them with apt-get when root) and the Debian registry.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from board_tests.riscv64 import compare

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "ci" / "riscv64.sh"


def _report(machine: str, logits_shift: float = 0.0, words=("sat", "then", "on")) -> dict:
    return {"machine": machine, "python": "3", "numpy": "2", "checks": {
        "numpy_golden": {"ok": True, "seconds": 1.0, "values": {
            "top5_ids": [[1, 2, 3, 4, 5]], "top5_logits": [[5.0 + logits_shift, 4, 3, 2, 1]],
            "golden_problems": []}},
        "engine_suggestions": {"ok": True, "seconds": 1.0, "values": {
            "contexts": ["The cat "], "words": [list(words)], "suggestion_ids": [[7, 8, 9]],
            "probs": [[0.5, 0.3, 0.1]], "golden_words": [["sat", "then", "on"]],
            "golden_problems": []}},
    }}


def test_compare_accepts_rounding_and_rejects_real_differences():
    assert compare(_report("riscv64", 1e-4), _report("x86_64"))["ok"]
    assert not compare(_report("riscv64", 0.1), _report("x86_64"))["ok"]
    different = compare(_report("riscv64", words=("sat", "on", "then")), _report("x86_64"))
    assert not different["ok"]
    problems = [p for row in different["checks"] for p in row["problems"]]
    assert any(p.startswith("words:") for p in problems)
    broken = _report("riscv64")
    broken["checks"]["numpy_golden"] = {"ok": False, "error": "ImportError: numpy", "seconds": 0}
    assert not compare(broken, _report("x86_64"))["ok"]
    # both agree with each other but not with golden.json: still a failure
    off_golden = [_report("riscv64"), _report("x86_64")]
    for report in off_golden:
        report["checks"]["numpy_golden"]["values"]["golden_problems"] = ["step 0: top-5 logits differ"]
    result = compare(*off_golden)
    assert not result["ok"]
    assert any("golden.json" in p for row in result["checks"] for p in row["problems"])


class ReferenceStepper:
    """model_export.export.golden_data's stepper interface over tpu_driver/reference_model.py
    (full attention over the tokens so far = slots filled in order): golden.json for a
    numpy-only bundle, written by the exporter's own function."""

    def __init__(self, weights, cfg):
        self.weights, self.cfg, self.tokens = weights, cfg, []

    def reset(self):
        self.tokens = []

    def step(self, token):
        from tpu_driver import reference_model as ref

        self.tokens.append(int(token))
        return {"logits": ref.forward_sequence(self.weights, self.cfg, self.tokens)[-1:]}  # (1,V)


def make_bundle_with_golden(directory: Path) -> Path:
    """A tiny numpy-only bundle (tests/test_bundle.py) plus golden.json in model_export's format,
    made by model_export.export.golden_data over the reference model (no ONNX in this bundle).

    For this bundle the riscv64 test checks riscv64 against x86 and both against the reference
    model; the shipped bundles check the model against onnxruntime.
    """
    sys.path.insert(0, str(REPO / "tests"))
    from test_bundle import make_tiny_bundle

    from model_export.export import golden_data
    from tpu_driver import reference_model as ref
    from runtime.tokenizer import Tokenizer

    make_tiny_bundle(directory, window=32)
    cfg = ref.ModelConfig.load(directory / "config.json")
    weights = ref.load_weights(directory / "weights.npz", cfg)
    tokenizer = Tokenizer.load(directory / "tokenizer.json")
    tokens = [2, 5, 9, 3, 12, 7, 20, 33, 2, 8, 14, 6, 11]
    golden = golden_data(ReferenceStepper(weights, cfg), tokenizer, tokens)
    (directory / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    return directory


def run_script(*args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGETYPE_HOST_PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.mark.slow
def test_riscv64_rootfs_has_python_numpy_cffi():
    result = run_script("--rootfs-only")
    assert result.returncode == 0, result.stderr[-2000:]
    machine, python, _, numpy_version, _, cffi_version = result.stdout.split()[:6]
    assert machine == "riscv64" and python.startswith("3.")
    assert numpy_version and cffi_version


@pytest.mark.slow
def test_board_code_on_riscv64_agrees_with_x86(tmp_path):
    bundle = make_bundle_with_golden(tmp_path / "bundle")
    result = run_script("--bundle", str(bundle), "--json")
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["riscv64"]["machine"] == "riscv64"
    failing = [row for row in report["checks"] if not row["ok"]]
    assert result.returncode == 0 and not failing, failing
    assert {row["check"] for row in report["checks"]} == {
        "bundle", "numpy_golden", "engine_suggestions", "kv_window", "keymap"}


@pytest.mark.slow
def test_shipped_bundle_on_riscv64_matches_onnxruntime_golden(capsys):
    bundles = sorted((REPO / "models" / "bundles").glob("cv180x-*-w128"))
    assert bundles and (bundles[0] / "golden.json").is_file(), (
        "no models/bundles/cv180x-*-w128 with golden.json: build the bundles first (model_export)")
    result = run_script("--bundle", str(bundles[0]), "--json")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with capsys.disabled():  # into the CI log: the riscv64 run's golden suggestions beside x86's
        print(f"\n[riscv64] shipped bundle {bundles[0].name} under qemu-riscv64-static vs x86:")
        for line in result.stderr.splitlines()[-40:]:
            print(f"[riscv64] {line}")
        for row in report["checks"]:
            print(f"[riscv64] check {row['check']}: {'ok' if row['ok'] else 'FAILED'} {row['problems'] or ''}")
            if row["check"] == "engine_suggestions":
                riscv = row.get("riscv64_values", {})
                for i, context in enumerate(riscv.get("contexts", [])):  # board_tests/riscv64.py compares x86 key by key
                    print(f"[riscv64]   {context!r}: numpy on riscv64 {riscv['words'][i]} "
                          f"(x86: {'same' if row['ok'] else 'see problems'}), golden {riscv['golden_words'][i]}")
    failing = [row for row in report["checks"] if not row["ok"]]
    assert result.returncode == 0 and not failing, failing


@pytest.mark.slow
@pytest.mark.parametrize("bundle_kind", ["tiny", "shipped"])
def test_overlay_demo_replay_on_riscv64_is_identical_to_x86(bundle_kind, tmp_path, capsys):
    """The overlay's `demo --replay` (numpy backend) under qemu-riscv64 in the trixie rootfs and
    on x86, both `python3 -I` on the overlay's tree: the same text and the same suggestions."""
    from test_overlay_startup import ACCEPTING_TEXT, RECORDING, keys_for, typing_recording

    if bundle_kind == "tiny":
        bundle = make_bundle_with_golden(tmp_path / "bundle")
    else:
        shipped = sorted((REPO / "models" / "bundles").glob("cv180x-*-w128"))
        assert shipped, "no models/bundles/cv180x-*-w128: the shipped bundle is committed"
        bundle = shipped[0]
    recordings = [RECORDING, typing_recording(tmp_path / "accepts.jsonl", keys_for(ACCEPTING_TEXT))]
    for recording in recordings:
        result = run_script("--bundle", str(bundle), "--replay", str(recording))
        with capsys.disabled():  # into the CI log: both runs' text and suggestions
            print(f"\n[riscv64] demo --replay {recording.name} with bundle {bundle.name} (numpy):")
            for line in result.stdout.splitlines():
                print(f"[riscv64]   {line}")
        assert result.returncode == 0, result.stdout + result.stderr[-2000:]
        lines = result.stdout.splitlines()
        assert lines[-1] == "riscv64 and x86 replays identical"
        assert lines[0].startswith("riscv64:") and lines[1].startswith("x86:")
        assert lines[0].split(":", 1)[1].strip() == lines[1].split(":", 1)[1].strip()


def test_riscv64_script_passes_shellcheck():
    from test_firmware_overlay import ensure_apt_tool

    shellcheck = ensure_apt_tool("shellcheck", "shellcheck")
    assert shellcheck, "shellcheck missing: apt-get install shellcheck (Debian package)"
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_compare_replay_requires_identical_text_and_suggestions():
    from board_tests.riscv64 import compare_replay

    same = {"text": "the cat ", "suggestions": ["sat", "is", "was"], "keystrokes": 8,
            "accepted": 1, "backend": "numpy"}
    assert compare_replay(same, dict(same))["ok"]
    reordered = dict(same, suggestions=["is", "sat", "was"])
    assert compare_replay(reordered, same)["differ"] == ["suggestions"]
    assert not compare_replay(dict(same, text="the cat"), same)["ok"]
