"""The reader table: corpus_sources.json names a reader per archive; generic readers (html, pod,
text, sword) take the archive's "members" glob rules."""
from __future__ import annotations

from typing import Callable, Iterator

from model_export.corpus.documents import Document, Members
from model_export.corpus.readers_books import make_sword_reader, make_text_reader, read_norvig_big
from model_export.corpus.readers_markup import make_html_reader, make_pod_reader
from model_export.corpus.readers_tagged import read_austen, read_brown, read_sotu

Reader = Callable[[Members], Iterator[Document]]

# fixed-format readers take the members; generic ones are made from (source id, member rules)
READERS: dict[str, Callable] = {
    "brown": read_brown, "sotu": read_sotu, "austen": read_austen, "norvig_big": read_norvig_big,
    "html": make_html_reader, "pod": make_pod_reader, "text": make_text_reader,
    "sword": make_sword_reader,
}
GENERIC_READERS = ("html", "pod", "text", "sword")


def reader_for(spec) -> Reader:
    """The reader of an archives.ArchiveSpec (its reader name, id and member rules)."""
    if spec.reader in GENERIC_READERS:
        return READERS[spec.reader](spec.id, spec.members)
    return READERS[spec.reader]
