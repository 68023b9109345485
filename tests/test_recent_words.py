"""runtime/recent_words.py against a plain recount of the text (its reference), and its use in the engine."""
from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from test_bundle import make_tiny_bundle

from runtime.recent_words import MIN_WORD_CHARS, RecentWords
from runtime.tokenizer import is_word_char

WORD = re.compile(r"[A-Za-z0-9']+")


def _word_start(chars: list[str]) -> int:
    i = len(chars)
    while i > 0 and is_word_char(chars[i - 1]):
        i -= 1
    return i


def _recount(text: str, capacity: int) -> Counter:
    """Reference: the last `capacity` completed words (>= MIN_WORD_CHARS) of the text, lowercased."""
    context = text[:_word_start(list(text))]
    words = [w.lower() for w in WORD.findall(context) if len(w) >= MIN_WORD_CHARS]
    return Counter(words[-capacity:])


def _state(recent: RecentWords) -> Counter:
    return Counter({key: recent.count(key) for key in recent.matches("")})


def test_random_edits_match_a_recount_of_the_text():
    rng = random.Random(7)
    alphabet = list("abcde") + [" ", " ", ",", ".", "\n", "'", "A"]
    recent, chars = RecentWords(capacity=10_000), []
    for _ in range(4000):
        roll = rng.random()
        if roll < 0.15 and chars:  # backspace
            chars.pop()
            edit = len(chars)
        elif roll < 0.2 and chars:  # delete a run (a word deletion, a cut)
            edit = rng.randrange(len(chars))
            del chars[edit:]
        else:
            edit = len(chars)
            chars.extend(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
        recent.sync(chars, _word_start(chars), edit)
        assert _state(recent) == _recount("".join(chars), 10_000)
        assert recent.total == sum(_recount("".join(chars), 10_000).values())


def test_capacity_keeps_the_most_recent_words_and_prefix_lookup():
    recent, chars = RecentWords(capacity=3), []
    for word in ["Ahab", "whale", "Ahab", "ship", "sea", "an"]:
        edit = len(chars)
        chars.extend(word + " ")
        recent.sync(chars, len(chars), edit)
    assert _state(recent) == Counter({"ship": 1, "sea": 1, "ahab": 1})  # "an" is too short
    assert recent.matches("s") == ["sea", "ship"] and recent.matches("AH") == ["ahab"]
    assert recent.surface("ahab") == "Ahab"
    recent.reset()
    assert recent.total == 0 and recent.matches("") == []
    with pytest.raises(ValueError):
        RecentWords(capacity=0)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("recent") / "b", window=64)


def test_engine_suggests_a_new_word_once_typed(tiny_bundle):
    """A word neither the vocabulary nor the lexicon knows becomes a suggestion after one use."""
    from runtime.engine import open_session

    new_word = "Zqxvarion"
    with open_session(tiny_bundle, backend="numpy") as session:
        session.insert(f"I met {new_word} today. ")
        session.insert("Zq")
        assert [s.word for s in session.suggestions(3)][:1] == [new_word]
        session.backspace(), session.backspace()
        for _ in range(len(new_word) + len(" today. ")):
            session.backspace()  # the word is no longer completed: forgotten
        session.insert(" and Zq")
        assert new_word not in [s.word for s in session.suggestions(3)]
    with open_session(tiny_bundle, backend="numpy", recent_weight=0.0) as session:
        session.insert(f"I met {new_word} today. Zq")
        assert new_word not in [s.word for s in session.suggestions(3)]
