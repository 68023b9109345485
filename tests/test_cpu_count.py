"""The board estimate's counted CPU term (measure/cpu_count.py) and the pessimistic estimate (measure/bench.py)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_bundle import make_tiny_bundle

from measure.bench import PESSIMISTIC_CPU_SCALE, pessimistic_estimate, pessimistic_step_ms
from measure.cpu_count import COUNTING_LIBRARY, CONVERSIONS, c906_ms, count_instructions


def test_conversion_is_instructions_times_ratio_over_ipc_at_1_ghz():
    best, slow = CONVERSIONS["best"], CONVERSIONS["pessimistic"]
    assert c906_ms(1e6, "best") == pytest.approx(1e6 * best["rv64_per_x86_instruction"] / best["c906_ipc"] / 1e6)
    assert c906_ms(1e6, "pessimistic") > c906_ms(1e6, "best")
    assert slow["rv64_per_x86_instruction"] >= best["rv64_per_x86_instruction"] and slow["c906_ipc"] <= best["c906_ipc"]


def test_pessimistic_estimate_is_slower_in_every_input():
    step = {"chip": "cv181x", "quant": "bf16", "macs": 3e6, "moved_bytes": 5e6, "tpu_submits": 1,
            "cpu_routine_elements": 0, "efficiency": 0.3, "submit_ms": 0.5}
    from measure.board_estimate import step_ms_from_work

    best = step_ms_from_work(**{k: v for k, v in step.items() if k != "submit_ms"})["step_ms"]
    slow = pessimistic_step_ms(step)
    assert slow > best + 0.149  # the submit alone: 0.65 vs 0.5 ms
    assumptions = {"step": step}
    result = pessimistic_estimate(assumptions, [0, 1, 0, 2], [0.01, 0.02, 0.01, 0.03])
    assert result["p50"] == pytest.approx(np.percentile([0.5, slow + 1.0, 0.5, 2 * slow + 1.5], 50), abs=1e-4)
    assert assumptions["pessimistic"]["cpu_scale"] == PESSIMISTIC_CPU_SCALE == 50.0


@pytest.mark.slow
def test_instructions_are_counted_per_keystroke_under_callgrind(tmp_path):
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind not installed (apt-get install valgrind; `make test` installs it)")
    assert COUNTING_LIBRARY.exists(), "run `make native-count`"
    bundle = make_tiny_bundle(tmp_path / "b", window=32)
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat, and the dog sat on the log. " * 20)
    counted = count_instructions(str(bundle), str(text), keystrokes=30)
    ir, calls = counted["ir_per_key"], counted["forward_calls"]
    assert len(ir) == 30 and len(calls) == 30 and (ir > 1000).all()
    assert ir[calls > 0].mean() > ir[calls == 0].mean()  # a key that steps the model does more work
    again = count_instructions(str(bundle), str(text), keystrokes=30)["ir_per_key"]
    assert np.abs(again - ir).max() / ir.mean() < 0.05  # counted, not timed: repeatable
