"""Ranking: the next-token log-probabilities, the OOV lexicon and the session cache -> k suggestions.

`Ranker.suggest(log_probs, partial, sentence_start, k)` is the suggestion rule of the engine:
- model words: vocabulary tokens whose word starts with the typed partial word
  (`tokenizer.prefix_ids`), the best `k + SUGGESTION_SLACK` by log-probability (`top_prefix`);
- OOV-lexicon words (2+ characters typed): LEXICON_WEIGHT x P(<unk> | context) x P(word | <unk>);
- the session's recent-words cache (runtime/recent_words.py) mixed in:
  P = keep P_model + lam count/total + mu P_cache(w | w2 w1);
- merged by probability, cased (`apply_casing`), deduplicated case-insensitively, and only words
  that add a character (runtime/suggestion_rule.py, shared with every evaluation).
Suggestion.prob is the word's probability as the next word, not renormalised over the prefix.

`core.top_prefix` is the per-key vector work (runtime/keystroke_core.py: the Python reference and its
native twin).
numpy + stdlib only (the board runs this).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.errors import UserError
from runtime.recent_words import RecentWords
from runtime.suggestion_rule import MAX_PARTIAL_CHARS, accept, suggests_for
from runtime.tokenizer import UNK_ID, Tokenizer, apply_casing

SUGGESTION_SLACK = 4  # extra candidates fetched so that deduplication still leaves k
LEXICON_MIN_PREFIX = 2  # the OOV lexicon competes once 2+ characters are typed (its ranges are small then)
LEXICON_WEIGHT = 0.1  # a lexicon word ranks by LEXICON_WEIGHT * P(<unk> | context) * P(word | <unk>) (tuned on valid, docs/quality.md)
RECENT_WEIGHT = 0.15  # lam of runtime/recent_words.py: share of the session's recent-words cache (0 = off)
RECENT_CAPACITY = 512  # completed words the cache remembers
RECENT_MIN_PREFIX = 1  # the cache competes once this many characters of the word are typed
RECENT_BIGRAM_WEIGHT = 0.2  # mu of runtime/recent_words.py: share of the bigram cache (any prefix, even none)
RECENT_TRIGRAM_BACKOFF = 2.0  # beta of runtime/recent_words.py: pseudo-count of the bigram estimate inside mu's term


@dataclass(frozen=True)
class Suggestion:
    word: str  # surface form, starts with the typed partial word exactly
    prob: float  # probability of this word as the next word (model mixed with the session cache; not renormalised)
    token_id: int


class Ranker:
    """The suggestion rule over one tokenizer and one session cache (see module docstring)."""

    def __init__(self, tokenizer: Tokenizer, recent: RecentWords, core, recent_weight: float = RECENT_WEIGHT,
                 recent_min_prefix: int = RECENT_MIN_PREFIX, recent_bigram_weight: float = RECENT_BIGRAM_WEIGHT,
                 recent_trigram_backoff: float = RECENT_TRIGRAM_BACKOFF, lexicon_weight: float = LEXICON_WEIGHT):
        if not (0.0 <= recent_weight and 0.0 <= recent_bigram_weight and recent_weight + recent_bigram_weight < 1.0):
            raise UserError(f"recent_weight {recent_weight} + recent_bigram_weight {recent_bigram_weight}: "
                            "each >= 0, together < 1")
        if not 0.0 < recent_trigram_backoff < 1e12:
            raise UserError(f"recent_trigram_backoff {recent_trigram_backoff}: must be > 0 (large: bigram only)")
        if not 0.0 <= lexicon_weight <= 1.0:
            raise UserError(f"lexicon_weight {lexicon_weight}: must be in [0, 1] (0 turns the lexicon off)")
        self.tokenizer = tokenizer
        self.recent = recent
        self.core = core  # runtime/keystroke_core.py PythonCore or NativeCore: `top_prefix`
        self.recent_weight = recent_weight
        self.recent_bigram_weight = recent_bigram_weight
        self.recent_min_prefix = recent_min_prefix
        self.recent_trigram_backoff = recent_trigram_backoff
        self.lexicon_weight = lexicon_weight
        self._lexicon_log_weight = math.log(lexicon_weight) if lexicon_weight > 0.0 else -math.inf

    def suggest(self, log_probs: np.ndarray, partial: str, sentence_start: bool, k: int) -> list[Suggestion]:
        """Up to k words completing `partial` (next words when it is empty), best first.
        log_probs: (V,) float32 next-token log-probabilities; sentence_start: casing at a sentence start
        (used only when nothing is typed yet)."""
        if k <= 0 or not suggests_for(partial):
            return []
        ids = self.tokenizer.prefix_ids(partial)  # (m,) view of the sorted prefix index
        lexicon = self._lexicon_candidates(partial, log_probs, k + SUGGESTION_SLACK)
        recent, log_keep = self._recent_candidates(partial, log_probs)
        if len(ids) == 0 and not lexicon and not recent:
            return []
        span = self.tokenizer.prefix_id_range(partial)  # (lo, hi) when the bundle's words are sorted: a slice
        model = self.core.top_prefix(log_probs, ids, k + SUGGESTION_SLACK, span=span) if len(ids) else []
        ranked = [(lp, t, -1) for lp, t in model] + lexicon  # (log-prob, token id, lexicon index)
        if recent:
            ranked = [(lp + log_keep, t, x) for lp, t, x in ranked] + recent
        if lexicon or recent:
            ranked.sort(key=lambda item: -item[0])
        result, seen = [], set()
        for log_prob, token_id, index in ranked:
            if isinstance(index, str):  # a recent word: its key
                word = self._recent_surface(index, token_id, partial, sentence_start)
            elif index < 0:
                word = self.tokenizer.surface(token_id, partial, sentence_start)
            else:
                word = self.tokenizer.lexicon_surface(index, partial, sentence_start)
            # a recent word also ranked as a model word: the rule keeps the first (higher) one
            if not accept(word, partial, seen):
                continue
            result.append(Suggestion(word, float(np.exp(log_prob)), token_id))
            if len(result) == k:
                break
        return result

    def _recent_candidates(self, partial: str, log_probs: np.ndarray) -> tuple[list, float]:
        """Recent words matching `partial` as (log of the mixed probability, token id, key), and
        log of the model's share (0.0 when no cache term applies).

        P = keep P_model + lam count/total + mu P_cache(w | w2 w1) (runtime/recent_words.py: trigram
        counts backing off to the bigram with pseudo-count beta), keep = 1 - the weights of the
        terms that apply; P_model of an OOV word is LEXICON_WEIGHT x its lexicon share of P(<unk>)
        (0 for a word neither the vocabulary nor the lexicon knows)."""
        recent, lam, mu = self.recent, self.recent_weight, self.recent_bigram_weight
        if not recent.total:
            return [], 0.0
        unigram = lam > 0.0 and len(partial) >= self.recent_min_prefix
        keys = recent.matches(partial) if unigram else []
        follow, follow_total = recent.followers(partial) if mu > 0.0 else ({}, 0)
        if not keys and not follow:
            return [], 0.0
        follow2, follow2_total = recent.followers2(partial) if follow else ({}, 0)
        beta = self.recent_trigram_backoff
        keep = 1.0 - (lam if unigram else 0.0) - (mu if follow else 0.0)
        share = lam / recent.total if unigram else 0.0
        share2 = mu / follow_total if follow else 0.0  # bigram estimate = share2 * count / mu
        share3 = mu / (follow2_total + beta) if follow2_total else 0.0
        if follow2_total:  # the trigram counts, backing off to the bigram estimate with weight beta
            share2 *= beta / (follow2_total + beta)
        ids, exp, log, count = self.tokenizer.ids, math.exp, math.log, recent.count  # scalar math: the per-key path
        out = []
        for key in (keys if not follow else sorted(set(keys).union(follow))):
            token_id = ids.get(key, UNK_ID)
            if token_id != UNK_ID:
                p_model = exp(log_probs[token_id])
            else:
                index = self.tokenizer.lexicon_index(key)
                p_model = exp(self._lexicon_log_unk(log_probs) + self.tokenizer.lexicon_log_prior[index]) if index >= 0 else 0.0
            p_context = share2 * follow.get(key, 0) + share3 * follow2.get(key, 0)
            out.append((log(keep * p_model + share * count(key) + p_context), token_id, key))
        return out, log(keep)

    def _recent_surface(self, key: str, token_id: int, partial: str, sentence_start: bool) -> str:
        """Vocabulary and lexicon words keep the training casing; a new word the form typed last."""
        if token_id != UNK_ID or self.tokenizer.lexicon_index(key) >= 0:
            return apply_casing(key, partial, sentence_start, self.tokenizer.casing.get(key))
        return apply_casing(key, partial, sentence_start, self.recent.surface(key))

    def _lexicon_candidates(self, partial: str, log_probs: np.ndarray, want: int) -> list:
        """Best OOV-lexicon words for `partial`: log LEXICON_WEIGHT + log P(<unk>|context) + log P(word|<unk>).

        (log-prob, UNK_ID, lexicon index) tuples, at most `want`; [] without a lexicon or while
        fewer than LEXICON_MIN_PREFIX characters are typed."""
        tokenizer = self.tokenizer
        if len(partial) < LEXICON_MIN_PREFIX or not tokenizer.lexicon_words or self.lexicon_weight == 0.0:
            return []
        start, end = tokenizer.lexicon_range(partial)
        if end == start:
            return []
        prior = tokenizer.lexicon_log_prior[start:end]  # (n,) view
        if end - start > want:
            best = np.argpartition(prior, end - start - want)[end - start - want:]
        else:
            best = np.arange(end - start)
        unk = self._lexicon_log_unk(log_probs)
        return [(unk + float(prior[j]), UNK_ID, start + int(j)) for j in best]

    def _lexicon_log_unk(self, log_probs: np.ndarray) -> float:
        """log(LEXICON_WEIGHT x P(<unk> | context)): a lexicon word's score is this + log P(word | <unk>)."""
        return float(log_probs[UNK_ID]) + self._lexicon_log_weight
