"""Casing that follows the text (runtime/tokenizer.py casing_context + apply_casing; issue 16 item 5)."""
import pytest

from runtime.tokenizer import (CASING_PLAIN, CASING_SENTENCE, CASING_TITLE, CASING_UPPER, apply_casing,
                               casing_context)


@pytest.mark.parametrize("before, mode", [
    ("", CASING_SENTENCE), ("It rained. ", CASING_SENTENCE), ("Dear Sam,\n", CASING_SENTENCE),
    ("PLEASE READ ", CASING_UPPER), ("this is VERY IMPORTANT ", CASING_UPPER),
    ('He said, "', CASING_SENTENCE), ('She asked: "', CASING_SENTENCE), ('Stop. "', CASING_SENTENCE),
    ('the so-called "', CASING_PLAIN),  # a quoted phrase mid-sentence keeps its case
    ("Quarterly Budget ", CASING_TITLE), ("Re: x\nMeeting Notes For ", CASING_TITLE),
    ("the Project Gutenberg Literary ", CASING_PLAIN),  # mid-sentence capitals: a name, not a title
    ("I met John Smith ", CASING_PLAIN), ("Yes ", CASING_PLAIN),
    ("see you next ", CASING_PLAIN), ("the US ", CASING_PLAIN), ("I ", CASING_PLAIN),
    ("Mr. ", CASING_PLAIN),
])
def test_casing_context(before, mode):
    assert casing_context(before) == mode


def test_apply_casing_modes():
    assert apply_casing("week", "", CASING_UPPER) == "WEEK"
    assert apply_casing("week", "W", CASING_UPPER) == "WEEK"  # one capital in an ALL-CAPS run
    assert apply_casing("week", "W", CASING_PLAIN) == "Week"
    assert apply_casing("week", "w", CASING_UPPER) == "week"  # typed lowercase wins
    assert apply_casing("week", "WE", CASING_PLAIN) == "WEEK"
    assert apply_casing("archive", "", CASING_TITLE) == "Archive"
    assert apply_casing("come", "", CASING_SENTENCE) == "Come"
    assert apply_casing("iphone", "", CASING_PLAIN, "iPhone") == "iPhone"
    # the boolean form of earlier callers still means sentence start / plain
    assert apply_casing("the", "", True) == "The" and apply_casing("the", "", False) == "the"


def test_engine_suggestions_follow_all_caps_and_quotes(tmp_path):
    from test_bundle import make_tiny_bundle

    from runtime.bundle import load_bundle
    from runtime.engine import open_session

    session = open_session(load_bundle(make_tiny_bundle(tmp_path / "b", window=32)), backend="numpy")
    session.insert("THE CAT SAT ")
    words = [s.word for s in session.suggestions(3)]
    assert words and all(w == w.upper() for w in words)
    session.reset()
    session.insert('the cat said, "')
    words = [s.word for s in session.suggestions(3)]
    assert words and all(w[:1].isupper() or not w[:1].isalpha() for w in words)
