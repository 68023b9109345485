"""Ideal-user simulation and `eval ksr` (measure/evaluate.py) on hand-made examples."""
import gzip
import re

import pytest
from test_bundle import make_tiny_bundle

from runtime.bundle import load_bundle
from runtime.engine import open_session
from runtime.errors import UserError
from measure.evaluate import NgramPredictor, evaluate_ksr, read_eval_text, simulate_ideal_user


class FakePredictor:
    """Suggests the words of `ranking` that start with the partial word, in ranking order."""

    def __init__(self, ranking):
        self.ranking = ranking
        self.log = []

    def reset(self):
        self.text = ""

    def insert(self, text):
        self.log.append(text)
        self.text += text

    def suggest(self, k):
        partial = re.search(r"[A-Za-z0-9']*\Z", self.text).group()
        return [w for w in self.ranking if w.startswith(partial)][:k]


RANKING = ["the", "then", "cat", "car", "sat"]


def test_exact_keystrokes_k1():
    result = simulate_ideal_user("the cat sat.", FakePredictor(RANKING), k=1).total
    # the: accept (1) | ' ' (1) | cat: c + accept (2) | ' ' | sat: s + accept (2) | '.'
    assert (result.chars, result.keystrokes, result.words) == (12, 8, 3)
    assert result.ksr == pytest.approx(1 - 8 / 12)
    assert (result.top1_hits, result.top3_hits) == (1, 2)  # top-3 always looks at 3 suggestions


def test_exact_keystrokes_k3_and_accept_inserts_rest_without_space():
    predictor = FakePredictor(RANKING)
    result = simulate_ideal_user("the cat sat.", predictor, k=3).total
    assert result.keystrokes == 7
    assert predictor.text == "the cat sat." and predictor.log[:3] == ["the", " ", "cat"]


def test_unknown_words_case_and_separators_are_typed():
    result = simulate_ideal_user("The dog, 42!\n", FakePredictor(RANKING), k=3).total
    # "The" != "the" (case-sensitive): T,h,e typed (no suggestion starts with "T") = 3; "dog" = 3
    # "42" = 2; separators " ", ",", " ", "!", "\n" = 5
    assert result.keystrokes == 13 and result.chars == 13 and result.ksr == 0.0
    assert result.top1_hits == 0 and result.words == 3


def test_word_suggested_only_after_some_letters():
    # "car" is ranked after "cat": visible with k=1 only after "car" is fully typed? no: after "ca" -> cat
    result = simulate_ideal_user("car", FakePredictor(RANKING), k=1).total
    assert result.keystrokes == 3  # c, a, r: at "car" the word is complete, no more chances
    result = simulate_ideal_user("car", FakePredictor(RANKING), k=2).total
    assert result.keystrokes == 2  # c, then "car" is the 2nd suggestion


def test_segments_add_up():
    text = "the cat sat. " * 30
    result = simulate_ideal_user(text, FakePredictor(RANKING), k=1, segment_chars=100)
    assert len(result.segments) >= 3
    assert sum(s.chars for s in result.segments) == len(text)
    assert sum(s.keystrokes for s in result.segments) == result.total.keystrokes
    assert sum(s.words for s in result.segments) == result.total.words


def test_read_eval_text_bad_inputs(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(UserError, match="empty"):
        read_eval_text(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match="binary"):
        read_eval_text(binary)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 ok \xef\xbf\xbd\r\n")
    text, replaced = read_eval_text(bad)
    assert replaced == 1 and text == "caf\ufffd ok \ufffd\n"
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress(b"the cat"))
    assert read_eval_text(gz) == ("the cat", 0)
    with pytest.raises(UserError, match="cannot read"):
        read_eval_text(tmp_path / "missing.txt")


def test_ngram_predictor_context_prefix_and_casing():
    from measure.ngram import NgramModel

    text = "The cat sat in London. I saw London, the cat sat.\nThe cat sat in the hat. I think.\n" * 3
    ngram = NgramModel.train([text], order=3, min_count=1)
    predictor = NgramPredictor(ngram)
    seen = []
    real = ngram.suggest_cased
    ngram.suggest_cased = lambda context, prefix, start, k: seen.append((tuple(context), prefix, start)) or real(context, prefix, start, k)
    predictor.reset()
    assert predictor.suggest(3)[0] == "The"  # sentence start capitalises
    predictor.insert("the cat ")
    assert predictor.suggest(1) == ["sat"] and seen[-1] == (("the", "cat"), "", "plain")  # casing_context mode
    predictor.insert("sat in l")
    assert predictor.suggest(3) == ["london"] and seen[-1][:2] == (("the", "cat", "sat", "in"), "l")
    predictor.insert("ondon.")
    predictor.insert("\n")
    predictor.insert("\n ")
    assert predictor.suggest(1) == ["The"] and seen[-1][0][-3:] == ("london", ".", "\n")


def test_engine_run_counts_and_forward_budget(tmp_path):
    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", window=32))
    session = open_session(bundle, backend="numpy")
    text = "The cat sat on the mat. The dog sat on the log.\nWe thank you for the time, and the cat ran. "
    report = evaluate_ksr(text, session, k=3, quiet=True, segment_chars=40)
    assert report["chars"] == len(text) and report["backend"] == "numpy"
    assert 0 <= report["keystrokes"] <= len(text) and report["ksr"] == pytest.approx(1 - report["keystrokes"] / len(text), abs=1e-5)
    n_tokens = len(bundle.tokenizer.encode(text))
    assert report["forward_calls"] <= n_tokens + 1  # one decode step per token (+ BOS at reset)
    again = evaluate_ksr(text, open_session(bundle, backend="numpy"), k=3, quiet=True)
    assert again["keystrokes"] == report["keystrokes"]  # deterministic


def test_cli_eval_ksr_json_with_baseline_and_plot(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from test_bundle import TINY_TEXT

    bundle = make_tiny_bundle(tmp_path / "b", window=32)
    train = tmp_path / "train.txt.gz"
    train.write_bytes(gzip.compress(TINY_TEXT.encode() * 5))
    text = tmp_path / "eval.txt"
    text.write_bytes(TINY_TEXT.encode() + b"caf\xe9 \xff\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "runtime.cli", "eval", "ksr", "--text", str(text), "--backend", "numpy",
               "--bundle", str(bundle), "--baseline-train", str(train), "--ngram-order", "3", "--json",
               "--plot", str(tmp_path / "ksr.png")]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    report = json.loads(out.stdout)  # exactly one JSON object on stdout
    for key in ("ksr", "top1_next_word", "top3_next_word", "chars", "keystrokes", "backend"):
        assert key in report and key in report["baseline"]
    assert report["backend"] == "numpy" and report["baseline"]["backend"] == "ngram"
    assert report["chars"] == report["baseline"]["chars"] == len(TINY_TEXT) + 7
    assert report["replaced_chars"] == 2 and "2 invalid UTF-8" in out.stderr
    # the n-gram trained on the very text it types must save keystrokes
    assert report["baseline"]["ksr"] > 0.3
    assert (tmp_path / "ksr.png").stat().st_size > 1000
    missing = subprocess.run(command[:5] + ["--text", str(tmp_path / "nope.txt")] + command[7:],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stdout == "" and "nope.txt: cannot read" in missing.stderr


def test_ranking_flags_reach_the_session_and_bad_values_are_refused(tmp_path):
    import argparse

    from runtime.cli_suggest import add_model_args, session_options
    from runtime.errors import UserError

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--lexicon-weight", "1", "--recent-trigram-backoff", "4", "--recent-weight", "0"])
    options = session_options(args)
    assert options == {"recent_weight": 0.0, "recent_trigram_backoff": 4.0, "lexicon_weight": 1.0}
    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", window=32))
    with open_session(bundle, backend="numpy", **options) as session:
        assert (session.lexicon_weight, session.recent_trigram_backoff, session.recent_weight) == (1.0, 4.0, 0.0)
    assert session_options(parser.parse_args([])) == {}
    for bad in ({"lexicon_weight": -0.1}, {"lexicon_weight": 2.0}, {"recent_trigram_backoff": 0.0}):
        with pytest.raises(UserError):
            open_session(bundle, backend="numpy", **bad)
