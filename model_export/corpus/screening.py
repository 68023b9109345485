"""Reserved texts (docs/corpus.md): refused by package name, by archive member name, and checked
paragraph by paragraph (6-gram overlap with Moby-Dick, mail headers).

The SpamAssassin public mail corpus and Moby-Dick (any Melville) are evaluation texts: never in
train/valid/test/calibration. A package whose archive holds a reserved corpus stops the build.
"""
from __future__ import annotations

import re
from fnmatch import fnmatch

from runtime.errors import UserError
from runtime.tokenizer import WORD

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
            raise UserError(f"corpus_sources.json: package {package!r} is reserved for "
                            f"independent evaluation (docs/corpus.md); remove it")




# Member names no reader may ever read, whatever a whitelist says (reserved texts); the SpamAssassin
# corpus unpacks into folders named easy_ham / hard_ham / spam_2.
MEMBER_NEVER_READ = ("*melville*", "*moby*dick*", "*moby_dick*", "*spam*assassin*", "*easy_ham*",
                     "*hard_ham*", "*/spam_2/*")
# A part with this many paragraphs that overlap Moby-Dick holds the book, not a quotation: stop.
RESERVED_PARAGRAPHS_STOP = 3


def member_never_read(name: str) -> bool:
    lowered = name.lower()
    return any(fnmatch(lowered, pattern) for pattern in MEMBER_NEVER_READ)


def check_members_allowed(package: str, names: list[str]) -> None:
    """Stop (UserError naming the package and the member) when an archive holds a reserved text."""
    found = [name for name in names if member_never_read(name)]
    if found:
        raise UserError(f"package {package!r} contains {found[0]!r}, a text reserved for "
                        f"independent evaluation (docs/corpus.md); the corpus build stops: "
                        f"remove the package from corpus_sources.json")


def check_reserved_paragraph_count(package: str, count: int, example: str) -> None:
    """Stop when a part holds so many Moby-Dick paragraphs that it contains the book."""
    if count >= RESERVED_PARAGRAPHS_STOP:
        raise UserError(f"package {package!r} holds {count} paragraphs of Moby-Dick (reserved for "
                        f"independent evaluation), e.g. {example[:80]!r}; the corpus build stops")
