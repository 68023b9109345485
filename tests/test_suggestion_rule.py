"""One suggestion rule (runtime/suggestion_rule.py) for the engine, `eval window` and the n-gram
baseline: the same partial-word limit, the completes rule and one word per casing."""
import numpy as np

from measure.window_fidelity import LogitsPredictor
from runtime import suggestion_rule as rule
from runtime.tokenizer import SPECIALS, Tokenizer

LONG = "pneumonoultramicroscopicsilicovolcanoconiosis"  # 45 letters: over the limit once fully typed


def test_the_rule_itself():
    assert rule.pick(["the", "The", "then", "th"], "th", 3) == ["the", "then"]  # "th" adds nothing, "The" twice
    assert rule.suggests_for("x" * rule.MAX_PARTIAL_CHARS) and not rule.suggests_for("x" * (rule.MAX_PARTIAL_CHARS + 1))


def test_eval_window_offers_words_up_to_the_engines_partial_word_limit():
    """`eval window` used its own limit (24 < the engine's 40): a 30-letter partial word got no
    suggestion there while the engine offered one, so the two KSRs differed."""
    tokenizer = Tokenizer(list(SPECIALS) + [LONG, "."])
    rows = np.zeros((3, tokenizer.vocab_size), np.float32)
    rows[:, tokenizer.ids[LONG]] = 10.0
    predictor = LogitsPredictor(tokenizer, rows)
    predictor.insert(LONG[:30])
    assert predictor.suggest(3) == [LONG]
    predictor.insert(LONG[30:41])  # 41 characters typed: over the limit, as in the engine
    assert predictor.suggest(3) == []


def test_the_ngram_baseline_keeps_one_word_per_casing_and_only_completions():
    from measure.ngram import NgramModel

    model = NgramModel.train(["the cat sat . the cat ran . the dog sat ."], order=2, min_count=1)
    words = model.suggest_cased(["the"], "c", False, k=3)
    assert words and all(w.lower().startswith("c") and len(w) > 1 for w in words)
    assert len({w.lower() for w in words}) == len(words)


def test_one_partial_word_split():
    from runtime.tokenizer import partial_word_start

    assert [partial_word_start(t) for t in ("", "the ca", "the ", "don't", "a,b")] == [0, 4, 4, 0, 2]
