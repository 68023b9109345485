"""measure/ngram.py: interpolated modified Kneser-Ney, checked by hand on tiny corpora, and its
fast prefix-filtered suggestions checked against the full distribution (the oracle)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from measure import ngram
from runtime.errors import UserError
from measure.ngram import NgramModel, _discounts, perplexity

TINY = ["a b", "a c", "a b"]  # stream: \n a b \n a c \n a b \n


def _flat(d):
    return [[d, d, d]] * 2


def test_tiny_bigram_by_hand():
    m = NgramModel.train(TINY, order=2, min_count=1, discounts=_flat(0.5))
    assert m.vocab == ["<unk>", "\n", "a", "b", "c"]
    uni_count = dict(zip((m.vocab[i] for i in m.levels[0]["keys"]), m.levels[0]["count"]))
    # continuation counts: "a" follows only "\n" (3 times) -> 1; "\n" follows b and c -> 2
    assert uni_count == {"\n": 2, "a": 1, "b": 1, "c": 1}
    # unigram: gamma0 = 0.5 * 4 types / 5; P1(w) = (N1+(.w) - 0.5) / 5 + gamma0 / V
    p1 = {"<unk>": 0.08, "\n": 0.38, "a": 0.18, "b": 0.18, "c": 0.18}
    assert {t: m.p_unigram[m.ids[t]] for t in p1} == pytest.approx(p1)
    # context "a": b x2, c x1, total 3, gamma = 0.5 * 2 / 3
    assert m.prob(["a"], "b") == pytest.approx(1.5 / 3 + (1 / 3) * 0.18)
    assert m.prob(["a"], "c") == pytest.approx(0.5 / 3 + (1 / 3) * 0.18)
    assert m.prob(["a"], "a") == pytest.approx((1 / 3) * 0.18)
    assert m.prob(["a"], "\n") == pytest.approx((1 / 3) * 0.38)
    assert m.distribution(["a"]).sum() == pytest.approx(1.0)
    # the empty context is a paragraph start: "\n" -> a (3 of 3)
    assert m.prob([], "a") == pytest.approx(2.5 / 3 + (0.5 / 3) * 0.18)


def test_modified_discounts_differ_by_count():
    m = NgramModel.train(TINY, order=2, min_count=1,
                         discounts=[[0.5, 0.5, 0.5], [0.3, 0.6, 0.9]])
    gamma = (0.3 * 1 + 0.6 * 1) / 3  # c seen once (D1), b twice (D2)
    assert m.prob(["a"], "b") == pytest.approx((2 - 0.6) / 3 + gamma * 0.18)
    assert m.prob(["a"], "c") == pytest.approx((1 - 0.3) / 3 + gamma * 0.18)


def test_discount_estimate_from_count_of_counts():
    counts = np.array([1] * 10 + [2] * 5 + [3] * 3 + [4] * 2 + [9], dtype=np.float64)
    # Y = 10 / (10 + 2*5) = 0.5; D1 = 1 - 2Y*5/10; D2 = 2 - 3Y*3/5; D3 = 3 - 4Y*2/3
    assert _discounts(counts) == pytest.approx([0.5, 1.1, 3 - 4 / 3])


def _random_corpus(seed: int, n_texts: int = 200) -> list[str]:
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "them", "then", "there",
             "London", "I", "saw", "cats", "mate", "matter", "zebra"]
    texts = []
    for _ in range(n_texts):
        sentence = [rng.choice(words[:8]) if rng.random() < 0.6 else rng.choice(words)
                    for _ in range(rng.randint(2, 12))]
        texts.append(" ".join(sentence) + rng.choice([".", ",", "!", " ."]))
    return texts


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_distribution_sums_to_one_and_matches_prob(order):
    m = NgramModel.train(_random_corpus(1), order=order, min_count=2)
    rng = random.Random(2)
    contexts = [[], ["the"], ["on", "the"], ["zzz", "qqq", "the"], [".", "\n", "then"],
                ["the", "cat", "sat", "on"]]
    contexts += [[rng.choice(m.vocab) for _ in range(rng.randint(1, 5))] for _ in range(10)]
    for context in contexts:
        dist = m.distribution(context)
        assert dist.shape == (m.V,) and dist.sum() == pytest.approx(1.0, abs=1e-9)
        assert (dist > 0).all()
        for token in rng.sample(m.vocab, 5):
            assert m.prob(context, token) == pytest.approx(dist[m.ids[token]], rel=1e-9)


def test_backoff_of_unseen_contexts():
    m = NgramModel.train(_random_corpus(3), order=3, min_count=1)
    unseen = m.distribution(["zebra", "zebra"])  # no (zebra zebra) and likely no bigram "zebra"
    assert m.distribution(["qqqq", "the"]) == pytest.approx(m.distribution(["<unk>", "the"]))
    # an unseen 2-token context backs off to its last token's bigram distribution
    two = m.distribution(["zzzz", "cat"])
    one = NgramModel.train(_random_corpus(3), order=3, min_count=1).distribution(["<unk>", "cat"])
    assert two == pytest.approx(one)
    assert unseen.sum() == pytest.approx(1.0)


def test_suggest_matches_full_distribution_oracle():
    m = NgramModel.train(_random_corpus(4, 400), order=4, min_count=1)
    rng = random.Random(5)
    words = [t for t in m.vocab if t[0].isalnum()]
    for _ in range(150):
        context = [rng.choice(m.vocab) for _ in range(rng.randint(0, 5))]
        word = rng.choice(words)
        prefix = word[:rng.randint(0, len(word))]
        k = rng.choice([1, 3, 7])
        dist = m.distribution(context)
        oracle = sorted((i for i, t in enumerate(m.vocab) if t[0].isalnum() and t.startswith(prefix)),
                        key=lambda i: (-dist[i], i))[:k]
        got = m.suggest(context, prefix, k)
        assert [w for w, _ in got] == [m.vocab[i] for i in oracle], (context, prefix)
        assert [p for _, p in got] == pytest.approx([dist[i] for i in oracle])


def test_suggest_filters_prefix_and_never_offers_punctuation_or_unk():
    m = NgramModel.train(_random_corpus(6), order=3, min_count=2)
    got = m.suggest(["the"], "ma", 10)
    assert got and all(w.startswith("ma") for w, _ in got)
    assert [p for _, p in got] == sorted((p for _, p in got), reverse=True)
    assert m.suggest(["the"], "MA", 10) == got  # the prefix is matched lowercase
    assert m.suggest(["the"], "xq", 3) == [] and m.suggest(["the"], "ma.", 3) == []
    for context in ([], ["sat"], ["."]):
        for word, _ in m.suggest(context, "", 50):
            assert word[0].isalnum() and word != "<unk>"


def test_casing_follows_the_model_rule():
    texts = ["I saw London today.", "We like London and I like it.", "london is big.",
             "The cat sat.", "Then the cat ran to London."]
    m = NgramModel.train(texts, order=3, min_count=1)
    assert m.casing["london"] == "London" and m.casing["i"] == "I" and "the" not in m.casing
    assert m.suggest_cased(["to"], "", sentence_start=False, k=1) == ["London"]
    assert m.suggest_cased(["to"], "lo", sentence_start=False, k=1) == ["london"]  # typed case wins
    assert m.suggest_cased(["to"], "LO", sentence_start=False, k=1) == ["LONDON"]
    assert m.suggest_cased(["cat", "."], "th", sentence_start=True, k=3)[0] in ("the", "then")
    assert m.suggest_cased(["."], "", sentence_start=True, k=5)[0][0].isupper()
    assert "London" in m.suggest_cased(["to"], "Londo", sentence_start=False, k=3)
    assert m.suggest_cased(["to"], "London", sentence_start=False, k=3) == []  # typed in full: nothing to add


def test_rare_words_become_unk():
    m = NgramModel.train(["the cat sat", "the cat ran", "a zebra"], order=2, min_count=2)
    assert "zebra" not in m.ids and "ran" not in m.ids
    assert m.prob(["the"], "zebra") == m.prob(["the"], "<unk>")


def test_save_load_roundtrip_is_pickle_free(tmp_path):
    m = NgramModel.train(_random_corpus(7), order=4, min_count=1)
    path = tmp_path / "model.pkl"  # the exact path is kept, whatever its suffix
    m.save(path)
    assert path.exists() and not (tmp_path / "model.pkl.npz").exists()
    with np.load(path, allow_pickle=False) as data:
        assert "header" in data.files
    again = NgramModel.load(path)
    assert again.vocab == m.vocab and again.casing == m.casing and again.order == 4
    for context, prefix in (([], ""), (["the"], "c"), (["on", "the"], "m")):
        assert again.suggest(context, prefix, 5) == m.suggest(context, prefix, 5)
    bad = tmp_path / "bad.npz"
    np.savez(bad, header=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="not an"):
        NgramModel.load(bad)


def test_order_is_checked():
    with pytest.raises(UserError, match="order"):
        NgramModel.train(["a b"], order=6)
    with pytest.raises(UserError, match="order"):
        NgramModel.train(["a b"], order=0)


def test_perplexity_prefers_the_training_distribution():
    texts = _random_corpus(8, 400)
    m = NgramModel.train(texts, order=3, min_count=1)
    seen = perplexity(m, texts[:50])
    shuffled = perplexity(m, [" ".join(sorted(t.split())) for t in texts[:50]])
    assert seen["tokens"] > 100 and 1 < seen["perplexity"] < shuffled["perplexity"]
    uniform = NgramModel.train(texts, order=1, min_count=1)
    assert perplexity(uniform, texts[:50])["perplexity"] > seen["perplexity"]


def test_load_or_train_uses_the_cache(tmp_path, monkeypatch):
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(_random_corpus(9, 50)) + "\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = ngram.load_or_train(train, order=3)
    path = ngram.cache_path(train, 3)
    assert path.exists() and path.parent == tmp_path / "cache" / "edgetype" / "ngram"
    monkeypatch.setattr(NgramModel, "train", classmethod(lambda *a, **k: pytest.fail("retrained")))
    assert ngram.load_or_train(train, order=3).vocab == first.vocab
