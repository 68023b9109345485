"""The autocomplete engine: typing events in, ranked whole-word suggestions out.

`open_session(bundle, backend="onnx")` -> `Session`. The session keeps the model's state in step
with the text, one decode step per completed token:
- the text is `context + partial word`: the partial word is the trailing run of `[A-Za-z0-9']`;
  the context is tokenized (runtime/tokenizer.py) and every context token has been fed to the model;
- a word becomes a token when a separator follows it; each punctuation character and each line
  break (`<nl>`) is a token as soon as it is typed; spaces are implied (no token);
- letters inside a word cost no forward: suggestions are the cached next-token distribution
  filtered by `tokenizer.prefix_ids(partial)`;
- an edit re-tokenizes only the tail of the context (tokens ending before the edit are stable),
  rolls the KV window back to the common token prefix and feeds the new tokens;
- backspacing into a previous word restores that word's distribution from a preallocated ring of
  recent log-probabilities (no forward) when it is still in the ring, else one forward;
- pasted text (many new tokens at once) is fed without the log-softmax of tokens the ring cannot
  keep; beyond `prefill_max_tokens` new tokens the window is rebuilt from the last W-1 tokens only
  (a decode step per token either way: there is no prefill-chunk graph yet).

Suggestion.prob is the word's probability as the next word: the model's (or its OOV-lexicon share
of <unk>) mixed with the session's recent-words cache (runtime/recent_words.py), not renormalised
over the words matching the typed prefix (cheaper, and comparable across prefixes).

Backends are chosen by name through `tpu_driver.backends.open_backend` (never a fallback);
`Session.backend_name` says which one ran. All buffers are allocated when the session opens.
numpy + stdlib only (the board runs this).
"""
from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass

import numpy as np

from runtime.bundle import Bundle, load_bundle
from runtime.errors import UserError
from runtime.reference_model import MASK_EMPTY, ModelConfig, load_weights
from runtime.recent_words import RecentWords
from runtime.tokenizer import (BOS_ID, UNK_ID, Tokenizer, apply_casing, completes, is_sentence_start, is_word_char,
                               split_pieces_with_ends)

MAX_PARTIAL_CHARS = 40  # longer partial words get no suggestions (and no prefix lookup)
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


class _AppendOnlyWindow:
    """Minimal W-slot KV window, chosen by the policy name "append-only" (a baseline for kv_window).

    Slot order = arrival order; the first token (BOS) stays as a sink in its slot; when full, the
    oldest other token is evicted. `rollback(n)` empties the slots of the last n tokens. Positions
    are absolute (`n_tokens` is the position of the next token); ALiBi only sees differences.
    """

    def __init__(self, backend, cfg: ModelConfig):
        self.backend = backend
        self.cfg = cfg
        W = cfg.window
        self.slot_pos = np.full(W, -1, dtype=np.int64)  # (W,) position held by each slot, -1 empty
        self.mask = np.full((1, 1, 1, W), MASK_EMPTY, dtype=np.float32)  # (1,1,1,W) additive mask
        self.dist = np.zeros((1, 1, 1, W), dtype=np.float32)  # (1,1,1,W) query minus key position
        self._occupied = np.zeros(W, dtype=bool)  # (W,) scratch
        self.n_tokens = 0
        self._slot = -1
        self._mask_in, self._dist_in = backend.input("mask"), backend.input("dist")
        self._k_io = [(backend.input(f"k_cache_{l}"), backend.output(f"k_new_{l}")) for l in range(cfg.n_layers)]
        self._v_io = [(backend.input(f"v_cache_{l}"), backend.output(f"v_new_{l}")) for l in range(cfg.n_layers)]

    def prepare_step(self) -> None:
        empty = int(self.slot_pos.argmin())
        if self.slot_pos[empty] >= 0:  # full: evict the oldest non-sink token
            empty = 1 + int(self.slot_pos[1:].argmin())
            self.slot_pos[empty] = -1
        self._slot = empty
        np.greater_equal(self.slot_pos, 0, out=self._occupied)
        mask, dist = self.mask.reshape(-1), self.dist.reshape(-1)
        mask.fill(MASK_EMPTY)
        mask[self._occupied] = 0.0
        np.subtract(self.n_tokens, self.slot_pos, out=dist, casting="unsafe")
        dist[~self._occupied] = 0.0
        self._mask_in.write(self.mask)
        self._dist_in.write(self.dist)

    def commit_step(self) -> None:
        s = self._slot
        for k_cache, k_new in self._k_io:
            k_cache.write(k_new.read(), index=(slice(None), slice(None), slice(None), slice(s, s + 1)))
        for v_cache, v_new in self._v_io:
            v_cache.write(v_new.read(), index=(slice(None), slice(None), slice(s, s + 1), slice(None)))
        self.slot_pos[s] = self.n_tokens
        self.n_tokens += 1

    def rollback(self, n: int) -> None:
        self.n_tokens = max(0, self.n_tokens - n)
        self.slot_pos[self.slot_pos >= self.n_tokens] = -1

    def reset(self) -> None:
        self.slot_pos.fill(-1)
        self.n_tokens = 0


def _make_window(backend, bundle: Bundle, policy: str | None, max_rollback: int):
    """kv_window.KVWindow by policy name (default "sink"), or the engine's `_AppendOnlyWindow`
    when "append-only" is asked for by name."""
    cfg = bundle.config
    if policy == "append-only":
        return _AppendOnlyWindow(backend, cfg)
    from kv_window.window import KVWindow

    policy = policy or "sink"
    # heavy/pages score tokens with layer 0's attention computed on the host: they need the weights
    weights = load_weights(bundle.weights_path, cfg) if policy in ("heavy", "pages") else None
    # evict in batches of up to 16 slots, fewer for small windows (kv_window needs recent slots > batch)
    evict_batch = max(1, min(16, cfg.window // 8))
    return KVWindow(backend, cfg, policy=policy, max_rollback=max_rollback, evict_batch=evict_batch,
                    weights=weights)


class Session:
    """One typing session on one backend. Not thread-safe; one per text field."""

    def __init__(self, bundle: Bundle, backend, window=None, ring_size: int = 64, prefill_max_tokens: int | None = None,
                 recent_weight: float = RECENT_WEIGHT, recent_capacity: int = RECENT_CAPACITY,
                 recent_min_prefix: int = RECENT_MIN_PREFIX, recent_bigram_weight: float = RECENT_BIGRAM_WEIGHT,
                 recent_trigram_backoff: float = RECENT_TRIGRAM_BACKOFF, lexicon_weight: float = LEXICON_WEIGHT):
        self.bundle = bundle
        self.cfg: ModelConfig = bundle.config
        self.tokenizer: Tokenizer = bundle.tokenizer
        self.backend = backend
        self.window = window if window is not None else _AppendOnlyWindow(backend, self.cfg)
        V, W = self.cfg.vocab_size, self.cfg.window
        with np.load(bundle.weights_path) as archive:
            self._embedding = np.ascontiguousarray(archive["embedding"], dtype=np.float32)  # (V,D) host lookup
        if self._embedding.shape != (V, self.cfg.d_model):
            raise UserError(f"{bundle.weights_path}: embedding {self._embedding.shape} does not match config.json")
        self._x_in = backend.input("x")
        self._x = np.zeros((1, 1, self.cfg.d_model), np.float32)  # (1,1,D) staging for the x input
        self._logits_out = backend.output("logits")
        self.ring_size = ring_size
        self._ring = np.zeros((ring_size, V), np.float32)  # (R,V) log-probs after n tokens, row n % R
        self._ring_count = np.full(ring_size, -1, np.int64)  # (R,) token count each row holds, -1 none
        self._exp = np.zeros(V, np.float32)  # (V,) scratch for log-softmax
        self._cand = np.zeros(V, np.float32)  # (V,) log-probs of the prefix-matching words
        self._part = np.zeros(V, np.float32)  # (V,) partition scratch
        self._keep = np.zeros(V, dtype=bool)  # (V,) candidates above the k-th best
        self.prefill_max_tokens = prefill_max_tokens or 4 * W
        if not (0.0 <= recent_weight and 0.0 <= recent_bigram_weight and recent_weight + recent_bigram_weight < 1.0):
            raise UserError(f"recent_weight {recent_weight} + recent_bigram_weight {recent_bigram_weight}: "
                            "each >= 0, together < 1")
        if not 0.0 < recent_trigram_backoff < 1e12:
            raise UserError(f"recent_trigram_backoff {recent_trigram_backoff}: must be > 0 (large: bigram only)")
        if not 0.0 <= lexicon_weight <= 1.0:
            raise UserError(f"lexicon_weight {lexicon_weight}: must be in [0, 1] (0 turns the lexicon off)")
        self.recent_weight = recent_weight
        self.recent_bigram_weight = recent_bigram_weight
        self.recent_min_prefix = recent_min_prefix
        self.recent_trigram_backoff = recent_trigram_backoff
        self.lexicon_weight = lexicon_weight
        self._lexicon_log_weight = math.log(lexicon_weight) if lexicon_weight > 0.0 else -math.inf
        self._recent = RecentWords(recent_capacity)
        self.forward_calls = 0
        self.last_latency_ms = 0.0  # last event + the suggestions() that followed it
        self.last_model_ms = 0.0  # of that: time inside backend.run()
        self.last_forward_calls = 0
        self._event_ms = 0.0
        self._last_suggestions: list[Suggestion] = []
        self.reset()

    # -- public API -------------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def text(self) -> str:
        return "".join(self._chars)

    @property
    def partial_word(self) -> str:
        return "".join(self._chars[self._word_start:])

    @property
    def context_tokens(self) -> list[int]:
        """Token ids of the context (BOS first), as fed to the model."""
        return list(self._tokens)

    def reset(self) -> None:
        started = self._begin()
        self._chars: list[str] = []  # the text, one str per character
        self._tokens: list[int] = [BOS_ID]  # context token ids
        self._ends: list[int] = [0]  # (len(_tokens),) char offset where each token ends
        self._word_start = 0  # start of the trailing partial word
        self._window_first = 1  # first token fed after BOS (> 1 after a rebuild dropped older tokens)
        self._ring_count.fill(-1)
        self._recent.reset()
        self.window.reset()
        self._fed = 0
        self._current = self._feed(BOS_ID, store=True)
        self._end(started)

    def insert(self, text: str) -> None:
        """Type `text` at the end (one key, an accepted completion or a paste)."""
        if not text:
            return
        started = self._begin()
        edit_pos = len(self._chars)
        self._chars.extend(text)
        self._sync(edit_pos)
        self._end(started)

    def backspace(self) -> None:
        """Delete the last character (no-op on an empty text)."""
        started = self._begin()
        if self._chars:
            self._chars.pop()
            self._sync(len(self._chars))
        self._end(started)

    def delete_word(self) -> None:
        """Ctrl-W: delete trailing spaces, then the word (or one other character) before them."""
        started = self._begin()
        chars = self._chars
        while chars and chars[-1].isspace():
            chars.pop()
        if chars and is_word_char(chars[-1]):
            while chars and is_word_char(chars[-1]):
                chars.pop()
        elif chars:
            chars.pop()
        self._sync(len(chars))
        self._end(started)

    def accept(self, i: int) -> str:
        """Accept suggestion i of the last `suggestions()`: types the rest of the word (no space)."""
        if not 0 <= i < len(self._last_suggestions):
            raise UserError(f"no suggestion {i}: {len(self._last_suggestions)} shown")
        rest = self._last_suggestions[i].word[len(self.partial_word):]
        self.insert(rest)
        return rest

    def suggestions(self, k: int = 3) -> list[Suggestion]:
        """Up to k whole words completing the partial word (next words at a word start), best first."""
        started = time.perf_counter()
        result = self._suggest(k)
        self._last_suggestions = result
        self.last_latency_ms = self._event_ms + (time.perf_counter() - started) * 1e3
        return result

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- bookkeeping of one event -------------------------------------------------------------
    def _begin(self) -> float:
        self._model_ms_acc = 0.0
        self._forward_acc = 0
        self._last_suggestions = []
        return time.perf_counter()

    def _end(self, started: float) -> None:
        self._event_ms = (time.perf_counter() - started) * 1e3
        self.last_latency_ms = self._event_ms
        self.last_model_ms = self._model_ms_acc
        self.last_forward_calls = self._forward_acc

    # -- keeping the model in step ------------------------------------------------------------
    def _trailing_word_start(self, edit_pos: int, old_word_start: int) -> int:
        chars = self._chars
        i = len(chars)
        while i > 0 and is_word_char(chars[i - 1]):
            if old_word_start <= i - 1 < edit_pos:
                return old_word_start  # reached the unchanged part of the old partial word
            i -= 1
        return i

    def _sync(self, edit_pos: int) -> None:
        """Bring tokens and model state in line with the text; chars[:edit_pos] are unchanged."""
        self._word_start = word_start = self._trailing_word_start(edit_pos, self._word_start)
        self._recent.sync(self._chars, word_start, edit_pos)
        # tokens ending before the edit are stable (module docstring); re-tokenize the rest of the context
        stable = max(1, bisect.bisect_left(self._ends, edit_pos, lo=1))
        tail_start = self._ends[stable - 1]
        tail_ids, tail_ends = [], []
        if word_start > tail_start:
            for piece, is_word, end in split_pieces_with_ends("".join(self._chars[tail_start:word_start])):
                tail_ids.append(self.tokenizer.token_id(piece, is_word))
                tail_ends.append(tail_start + end)
        common = stable
        old_tokens = self._tokens
        while (common < len(old_tokens) and common - stable < len(tail_ids)
               and old_tokens[common] == tail_ids[common - stable]):
            common += 1
        del self._tokens[stable:], self._ends[stable:]
        self._tokens.extend(tail_ids)
        self._ends.extend(tail_ends)
        if common < self._fed:
            self._rollback_to(common, need_distribution=common == len(self._tokens))
        self._feed_pending()

    def _rollback_to(self, count: int, need_distribution: bool) -> None:
        """Model state after the first `count` context tokens (count >= 1: BOS stays)."""
        self._ring_count[self._ring_count > count] = -1
        if self._window_first > 1 and count <= self._window_first:
            self._rebuild(count)  # the window was rebuilt from a truncated context: rebuild again
            return
        try:
            self.window.rollback(self._fed - count)
        except ValueError:  # kv_window.RollbackTooDeep: beyond its undo log
            self._rebuild(count)
            return
        self._fed = count
        if not need_distribution:
            return  # new tokens follow
        row = count % self.ring_size
        if self._ring_count[row] == count:
            self._current = self._ring[row]  # restored without a forward
            return
        # no longer in the ring: one step back and feed the last token again
        try:
            self.window.rollback(1)
        except ValueError:
            self._rebuild(count)
            return
        self._fed = count - 1
        self._current = self._feed(self._tokens[count - 1], store=True)

    def _rebuild(self, count: int) -> None:
        """Reset the window and feed BOS + the last W-1 of tokens[1:count] (long pastes, deep rollbacks)."""
        self.window.reset()
        self._fed = 0
        first = max(1, count - (self.cfg.window - 1))
        self._window_first = first
        self._current = self._feed(BOS_ID, store=count == 1)
        self._fed = first  # tokens[1:first] are dropped from the model's context
        for i in range(first, count):  # log-softmax only for the rows the ring can keep
            self._current = self._feed(self._tokens[i], store=i >= count - self.ring_size)

    def _feed_pending(self) -> None:
        pending = len(self._tokens) - self._fed
        if pending <= 0:
            return
        if pending > self.prefill_max_tokens:  # a long paste: only the last W-1 tokens are fed
            self._rebuild(len(self._tokens))
            return
        count = len(self._tokens)
        for i in range(self._fed, count):  # log-softmax only for the rows the ring can keep
            self._current = self._feed(self._tokens[i], store=i >= count - self.ring_size)

    def _feed(self, token: int, store: bool) -> np.ndarray:
        """One decode step of `token`; returns the (V,) log-prob row (the ring row when stored)."""
        np.copyto(self._x[0, 0], self._embedding[token])
        self._x_in.write(self._x)
        self.window.prepare_step()
        started = time.perf_counter()
        self.backend.run()
        self._model_ms_acc += (time.perf_counter() - started) * 1e3
        self.window.commit_step()
        self._fed += 1
        self.forward_calls += 1
        self._forward_acc += 1
        count = self._fed
        row_index = count % self.ring_size
        row = self._ring[row_index]
        if not store:
            self._ring_count[row_index] = -1
            return row
        logits = self._logits_out.read().reshape(-1)  # (V,)
        np.subtract(logits, logits.max(), out=row)
        np.exp(row, out=self._exp)
        row -= np.float32(np.log(self._exp.sum()))
        self._ring_count[row_index] = count
        return row

    # -- suggestions --------------------------------------------------------------------------
    def _suggest(self, k: int) -> list[Suggestion]:
        if k <= 0:
            return []
        n_partial = len(self._chars) - self._word_start
        if n_partial > MAX_PARTIAL_CHARS:
            return []
        partial = "".join(self._chars[self._word_start:])
        ids = self.tokenizer.prefix_ids(partial)  # (m,) view of the sorted prefix index
        m = len(ids)
        log_probs = self._current  # (V,)
        lexicon = self._lexicon_candidates(partial, log_probs, k + SUGGESTION_SLACK)
        recent, log_keep = self._recent_candidates(partial, log_probs)
        if m == 0 and not lexicon and not recent:
            return []
        cand = self._cand[:m]
        np.take(log_probs, ids, out=cand)
        want = min(m, k + SUGGESTION_SLACK)
        if want < m:
            part = self._part[:m]
            np.copyto(part, cand)
            part.partition(m - want)
            keep = self._keep[:m]
            np.greater_equal(cand, part[m - want], out=keep)
            chosen = np.flatnonzero(keep)  # (>= want,) small
        else:
            chosen = np.arange(m)
        order = chosen[np.argsort(-cand[chosen], kind="stable")]
        # apply_casing uses the sentence start only when nothing is typed yet
        sentence_start = not partial and is_sentence_start("".join(self._chars[max(0, self._word_start - 64):]))
        ranked = [(float(cand[j]), int(ids[j]), -1) for j in order] + lexicon  # (log-prob, token id, lexicon index)
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
            key = word.lower()  # a recent word also ranked as a model word: keep the first (higher) one
            if key in seen or not completes(word, partial):
                continue
            seen.add(key)
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
        recent, lam, mu = self._recent, self.recent_weight, self.recent_bigram_weight
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
        return apply_casing(key, partial, sentence_start, self._recent.surface(key))

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


def open_session(bundle=None, backend: str = "onnx", window_policy: str | None = None, **opts) -> Session:
    """A Session on `bundle` (a Bundle, a directory, or None for the shipped default) and backend `name`.

    window_policy: a kv_window policy ("sink" by default), or "append-only" for the engine's own
    minimal window. opts: ring_size, prefill_max_tokens (Session)."""
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    from tpu_driver.backends import open_backend

    model = open_backend(backend, bundle)
    try:
        window = _make_window(model, bundle, window_policy, max_rollback=max(64, opts.get("ring_size", 64)))
        return Session(bundle, model, window=window, **opts)
    except BaseException:
        model.close()
        raise
