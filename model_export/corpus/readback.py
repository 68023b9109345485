"""Reading the corpus back (for training, the n-gram baseline and evaluation)."""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

from runtime.errors import UserError


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


