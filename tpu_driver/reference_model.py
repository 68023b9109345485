"""The decode-step model in plain numpy: the oracle every backend and the exporter are tested against.

Word-level, pre-LayerNorm decoder with ALiBi positions (docs/design.md, "The model"). The compiled
graph (model_export/export.py -> ONNX -> cvimodel) computes exactly `decode_step` below; the
PyTorch twin for training is model_export/model.py. numpy only: this runs on the board.

Weights (`weights.npz`, float32; linear layers are stored [in, out] so that `y = x @ w`):
    embedding                 (V, D)   token embeddings; the output head is tied to it
    layers.{l}.ln1.weight     (D,)     ln1.bias (D,)
    layers.{l}.attn.wq        (D, D)   attn.wk, attn.wv, attn.wo: same shape
    layers.{l}.ln2.weight     (D,)     ln2.bias (D,)
    layers.{l}.mlp.w1         (D, F)   mlp.b1 (F,)
    layers.{l}.mlp.w2         (F, D)   mlp.b2 (D,)
    ln_f.weight               (D,)     ln_f.bias (D,)
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# the config, MASK_EMPTY and LN_EPS are the decode step's contract (re-exported here for the math below)
from tpu_driver.decode_step import DEFAULT_ALIBI_MAX_BIAS, LN_EPS, MASK_EMPTY, ModelConfig  # noqa: F401


def alibi_slopes(n_heads: int, max_bias: float = DEFAULT_ALIBI_MAX_BIAS) -> np.ndarray:
    """(H,) float32: slope_h = 2^(-m(h+1)/H) with m = max_bias, the ALiBi bias per unit of key distance.

    m = 8 is the ALiBi paper's choice (H=4: 1/4 .. 1/256, the gentlest head still sees ~256
    tokens back); a smaller m keeps the gentlest slope steeper, so a model's reach matches the
    W-slot window it runs with (docs/kv-window.md)."""
    return np.array([2.0 ** (-max_bias * (h + 1) / n_heads) for h in range(n_heads)], dtype=np.float32)


def weight_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    D, F, V = cfg.d_model, cfg.d_ff, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"embedding": (V, D)}
    for l in range(cfg.n_layers):
        p = f"layers.{l}."
        shapes.update({
            p + "ln1.weight": (D,), p + "ln1.bias": (D,),
            p + "attn.wq": (D, D), p + "attn.wk": (D, D), p + "attn.wv": (D, D), p + "attn.wo": (D, D),
            p + "ln2.weight": (D,), p + "ln2.bias": (D,),
            p + "mlp.w1": (D, F), p + "mlp.b1": (F,), p + "mlp.w2": (F, D), p + "mlp.b2": (D,),
        })
    shapes.update({"ln_f.weight": (D,), "ln_f.bias": (D,)})
    return shapes


def init_weights(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights of the right shapes (tests and untrained smoke runs)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in weight_shapes(cfg).items():
        if name.endswith(".weight") and len(shape) == 1:
            weights[name] = np.ones(shape, np.float32)
        elif len(shape) == 1:
            weights[name] = np.zeros(shape, np.float32)
        else:
            weights[name] = (rng.standard_normal(shape) * 0.02 / math.sqrt(1 if name == "embedding" else 0.5)).astype(np.float32)
    return weights


def check_weights(weights: dict[str, np.ndarray], cfg: ModelConfig) -> None:
    for name, shape in weight_shapes(cfg).items():
        if name not in weights:
            raise ValueError(f"weights lack {name!r} {shape}")
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"weight {name!r} has shape {tuple(weights[name].shape)}, config wants {shape}")


def load_weights(path: str | Path, cfg: ModelConfig) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        weights = {k: archive[k].astype(np.float32) for k in archive.files}
    check_weights(weights, cfg)
    return weights


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * weight + bias


def gelu(x: np.ndarray) -> np.ndarray:
    """tanh-approximated GELU (torch `gelu(approximate='tanh')`): numpy has no erf."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def embed(weights: dict[str, np.ndarray], token: int) -> np.ndarray:
    """(1, 1, D) float32: the `x` input of a decode step (the lookup runs on the host)."""
    return weights["embedding"][token][None, None, :]


def decode_step(weights, cfg: ModelConfig, x, mask, dist, k_caches, v_caches):
    """One token through the model against a W-slot KV window.

    x (1,1,D) f32; mask (1,1,1,W) f32 additive (0 occupied, MASK_EMPTY empty);
    dist (1,1,1,W) f32 query position minus key position; k_caches[l] (1,H,hd,W);
    v_caches[l] (1,H,W,hd). Returns logits (1,V), k_new[l] (1,H,hd,1), v_new[l] (1,H,1,hd).
    The new token attends to the occupied slots and to itself (distance 0).
    """
    H, hd = cfg.n_heads, cfg.head_dim
    slopes = alibi_slopes(H, cfg.alibi_max_bias).reshape(1, H, 1, 1)
    bias = np.concatenate([mask - slopes * dist, np.zeros((1, H, 1, 1), np.float32)], axis=3)  # (1,H,1,W+1)
    k_new_all, v_new_all = [], []
    for l in range(cfg.n_layers):
        p = f"layers.{l}."
        h = layer_norm(x, weights[p + "ln1.weight"], weights[p + "ln1.bias"])
        q = (h @ weights[p + "attn.wq"]).reshape(1, H, 1, hd)
        k_new = (h @ weights[p + "attn.wk"]).reshape(1, H, hd, 1)
        v_new = (h @ weights[p + "attn.wv"]).reshape(1, H, 1, hd)
        keys = np.concatenate([k_caches[l], k_new], axis=3)  # (1,H,hd,W+1)
        values = np.concatenate([v_caches[l], v_new], axis=2)  # (1,H,W+1,hd)
        scores = (q @ keys) / math.sqrt(hd) + bias  # (1,H,1,W+1)
        attended = softmax(scores) @ values  # (1,H,1,hd)
        x = x + attended.reshape(1, 1, H * hd) @ weights[p + "attn.wo"]
        h = layer_norm(x, weights[p + "ln2.weight"], weights[p + "ln2.bias"])
        x = x + gelu(h @ weights[p + "mlp.w1"] + weights[p + "mlp.b1"]) @ weights[p + "mlp.w2"] + weights[p + "mlp.b2"]
        k_new_all.append(k_new)
        v_new_all.append(v_new)
    h = layer_norm(x, weights["ln_f.weight"], weights["ln_f.bias"])
    logits = h.reshape(1, -1) @ weights["embedding"].T  # (1,V)
    return logits.astype(np.float32), k_new_all, v_new_all


def forward_sequence(weights, cfg: ModelConfig, tokens, chunk: int = 256) -> np.ndarray:
    """(T, V) logits of a whole sequence with full causal attention and positions 0..T-1.

    The "full context" oracle: a decode-step run through an unpruned window of size >= T must
    give the same logits row by row. Attention runs `chunk` queries at a time against all keys,
    so long texts (kv_window's fidelity harness) need O(chunk * T) memory, not O(T^2).
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    T, H, hd = len(tokens), cfg.n_heads, cfg.head_dim
    x = weights["embedding"][tokens].astype(np.float32)  # (T,D)
    slopes = alibi_slopes(H, cfg.alibi_max_bias).reshape(H, 1, 1)
    for l in range(cfg.n_layers):
        p = f"layers.{l}."
        h = layer_norm(x, weights[p + "ln1.weight"], weights[p + "ln1.bias"])
        q = (h @ weights[p + "attn.wq"]).reshape(T, H, hd).transpose(1, 0, 2)  # (H,T,hd)
        k = (h @ weights[p + "attn.wk"]).reshape(T, H, hd).transpose(1, 0, 2)
        v = (h @ weights[p + "attn.wv"]).reshape(T, H, hd).transpose(1, 0, 2)
        attended = np.zeros((T, H * hd), np.float32)  # (T, D)
        for a in range(0, T, chunk):
            b = min(T, a + chunk)
            distance = (np.arange(a, b)[:, None] - np.arange(b)[None, :]).astype(np.float32)  # (c,b) query - key
            causal = np.where(distance >= 0, 0.0, -np.inf).astype(np.float32)
            bias = causal[None] - slopes * np.maximum(distance, 0)[None]  # (H,c,b)
            scores = q[:, a:b] @ k[:, :b].transpose(0, 2, 1) / math.sqrt(hd) + bias  # (H,c,b)
            attended[a:b] = (softmax(scores) @ v[:, :b]).transpose(1, 0, 2).reshape(b - a, H * hd)
        x = x + attended @ weights[p + "attn.wo"]
        h = layer_norm(x, weights[p + "ln2.weight"], weights[p + "ln2.bias"])
        x = x + gelu(h @ weights[p + "mlp.w1"] + weights[p + "mlp.b1"]) @ weights[p + "mlp.w2"] + weights[p + "mlp.b2"]
    h = layer_norm(x, weights["ln_f.weight"], weights["ln_f.bias"])
    return (h @ weights["embedding"].T).astype(np.float32)
