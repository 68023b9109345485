"""Token sync: the context's token ids kept in step with the text, and how far the model must roll back.

The context is the text before the partial word (runtime/session_text.py). Tokens ending before an
edit are stable, so an edit re-tokenizes only the context's tail from the first token it may have
touched; `sync` returns how many leading tokens are unchanged (`common`): the model keeps the
state after those and is fed the rest (runtime/model_step.py). Cost per key: O(log tokens) for the
lookup plus the re-tokenized tail (the last token or two at the end of the text).

`tokens` and `ends` are compact int32 `array`s (4 bytes a token): a 100,000-character session holds
~25,000 tokens in ~0.2 MB. numpy-free, stdlib only (the board runs this).
"""
from __future__ import annotations

import bisect
from array import array

from runtime.tokenizer import BOS_ID, Tokenizer, split_pieces_with_ends


class TokenSync:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.tokens = array("i", [BOS_ID])  # (n,) context token ids, BOS first
        self.ends = array("i", [0])  # (n,) char offset where each token ends

    def __len__(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        del self.tokens[1:], self.ends[1:]

    def sync(self, chars: list[str], word_start: int, edit_pos: int) -> int:
        """Re-tokenize chars[:word_start] after an edit at edit_pos (chars[:edit_pos] unchanged);
        returns the number of leading tokens that did not change (>= 1: BOS)."""
        tokens, ends = self.tokens, self.ends
        stable = max(1, bisect.bisect_left(ends, edit_pos, 1))
        tail_start = ends[stable - 1]
        tail_ids, tail_ends = [], []
        if word_start > tail_start:
            token_id = self.tokenizer.token_id
            for piece, is_word, end in split_pieces_with_ends("".join(chars[tail_start:word_start])):
                tail_ids.append(token_id(piece, is_word))
                tail_ends.append(tail_start + end)
        common = stable
        while (common < len(tokens) and common - stable < len(tail_ids)
               and tokens[common] == tail_ids[common - stable]):
            common += 1
        del tokens[stable:], ends[stable:]
        tokens.extend(tail_ids)
        ends.extend(tail_ends)
        return common
