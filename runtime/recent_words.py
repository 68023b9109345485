"""The session's recent words: a unigram and bigram cache of what this user typed, mixed into suggestions.

A user repeats words a general model cannot know (names, jargon, this e-mail's subject). The
engine ranks a candidate word w by

    P(w) = (1 - lam - mu) * P_model(w | context) + lam * count(w) / total + mu * P_cache(w | w2 w1)
    P_cache(w | w2 w1) = (count(w2, w1, w) + beta * count(w1, w) / count(w1, *)) / (count(w2, w1, *) + beta)

where the counts are over the last `capacity` completed words of the session's text (a word is
completed when a separator follows it), w1 is the word before the one being typed and w2 the word
before w1 (a bigram cache with trigram counts backing off to it: "Sherlock" -> "Holmes" after one
use; mu's term is left out when w1 was never followed by a cached word with the typed prefix).
Words the vocabulary and the OOV lexicon lack become suggestable once typed; the form the user typed last sets their casing. This is the classic cache
LM (Kuhn & De Mori 1990) that on-device keyboards use as a "personal dictionary".

`RecentWords.sync(chars, word_start, edit_pos)` follows the engine's edits: completed words that
end after the edit are forgotten, the new ones from the edit to the partial word are added.
Memory is bounded: a deque of at most `capacity` (end offset, key, surface, w1, w2) entries,
dicts of counts over them (per key, per w1 -> key, per (w2, w1) -> key) and a sorted list of
the distinct keys for prefix lookup; words longer than MAX_WORD_CHARS are not kept. Typing inside
the partial word costs nothing here (sync returns at once). An entry that fell off
the left of the deque is not brought back by a later backspace (the cache then holds fewer words
for a while); the cache is otherwise exactly the last `capacity` completed words.

numpy-free, stdlib only (the board runs this). Reference: plain recount of the text in
tests/test_recent_words.py.
"""
from __future__ import annotations

import bisect
from collections import deque

from runtime.tokenizer import WORD, is_word_char

MIN_WORD_CHARS = 3  # shorter words are not cached (the model predicts those well; noise otherwise)
MAX_WORD_CHARS = 40  # longer runs (a pasted hash, a URL) are not cached: the engine never suggests them


class RecentWords:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._entries: deque[tuple[int, str, str, str, str]] = deque()  # (end offset, lowercase key, surface, previous word, the word before that)
        self._counts: dict[str, int] = {}  # key -> occurrences among the entries
        self._surface: dict[str, str] = {}  # key -> the form typed last
        self._keys: list[str] = []  # sorted distinct keys (prefix lookup)
        self._followers: dict[str, dict[str, int]] = {}  # previous word -> {key: count}
        self._follower_totals: dict[str, int] = {}  # previous word -> entries it precedes
        self._followers2: dict[tuple[str, str], dict[str, int]] = {}  # (word before previous, previous) -> {key: count}
        self._follower2_totals: dict[tuple[str, str], int] = {}  # (word before previous, previous) -> entries
        self.previous = ""  # lowercase word before the partial word ("" none within PREVIOUS_LOOKBACK)
        self.previous2 = ""  # lowercase word before `previous` ("" none)
        self._scanned = 0  # chars[:_scanned] have been scanned for completed words

    @property
    def total(self) -> int:
        return len(self._entries)

    def reset(self) -> None:
        self._entries.clear()
        self._counts.clear()
        self._surface.clear()
        self._keys.clear()
        self._followers.clear()
        self._follower_totals.clear()
        self._followers2.clear()
        self._follower2_totals.clear()
        self.previous = ""
        self.previous2 = ""
        self._scanned = 0

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def surface(self, key: str) -> str:
        return self._surface[key]

    def sync(self, chars: list[str], word_start: int, edit_pos: int) -> None:
        """Make the entries the completed words of chars[:word_start]; chars[:edit_pos] are unchanged.

        Cost: the characters from the edit (or the last scan) to word_start, not the whole text."""
        if word_start == self._scanned and edit_pos >= word_start:
            return  # an edit inside the partial word: chars[:word_start], all this depends on, is unchanged
        limit = min(edit_pos, word_start, self._scanned)
        entries = self._entries
        while entries and entries[-1][0] >= limit:  # a word touching the edit may have changed
            self._drop(entries.pop())
        start = limit
        while start > 0 and is_word_char(chars[start - 1]):  # back to the start of a cut word
            start -= 1
        if word_start > start:
            previous, previous2 = _two_words_before(chars, start)
            for match in WORD.finditer("".join(chars[start:word_start])):
                word = match.group()
                key = word.lower()
                if MIN_WORD_CHARS <= len(word) <= MAX_WORD_CHARS:
                    self._add((start + match.end(), key, word, previous, previous2))
                previous, previous2 = key, previous
        self._scanned = word_start
        self.previous, self.previous2 = _two_words_before(chars, word_start)

    def followers(self, prefix: str) -> tuple[dict[str, int], int]:
        """({key: count} of cached words that followed `previous` and start with `prefix`, total)."""
        return _followers_with_prefix(self._followers, self._follower_totals, self.previous, prefix)

    def followers2(self, prefix: str) -> tuple[dict[str, int], int]:
        """({key: count} of cached words that followed (`previous2`, `previous`) and start with `prefix`, total)."""
        return _followers_with_prefix(self._followers2, self._follower2_totals, (self.previous2, self.previous), prefix)

    def matches(self, prefix: str) -> list[str]:
        """Keys starting with `prefix` (case-insensitive), sorted."""
        low = prefix.lower()
        start = bisect.bisect_left(self._keys, low)
        end = bisect.bisect_left(self._keys, low + "\x7f", lo=start)
        return self._keys[start:end]

    # -- internals ------------------------------------------------------------------------------
    def _add(self, entry: tuple[int, str, str, str, str]) -> None:
        if len(self._entries) == self.capacity:
            self._drop(self._entries.popleft())
        self._entries.append(entry)
        _, key, surface, previous, previous2 = entry
        _count_in(self._followers, self._follower_totals, previous, key)
        _count_in(self._followers2, self._follower2_totals, (previous2, previous), key)
        n = self._counts.get(key, 0)
        self._counts[key] = n + 1
        self._surface[key] = surface
        if n == 0:
            bisect.insort(self._keys, key)

    def _drop(self, entry: tuple[int, str, str, str, str]) -> None:
        _, key, _, previous, previous2 = entry
        _uncount_in(self._followers, self._follower_totals, previous, key)
        _uncount_in(self._followers2, self._follower2_totals, (previous2, previous), key)
        n = self._counts[key] - 1
        if n:
            self._counts[key] = n
            return
        del self._counts[key], self._surface[key]
        del self._keys[bisect.bisect_left(self._keys, key)]


def _followers_with_prefix(table: dict, totals: dict, context, prefix: str) -> tuple[dict[str, int], int]:
    follow = table.get(context)
    if not follow:
        return {}, 0
    low = prefix.lower()
    return {k: n for k, n in follow.items() if k.startswith(low)}, totals[context]


def _count_in(table: dict, totals: dict, context, key: str) -> None:
    follow = table.setdefault(context, {})
    follow[key] = follow.get(key, 0) + 1
    totals[context] = totals.get(context, 0) + 1


def _uncount_in(table: dict, totals: dict, context, key: str) -> None:
    follow = table[context]
    if follow[key] == 1:
        del follow[key]
    else:
        follow[key] -= 1
    if totals[context] == 1:
        del totals[context], table[context]
    else:
        totals[context] -= 1


PREVIOUS_LOOKBACK = 64  # characters searched back for the previous word


def _word_before(chars: list[str], end: int) -> tuple[str, int]:
    """(lowercase word that ends before chars[end], skipping separators, its start); ("", end) when none is near."""
    i, stop = end, max(0, end - PREVIOUS_LOOKBACK)
    while i > stop and not is_word_char(chars[i - 1]):
        i -= 1
    j, stop = i, max(0, i - PREVIOUS_LOOKBACK)
    while j > stop and is_word_char(chars[j - 1]):
        j -= 1
    return ("".join(chars[j:i]).lower(), j) if j < i else ("", end)


def _two_words_before(chars: list[str], end: int) -> tuple[str, str]:
    """(previous word, the word before it) before chars[end], lowercase; "" where none is near."""
    previous, start = _word_before(chars, end)
    return previous, (_word_before(chars, start)[0] if previous else "")
