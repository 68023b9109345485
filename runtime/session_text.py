"""The session's text: characters, the trailing partial word, line starts and the last edit.

Edits happen at the end of the text (a keyboard without a cursor: type, Backspace, delete a word,
accept a completion), and each costs O(1) in the text's length (amortised; delete-word costs the
characters it deletes). Nothing on the per-key path joins the whole text: `text` does, and is for
callers outside the keystroke path (tests, the final summary, `suggest`).

- `chars`: list of one-character strings, the text;
- `word_start`: where the trailing partial word (run of [A-Za-z0-9']) starts;
- `newlines`: ascending offsets of every "\\n" (for line starts without a scan: the renderer);
- `last_edit`: (keep, add) of the last edit: the first `keep` characters stayed, `add` follows them
  (the journal's record and the renderer's input; one kind of edit for every key).

numpy-free, stdlib only (the board runs this).
"""
from __future__ import annotations

import bisect

from runtime.tokenizer import is_word_char

SENTENCE_LOOKBACK = 64  # characters before the partial word that decide a sentence start


class SessionText:
    def __init__(self) -> None:
        self.chars: list[str] = []  # the text, one str per character
        self.newlines: list[int] = []  # ascending offsets of "\n" in chars
        self.word_start = 0  # start of the trailing partial word
        self.last_edit: tuple[int, str] = (0, "")  # (keep, add) of the last edit
        self.edits = 0  # edits so far (a caller can tell whether an action changed anything)

    # -- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.chars)

    @property
    def text(self) -> str:
        """The whole text (O(n): not for the per-key path)."""
        return "".join(self.chars)

    @property
    def partial_word(self) -> str:
        return "".join(self.chars[self.word_start:])

    @property
    def partial_length(self) -> int:
        return len(self.chars) - self.word_start

    def slice(self, start: int, end: int) -> str:
        return "".join(self.chars[start:end])

    def before_partial(self, n: int = SENTENCE_LOOKBACK) -> str:
        """The last `n` characters before the partial word (sentence-start and casing decisions)."""
        return "".join(self.chars[max(0, self.word_start - n):self.word_start])

    def line_start(self, pos: int) -> int:
        """Offset just after the last "\\n" before `pos` (0 when there is none): O(log lines)."""
        i = bisect.bisect_left(self.newlines, pos)
        return self.newlines[i - 1] + 1 if i else 0

    # -- editing at the end (each returns edit_pos: chars[:edit_pos] are unchanged) ---------------
    def reset(self) -> None:
        self.chars.clear()
        self.newlines.clear()
        self.word_start = 0
        self._edited(0, "")

    def insert(self, text: str) -> int:
        chars, edit_pos = self.chars, len(self.chars)
        chars.extend(text)
        if "\n" in text:
            self.newlines.extend(edit_pos + i for i, c in enumerate(text) if c == "\n")
        self._find_word_start(edit_pos)
        self._edited(edit_pos, text)
        return edit_pos

    def backspace(self) -> int:
        chars = self.chars
        if chars:
            self._pop()
        edit_pos = len(chars)
        self._find_word_start(edit_pos)
        self._edited(edit_pos, "")
        return edit_pos

    def delete_word(self) -> int:
        """Trailing spaces, then the word (or one other character) before them."""
        chars = self.chars
        while chars and chars[-1].isspace():
            self._pop()
        if chars and is_word_char(chars[-1]):
            while chars and is_word_char(chars[-1]):
                self._pop()
        elif chars:
            self._pop()
        edit_pos = len(chars)
        self._find_word_start(edit_pos)
        self._edited(edit_pos, "")
        return edit_pos

    # -- internals --------------------------------------------------------------------------------
    def _pop(self) -> None:
        if self.chars.pop() == "\n":
            self.newlines.pop()

    def _edited(self, keep: int, add: str) -> None:
        self.last_edit = (keep, add)
        self.edits += 1

    def _find_word_start(self, edit_pos: int) -> None:
        """The partial word's start after an edit at edit_pos; stops at the unchanged part of the old
        partial word, so typing inside a long word costs O(1)."""
        chars, old = self.chars, self.word_start
        i = len(chars)
        while i > 0 and is_word_char(chars[i - 1]):
            if old <= i - 1 < edit_pos:
                i = old  # reached the unchanged part of the old partial word
                break
            i -= 1
        self.word_start = i
