"""Word-level tokenizer with casing restoration (docs/design.md, "Tokenizer").

Tokens: lowercased words (maximal runs of `[A-Za-z0-9']`, as EVALUATION.md defines a word), single
punctuation characters, and specials. Spaces are implied between tokens; a run of whitespace
holding a line break is one `<nl>`. Suggestions are vocabulary words chosen by a lowercased prefix
and then cased (`apply_casing`). numpy + stdlib only: this runs on the board.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

PAD, UNK, BOS, NL = "<pad>", "<unk>", "<bos>", "<nl>"
SPECIALS = (PAD, UNK, BOS, NL)
MAX_TOKENIZER_BYTES = 64 << 20  # reads of tokenizer.json are capped
PAD_ID, UNK_ID, BOS_ID, NL_ID = range(4)
FORMAT = "edgetype-word-tokenizer"
FORMAT_VERSION = 1

WORD_CHARS = re.compile(r"[A-Za-z0-9']")
WORD = re.compile(r"[A-Za-z0-9']+")  # EVALUATION.md's word: a maximal run of [A-Za-z0-9']
PIECES = re.compile(r"[A-Za-z0-9']+|\s*\n\s*|[^\sA-Za-z0-9']")  # words | line break | punctuation
_SENTENCE_END = re.compile(r"(^|[.!?][\"')\]]*|\n)\s*$")
_ABBREVIATION_END = re.compile(r"(?:^|[^A-Za-z0-9'])([A-Za-z]+)\.[ \t]*\Z")  # "Mr. ", "a.m. " (not across a line break)
TITLES = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "rev", "gen", "col", "capt", "lt",
                    "sgt", "hon", "gov", "sen", "rep", "vs", "mt"})


def split_pieces(text: str) -> Iterator[tuple[str, bool]]:
    """Yield (piece, is_word) for the words, line breaks ("\n") and punctuation of `text`."""
    for piece, is_word, _ in split_pieces_with_ends(text):
        yield piece, is_word


def split_pieces_with_ends(text: str) -> Iterator[tuple[str, bool, int]]:
    """(piece, is_word, end offset in `text`): `split_pieces` plus where each piece ends."""
    for match in PIECES.finditer(text):
        piece = match.group()
        if "\n" in piece:
            yield "\n", False, match.end()
        else:
            yield piece, bool(WORD_CHARS.match(piece)), match.end()


def is_word_char(char: str) -> bool:
    """One character of EVALUATION.md's word, [A-Za-z0-9'] (plain comparisons: the per-key path)."""
    return ("a" <= char <= "z") or ("A" <= char <= "Z") or ("0" <= char <= "9") or char == "'"


def partial_word_start(text: str) -> int:
    """Where the trailing partial word of `text` starts (len(text) after a separator): the one split
    of typed text into context and partial word for the evaluations (runtime/session_text.py keeps
    the same split incrementally on the per-key path)."""
    start = len(text)
    while start > 0 and is_word_char(text[start - 1]):
        start -= 1
    return start


def is_sentence_start(text_before: str) -> bool:
    """True when the next word starts a sentence: empty text, or after . ! ? (and quotes) or a line
    break; not after the period of a title or a single letter ("Mr. ", "a.m. ", "U.S. ", "J. ")."""
    tail = text_before[-64:]
    if not _SENTENCE_END.search(tail):
        return False
    abbreviation = _ABBREVIATION_END.search(tail)
    return not (abbreviation and (len(abbreviation.group(1)) == 1 or abbreviation.group(1).lower() in TITLES))


# Casing of the next word from the text before it (casing_context): one of these modes.
CASING_PLAIN, CASING_SENTENCE, CASING_TITLE, CASING_UPPER = "plain", "sentence", "title", "upper"
_OPENING_QUOTE = re.compile(r'(^|[,:;]\s+|\n\s*|[.!?]\s+|\(\s*)"\Z')  # 'he said, "' -> capital
_CASED_WORDS = re.compile(r"[A-Za-z][A-Za-z']*")
_TITLE_LINE = re.compile(r"(?:^|\n)[ \t]*((?:[A-Z][A-Za-z']*[ \t]+){2,})\Z")  # a line of 2+ Capitalised words


def casing_context(text_before: str) -> str:
    """How to case the next word, from the text before it (the partial word excluded):
    - CASING_UPPER after two ALL-CAPS words of 2+ letters ("PLEASE READ " -> "THIS");
    - CASING_SENTENCE at a sentence start (is_sentence_start) or after an opening double quote
      ('he said, "' -> "Come");
    - CASING_TITLE in a title-case line: a line that so far holds only 2+ capitalised words (a
      heading or subject line: "Quarterly Budget " -> "Review"). Inside prose a run of capitals
      is a name and the next word is mostly lowercase: a mid-sentence rule cost 0.0001 KSR on
      valid (docs/quality.md), so only whole lines count;
    - CASING_PLAIN otherwise (the word's usual form)."""
    tail = text_before[-64:]
    words = _CASED_WORDS.findall(tail)
    if len(words) >= 2 and all(len(w) >= 2 and w.isupper() for w in words[-2:]) \
            and not tail.endswith("\n"):
        return CASING_UPPER
    if is_sentence_start(tail) or _OPENING_QUOTE.search(tail):
        return CASING_SENTENCE
    if tail.endswith(" ") and _TITLE_LINE.search(tail):
        return CASING_TITLE
    return CASING_PLAIN


def apply_casing(word: str, typed_prefix: str, sentence_start: bool | str,
                 usual_form: str | None = None) -> str:
    """The surface form to suggest for lowercase vocabulary `word` after `typed_prefix` was typed.

    `sentence_start` is a casing_context mode (True / False mean CASING_SENTENCE / CASING_PLAIN).
    The result always starts with `typed_prefix` exactly (suggestions are completions). An
    all-caps prefix of 2+ letters, or any all-caps prefix in CASING_UPPER, gives an all-caps word;
    otherwise the rest follows the word's usual form in the training text. With nothing typed:
    CASING_UPPER gives ALL CAPS, CASING_SENTENCE and CASING_TITLE a capital first letter.
    """
    mode = (CASING_SENTENCE if sentence_start else CASING_PLAIN) if isinstance(sentence_start, bool) \
        else sentence_start
    form = usual_form or word
    if typed_prefix:
        letters = [c for c in typed_prefix if c.isalpha()]
        if letters and all(c.isupper() for c in letters) and (len(letters) >= 2 or mode == CASING_UPPER):
            return typed_prefix + form[len(typed_prefix):].upper()
        return typed_prefix + form[len(typed_prefix):]
    if mode == CASING_UPPER:
        return form.upper()
    if mode in (CASING_SENTENCE, CASING_TITLE) and form[:1].islower():
        return form[:1].upper() + form[1:]
    return form


class Tokenizer:
    """Vocabulary (id -> token), the usual casing of each word, and a sorted prefix index.

    The optional **OOV lexicon** holds training words outside the vocabulary with their counts:
    the model predicts them as one class, `<unk>`, and a suggestion ranks a lexicon word by
    P(<unk> | context) * P(word | <unk>), the second factor from the training counts (a
    class-based LM). It completes rare words the vocabulary lacks, and changes no token id.
    """

    def __init__(self, tokens: list[str], casing: dict[str, str] | None = None,
                 lexicon: dict[str, int] | None = None):
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"tokenizer must start with the specials {SPECIALS}")
        self.tokens = list(tokens)  # (V,) id -> token
        self.casing = dict(casing or {})  # lowercase word -> usual surface form, where they differ
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("tokenizer has duplicate tokens")
        # Prefix index over word tokens only: sorted words and their ids, for bisect.
        word_ids = [i for i, t in enumerate(self.tokens) if i >= len(SPECIALS) and WORD_CHARS.match(t)]
        word_ids.sort(key=lambda i: self.tokens[i])
        self.sorted_words = [self.tokens[i] for i in word_ids]  # (n_words,) sorted lowercase words
        self.sorted_word_ids = np.array(word_ids, dtype=np.int64)  # (n_words,) ids in that order
        self.is_word = np.zeros(len(self.tokens), dtype=bool)  # (V,) True for word tokens
        self.is_word[self.sorted_word_ids] = True
        # OOV lexicon, sorted: words and log P(word | <unk>) in the same order
        lexicon = {w: int(c) for w, c in (lexicon or {}).items() if w not in self.ids and c > 0}
        self.lexicon_words = sorted(lexicon)  # (n_lex,) sorted lowercase words outside the vocabulary
        self._lexicon_counts = [lexicon[w] for w in self.lexicon_words]  # (n_lex,) training counts
        counts = np.array(self._lexicon_counts, dtype=np.float64)
        total = counts.sum() if len(counts) else 1.0
        self.lexicon_log_prior = np.log(counts / total).astype(np.float32) if len(counts) else np.zeros(0, np.float32)

        # Prefix-contiguous vocabulary (a bundle exported with its words sorted, model_export/export.py
        # VOCAB_ORDER): the words of any prefix are one id range and the prefix filter is a slice.
        n_words = len(self.sorted_word_ids)
        first = int(self.sorted_word_ids[0]) if n_words else 0
        self.words_contiguous = bool(n_words) and bool(
            np.array_equal(self.sorted_word_ids, np.arange(first, first + n_words)))
        self._first_word_id = first

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def words_sorted_first(self) -> tuple["Tokenizer", np.ndarray]:
        """This vocabulary renumbered: specials, then the word tokens in sorted order, then the other
        tokens in their order; returns (tokenizer, order) with order[new id] = old id. Casing and
        the OOV lexicon are kept; the result is `words_contiguous`."""
        n = len(SPECIALS)
        others = [i for i in range(n, len(self.tokens)) if not self.is_word[i]]
        order = np.array(list(range(n)) + self.sorted_word_ids.tolist() + others, dtype=np.int64)
        lexicon = dict(zip(self.lexicon_words, self._lexicon_counts))
        return Tokenizer([self.tokens[i] for i in order], self.casing, lexicon), order

    @property
    def tokenizer_id(self) -> str:
        """Identity of the token ids (tokens + their casing); the OOV lexicon is not part of it."""
        vocab_casing = {w: f for w, f in sorted(self.casing.items()) if w in self.ids}
        core = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "tokens": self.tokens,
                           "casing": vocab_casing}, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(core.encode()).hexdigest()[:16]

    # -- text -> ids ---------------------------------------------------------------------------
    def token_id(self, piece: str, is_word: bool) -> int:
        if piece == "\n":
            return NL_ID
        return self.ids.get(piece.lower() if is_word else piece, UNK_ID)

    def encode(self, text: str, bos: bool = False) -> list[int]:
        ids = [BOS_ID] if bos else []
        ids.extend(self.token_id(piece, is_word) for piece, is_word in split_pieces(text))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            token = self.tokens[i]
            out.append("\n" if token == NL else "" if token in (PAD, BOS) else token)
        return " ".join(out)

    # -- suggestions ---------------------------------------------------------------------------
    def prefix_ids(self, prefix: str) -> np.ndarray:
        """Ids of the vocabulary words starting with `prefix` (case-insensitive): a view, no copy."""
        if not prefix:
            return self.sorted_word_ids
        low = prefix.lower()
        start = bisect.bisect_left(self.sorted_words, low)
        end = bisect.bisect_left(self.sorted_words, low + "\x7f", lo=start)
        return self.sorted_word_ids[start:end]

    def prefix_id_range(self, prefix: str) -> tuple[int, int] | None:
        """[lo, hi) token ids of the words starting with `prefix` when the vocabulary is
        `words_contiguous` (then prefix_ids(prefix) == arange(lo, hi)); None otherwise."""
        if not self.words_contiguous:
            return None
        if not prefix:
            return self._first_word_id, self._first_word_id + len(self.sorted_words)
        low = prefix.lower()
        start = bisect.bisect_left(self.sorted_words, low)
        end = bisect.bisect_left(self.sorted_words, low + "\x7f", lo=start)
        return self._first_word_id + start, self._first_word_id + end

    def surface(self, token_id: int, typed_prefix: str, sentence_start: bool) -> str:
        word = self.tokens[token_id]
        return apply_casing(word, typed_prefix, sentence_start, self.casing.get(word))

    def lexicon_range(self, prefix: str) -> tuple[int, int]:
        """[start, end) of the OOV lexicon words starting with `prefix` (case-insensitive)."""
        low = prefix.lower()
        start = bisect.bisect_left(self.lexicon_words, low)
        return start, bisect.bisect_left(self.lexicon_words, low + "\x7f", lo=start)

    def lexicon_index(self, word: str) -> int:
        """Index of lowercase `word` in the OOV lexicon, -1 when it is not there."""
        i = bisect.bisect_left(self.lexicon_words, word)
        return i if i < len(self.lexicon_words) and self.lexicon_words[i] == word else -1

    def lexicon_surface(self, index: int, typed_prefix: str, sentence_start: bool) -> str:
        word = self.lexicon_words[index]
        return apply_casing(word, typed_prefix, sentence_start, self.casing.get(word))

    # -- building and files --------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8192, min_count: int = 2,
              lexicon_size: int = 60000) -> "Tokenizer":
        """Most frequent words and punctuation of `texts`; casing = most frequent mid-sentence form.

        Words seen `min_count`+ times that do not fit the vocabulary go to the OOV lexicon (the
        `lexicon_size` most frequent of them)."""
        counts, forms = cls.count_pieces(texts)
        return cls.from_counts(counts, forms, vocab_size, min_count, lexicon_size)

    @staticmethod
    def count_pieces(texts: Iterable[str]) -> tuple[Counter, Counter]:
        """(piece counts, (lowercase word, mid-sentence form) counts) of `texts`. Counts of
        consecutive chunks merged in order (Counter.update) equal the counts of the whole, ties
        included (first-seen order), so train() may count chunks in parallel processes."""
        counts: Counter[str] = Counter()
        forms: Counter[tuple[str, str]] = Counter()
        for text in texts:
            sentence_start = True
            for piece, is_word in split_pieces(text):
                if is_word:
                    low = piece.lower()
                    counts[low] += 1
                    if not sentence_start:
                        forms[(low, piece)] += 1
                    sentence_start = False
                else:
                    if piece != "\n":
                        counts[piece] += 1
                    if piece == "\n" or piece in ".!?":
                        sentence_start = True
        return counts, forms

    @classmethod
    def from_counts(cls, counts: Counter, forms: Counter, vocab_size: int = 8192, min_count: int = 2,
                    lexicon_size: int = 60000) -> "Tokenizer":
        budget = vocab_size - len(SPECIALS)
        chosen = [t for t, c in counts.most_common() if c >= min_count][:budget]
        best_form: dict[str, tuple[int, str]] = {}
        for (low, form), n in forms.items():
            if n > best_form.get(low, (0, ""))[0]:
                best_form[low] = (n, form)
        chosen_set = set(chosen)
        lexicon = {}
        for token, count in counts.most_common():
            if len(lexicon) >= lexicon_size or count < min_count:
                break
            if token not in chosen_set and WORD_CHARS.match(token):
                lexicon[token] = count
        casing = {low: best_form[low][1] for low in list(chosen) + list(lexicon)
                  if low in best_form and best_form[low][1] != low}
        return cls(list(SPECIALS) + chosen, casing, lexicon)

    def to_json(self) -> str:
        data = {"format": FORMAT, "format_version": FORMAT_VERSION, "tokens": self.tokens,
                "casing": dict(sorted(self.casing.items()))}
        if self.lexicon_words:
            data["lexicon"] = {"words": self.lexicon_words, "counts": self._lexicon_counts}
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        try:
            with open(path, "rb") as file:
                raw = file.read(MAX_TOKENIZER_BYTES + 1)  # capped: a link to /dev/zero cannot exhaust memory
            if len(raw) > MAX_TOKENIZER_BYTES:
                raise ValueError(f"{path}: larger than {MAX_TOKENIZER_BYTES >> 20} MiB, not a tokenizer file")
            data = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, RecursionError, ValueError) as error:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}: not a readable tokenizer file ({str(error)[:80]})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not an {FORMAT} file")
        version = data.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"{path}: format_version must be an integer")
        if version > FORMAT_VERSION:
            raise ValueError(f"{path}: tokenizer format {version} is newer than this edgetype ({FORMAT_VERSION})")
        tokens, casing, lexicon = data.get("tokens"), data.get("casing", {}), data.get("lexicon") or {}
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError(f"{path}: key 'tokens' must be a list of non-empty strings")
        if not isinstance(casing, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in casing.items()):
            raise ValueError(f"{path}: key 'casing' must map strings to strings")
        words, counts = (lexicon.get("words", []), lexicon.get("counts", [])) if isinstance(lexicon, dict) else (None, None)
        if (not isinstance(words, list) or not isinstance(counts, list) or len(words) != len(counts)
                or not all(isinstance(w, str) for w in words)
                or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
            raise ValueError(f"{path}: key 'lexicon' must hold 'words' (strings) and as many 'counts' (integers >= 0)")
        try:
            return cls(tokens, casing, dict(zip(words, counts)))
        except ValueError as error:  # specials missing, duplicate tokens: name the file
            raise ValueError(f"{path}: {error}") from None
