"""The KSR simulation of model_export/tokenization_study.py follows EVALUATION.md (checked with an
oracle model that always puts the true next token first)."""
from __future__ import annotations

import numpy as np
import torch

from model_export.model import ModelShape
from model_export.tokenization_study import ksr_word_model
from runtime.tokenizer import Tokenizer


class OracleLM(torch.nn.Module):
    """Logits [1,T,V] with a 1 at the true next token of a known id sequence."""

    def __init__(self, ids, vocab_size):
        super().__init__()
        self.ids, self.shape = list(ids), ModelShape(vocab_size=vocab_size)

    def forward(self, x):
        window = x[0].tolist()
        start = next(s for s in range(len(self.ids)) if self.ids[s:s + len(window)] == window)
        out = torch.zeros(1, len(window), self.shape.vocab_size)
        for j in range(len(window)):
            if start + j + 1 < len(self.ids):
                out[0, j, self.ids[start + j + 1]] = 1.0
        return out


def test_oracle_saves_all_but_one_keystroke_per_word():
    tokenizer = Tokenizer.train(["The cat sat on the mat. A dog ran to the cat."], vocab_size=64, min_count=1)
    text = "The cat sat on the mat."
    model = OracleLM(tokenizer.encode(text, bos=True), tokenizer.vocab_size)
    result = ksr_word_model(model, tokenizer, [text], window=128, device="cpu")
    # 6 words accepted with one keystroke each + 5 spaces + "." = 12 keystrokes for 23 characters
    assert result["keystrokes"] == 12 and result["characters"] == 23
    assert np.isclose(result["ksr"], 1 - 12 / 23)
    assert result["top1_next_word"] == 1.0
    assert result["forward_calls"] == 8  # <bos> + 7 tokens


def test_casing_mismatch_costs_a_keystroke():
    tokenizer = Tokenizer.train(["The cat sat. the end of the cat."], vocab_size=64, min_count=1)
    text = "The cat. the cat."  # the second "the" starts a sentence but is typed lowercase
    model = OracleLM(tokenizer.encode(text, bos=True), tokenizer.vocab_size)
    result = ksr_word_model(model, tokenizer, [text], window=128, device="cpu")
    # words: The(1) cat(1) the(2: "The" suggested first, accepted after typing "t") cat(1) = 5;
    # separators: " ", ".", " ", " ", "." = 5
    assert result["keystrokes"] == 10 and result["characters"] == 17
