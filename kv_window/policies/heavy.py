"""`heavy`: H2O-style. Scores accumulate the layer-0 attention each kept token receives (mean over
heads, computed on the host: kv_window/policies/layer0.py); an eviction drops the B lowest-scoring
tokens outside the `recent` most recent ones (default half the FIFO) and the sinks. Layers 1..L-1
are invisible to it: an approximation, stated in docs/kv-window.md. Original positions by default."""
from __future__ import annotations

import numpy as np

from tpu_driver.errors import UserError
from tpu_driver.reference_model import alibi_slopes

from kv_window.policies.base import Layout
from kv_window.policies.layer0 import Layer0Policy, layer0_attention


class Heavy(Layer0Policy):
    name = "heavy"
    default_positions = "original"

    @classmethod
    def make_layout(cls, window, sink_tokens, evict_batch, pages=None, recent=None) -> Layout:
        probe = Layout(cls.name, window, sink_tokens, evict_batch)
        lay = Layout(cls.name, window, sink_tokens, evict_batch,
                     recent=recent if recent is not None else probe.ring // 2)
        if not 0 <= lay.recent <= lay.ring - lay.batch - 1:
            raise UserError(f"heavy policy: recent={lay.recent} must leave >= evict_batch+1 "
                            f"({lay.batch + 1}) evictable slots of the {lay.ring} recent slots")
        return lay

    def __init__(self, window, weights=None, store_tokens=1024):
        super().__init__(window, weights)
        cfg = window.cfg
        self.slopes = alibi_slopes(cfg.n_heads, cfg.alibi_max_bias)[:, None].astype(np.float32)  # (H,1)
        self.scores = np.zeros(window.slots, np.float64)  # (W,) accumulated layer-0 attention per slot
        self._self_score = 0.0  # the new token's attention on itself, stored at commit

    def reset(self) -> None:
        self.scores.fill(0.0)

    def observe(self, records: list) -> None:
        w = self.window
        bias = w.mask_row[None, :] - self.slopes * w.dist_row[None, :]  # (H,W)
        weights, self._self_score = layer0_attention(self.query.q, self.query.k, w.mirror_k[0], bias)
        records.append(("policy", "scores", self.scores.copy()))  # restores every later change too
        self.scores += weights * w.slot_live

    def choose_victims(self, ring: slice, tokens: np.ndarray) -> np.ndarray:
        lay = self.window.layout
        eligible = tokens < self.window.n_tokens - lay.recent
        ranked = np.where(eligible, self.scores[ring], np.inf)
        return np.argpartition(ranked, lay.batch - 1)[: lay.batch]

    def on_evict(self, slots: np.ndarray, records: list) -> None:
        self.scores[slots] = 0.0

    def on_commit(self, slot: int, token: int) -> None:
        self.scores[slot] = self._self_score

    def undo(self, payload: tuple) -> None:
        _, scores = payload
        self.scores[:] = scores
