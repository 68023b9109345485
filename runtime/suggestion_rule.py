"""The suggestion rule, written once: which words may be shown for a typed partial word.

Shared by the engine's ranking (runtime/ranking.py), `eval ksr`'s n-gram baseline
(measure/ngram.py, measure/evaluate.py), `eval window` (measure/window_fidelity.py) and the golden
data of a bundle (model_export/export.py golden_data), so that their KSRs measure the same user
interface (EVALUATION.md):
- a partial word longer than MAX_PARTIAL_CHARS gets no suggestions (and no prefix lookup);
- a suggestion must add characters: the word already typed in full saves nothing (`completes`);
- a word is shown once, whatever its casing (`accept`, in rank order, up to k).
Candidates come from the prefix filter (the lowercased typed prefix, runtime/tokenizer.py) and
are cased by runtime/tokenizer.py; this module decides only what is kept. stdlib only.
"""
from __future__ import annotations

MAX_PARTIAL_CHARS = 40  # longer partial words get no suggestions (and no prefix lookup)


def suggests_for(partial: str) -> bool:
    """False when the partial word is too long to get suggestions."""
    return len(partial) <= MAX_PARTIAL_CHARS


def completes(suggestion: str, typed_prefix: str) -> bool:
    """A suggestion must add characters: the word already typed in full saves nothing and would
    only take a slot."""
    return len(suggestion) > len(typed_prefix)


def accept(word: str, partial: str, seen: set) -> bool:
    """Keep `word` (candidates arrive best first)? It must complete `partial` and not be shown
    already in another casing; a kept word is added to `seen` (lowercased)."""
    key = word.lower()
    if key in seen or not completes(word, partial):
        return False
    seen.add(key)
    return True


def pick(words, partial: str, k: int) -> list[str]:
    """The first k words of `words` (best first) that the rule keeps."""
    result: list[str] = []
    seen: set = set()
    for word in words:
        if accept(word, partial, seen):
            result.append(word)
            if len(result) == k:
                break
    return result
