"""Text cleaning: ASCII normalisation, paragraphs from hard-wrapped text, the prose filter."""
from __future__ import annotations

import html
import re
import unicodedata
from typing import Iterable, Iterator

from model_export.corpus.screening import reserved_text_reason
from runtime.tokenizer import WORD


_CHAR_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2012": "-", "\u2010": "-", "\u2011": "-", "\u2212": "-",
    "\u2014": "--", "\u2015": "--",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u200a": " ", "\u2002": " ", "\u2003": " ",
    "\u202f": " ", "\u200b": "", "\u00ad": "", "\ufeff": "",
    "\u00e6": "ae", "\u00c6": "Ae", "\u0153": "oe", "\u0152": "Oe", "\u00df": "ss",
    "\u00d7": "x", "\u2022": "-", "\u00b7": "-",
}
_CHAR_TABLE = str.maketrans(_CHAR_MAP)


def to_ascii(text: str) -> str:
    """Quotes/dashes to ASCII, accents stripped (cafe), other non-ASCII characters removed."""
    text = text.translate(_CHAR_TABLE)
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii())


def non_ascii_share(text: str) -> float:
    """Share of characters that to_ascii cannot map: high for foreign-language paragraphs."""
    if not text:
        return 0.0
    mapped = text.translate(_CHAR_TABLE)
    lost = sum(1 for c in mapped if not c.isascii()
               and not unicodedata.normalize("NFKD", c)[0].isascii())
    return lost / len(mapped)


def collapse_spaces(text: str) -> str:
    """Join hard-wrapped lines: all whitespace runs become one space."""
    return " ".join(text.split())


_SHORT_SENTENCE = re.compile(r"""^["']?[A-Z][^"]*[.!?]["']?$""")
_PROSE_ALLOWED = re.compile(r"[A-Za-z0-9 .,;:!?'\"()\-]")
_CODE_MARKERS = re.compile(r"[{}<>=\\|#@$%^*~`\[\]]|\w\(\)|::|->|\+\+|__\w")


def is_prose(paragraph: str) -> bool:
    """True for natural-language sentences; False for tables, code, lists of numbers, headings.

    Heuristics (documented in docs/corpus.md): at least 3 words, or 1-2 words forming a
    sentence (capital first, final . ! ?: short dialogue like '"Indeed!"'); >= 93% ordinary
    prose characters; <= 2 code markers per 100 characters; at least 70% of the words
    alphabetic; mostly lowercase letters (no ALL-CAPS headings).
    """
    words = WORD.findall(paragraph)
    if not words:
        return False
    if len(words) < 3 and not _SHORT_SENTENCE.match(paragraph):
        return False
    length = len(paragraph)
    if sum(1 for c in paragraph if _PROSE_ALLOWED.match(c)) < 0.93 * length:
        return False
    if len(_CODE_MARKERS.findall(paragraph)) > max(1, length // 50):
        return False
    alphabetic = sum(1 for w in words if w.replace("'", "").isalpha())
    if alphabetic < 0.7 * len(words):
        return False
    letters = [c for c in paragraph if c.isalpha()]
    if sum(1 for c in letters if c.islower()) < 0.5 * len(letters):
        return False
    return True


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]?\s+(?=[\"'(]?[A-Z])")


def sentences_to_paragraphs(text: str, max_chars: int = 700) -> list[str]:
    """Group the sentences of a text without paragraph breaks into paragraphs of <= max_chars."""
    paragraphs, current = [], ""
    for match_start, sentence in _iter_sentences(text):
        if current and len(current) + 1 + len(sentence) > max_chars:
            paragraphs.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        paragraphs.append(current)
    return paragraphs


def _iter_sentences(text: str) -> Iterator[tuple[int, str]]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start() + len(match.group(0).rstrip())
        yield start, text[start:end].strip()
        start = match.end()
    if text[start:].strip():
        yield start, text[start:].strip()


GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
GUTENBERG_END = re.compile(r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project "
                           r"Gutenberg'?s?).*$", re.M | re.I)


def strip_gutenberg_boilerplate(text: str) -> str:
    """Keep only what lies between Project Gutenberg's START and END markers (if present)."""
    start = GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return text


def blank_line_paragraphs(lines: Iterable[str]) -> list[str]:
    """Hard-wrapped lines -> paragraphs (blank lines separate paragraphs)."""
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs




def clean_paragraph(raw: str) -> tuple[str | None, str]:
    """(clean ASCII paragraph or None, reason): reasons 'kept', 'foreign', 'not_prose', ..."""
    text = collapse_spaces(html.unescape(raw) if "&" in raw else raw)
    if non_ascii_share(text) > 0.02:
        return None, "foreign"
    text = collapse_spaces(to_ascii(text))
    reason = reserved_text_reason(text)
    if reason:
        return None, reason
    if not is_prose(text):
        return None, "not_prose"
    return text, "kept"
