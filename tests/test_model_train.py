"""Smoke training on CPU (model_export/train.py): a tiny model on a synthetic corpus."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from runtime import reference_model
from runtime.cli import main as edgetype_main
from runtime.tokenizer import Tokenizer

WORDS = ("the cat dog sat on a mat and ran to house garden it was red blue small big "
         "she he saw liked quickly slowly").split()


def write_synthetic_corpus(folder, seed=0, n_paragraphs=300):
    """Paragraphs of random sentences over a 25-word vocabulary, fixed seed."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", n_paragraphs), ("valid", 40), ("test", 40)):
        paragraphs = []
        for _ in range(count):
            sentences = []
            for _ in range(rng.integers(1, 4)):
                words = [str(w) for w in rng.choice(WORDS, size=rng.integers(3, 9))]
                sentences.append(" ".join(words).capitalize() + ".")
            paragraphs.append(" ".join(sentences))
        with gzip.open(folder / f"{name}.txt.gz", "wt", encoding="utf-8") as handle:
            handle.write("\n\n".join(paragraphs) + "\n")
    return folder


def test_train_smoke_writes_a_loadable_model(tmp_path, capsys):
    corpus = write_synthetic_corpus(tmp_path / "corpus")
    out = tmp_path / "model"
    code = edgetype_main(["train", "--smoke", "--corpus", str(corpus), "-o", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    log = json.loads((out / "training_log.json").read_text())
    assert summary["final_valid_loss"] == log["final_valid_loss"]
    # a 25-word language: uniform guessing over the tokenizer's ~35 tokens is ln(35) = 3.6 nats;
    # 40 steps must already beat it clearly
    assert log["final_valid_loss"] < 3.2
    assert log["final_valid_perplexity"] == pytest.approx(np.exp(log["final_valid_loss"]), rel=1e-3)
    cfg = reference_model.ModelConfig.load(out / "config.json")
    weights = reference_model.load_weights(out / "weights.npz", cfg)  # checks names and shapes
    tokenizer = Tokenizer.load(out / "tokenizer.json")
    assert cfg.vocab_size == tokenizer.vocab_size
    ids = tokenizer.encode("The cat sat on the mat.", bos=True)
    logits = reference_model.forward_sequence(weights, cfg, ids)
    assert logits.shape == (len(ids), cfg.vocab_size) and np.isfinite(logits).all()


def test_train_missing_corpus_is_a_user_error(tmp_path, capsys):
    code = edgetype_main(["train", "--smoke", "--corpus", str(tmp_path / "nope"), "-o", str(tmp_path / "m")])
    assert code == 2
    assert "train.txt.gz is missing" in capsys.readouterr().err
