"""Model stepping: the KV window and the backend fed one token at a time, and the log-prob ring.

`ModelStepper` owns what the model has seen: `fed` tokens of `TokenSync.tokens` (runtime/token_sync.py)
are in the KV window, and `current` is the (V,) next-token log-probability row after them.
- `feed_pending()` runs one decode step per new token (log-softmax only for the rows the ring keeps);
  beyond `prefill_max_tokens` new tokens (a long paste) the window is rebuilt from the last W-1;
- `rollback_to(count)` returns to the state after `count` tokens: the window's rollback, then the
  ring row of that state when it is still there (no forward), else one step back and one forward;
  a rollback deeper than the window's undo log rebuilds it;
- every buffer is allocated once here: nothing per keystroke.
Timing: `model_ms` / `forward_calls` accumulate since `begin_event()` (inside backend.run() only).
numpy + stdlib only (the board runs this).
"""
from __future__ import annotations

import time

import numpy as np

from runtime.errors import UserError
from tpu_driver.reference_model import ModelConfig
from tpu_driver import decode_step
from runtime.tokenizer import BOS_ID


class ModelStepper:
    def __init__(self, backend, window, cfg: ModelConfig, weights_path, tokens, core, ring_size: int = 64,
                 prefill_max_tokens: int | None = None, logits_are_log_probs: bool = False):
        self.backend = backend
        self.window = window
        self.cfg = cfg
        self.tokens = tokens  # TokenSync.tokens: (n,) context ids, read only here
        self.core = core  # the keystroke core's `log_softmax_into` (runtime/keystroke_core.py)
        V = cfg.vocab_size
        with np.load(weights_path) as archive:
            self._embedding = np.ascontiguousarray(archive["embedding"], dtype=np.float32)  # (V,D) host lookup
        if self._embedding.shape != (V, cfg.d_model):
            raise UserError(f"{weights_path}: embedding {self._embedding.shape} does not match config.json")
        self._x_in = backend.input(decode_step.X)
        self._x = np.zeros((1, 1, cfg.d_model), np.float32)  # (1,1,D) staging for the x input
        self._logits_out = backend.output(decode_step.LOGITS)
        # the bundle's graph ends in LogSoftmax (manifest `logits_are_log_probs`): rows are copied, not normalised
        self.logits_are_log_probs = bool(logits_are_log_probs)
        self.ring_size = ring_size
        self._ring = np.zeros((ring_size, V), np.float32)  # (R,V) log-probs after n tokens, row n % R
        self._ring_count = np.full(ring_size, -1, np.int64)  # (R,) token count each row holds, -1 none
        self.prefill_max_tokens = prefill_max_tokens or 4 * cfg.window
        self.fed = 0  # tokens[:fed] are in the window (tokens[1:window_first] dropped by a rebuild)
        self.window_first = 1  # first token fed after BOS (> 1 after a rebuild dropped older tokens)
        self.current = self._ring[0]  # (V,) float32 log-probs after the fed tokens
        self.forward_calls = 0  # since the session opened
        self.model_ms = 0.0  # since begin_event()
        self.event_forward_calls = 0  # since begin_event()

    def begin_event(self) -> None:
        self.model_ms = 0.0
        self.event_forward_calls = 0

    def reset(self) -> None:
        self._ring_count.fill(-1)
        self.window.reset()
        self.window_first = 1
        self.fed = 0
        self.current = self._feed(BOS_ID, store=True)

    def update(self, common: int) -> None:
        """Tokens after the first `common` changed: roll back to them, then feed the new ones."""
        if common < self.fed:
            self.rollback_to(common, need_distribution=common == len(self.tokens))
        self.feed_pending()

    def rollback_to(self, count: int, need_distribution: bool) -> None:
        """Model state after the first `count` context tokens (count >= 1: BOS stays)."""
        self._ring_count[self._ring_count > count] = -1
        if self.window_first > 1 and count <= self.window_first:
            self._rebuild(count)  # the window was rebuilt from a truncated context: rebuild again
            return
        try:
            self.window.rollback(self.fed - count)
        except ValueError:  # kv_window.RollbackTooDeep: beyond its undo log
            self._rebuild(count)
            return
        self.fed = count
        if not need_distribution:
            return  # new tokens follow
        row = count % self.ring_size
        if self._ring_count[row] == count:
            self.current = self._ring[row]  # restored without a forward
            return
        # no longer in the ring: one step back and feed the last token again
        try:
            self.window.rollback(1)
        except ValueError:
            self._rebuild(count)
            return
        self.fed = count - 1
        self.current = self._feed(self.tokens[count - 1], store=True)

    def feed_pending(self) -> None:
        count = len(self.tokens)
        pending = count - self.fed
        if pending <= 0:
            return
        if pending > self.prefill_max_tokens:  # a long paste: only the last W-1 tokens are fed
            self._rebuild(count)
            return
        for i in range(self.fed, count):  # log-softmax only for the rows the ring can keep
            self.current = self._feed(self.tokens[i], store=i >= count - self.ring_size)

    def _rebuild(self, count: int) -> None:
        """Reset the window and feed BOS + the last W-1 of tokens[1:count] (long pastes, deep rollbacks)."""
        self.window.reset()
        self.fed = 0
        first = max(1, count - (self.cfg.window - 1))
        self.window_first = first
        self.current = self._feed(BOS_ID, store=count == 1)
        self.fed = first  # tokens[1:first] are dropped from the model's context
        for i in range(first, count):  # log-softmax only for the rows the ring can keep
            self.current = self._feed(self.tokens[i], store=i >= count - self.ring_size)

    def _feed(self, token: int, store: bool) -> np.ndarray:
        """One decode step of `token`; returns the (V,) log-prob row (the ring row when stored)."""
        np.copyto(self._x[0, 0], self._embedding[token])
        self._x_in.write(self._x)
        self.window.prepare_step()
        started = time.perf_counter()
        self.backend.run()
        self.model_ms += (time.perf_counter() - started) * 1e3
        self.window.commit_step()
        self.fed += 1
        self.forward_calls += 1
        self.event_forward_calls += 1
        row_index = self.fed % self.ring_size
        row = self._ring[row_index]
        if not store:
            self._ring_count[row_index] = -1
            return row
        if self.logits_are_log_probs:  # log-softmax ran on the TPU (or in the backend)
            np.copyto(row, self._logits_out.read().reshape(-1))  # (V,) log-probs
        else:
            self.core.log_softmax_into(self._logits_out.read().reshape(-1), row)  # (V,) logits -> log-probs
        self._ring_count[row_index] = self.fed
        return row
