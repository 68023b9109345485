"""Readers of corpora in their own formats: Brown (POS-tagged), State of the Union (one address
per file), Jane Austen (R lazy-load database)."""
from __future__ import annotations

import re
import struct
import zlib
from typing import Iterator

from model_export.corpus.cleaning import (blank_line_paragraphs, collapse_spaces,
                                          sentences_to_paragraphs, strip_gutenberg_boilerplate)
from model_export.corpus.documents import Document, Members

_BROWN_CLOSE_NO_SPACE = {".", ",", ";", ":", "!", "?", ")", "]", "'", "n't", "'s", "%"}
_BROWN_OPEN_NO_SPACE = {"(", "["}


def brown_detokenize(tagged_sentence: str) -> str:
    """'The/at man/nn ,/, ``/`` hi/uh ''/'' ./.' -> 'The man, "hi".' (tags dropped)."""
    tokens = [t.rsplit("/", 1)[0] for t in tagged_sentence.split()]
    out, quote_open, glue_next = [], False, True
    for token in tokens:
        if token in ("``", "''", '"'):
            if token == "``" or (token == '"' and not quote_open):
                out.append('"' if glue_next else ' "')
                quote_open, glue_next = True, True
            else:
                out.append('"')
                quote_open, glue_next = False, False
            continue
        if token == "--":
            out.append(" --")
            glue_next = False
            continue
        if glue_next or token in _BROWN_CLOSE_NO_SPACE:
            out.append(token)
        else:
            out.append(" " + token)
        glue_next = token in _BROWN_OPEN_NO_SPACE
    return "".join(out).strip()


def read_brown(members: Members) -> Iterator[Document]:
    for name, content in members:
        base = name.rsplit("/", 1)[-1]
        if not re.fullmatch(r"c[a-r]\d\d", base):
            continue
        paragraphs = []
        for block in re.split(r"\n\s*\n", content.decode("latin-1")):
            sentences = []
            for line in block.splitlines():
                tokens = line.split()
                if not tokens:
                    continue
                headline = sum(1 for t in tokens if re.search(r"-hl$", t)) > len(tokens) / 2
                if not headline:
                    sentences.append(brown_detokenize(line))
            if sentences:
                paragraphs.append(" ".join(sentences).removeprefix("-- "))
        yield Document(f"brown/{base}", paragraphs, [name])


def read_sotu(members: Members) -> Iterator[Document]:
    for name, content in members:
        match = re.search(r"/data/(\d{4}_[a-z_]+)\.txt$", name)
        if not match:
            continue
        text = collapse_spaces(content.decode("utf-8"))
        yield Document(f"sotu/{match.group(1)}", sentences_to_paragraphs(text), [name])


def _r_unserialize_strings(payload: bytes) -> list[str | None] | None:
    """A character vector from R's XDR serialization ('X\\n', version 2 or 3), else None."""
    if not payload.startswith(b"X\n"):
        return None
    version, = struct.unpack(">i", payload[2:6])
    offset = 14
    if version == 3:
        encoding_length, = struct.unpack(">i", payload[offset:offset + 4])
        offset += 4 + encoding_length
    flags, length = struct.unpack(">ii", payload[offset:offset + 8])
    offset += 8
    if flags & 0xFF != 16:  # STRSXP
        return None
    strings: list[str | None] = []
    for _ in range(length):
        char_flags, char_length = struct.unpack(">ii", payload[offset:offset + 8])
        offset += 8
        if char_flags & 0xFF != 9:  # CHARSXP
            return None
        if char_length == -1:
            strings.append(None)
            continue
        strings.append(payload[offset:offset + char_length].decode("utf-8", "replace"))
        offset += char_length
    return strings


def read_r_lazyload_strings(blob: bytes) -> list[list[str | None]]:
    """Every character vector in an R lazy-load database (`*.rdb`: [4-byte length][zlib])."""
    vectors, offset = [], 0
    while offset + 4 < len(blob):
        inflater = zlib.decompressobj()
        payload = inflater.decompress(blob[offset + 4:])
        consumed = len(blob) - offset - 4 - len(inflater.unused_data)
        offset += 4 + consumed
        strings = _r_unserialize_strings(payload)
        if strings is not None:
            vectors.append(strings)
    return vectors


_GUTENBERG_ITALICS = re.compile(r"\b_([^_\n]+)_\b")  # _court_ -> court
_CHAPTER_HEADING = re.compile(r"^(CHAPTER|Chapter)\s+([IVXLC\d]+)\.?$")


def read_austen(members: Members) -> Iterator[Document]:
    for name, content in members:
        if not name.endswith("janeaustenr/data/Rdata.rdb"):
            continue
        for lines in read_r_lazyload_strings(content):
            lines = [line or "" for line in lines]
            title = next((line.strip() for line in lines if line.strip()), "")
            book = re.sub(r"[^a-z]+", "_", title.lower()).strip("_") or "untitled"
            text = strip_gutenberg_boilerplate("\n".join(lines))
            text = _GUTENBERG_ITALICS.sub(r"\1", text).split("\n")
            chapter, chapter_lines = 0, []
            for line in text + ["CHAPTER END"]:
                if _CHAPTER_HEADING.match(line.strip()) or line == "CHAPTER END":
                    paragraphs = blank_line_paragraphs(chapter_lines)
                    if paragraphs:
                        yield Document(f"austen/{book}/ch{chapter:03d}", paragraphs, [name])
                    chapter, chapter_lines = chapter + 1, []
                else:
                    chapter_lines.append(line)


