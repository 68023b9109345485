"""What every reader yields: a document (stable id + raw paragraphs) from archive members."""
from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Iterable

Members = Iterable[tuple[str, bytes]]  # (member path inside the archive, content)


@dataclass
class Document:
    doc_id: str            # unique and stable: it decides the split
    paragraphs: list[str]  # raw paragraphs (may hold non-ASCII; cleaned later)
    files: list[str] = field(default_factory=list)


def member_selected(rules: list[str], name: str) -> bool:
    """Glob rules on a member path: first match wins, a rule starting with '!' excludes."""
    for rule in rules:
        if rule.startswith("!"):
            if fnmatch(name, rule[1:]):
                return False
        elif fnmatch(name, rule):
            return True
    return False
