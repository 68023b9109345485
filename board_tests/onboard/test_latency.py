"""On the board: decode-step and keystroke latency, measured where they happen.

Numbers are printed as ET-MEASURE lines (the harness collects them). Budgets are asserted only
on a real board with the `tpu` backend; on the simulated board the cmodel's times are reported
and labelled as simulator numbers.
"""
from __future__ import annotations

import time

from board_tests.onboard import boardenv
from runtime.percentiles import percentile

STEP_BUDGET_MS = 100.0  # p95 of one decode step on the TPU (EDGETYPE_STEP_BUDGET_MS overrides)
KEYSTROKE_BUDGET_MS = 150.0  # p95 key -> 3 suggestions (EDGETYPE_KEYSTROKE_BUDGET_MS overrides)


def test_decode_step_latency():
    boardenv.require_board()
    from board_tests.onboard.decode import load_embedding
    from tpu_driver.feeder import InOrderFeeder
    from runtime.bundle import load_bundle
    from tpu_driver.backends import open_backend

    path = boardenv.bundle_dir()
    steps = boardenv.int_env("EDGETYPE_LATENCY_STEPS", 50)
    golden = boardenv.read_golden(path)
    backend = open_backend(boardenv.backend_name(), load_bundle(path))
    try:
        decoder = InOrderFeeder(backend, load_embedding(path))
        decoder.reset()
        tokens = golden["tokens"]
        times_ms = []
        for i in range(min(steps, decoder.window)):
            started = time.perf_counter()
            decoder.step(tokens[i % len(tokens)])
            times_ms.append((time.perf_counter() - started) * 1000.0)
    finally:
        backend.close()
    times_ms = times_ms[1:] or times_ms  # the first step pays one-time costs
    p50, p95 = percentile(times_ms, 50), percentile(times_ms, 95)
    boardenv.measure("decode_step_ms_p50", p50, "ms", steps=len(times_ms))
    boardenv.measure("decode_step_ms_p95", p95, "ms", steps=len(times_ms))
    if boardenv.backend_name() == "tpu" and not boardenv.is_simulated():
        budget = float(boardenv.int_env("EDGETYPE_STEP_BUDGET_MS", int(STEP_BUDGET_MS)))
        assert p95 <= budget, f"decode step p95 {p95:.1f} ms > budget {budget:.0f} ms"


def test_keystroke_latency():
    boardenv.require_board()
    from runtime.engine import open_session

    path = boardenv.bundle_dir()
    text = boardenv.read_golden(path)["cases"][0]["context"] + " the quick brown fox"
    session = open_session(bundle=path, backend=boardenv.backend_name())
    times_ms = []
    try:
        for ch in text[: boardenv.int_env("EDGETYPE_LATENCY_STEPS", 50)]:
            started = time.perf_counter()
            session.insert(ch)
            session.suggestions(k=3)
            times_ms.append((time.perf_counter() - started) * 1000.0)
    finally:
        close = getattr(session, "close", None)
        if close:
            close()
    p50, p95 = percentile(times_ms, 50), percentile(times_ms, 95)
    boardenv.measure("keystroke_ms_p50", p50, "ms", keystrokes=len(times_ms))
    boardenv.measure("keystroke_ms_p95", p95, "ms", keystrokes=len(times_ms))
    if boardenv.backend_name() == "tpu" and not boardenv.is_simulated():
        budget = float(boardenv.int_env("EDGETYPE_KEYSTROKE_BUDGET_MS", int(KEYSTROKE_BUDGET_MS)))
        assert p95 <= budget, f"keystroke p95 {p95:.1f} ms > budget {budget:.0f} ms"
