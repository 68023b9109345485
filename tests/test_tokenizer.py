"""Word tokenizer, prefix index and casing (runtime/tokenizer.py)."""
import pytest

from runtime.tokenizer import (BOS_ID, NL_ID, UNK_ID, Tokenizer, apply_casing, is_sentence_start,
                               split_pieces)

TEXT = ("The cat sat on the mat. The dog didn't. I think London is big, and I like London.\n\n"
        "Then the cat ran to the dog and the cat sat.")


def test_split_pieces_words_punctuation_and_line_breaks():
    assert list(split_pieces("Don't stop,\n\n  now!")) == [
        ("Don't", True), ("stop", True), (",", False), ("\n", False), ("now", True), ("!", False)]


def test_encode_roundtrip_and_unknowns():
    tok = Tokenizer.train([TEXT], vocab_size=100, min_count=1)
    ids = tok.encode("the cat zebra.\nthe", bos=True)
    assert ids[0] == BOS_ID and UNK_ID in ids and NL_ID in ids
    assert tok.decode(tok.encode("the cat sat.")) == "the cat sat ."


def test_vocab_size_is_respected_and_frequent_first():
    tok = Tokenizer.train([TEXT], vocab_size=8, min_count=1)
    assert tok.vocab_size == 8
    assert "the" in tok.ids and "cat" in tok.ids


def test_casing_learned_mid_sentence():
    tok = Tokenizer.train([TEXT], vocab_size=100, min_count=1)
    assert tok.casing["i"] == "I" and tok.casing["london"] == "London"
    assert "the" not in tok.casing  # "The" only at sentence starts


def test_prefix_ids_is_case_insensitive_and_exact():
    tok = Tokenizer.train([TEXT], vocab_size=100, min_count=1)
    words = {tok.tokens[i] for i in tok.prefix_ids("Th")}
    assert words == {"the", "then", "think"}
    assert len(tok.prefix_ids("zzz")) == 0
    assert all(tok.is_word[i] for i in tok.prefix_ids(""))


@pytest.mark.parametrize("word,prefix,start,usual,expected", [
    ("the", "", True, None, "The"),
    ("the", "", False, None, "the"),
    ("the", "T", False, None, "The"),
    ("the", "TH", False, None, "THE"),
    ("london", "", False, "London", "London"),
    ("london", "l", False, "London", "london"),
    ("i", "", False, "I", "I"),
])
def test_apply_casing(word, prefix, start, usual, expected):
    assert apply_casing(word, prefix, start, usual) == expected


def test_sentence_start():
    assert is_sentence_start("") and is_sentence_start("Hi. ") and is_sentence_start('He said "no!" ')
    assert is_sentence_start("line\n") and not is_sentence_start("Hello, ")
    # a title's or a single letter's period is not a sentence end; a line break still is
    for text in ("Mr. ", "We met Dr. ", "at 10 a.m. ", "the U.S. ", "John F. "):
        assert not is_sentence_start(text), text
    assert is_sentence_start("Mr.\n") and is_sentence_start("It was ok. ")


def test_save_load_and_bad_file(tmp_path):
    tok = Tokenizer.train([TEXT], vocab_size=50, min_count=1)
    tok.save(tmp_path / "t.json")
    again = Tokenizer.load(tmp_path / "t.json")
    assert again.tokens == tok.tokens and again.tokenizer_id == tok.tokenizer_id
    (tmp_path / "bad.json").write_bytes(b"\xff\x00garbage")
    with pytest.raises(ValueError, match="bad.json"):
        Tokenizer.load(tmp_path / "bad.json")


def test_oov_lexicon_holds_words_outside_the_vocabulary():
    text = "alpha beta beta gamma gamma gamma Zeta zeta delta delta. " * 2
    tok = Tokenizer.train([text], vocab_size=len(("<pad>", "<unk>", "<bos>", "<nl>")) + 3, min_count=2)
    vocab_words = {t for t in tok.tokens[4:]}
    assert "gamma" in vocab_words
    assert set(tok.lexicon_words).isdisjoint(vocab_words) and "alpha" in tok.lexicon_words
    start, end = tok.lexicon_range("AL")
    assert tok.lexicon_words[start:end] == ["alpha"]
    # P(word | <unk>) sums to one over the lexicon
    import numpy as np
    assert abs(float(np.exp(tok.lexicon_log_prior.astype(np.float64)).sum()) - 1.0) < 1e-5


def test_lexicon_survives_save_load_and_keeps_the_id(tmp_path):
    text = "alpha beta beta gamma gamma gamma delta delta. " * 2
    tok = Tokenizer.train([text], vocab_size=6, min_count=2)
    tok.save(tmp_path / "t.json")
    again = Tokenizer.load(tmp_path / "t.json")
    assert again.lexicon_words == tok.lexicon_words
    assert again.tokenizer_id == Tokenizer(tok.tokens, {w: f for w, f in tok.casing.items() if w in tok.ids}).tokenizer_id
