"""`bench latency` (measure/bench.py): replay, timings, allocation-free keystrokes."""
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from test_bundle import TINY_TEXT, make_tiny_bundle

from measure.bench import board_estimate, naive_keystroke_ms, run_replay
from runtime.bundle import load_bundle
from runtime.engine import open_session

TEXT = TINY_TEXT * 20


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("bench") / "b", window=128))


def test_replay_counts_and_forward_budget(bundle):
    session = open_session(bundle, backend="numpy")
    replay = run_replay(session, TEXT, 400, typo_rate=0.1, seed=3, sample_every=50)
    assert len(replay.keystroke_ms) == 400 and len(replay.samples) == 8
    calls = np.asarray(replay.forward_calls)
    assert calls.mean() < 0.6 and calls.max() <= 2  # letters cost nothing; a word end one step
    assert all(m <= k for m, k in zip(replay.model_ms, replay.keystroke_ms))
    again = run_replay(open_session(bundle, backend="numpy"), TEXT, 400, typo_rate=0.1, seed=3)
    assert again.forward_calls == replay.forward_calls  # fixed seed: same session
    typed = session.text
    assert typed and TEXT.startswith(typed.rstrip("abcdefghijklmnopqrstuvwxyz")[:20])


def test_naive_recompute_costs_one_step_per_context_token(bundle):
    session = open_session(bundle, backend="numpy")
    session.insert("the cat sat on the mat . " * 3)
    before = session.forward_calls
    times = naive_keystroke_ms(session, ["the cat sat on the mat . " * 3])
    assert len(times) == 1
    assert session.forward_calls - before == len(session.context_tokens)  # BOS + every token again


@pytest.mark.parametrize("policy", ["sink", "fifo"])
def test_keystrokes_allocate_no_kv_sized_arrays(bundle, policy):
    """tracemalloc over 1,000 keystrokes: no keystroke allocates anything near one layer's K+V window."""
    cfg = bundle.config
    kv_bytes = 2 * cfg.n_layers * cfg.d_model * cfg.window * 4  # all K/V caches, float32
    session = open_session(bundle, backend="numpy", window_policy=policy)
    rng = np.random.default_rng(0)
    events = []
    for char in TEXT[:2000]:
        events.append(char)
        if rng.random() < 0.05:
            events.append(None)  # backspace
    for char in events[:700]:  # warm-up: fills the window's bounded undo log and the ring
        session.insert(char) if char else session.backspace()
        session.suggestions(3)
    tracemalloc.start()
    worst_keystroke = 0
    for char in events[700:1700]:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        session.insert(char) if char else session.backspace()
        session.suggestions(3)
        worst_keystroke = max(worst_keystroke, tracemalloc.get_traced_memory()[1] - before)
    # what stays allocated, outside kv_window (its undo log keeps evicted K/V of the last
    # max_rollback steps by design, bounded; tests/test_kv_* own it) and the recent-words cache
    # (bounded by its capacity, tests/test_recent_words.py): the text and token lists
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*kv_window*"),
                                                          tracemalloc.Filter(False, "*recent_words*")])
    growth = sum(stat.size for stat in snapshot.statistics("filename"))
    tracemalloc.stop()
    assert worst_keystroke < kv_bytes / 2, (worst_keystroke, kv_bytes)  # sink evictions: ~19 KB of 64 KB
    # measured (tiny bundle, 1,000 keystrokes): ~32 KB without the cache, ~41 KB with it: the
    # text (12 KB), token/offset lists, and word strings the bounded recent-words cache holds
    assert growth < kv_bytes, (growth, kv_bytes)


def test_board_estimate_uses_measured_calls_and_overhead(bundle):
    from dataclasses import asdict

    from measure.board_estimate import decode_step_stats, estimate_step_ms

    calls = np.array([0, 1, 0, 2, 0])
    overhead = np.array([0.01, 0.2, 0.01, 0.3, 0.02])
    summary, assumptions = board_estimate(bundle, calls, overhead)
    # an fp32 host-only bundle is estimated as cv181x BF16
    step = estimate_step_ms(decode_step_stats(asdict(bundle.config), "bf16"), chip="cv181x", quant="bf16").ms
    expected = calls * step + overhead * assumptions["cpu_scale"]
    assert summary["p50"] == pytest.approx(np.percentile(expected, 50), abs=1e-3)
    assert summary["p95"] == pytest.approx(np.percentile(expected, 95), abs=1e-3)
    assert "ESTIMATE" in summary["label"] and assumptions["chip_from_bundle"] is False
    assert "formula" in assumptions and assumptions["step"]["efficiency_source"]


def test_cli_prints_one_json_object(tmp_path, bundle):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    out = subprocess.run([sys.executable, "-m", "runtime.cli", "bench", "latency", "--backend", "numpy",
                          "--bundle", str(bundle.dir), "--text", str(text), "--keystrokes", "150",
                          "--naive-samples", "5", "--json"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    for key in ("backend", "keystrokes", "keystroke_ms", "model_ms", "overhead_ms", "forward_calls_per_keystroke",
                "naive_keystroke_ms", "board_estimate_ms", "assumptions"):
        assert key in report
    assert report["backend"] == "numpy" and report["keystrokes"] == 150
    assert set(report["keystroke_ms"]) == {"p50", "p95", "p99", "max"}
    assert "ESTIMATE" in report["board_estimate_ms"]["label"]
