"""`eval ksr` by_word_class and by_register (measure/evaluate.py; issue 16 item 4)."""
import gzip
import json
import os
import subprocess
import sys

import pytest
from test_bundle import TINY_TEXT, make_tiny_bundle
from test_eval import RANKING, FakePredictor

from measure.evaluate import (KsrCounts, eval_text_files, register_of, simulate_ideal_user,
                              tokenizer_word_class, word_class_report)
from runtime.errors import UserError


def test_word_classes_split_the_keystrokes_of_the_words():
    classes = {"the": "vocabulary", "cat": "vocabulary", "sat": "lexicon", "dog": "unknown"}
    result = simulate_ideal_user("the cat sat. dog", FakePredictor(RANKING), k=1,
                                 word_class=classes.__getitem__)
    by = result.by_word_class
    # k=1: 'the' accepted before its first letter (1 key); 'cat' after 'c' is 'cat' (2 keys);
    # 'sat' first suggestion 'sat' after 's' (2 keys); 'dog' never suggested (3 keys)
    assert (by["vocabulary"].words, by["vocabulary"].chars, by["vocabulary"].keystrokes) == (2, 6, 3)
    assert (by["lexicon"].words, by["lexicon"].chars, by["lexicon"].keystrokes) == (1, 3, 2)
    assert (by["unknown"].words, by["unknown"].chars, by["unknown"].keystrokes) == (1, 3, 3)
    separators = len("the cat sat. dog") - 12
    assert sum(c.keystrokes for c in by.values()) + separators == result.total.keystrokes
    report = word_class_report(by)
    assert report["vocabulary"]["share_of_words"] == 0.5 and report["unknown"]["ksr"] == 0.0
    assert report["vocabulary"]["ksr"] == pytest.approx(0.5)
    assert report["vocabulary"]["top1_next_word"] == 0.5  # 'the' yes, 'cat' no


def test_tokenizer_word_class_uses_vocabulary_then_lexicon(tmp_path):
    from runtime.bundle import load_bundle

    tokenizer = load_bundle(make_tiny_bundle(tmp_path / "b", window=32)).tokenizer
    word_class = tokenizer_word_class(tokenizer)
    in_vocab = next(t for t in tokenizer.tokens if t.isalpha())
    assert word_class(in_vocab) == word_class(in_vocab.upper()) == "vocabulary"
    assert word_class("zzqxj") == "unknown"


def test_register_of_and_eval_text_files(tmp_path):
    assert register_of("models/corpus/registers/valid.technical.txt.gz") == "technical"
    assert register_of("test.fiction.txt") == "fiction"
    assert register_of("valid.txt.gz") is None and register_of("notes.txt") is None
    folder = tmp_path / "regs"
    folder.mkdir()
    for name in ("valid.fiction.txt.gz", "valid.technical.txt.gz", "other.txt", "skip.json"):
        (folder / name).write_bytes(b"x")
    assert [(r, p.name) for r, p in eval_text_files(folder)] == [
        ("other", "other.txt"), ("fiction", "valid.fiction.txt.gz"),
        ("technical", "valid.technical.txt.gz")]
    assert eval_text_files(folder / "valid.fiction.txt.gz")[0][0] == "fiction"
    (folder / "test.fiction.txt.gz").write_bytes(b"x")
    assert [r for r, _ in eval_text_files(folder)] == ["other", "test.fiction", "valid.fiction", "technical"]
    assert eval_text_files(folder / "other.txt")[0][0] == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no .txt"):
        eval_text_files(empty)


def test_cli_eval_ksr_by_register_and_by_word_class(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", window=32)
    train = tmp_path / "train.txt.gz"
    train.write_bytes(gzip.compress(TINY_TEXT.encode() * 5))
    folder = tmp_path / "registers"
    folder.mkdir()
    half = len(TINY_TEXT) // 2
    (folder / "valid.fiction.txt.gz").write_bytes(gzip.compress(TINY_TEXT[:half].encode()))
    (folder / "valid.technical.txt.gz").write_bytes(gzip.compress(TINY_TEXT[half:].encode()))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "runtime.cli", "eval", "ksr", "--text", str(folder),
                          "--backend", "numpy", "--bundle", str(bundle), "--baseline-train", str(train),
                          "--ngram-order", "3", "--json"], capture_output=True, text=True, env=env, check=True)
    report = json.loads(out.stdout)
    assert set(report["by_register"]) == {"fiction", "technical"}
    fiction, technical = report["by_register"]["fiction"], report["by_register"]["technical"]
    assert fiction["chars"] + technical["chars"] == report["chars"] == len(TINY_TEXT)
    assert fiction["keystrokes"] + technical["keystrokes"] == report["keystrokes"]
    assert fiction["baseline"]["chars"] == fiction["chars"] and "top3_next_word" in fiction
    classes = report["by_word_class"]
    assert set(classes) <= {"vocabulary", "lexicon", "unknown"} and "vocabulary" in classes
    assert sum(c["words"] for c in classes.values()) == report["words"]
    assert sum(c["share_of_words"] for c in classes.values()) == pytest.approx(1.0, abs=1e-4)
    assert "by_word_class" in report["baseline"]


def test_plot_by_register_writes_a_png(tmp_path):
    from measure.evaluate import plot_ksr

    entry = {"ksr": 0.4, "top1_next_word": 0.2, "top3_next_word": 0.3}
    classes = {c: {"share_of_words": s, "ksr": 0.5} for c, s in (("vocabulary", 0.9), ("unknown", 0.1))}
    report = {"backend": "numpy", "suggestions": 3, "by_word_class": classes,
              "baseline": {"by_word_class": classes},
              "by_register": {"fiction": {**entry, "baseline": entry}, "technical": {**entry, "baseline": entry}}}
    plot_ksr(report, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
