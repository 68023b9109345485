"""The session's recent words: a unigram cache of what this user typed, mixed into suggestions.

A user repeats words a general model cannot know (names, jargon, this e-mail's subject). The
engine ranks a candidate word w by

    P(w) = (1 - lam) * P_model(w | context) + lam * count(w) / total

where count/total are over the last `capacity` completed words of the session's text (a word is
completed when a separator follows it). Words the vocabulary and the OOV lexicon lack become
suggestable once typed; the form the user typed last sets their casing. This is the classic cache
LM (Kuhn & De Mori 1990) that on-device keyboards use as a "personal dictionary".

`RecentWords.sync(chars, word_start, edit_pos)` follows the engine's edits: completed words that
end after the edit are forgotten, the new ones from the edit to the partial word are added.
Memory is bounded: a deque of at most `capacity` (end offset, key, surface) entries, a dict of
counts over them and a sorted list of the distinct keys for prefix lookup. An entry that fell off
the left of the deque is not brought back by a later backspace (the cache then holds fewer words
for a while); the cache is otherwise exactly the last `capacity` completed words.

numpy-free, stdlib only (the board runs this). Reference: plain recount of the text in
tests/test_recent_words.py.
"""
from __future__ import annotations

import bisect
import re
from collections import deque

from runtime.tokenizer import is_word_char

WORD = re.compile(r"[A-Za-z0-9']+")  # EVALUATION.md's word
MIN_WORD_CHARS = 3  # shorter words are not cached (the model predicts those well; noise otherwise)


class RecentWords:
    def __init__(self, capacity: int = 1024):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._entries: deque[tuple[int, str, str]] = deque()  # (end offset in the text, lowercase key, surface)
        self._counts: dict[str, int] = {}  # key -> occurrences among the entries
        self._surface: dict[str, str] = {}  # key -> the form typed last
        self._keys: list[str] = []  # sorted distinct keys (prefix lookup)
        self._scanned = 0  # chars[:_scanned] have been scanned for completed words

    @property
    def total(self) -> int:
        return len(self._entries)

    def reset(self) -> None:
        self._entries.clear()
        self._counts.clear()
        self._surface.clear()
        self._keys.clear()
        self._scanned = 0

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def surface(self, key: str) -> str:
        return self._surface[key]

    def sync(self, chars: list[str], word_start: int, edit_pos: int) -> None:
        """Make the entries the completed words of chars[:word_start]; chars[:edit_pos] are unchanged.

        Cost: the characters from the edit (or the last scan) to word_start, not the whole text."""
        limit = min(edit_pos, word_start, self._scanned)
        entries = self._entries
        while entries and entries[-1][0] >= limit:  # a word touching the edit may have changed
            self._drop(entries.pop())
        start = limit
        while start > 0 and is_word_char(chars[start - 1]):  # back to the start of a cut word
            start -= 1
        if word_start > start:
            for match in WORD.finditer("".join(chars[start:word_start])):
                word = match.group()
                if len(word) >= MIN_WORD_CHARS:
                    self._add((start + match.end(), word.lower(), word))
        self._scanned = word_start

    def matches(self, prefix: str) -> list[str]:
        """Keys starting with `prefix` (case-insensitive), sorted."""
        low = prefix.lower()
        start = bisect.bisect_left(self._keys, low)
        end = bisect.bisect_left(self._keys, low + "\x7f", lo=start)
        return self._keys[start:end]

    # -- internals ------------------------------------------------------------------------------
    def _add(self, entry: tuple[int, str, str]) -> None:
        if len(self._entries) == self.capacity:
            self._drop(self._entries.popleft())
        self._entries.append(entry)
        _, key, surface = entry
        n = self._counts.get(key, 0)
        self._counts[key] = n + 1
        self._surface[key] = surface
        if n == 0:
            bisect.insort(self._keys, key)

    def _drop(self, entry: tuple[int, str, str]) -> None:
        key = entry[1]
        n = self._counts[key] - 1
        if n:
            self._counts[key] = n
            return
        del self._counts[key], self._surface[key]
        del self._keys[bisect.bisect_left(self._keys, key)]
