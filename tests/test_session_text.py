"""SessionText keeps the partial word's start and the line starts incrementally (O(1) per key);
the plain whole-text split `runtime.tokenizer.partial_word_start` is its oracle."""
from hypothesis import given, settings, strategies as st

from runtime.session_text import SessionText
from runtime.tokenizer import partial_word_start

_PIECES = st.sampled_from(["a", "b", "'", "9", " ", "\n", ",", "Ab", "the ", "don't", "x\ny", "é"])
_OPS = st.lists(st.one_of(st.tuples(st.just("insert"), _PIECES),
                          st.tuples(st.just("backspace"), st.none()),
                          st.tuples(st.just("delete_word"), st.none()),
                          st.tuples(st.just("reset"), st.none())), max_size=80)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_OPS)
def test_incremental_word_start_and_newlines_match_the_whole_text_oracle(ops):
    text = SessionText()
    for name, arg in ops:
        before = text.text
        edit_pos = getattr(text, name)(*(() if arg is None else (arg,)))
        whole = text.text
        assert text.word_start == partial_word_start(whole), (ops, whole)
        assert text.newlines == [i for i, c in enumerate(whole) if c == "\n"]
        keep, add = text.last_edit
        assert before[:keep] + add == whole and edit_pos in (None, keep)
