"""The fidelity harness of `edgetype eval window` (measure/window_fidelity.py, measure/cli_window.py)."""
import json

import numpy as np

from measure.window_fidelity import LogitsPredictor, agreement, full_context_logits, ksr
from kv_window.policies import POLICIES
from tpu_driver.reference_model import ModelConfig, forward_sequence, init_weights
from runtime.tokenizer import SPECIALS, Tokenizer


def test_chunked_full_context_equals_forward_sequence():
    cfg = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, window=8)
    weights = init_weights(cfg, seed=3)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=45)
    np.testing.assert_allclose(full_context_logits(weights, cfg, tokens, chunk=7),
                               forward_sequence(weights, cfg, tokens), rtol=1e-4, atol=1e-4)


def test_agreement_metrics():
    rows = np.random.default_rng(1).standard_normal((20, 11)).astype(np.float32)
    assert agreement(rows, rows) == (1.0, 0.0)
    other = rows.copy()
    other[:5] = -other[:5]  # flips the argmax of the first 5 rows
    top1, kl = agreement(rows, other)
    assert top1 == 0.75
    p = np.exp(rows[:5].astype(np.float64))
    p /= p.sum(-1, keepdims=True)
    q = np.exp(other[:5].astype(np.float64))
    q /= q.sum(-1, keepdims=True)
    assert np.isclose(kl, (p * np.log(p / q)).sum() / 20, rtol=1e-6)


WORDS = ["the", "tea", "ten", "tap", "cat", "car", "can", "cap", "cab", "."]


def rows_preferring(tokenizer, order_per_row):
    rows = np.zeros((len(order_per_row), tokenizer.vocab_size), np.float32)
    for r, order in enumerate(order_per_row):
        for rank, word in enumerate(order):
            rows[r, tokenizer.ids[word]] = 100.0 - rank
    return rows


def test_ksr_of_rows_counts_keystrokes_as_the_ideal_user():
    tokenizer = Tokenizer(list(SPECIALS) + WORDS)
    text = "The cat."
    assert tokenizer.encode(text, bos=True) == [2, 4, 8, 13]
    perfect = rows_preferring(tokenizer, [["the"], ["cat"], ["."], ["."]])
    assert ksr(text, tokenizer, perfect) == 1 - 4 / 8  # The, space, cat, '.': one keystroke each
    adverse = ["tea", "ten", "tap", "car", "can", "cap", "cab", "the", "cat"]
    # "The": T, h typed, then only "The" matches "Th": 3; space 1; "cat" typed fully 3; "." 1 -> 8
    assert ksr(text, tokenizer, rows_preferring(tokenizer, [adverse] * 4)) == 0.0


def test_predictor_uses_the_row_after_the_context_tokens():
    tokenizer = Tokenizer(list(SPECIALS) + WORDS)
    rows = rows_preferring(tokenizer, [["the"], ["cab", "the", "cap"], ["."], ["."]])
    predictor = LogitsPredictor(tokenizer, rows)
    assert predictor.suggest(1) == ["The"]
    predictor.insert("The ")
    assert predictor.suggest(1) == ["cab"]
    predictor.insert("c")
    assert predictor.suggest(2) == ["cab", "cap"]  # prefix-filtered, best logit first


def test_eval_window_cli_json_and_plot(tmp_path, capsys):
    from runtime.cli import main

    sentences = ["the cat sat on the mat.", "a dog ran to the park and sat down.", "we went home late at night.",
                 "she said that the rain would stop soon.", "they ate bread and cheese by the river."]
    rng = np.random.default_rng(0)
    text = " ".join(sentences[i] for i in rng.integers(0, len(sentences), size=60))
    path = tmp_path / "text.txt"
    path.write_text(text)
    png = tmp_path / "fidelity.png"
    code = main(["eval", "window", "--text", str(path), "--random-weights", "0", "--window", "32", "--policy", "sink",
                 "--max-chars", "1500", "--sweep", "16,32", "--plot", str(png), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("window", "policy", "steps", "top1_agreement", "kl_mean", "ksr_full", "ksr_window",
                "median_step_ms", "max_step_ms"):
        assert key in result
    assert result["window"] == 32 and result["policy"] == "sink" and result["steps"] > 4 * 32
    assert 0.0 <= result["top1_agreement"] <= 1.0 and result["kl_mean"] >= 0.0
    assert result["evicting_steps"] > 0
    assert {(r["policy"], r["window"]) for r in result["sweep"]} == {(p, w) for p in POLICIES for w in (16, 32)}
    assert {r["policy"]: r["evict_batch"] for r in result["sweep"] if r["window"] == 32}["fifo"] == 1  # its own batch
    assert png.stat().st_size > 1000
