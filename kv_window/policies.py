"""Pruning policies of the KV window: which tokens keep a slot when the W slots are full.

Used by the fast path kv_window/window.py (`KVWindow`); the plain twin kv_window/reference.py
(`ReferenceWindow`) applies the same rules to a plain list of kept tokens, and the tests check that
both keep the same tokens. The math shared by both (layer-0 host query, Quest page bounds,
layer-0 attention) lives here so that both make the same decisions.

Policies (docs/kv-window.md has the measurements behind the defaults):
- `sliding`: the last W tokens (no sinks).
- `sink`: the first `sink_tokens` tokens stay forever (StreamingLLM "attention sinks"), the rest
  is a FIFO of the most recent tokens.
- `heavy`: H2O-style. Attention weights are not outputs of the compiled graph, so the host
  computes layer 0's attention itself: layer 0's query and key of the new token depend only on
  the embedding row `x` (q0 = LN1_0(x) @ Wq_0), and layer 0's keys of the kept tokens are in the
  window. Scores accumulate that layer-0 attention (mean over heads); evictions drop the
  lowest-scoring tokens outside the `recent` most recent ones. Layers 1..L-1 are invisible: an
  approximation, stated in docs/kv-window.md.
- `pages`: Quest-style second tier. Tokens leaving the recent FIFO form pages of `evict_batch`
  tokens kept in host memory (`store_tokens` tokens, with per-page min/max of layer-0 keys); every
  step the page bounds against the host layer-0 query choose which `pages` pages occupy the page
  blocks of the window (at most one page swapped per step, so no step costs more than one batch).
"""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import UserError
from runtime.reference_model import LN_EPS, ModelConfig

POLICIES = ("sliding", "sink", "heavy", "pages")
POSITION_SCHEMES = ("cache", "original")
# Position scheme of each policy when none is given: measured, see docs/kv-window.md.
DEFAULT_POSITIONS = {"sliding": "original", "sink": "cache", "heavy": "original", "pages": "cache"}


class Layer0Query:
    """Layer 0's query and key of a token on the host: they depend on its embedding row only.

    Buffers are allocated once; `compute(x)` fills `q` (H,hd) and `k` (H,hd) float32 in place.
    """

    def __init__(self, weights: dict, cfg: ModelConfig):
        H, hd, D = cfg.n_heads, cfg.head_dim, cfg.d_model
        self.ln_weight = weights["layers.0.ln1.weight"]  # (D,)
        self.ln_bias = weights["layers.0.ln1.bias"]  # (D,)
        self.wq = weights["layers.0.attn.wq"]  # (D,D)
        self.wk = weights["layers.0.attn.wk"]  # (D,D)
        self._h = np.zeros(D, np.float32)  # (D,) LayerNorm output
        self.q = np.zeros((H, hd), np.float32)  # (H,hd) layer-0 query of the new token
        self.k = np.zeros((H, hd), np.float32)  # (H,hd) layer-0 key of the new token

    def compute(self, x: np.ndarray) -> None:
        row = np.asarray(x, np.float32).reshape(-1)  # (D,)
        mean = row.mean()
        np.subtract(row, mean, out=self._h)
        var = float(np.dot(self._h, self._h)) / self._h.size
        self._h *= 1.0 / math.sqrt(var + LN_EPS)
        self._h *= self.ln_weight
        self._h += self.ln_bias
        np.matmul(self._h, self.wq, out=self.q.reshape(-1))
        np.matmul(self._h, self.wk, out=self.k.reshape(-1))


def layer0_attention(q: np.ndarray, k_self: np.ndarray, keys: np.ndarray, bias: np.ndarray):
    """Layer-0 attention of the new token, mean over heads.

    q, k_self (H,hd); keys (n,H,hd) layer-0 keys of the context; bias (H,n) additive (mask minus
    slope*dist). Returns (weights (n,) float64 of the context, weight of the token on itself).
    """
    hd = q.shape[1]
    scores = np.einsum("hd,nhd->hn", q, keys) / math.sqrt(hd) + bias  # (H,n)
    self_score = (q * k_self).sum(-1) / math.sqrt(hd)  # (H,)
    top = np.maximum(scores.max(axis=1) if scores.shape[1] else self_score, self_score)  # (H,)
    e = np.exp(scores - top[:, None])
    e_self = np.exp(self_score - top)
    total = e.sum(axis=1) + e_self  # (H,)
    return (e / total[:, None]).mean(axis=0), float((e_self / total).mean())


def page_upper_bound(q: np.ndarray, kmin: np.ndarray, kmax: np.ndarray) -> np.ndarray:
    """Quest bound of q.k over a page, max over heads: q (H,hd); kmin/kmax (..., H, hd) -> (...)."""
    return np.maximum(q * kmin, q * kmax).sum(-1).max(-1)


def check_policy(policy: str, positions: str | None) -> str:
    if policy not in POLICIES:
        raise UserError(f"unknown KV window policy {policy!r}; choose one of {', '.join(POLICIES)}")
    positions = positions or DEFAULT_POSITIONS[policy]
    if positions not in POSITION_SCHEMES:
        raise UserError(f"unknown position scheme {positions!r}; choose one of {', '.join(POSITION_SCHEMES)}")
    return positions


def store_capacity(window: int, max_rollback: int, batch: int, store_tokens: int) -> int:
    """Tokens in the pages policy's host store: >= store_tokens, room for the window, the rollback
    depth and a few pages, rounded up to whole pages."""
    need = max(store_tokens, window + max_rollback + 4 * batch)
    return -(-need // batch) * batch


def page_usable(page: int, n_pages: int, n_tokens: int, sinks: int, batch: int, store: int, max_rollback: int) -> bool:
    """Page `page` is complete and its host-store cells stay intact for max_rollback more steps."""
    first = sinks + page * batch
    return page < n_pages and first + store >= n_tokens + max_rollback + batch


class Layout:
    """How a policy splits the `window` slots: sinks [0,S), recent FIFO [S,S+R), page blocks after."""

    def __init__(self, policy: str, window: int, sink_tokens: int, evict_batch: int,
                 pages: int | None = None, recent: int | None = None):
        self.policy = policy
        self.window = window
        self.sinks = 0 if policy == "sliding" else sink_tokens  # S
        self.batch = evict_batch  # B
        if self.sinks < 0 or self.batch < 1:
            raise UserError(f"sink_tokens must be >= 0 and evict_batch >= 1 (got {sink_tokens}, {evict_batch})")
        free = window - self.sinks
        self.pages = 0
        if policy == "pages":
            self.pages = pages if pages is not None else max(1, free // (2 * self.batch))
        self.ring = free - self.pages * self.batch  # R: slots of the recent FIFO
        if self.ring < self.batch + 1:
            raise UserError(f"window {window} too small for policy {policy!r}: {self.sinks} sinks + "
                            f"{self.pages} pages of {self.batch} leave {self.ring} recent slots, need > "
                            f"evict_batch {self.batch}; use a larger --window or a smaller evict_batch")
        self.recent = 0  # heavy: the most recent tokens that are never evicted
        if policy == "heavy":
            self.recent = recent if recent is not None else self.ring // 2
            if not 0 <= self.recent <= self.ring - self.batch - 1:
                raise UserError(f"heavy policy: recent={self.recent} must leave >= evict_batch+1 "
                                f"({self.batch + 1}) evictable slots of the {self.ring} recent slots")
        self.ring_start = self.sinks
        self.blocks_start = self.sinks + self.ring
