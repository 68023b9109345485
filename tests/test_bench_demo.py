"""`edgetype bench demo` (runtime/bench_demo.py): the real demo typed through as key events."""
from __future__ import annotations

import argparse
import json

import pytest
from test_bundle import make_tiny_bundle

from measure.bench_demo import run_demo_bench

TEXT = ("The cat sat on the mat. The dog sat on the log.\nIt was a good day, and the cat said so. " * 60)


def _args(tmp_path, **overrides):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    bundle = make_tiny_bundle(tmp_path / "bundle", window=32)
    values = dict(text=str(text), chars=2500, backend="numpy", bundle=str(bundle), core="auto",
                  no_accept=False, plot=None, outside=None, json=True, clock="wall")
    values.update(overrides)
    return argparse.Namespace(**values)


def test_bench_demo_reports_the_contract_keys_and_consistent_parts(tmp_path):
    report = run_demo_bench(_args(tmp_path, plot=str(tmp_path / "plot.png")))
    for key in ("keystrokes", "key_ms", "key_ms_first_1000", "key_ms_last_1000", "parts_ms",
                "rss_mib_start", "rss_mib_end", "backend", "core"):
        assert key in report, key
    assert set(report["key_ms"]) == {"p50", "p95", "p99", "max"}
    assert set(report["parts_ms"]) >= {"engine", "journal", "render"}
    assert report["backend"] == "numpy" and report["core"] in ("native", "python")
    assert report["chars_typed_end"] == 2500 and report["skipped_chars"] == 0
    assert 1000 < report["keystrokes"] < 2500 and report["accepted"] > 0  # accepts save keys
    parts_p50 = sum(report["parts_ms"][name]["p50"] for name in ("engine", "journal", "render"))
    assert parts_p50 <= report["key_ms"]["p99"]
    assert report["journal_bytes"] > 0 and (tmp_path / "plot.png").stat().st_size > 1000
    json.dumps(report)


def test_bench_demo_refuses_too_few_chars(tmp_path):
    from runtime.errors import UserError

    with pytest.raises(UserError, match="--chars 100"):
        run_demo_bench(_args(tmp_path, chars=100))


@pytest.mark.slow
def test_outside_replays_time_whole_processes(tmp_path):
    report = run_demo_bench(_args(tmp_path, outside="300,2500", chars=2500))
    outside = report["outside"]
    assert set(outside["by_chars"]) == {"300", "2500"} and outside["startup_s"] > 0
    assert outside["by_chars"]["2500"]["keystrokes"] == 2500
