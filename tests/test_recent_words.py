"""runtime/recent_words.py against a plain recount of the text (its reference), and its use in the engine."""
from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from test_bundle import make_tiny_bundle

from runtime.recent_words import MAX_WORD_CHARS, MIN_WORD_CHARS, RecentWords
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
    words = [w.lower() for w in WORD.findall(context) if MIN_WORD_CHARS <= len(w) <= MAX_WORD_CHARS]
    return Counter(words[-capacity:])


def _recount_pairs(text: str, capacity: int) -> tuple[Counter, Counter, str, str]:
    """Reference: (previous word, word) and (word before that, previous word, word) of those cached
    words, and the two words before the partial one."""
    context = text[:_word_start(list(text))]
    words = [w.lower() for w in WORD.findall(context)]
    kept = [i for i, w in enumerate(words) if MIN_WORD_CHARS <= len(w) <= MAX_WORD_CHARS][-capacity:]
    pairs = [(words[i - 1] if i else "", words[i]) for i in kept]
    triples = [(words[i - 2] if i > 1 else "", words[i - 1] if i else "", words[i]) for i in kept]
    tail = context[-64:]
    previous = re.search(r"([A-Za-z0-9']*)[^A-Za-z0-9']*\Z", tail).group(1).lower() if tail else ""
    previous2 = (words[-2] if len(words) > 1 else "") if previous else ""
    return Counter(pairs), Counter(triples), previous, previous2


def _state(recent: RecentWords) -> Counter:
    return Counter({key: recent.count(key) for key in recent.matches("")})


def _pair_state(recent: RecentWords) -> Counter:
    return Counter({(prev, key): n for prev, follow in recent._followers.items() for key, n in follow.items()})


def _triple_state(recent: RecentWords) -> Counter:
    return Counter({(*context, key): n for context, follow in recent._followers2.items() for key, n in follow.items()})


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
        pairs, triples, previous, previous2 = _recount_pairs("".join(chars), 10_000)
        assert _pair_state(recent) == pairs and recent.previous == previous, "".join(chars)[-40:]
        assert _triple_state(recent) == triples and recent.previous2 == previous2, "".join(chars)[-40:]
        assert sum(recent._follower2_totals.values()) == recent.total
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
    assert recent.previous == "an" and recent.followers("") == ({}, 0)
    assert _pair_state(recent) == Counter({("whale", "ahab"): 1, ("ahab", "ship"): 1, ("ship", "sea"): 1})
    assert _triple_state(recent) == Counter({("ahab", "whale", "ahab"): 1, ("whale", "ahab", "ship"): 1,
                                             ("ahab", "ship", "sea"): 1})
    assert recent.previous2 == "sea"
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


def test_followers_of_the_previous_word():
    recent, chars = RecentWords(capacity=100), []
    for text in ["Sherlock Holmes said, ", "and Sherlock Holmes smiled. ", "Sherlock Hopkins ", "Sherlock "]:
        edit = len(chars)
        chars.extend(text)
        recent.sync(chars, len(chars), edit)
    assert recent.previous == "sherlock"
    assert recent.followers("") == ({"holmes": 2, "hopkins": 1}, 3)
    assert recent.followers("Hol") == ({"holmes": 2}, 3)
    assert recent.previous2 == "hopkins" and recent.followers2("") == ({}, 0)
    more = list(" and Sherlock ")
    edit = len(chars)
    chars.extend(more)
    recent.sync(chars, len(chars), edit)
    assert (recent.previous2, recent.previous) == ("and", "sherlock")
    assert recent.followers2("") == ({"holmes": 1}, 1) and recent.followers("h") == ({"holmes": 2, "hopkins": 1}, 4)  # + "Sherlock and"
    long_gap = chars + [" "] * 100
    recent.sync(long_gap, len(long_gap), len(chars))
    assert recent.previous == ""  # nothing within the look-back
    huge = list("a" * 5000 + " ok ")
    recent.sync(huge, len(huge), 0)
    assert recent.total == 0 and recent.previous == "ok"  # a 5,000-letter run is not cached


def test_engine_bigram_cache_predicts_the_next_word(tiny_bundle):
    from runtime.engine import open_session

    with open_session(tiny_bundle, backend="numpy", recent_weight=0.0, recent_bigram_weight=0.5) as session:
        session.insert("Zorblax Quentarino met us. Then Zorblax ")
        assert [s.word for s in session.suggestions(3)][:1] == ["Quentarino"]  # no letter typed yet
    with pytest.raises(Exception, match="together < 1"):
        open_session(tiny_bundle, backend="numpy", recent_weight=0.6, recent_bigram_weight=0.5)


def test_engine_trigram_counts_back_off_to_the_bigram(tiny_bundle):
    """mu's term: (count(w2, w1, w) + beta P_bigram(w)) / (count(w2, w1, *) + beta): after "Zorblax",
    the bigram prefers Quentarino (2 of 3); after "of Zorblax" the trigram picks Vimbletrax."""
    from runtime.engine import open_session

    text = "Zorblax Quentarino. Zorblax Quentarino. Vimbletrax of Zorblax Vimbletrax. "
    with open_session(tiny_bundle, backend="numpy", recent_weight=0.0, recent_bigram_weight=0.9) as session:
        session.insert(text + "So Zorblax ")
        assert [s.word for s in session.suggestions(3)][:1] == ["Quentarino"]
        probs = {s.word: s.prob for s in session.suggestions(3)}
        session.reset()
        session.insert(text + "One of Zorblax ")
        assert [s.word for s in session.suggestions(3)][:1] == ["Vimbletrax"]
        beta = session.recent_trigram_backoff
        p_bigram = {"Quentarino": 2 / 3, "Vimbletrax": 1 / 3}
        p_context = {w: (float(w == "Vimbletrax") + beta * p) / (1 + beta) for w, p in p_bigram.items()}
        probs3 = {s.word: s.prob for s in session.suggestions(3)}
        for word in p_bigram:  # the model's share of these made-up words is ~0: the cache term alone
            assert probs[word] == pytest.approx(0.9 * p_bigram[word], rel=1e-3, abs=1e-4)
            assert probs3[word] == pytest.approx(0.9 * p_context[word], rel=1e-3, abs=1e-4)
