"""Layer 0 on the host, for the policies that score tokens by attention (`heavy`, `pages`).

Attention weights are not outputs of the compiled graph, but layer 0's query and key of a token
depend only on its embedding row `x` (q0 = LN1_0(x) @ Wq_0), and layer 0's keys of the kept tokens
are in the window's host mirror. The math here is shared by the fast policies and the plain twin
kv_window/reference.py, so that both make the same decisions.
"""
from __future__ import annotations

import math

import numpy as np

from tpu_driver.errors import UserError
from tpu_driver import decode_step as step
from tpu_driver.reference_model import LN_EPS, ModelConfig

from kv_window.policies.base import Policy


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


class Layer0Policy(Policy):
    """A policy that computes the new token's layer-0 query on the host at every step (`query.q`)."""

    needs_weights = True

    def __init__(self, window, weights: dict | None = None, store_tokens: int = 1024):
        super().__init__(window)
        weights = weights if weights is not None else getattr(window.backend, "weights", None)
        if weights is None:
            raise UserError(f"KV window policy {self.name!r} needs the model weights (layer 0's query is "
                            f"computed on the host): pass weights=<weights.npz dict>")
        self.query = Layer0Query(weights, window.cfg)

    def begin_step(self, x, records: list) -> None:
        self.query.compute(x if x is not None else self.window.backend.input(step.X).read())
