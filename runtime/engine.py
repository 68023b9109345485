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

The Session composes four parts, each readable and tested alone:
- runtime/session_text.py `SessionText`: characters, partial word, line starts, the last edit;
- runtime/token_sync.py `TokenSync`: context token ids and how far an edit rolls the model back;
- runtime/model_step.py `ModelStepper`: the KV window, the backend, the log-prob ring;
- runtime/ranking.py `Ranker`: the suggestion rule (model, OOV lexicon, session cache);
and the keystroke core (runtime/keystroke_core.py, `core`: native or python) does their vector work.
Typing, Backspace, delete-word and accepting at the end of the text cost O(1) in its length
(nothing on the per-key path joins the whole text; `Session.text` does and is not for it).

Backends are chosen by name through `tpu_driver.backends.open_backend` (never a fallback);
`Session.backend_name` says which one ran. All buffers are allocated when the session opens.
numpy + stdlib only (the board runs this).
"""
from __future__ import annotations

import time

import numpy as np

from kv_window.policies import DEFAULT_POLICY, policy_class
from kv_window.window import KVWindow
from runtime.bundle import Bundle, load_bundle
from runtime.keystroke_core import open_core
from runtime.model_step import ModelStepper
from runtime.ranking import (LEXICON_MIN_PREFIX, LEXICON_WEIGHT, MAX_PARTIAL_CHARS, RECENT_BIGRAM_WEIGHT,  # noqa: F401
                             RECENT_CAPACITY, RECENT_MIN_PREFIX, RECENT_TRIGRAM_BACKOFF, RECENT_WEIGHT,
                             SUGGESTION_SLACK, Ranker, Suggestion)
from runtime.recent_words import RecentWords
from runtime.session_text import SessionText
from runtime.token_sync import TokenSync
from runtime.tokenizer import Tokenizer, casing_context
from tpu_driver.backends import open_backend
from tpu_driver.reference_model import ModelConfig, load_weights


def _make_window(backend, bundle: Bundle, policy: str | None, max_rollback: int) -> KVWindow:
    """kv_window.KVWindow with policy `policy` (default "sink"; "fifo" is the minimal one: <bos> stays,
    the oldest other token is evicted one at a time)."""
    cfg = bundle.config
    rules = policy_class(policy or DEFAULT_POLICY)
    # heavy/pages score tokens with layer 0's attention computed on the host: they need the weights
    weights = load_weights(bundle.weights_path, cfg) if rules.needs_weights else None
    # evict in batches of up to the policy's (16), fewer for small windows (kv_window needs recent slots > batch)
    evict_batch = min(rules.default_evict_batch, max(1, cfg.window // 8))
    return KVWindow(backend, cfg, policy=rules.name, max_rollback=max_rollback, evict_batch=evict_batch,
                    weights=weights)


class Session:
    """One typing session on one backend. Not thread-safe; one per text field."""

    def __init__(self, bundle: Bundle, backend, window=None, ring_size: int = 64, prefill_max_tokens: int | None = None,
                 recent_capacity: int = RECENT_CAPACITY, core: str = "auto", **ranking):
        """ranking: recent_weight, recent_min_prefix, recent_bigram_weight, recent_trigram_backoff,
        lexicon_weight (runtime/ranking.py Ranker)."""
        self.bundle = bundle
        self.cfg: ModelConfig = bundle.config
        self.tokenizer: Tokenizer = bundle.tokenizer
        self.backend = backend
        self.window = window if window is not None else _make_window(backend, bundle, "fifo", max(64, ring_size))
        self.core = open_core(core, self.cfg.vocab_size)
        self.text_buffer = SessionText()
        self.token_sync = TokenSync(self.tokenizer)
        self.stepper = ModelStepper(backend, self.window, self.cfg, bundle.weights_path, self.token_sync.tokens,
                                    self.core, ring_size=ring_size, prefill_max_tokens=prefill_max_tokens,
                                    logits_are_log_probs=bool((bundle.manifest or {}).get("logits_are_log_probs")))
        self._recent = RecentWords(recent_capacity)
        self.ranker = Ranker(self.tokenizer, self._recent, self.core, **ranking)
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
    def core_name(self) -> str:
        return self.core.name

    @property
    def text(self) -> str:
        """The whole text (O(n): not for the per-key path; `text_buffer` has O(1) views)."""
        return self.text_buffer.text

    @property
    def text_length(self) -> int:
        return len(self.text_buffer)

    @property
    def last_edit(self) -> tuple[int, str]:
        """(keep, add) of the last edit: the first `keep` characters stayed, `add` follows them."""
        return self.text_buffer.last_edit

    @property
    def partial_word(self) -> str:
        return self.text_buffer.partial_word

    @property
    def context_tokens(self) -> list[int]:
        """Token ids of the context (BOS first), as fed to the model."""
        return list(self.token_sync.tokens)

    @property
    def forward_calls(self) -> int:
        return self.stepper.forward_calls

    @property
    def prefill_max_tokens(self) -> int:
        return self.stepper.prefill_max_tokens

    @prefill_max_tokens.setter
    def prefill_max_tokens(self, value: int) -> None:
        self.stepper.prefill_max_tokens = value

    @property
    def ring_size(self) -> int:
        return self.stepper.ring_size

    @property
    def _current(self) -> np.ndarray:
        """(V,) float32 next-token log-probs after the context (tests compare it with the oracle)."""
        return self.stepper.current

    def __getattr__(self, name):  # the ranking weights: session.recent_weight etc.
        if name in ("recent_weight", "recent_bigram_weight", "recent_min_prefix", "recent_trigram_backoff",
                    "lexicon_weight"):
            return getattr(self.ranker, name)
        raise AttributeError(name)

    def reset(self) -> None:
        started = self._begin()
        self.text_buffer.reset()
        self.token_sync.reset()
        self._recent.reset()
        self.stepper.reset()
        self._end(started)

    def insert(self, text: str) -> None:
        """Type `text` at the end (one key, an accepted completion or a paste)."""
        if not text:
            return
        started = self._begin()
        self._sync(self.text_buffer.insert(text))
        self._end(started)

    def backspace(self) -> None:
        """Delete the last character (no-op on an empty text)."""
        started = self._begin()
        if len(self.text_buffer):
            self._sync(self.text_buffer.backspace())
        self._end(started)

    def delete_word(self) -> None:
        """Ctrl-W: delete trailing spaces, then the word (or one other character) before them."""
        started = self._begin()
        self._sync(self.text_buffer.delete_word())
        self._end(started)

    def accept(self, i: int) -> str:
        """Accept suggestion i of the last `suggestions()`: types the rest of the word (no space)."""
        if not 0 <= i < len(self._last_suggestions):
            raise IndexError(f"no suggestion {i}: {len(self._last_suggestions)} shown")  # a caller bug: the UI checks first
        rest = self._last_suggestions[i].word[self.text_buffer.partial_length:]
        self.insert(rest)
        return rest

    def suggestions(self, k: int = 3) -> list[Suggestion]:
        """Up to k whole words completing the partial word (next words at a word start), best first."""
        started = time.perf_counter()
        text = self.text_buffer
        if text.partial_length > MAX_PARTIAL_CHARS or k <= 0:
            result = []
        else:
            partial = text.partial_word
            # the casing mode follows the text before the partial word (runtime.tokenizer.casing_context)
            casing = casing_context(text.before_partial())
            result = self.ranker.suggest(self.stepper.current, partial, casing, k)
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
        self.stepper.begin_event()
        self._last_suggestions = []
        return time.perf_counter()

    def _end(self, started: float) -> None:
        self._event_ms = (time.perf_counter() - started) * 1e3
        self.last_latency_ms = self._event_ms
        self.last_model_ms = self.stepper.model_ms
        self.last_forward_calls = self.stepper.event_forward_calls

    def _sync(self, edit_pos: int) -> None:
        """Bring the cache, tokens and model state in line with the text; chars[:edit_pos] are unchanged."""
        text = self.text_buffer
        self._recent.sync(text.chars, text.word_start, edit_pos)
        self.stepper.update(self.token_sync.sync(text.chars, text.word_start, edit_pos))


def open_session(bundle=None, backend: str = "onnx", window_policy: str | None = None, **opts) -> Session:
    """A Session on `bundle` (a Bundle, a directory, or None for the shipped default) and backend `name`.

    window_policy: a kv_window policy name (kv_window/policies/: "sink" by default; "fifo" is the minimal
    one). opts: ring_size, prefill_max_tokens, core, the ranking weights (Session)."""
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    model = open_backend(backend, bundle)
    try:
        window = _make_window(model, bundle, window_policy, max_rollback=max(64, opts.get("ring_size", 64)))
        return Session(bundle, model, window=window, **opts)
    except BaseException:
        model.close()
        raise
