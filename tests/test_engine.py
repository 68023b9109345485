"""The Session engine (runtime/engine.py) on the numpy backend against the reference model."""
import re

import numpy as np
import pytest
from test_bundle import make_tiny_bundle

from runtime.bundle import load_bundle
from runtime.engine import MAX_PARTIAL_CHARS, open_session
from runtime.errors import UserError
from tpu_driver.reference_model import forward_sequence, load_weights
from runtime.tokenizer import BOS_ID


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("engine") / "b", window=64))


@pytest.fixture(scope="module")
def weights(bundle):
    return load_weights(bundle.weights_path, bundle.config)


def _log_softmax(logits):
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def _expected(bundle, weights, text):
    """Context tokens (BOS + every complete token) and the oracle's next-token log-probs."""
    context = re.sub(r"[A-Za-z0-9']+\Z", "", text)
    tokens = [BOS_ID] + bundle.tokenizer.encode(context)
    return tokens, _log_softmax(forward_sequence(weights, bundle.config, tokens)[-1].astype(np.float64))


def _check(session, bundle, weights):
    tokens, want = _expected(bundle, weights, session.text)
    assert session.context_tokens == tokens, session.text
    np.testing.assert_allclose(session._current, want, atol=2e-4)


def test_typing_matches_full_recompute_and_costs_no_forward_inside_words(bundle, weights):
    session = open_session(bundle, backend="numpy")
    assert session.backend_name == "numpy"
    for char in "The cat sat":
        session.insert(char)
        if char.isalpha() and session.partial_word != char:
            assert session.last_forward_calls == 0, char
        _check(session, bundle, weights)
    session.insert(" ")
    assert session.last_forward_calls == 1  # "sat" completed
    session.insert(",")
    assert session.last_forward_calls == 1  # ","
    session.insert("\n")
    assert session.last_forward_calls == 1 and session.context_tokens[-1] == 3  # <nl>
    session.insert(" ")
    assert session.last_forward_calls == 0  # still the same line break
    _check(session, bundle, weights)


@pytest.mark.parametrize("policy", ["sink", "fifo"])
def test_random_edits_stay_equal_to_the_oracle(bundle, weights, policy):
    rng = np.random.default_rng(7)
    session = open_session(bundle, backend="numpy", ring_size=4, window_policy=policy)
    assert type(session.window).__name__ == "KVWindow" and session.window.policy == policy
    pieces = ["the", "cat", " ", " ", ",", ".", "\n", "dog", "x", "é", "I", "'"]
    for step in range(150):
        r = rng.random()
        if r < 0.55:
            session.insert(pieces[rng.integers(len(pieces))])
        elif r < 0.8:
            session.backspace()
        elif r < 0.9:
            session.delete_word()
        else:
            session.insert(" ".join(rng.choice(["the", "cat", "sat", "on", ".", "\n"], size=int(rng.integers(2, 9)))))
        _check(session, bundle, weights)
        if len(session.context_tokens) > 50:  # stay inside the window (64): no eviction here
            session.reset()


def test_backspace_into_previous_word_restores_without_forward(bundle, weights):
    session = open_session(bundle, backend="numpy")
    session.insert("the cat sat on the ")
    before = session.forward_calls
    session.backspace()  # back into "the": distribution after "on" comes from the ring
    assert session.forward_calls == before and session.partial_word == "the"
    _check(session, bundle, weights)
    session.backspace()
    session.backspace()
    session.backspace()  # "the cat sat on " : same tokens
    session.backspace()  # "the cat sat on"
    assert session.forward_calls == before
    _check(session, bundle, weights)


def test_ring_miss_costs_one_forward(bundle, weights):
    session = open_session(bundle, backend="numpy", ring_size=2)
    session.insert("the cat sat on the mat ")
    before = session.forward_calls
    session.delete_word()  # back to "the cat sat on the " -> last word gone
    session.delete_word()
    session.delete_word()
    assert session.forward_calls - before <= 3
    _check(session, bundle, weights)


def test_suggestions_prefix_casing_and_accept(bundle, weights):
    session = open_session(bundle, backend="numpy")
    session.insert("We think ")
    suggestions = session.suggestions(3)
    assert 1 <= len(suggestions) <= 3
    log_probs = _expected(bundle, weights, session.text)[1]
    tok = bundle.tokenizer
    words = [i for i in range(tok.vocab_size) if tok.is_word[i]]
    best = max(words, key=lambda i: log_probs[i])
    assert suggestions[0].token_id == best
    assert abs(suggestions[0].prob - np.exp(log_probs[best])) < 1e-4
    assert [s.prob for s in suggestions] == sorted((s.prob for s in suggestions), reverse=True)
    session.insert("Th")
    for s in session.suggestions(5):
        assert s.word.startswith("Th") and tok.tokens[s.token_id].startswith("th")
    chosen = session.suggestions(3)[0].word
    rest = session.accept(0)
    assert session.text == "We think " + chosen and rest == chosen[2:]
    with pytest.raises(IndexError, match="no suggestion"):
        session.accept(0)  # suggestions are gone after an edit
    session.insert(". ")
    assert all(s.word[0].isupper() or not s.word[0].isalpha() for s in session.suggestions(3))
    for word in ("the", "The", "that", "a"):  # a word typed in full is not offered again: it saves nothing
        if word.lower() in tok.ids:
            session.insert(" " + word)
            offered = [s.word for s in session.suggestions(10)]
            assert word not in offered and all(w.startswith(word) and len(w) > len(word) for w in offered)
    session.insert("i")
    session.insert(" ")
    session.insert("I")  # casing: "i" -> "I"
    assert session.suggestions(3)


def test_bad_input_never_crashes(bundle):
    session = open_session(bundle, backend="numpy")
    session.backspace()  # at start: no-op
    session.delete_word()
    assert session.text == "" and session.context_tokens == [BOS_ID]
    session.insert("x" * (MAX_PARTIAL_CHARS + 5))
    assert session.suggestions(3) == []
    session.insert(" \x00\ufffd😀 zebra-like " + "a" * 5000 + " ")
    assert session.suggestions(3)
    session.insert("the " * 400)  # a paste longer than prefill_max_tokens
    assert session.suggestions(3)
    session.reset()
    assert session.text == "" and session.context_tokens == [BOS_ID]


def test_long_paste_keeps_the_last_window(bundle, weights):
    session = open_session(bundle, backend="numpy", prefill_max_tokens=10)
    text = " ".join(["the cat sat on the mat ."] * 20) + " "
    session.insert(text)
    W = bundle.config.window
    tokens = session.context_tokens
    truncated = [BOS_ID] + tokens[-(W - 1):]
    want = _log_softmax(forward_sequence(weights, bundle.config, truncated)[-1].astype(np.float64))
    np.testing.assert_allclose(session._current, want, atol=2e-4)
    session.backspace()
    session.backspace()  # into "." -> rollback across the rebuilt region still gives valid state
    assert session.suggestions(3)


def test_unknown_backend_is_refused(bundle):
    with pytest.raises(UserError, match="unknown backend"):
        open_session(bundle, backend="gpu")


def test_cli_suggest_json(bundle, capsys):
    import json

    from runtime.cli import main

    assert main(["suggest", "We think th", "--backend", "numpy", "--bundle", str(bundle.dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "numpy" and 1 <= len(report["suggestions"]) <= 3
    assert all(s["word"].startswith("th") for s in report["suggestions"])
    assert main(["suggest", "x", "--backend", "numpy", "--bundle", str(bundle.dir / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_delete_word_and_accept_semantics(bundle):
    session = open_session(bundle, backend="numpy")
    session.insert("the cat, sat  ")
    session.delete_word()
    assert session.text == "the cat, "
    session.delete_word()
    assert session.text == "the cat"  # a non-word character goes one at a time
    session.delete_word()
    assert session.text == "the " and session.partial_word == ""
    session.insert("TH")
    words = [s.word for s in session.suggestions(3)]
    assert words and all(w.startswith("TH") and w == w.upper() for w in words)  # all-caps prefix
    rest = session.accept(0)
    assert session.text == "the " + words[0] and rest == words[0][2:] and session.last_forward_calls == 0


@pytest.mark.parametrize("ring_size", [64, 2])
def test_rollback_across_evictions_replays_exactly(tmp_path, ring_size):
    """Past the window (evictions happen), backspacing and retyping the same text gives the very
    same distributions: the KV window's undo log restores evicted slots, the ring the rows."""
    small = load_bundle(make_tiny_bundle(tmp_path / "w16", window=16))
    session = open_session(small, backend="numpy", ring_size=ring_size)
    prefix = "the cat sat on the mat . the dog sat on the log . " * 2
    tail = "we think the cat ran to the dog , and the dog ran . "
    session.insert(prefix)
    rows = []
    for char in tail:
        session.insert(char)
        rows.append(session._current.copy())
    assert len(session.context_tokens) > 2 * small.config.window  # well past the window
    for _ in range(len(tail)):
        session.backspace()
    for char, want in zip(tail, rows):
        session.insert(char)
        np.testing.assert_allclose(session._current, want, atol=1e-5)


def test_oov_lexicon_completes_words_outside_the_vocabulary(tmp_path):
    """Words the vocabulary lacks come from the tokenizer's OOV lexicon, ranked by
    LEXICON_WEIGHT * P(<unk>|context) * P(word|<unk>), and never before 2 characters are typed."""
    from test_bundle import make_tiny_model_dir
    from runtime.tokenizer import Tokenizer

    directory = make_tiny_model_dir(tmp_path / "m")
    tok = Tokenizer.load(directory / "tokenizer.json")
    assert "zebra" not in tok.ids
    Tokenizer(tok.tokens, tok.casing, {"zebra": 30, "zebrafish": 10, "Zurich": 5}).save(directory / "tokenizer.json")
    with open_session(directory, backend="numpy") as session:
        session.insert("the ")
        assert all(not s.word.startswith("zebra") for s in session.suggestions(3))
        session.insert("z")
        assert all(s.word not in ("zebra", "zebrafish") for s in session.suggestions(3))
        session.insert("e")
        words = [s.word for s in session.suggestions(3)]
        assert words[:2] == ["zebra", "zebrafish"], words
        probs = [s.prob for s in session.suggestions(3)][:2]
        assert abs(probs[0] / probs[1] - 3.0) < 1e-3  # P(word|<unk>) in proportion to the counts
        from runtime.engine import LEXICON_WEIGHT
        p_unk = float(np.exp(session._current[tok.ids["<unk>"]]))
        assert probs[0] == pytest.approx(LEXICON_WEIGHT * p_unk * 30 / 45, rel=1e-4)
        assert session.accept(0) == "bra" and session.text.endswith("zebra")
    with open_session(directory, backend="numpy", lexicon_weight=0.0) as session:
        session.insert("the ze")
        assert all(not s.word.startswith("zebra") for s in session.suggestions(3))  # lexicon off


def test_log_prob_bundle_rows_are_copied_not_renormalised(tmp_path, weights):
    """A bundle whose graph ends in LogSoftmax (manifest logits_are_log_probs, issue #15): the engine
    copies the row (no CPU log-softmax) and still equals the oracle; the backend follows the flag."""
    from test_bundle import _edit_manifest

    directory = make_tiny_bundle(tmp_path / "lp", window=64)
    _edit_manifest(directory, logits_are_log_probs=True)
    flagged = load_bundle(directory)
    session = open_session(flagged, backend="numpy")
    assert session.stepper.logits_are_log_probs and session.backend.log_probs
    for char in "The cat sat ":
        session.insert(char)
    _check(session, flagged, weights)
    # the flag alone (raw logits from the backend) would not be normalised: the copy path is real
    session.backend.log_probs = False
    session.insert("on ")
    with pytest.raises(AssertionError):
        _check(session, flagged, weights)
