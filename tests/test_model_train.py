"""Smoke training on CPU (model_export/train.py): a tiny model on a synthetic corpus."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model_export.tiny_model import write_synthetic_corpus
from tpu_driver import reference_model
from runtime.cli import main as edgetype_main
from runtime.tokenizer import Tokenizer


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


def test_train_flags_set_the_shape_and_refuse_bad_values():
    import argparse

    from model_export.train import add_train_arguments, settings_from_args
    from runtime.errors import UserError

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--vocab-size", "16384", "--alibi-max-bias", "8", "--dropout", "0.2"]))
    assert settings.vocab_size == 16384 and settings.alibi_max_bias == 8.0 and settings.dropout == 0.2
    assert settings_from_args(parser.parse_args([])).vocab_size == 8192
    for bad in (["--vocab-size", "10"], ["--vocab-size", "100000"], ["--alibi-max-bias", "0"], ["--dropout", "1"]):
        with pytest.raises((UserError, SystemExit)):  # argparse types (runtime/argtypes.py) or settings
            settings_from_args(parser.parse_args(bad))


def test_parallel_tokenizer_and_encoding_equal_the_serial_ones():
    from model_export.train import encode_stream, train_tokenizer
    from runtime.tokenizer import Tokenizer

    words = ["alpha", "Beta", "gamma", "delta", "Epsilon", "zeta", "eta", "theta"]
    paragraphs = [" ".join(words[(i * j) % 8] for j in range(1 + i % 7)) + ("." if i % 3 else " X y!")
                  for i in range(12_000)]
    serial = Tokenizer.train(paragraphs, vocab_size=12)  # a small vocabulary: ties decide
    parallel = train_tokenizer(paragraphs, 12, processes=3)
    assert parallel.tokens == serial.tokens and parallel.casing == serial.casing
    assert parallel.lexicon_words == serial.lexicon_words
    assert (encode_stream(serial, paragraphs, processes=3) == encode_stream(serial, paragraphs)).all()
