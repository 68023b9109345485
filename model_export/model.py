"""PyTorch twin of the decode-step model of docs/design.md, for training.

The numpy oracle is `tpu_driver/reference_model.py` (one decode step with a K/V window); this module
runs the same network over a whole sequence at once with a causal ALiBi bias, which is what
training needs. `tests/test_model_twin.py` checks that both give the same logits.

Architecture (docs/design.md): word-level, pre-LayerNorm, ALiBi (slope_h = 2^(-m(h+1)/H), m = alibi_max_bias), no
biases in the attention projections, FFN with biases and tanh-form GELU (as the numpy reference),
final LayerNorm, output head tied to the embedding. Weights leave this module as a float32 dict named as the numpy reference expects
(`to_numpy_weights`), and come back with `from_numpy_weights`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tpu_driver.decode_step import LN_EPS, ModelConfig
from tpu_driver.reference_model import alibi_slopes

LAYERNORM_EPS = LN_EPS


# The network's shape is the decode step's config (tpu_driver/decode_step.py): one set of keys
# and defaults for training, export and the runtime.
ModelShape = ModelConfig


# One place that knows the weight names of tpu_driver/reference_model.py.
def weight_name(layer: int | None, what: str) -> str:
    return what if layer is None else f"layers.{layer}.{what}"


# numpy name (after "layers.{l}.") -> attribute path inside Block
LAYER_WEIGHTS = {"ln1.weight": "ln1.weight", "ln1.bias": "ln1.bias",
                 "attn.wq": "wq", "attn.wk": "wk", "attn.wv": "wv", "attn.wo": "wo",
                 "ln2.weight": "ln2.weight", "ln2.bias": "ln2.bias",
                 "mlp.w1": "w1", "mlp.b1": "b1", "mlp.w2": "w2", "mlp.b2": "b2"}
GLOBAL_WEIGHTS = ("embedding", "ln_f.weight", "ln_f.bias")


class Block(nn.Module):
    def __init__(self, shape: ModelShape, dropout: float = 0.0):
        super().__init__()
        d, f = shape.d_model, shape.d_ff
        self.shape = shape
        self.dropout = dropout  # training only; the exported decode step has none
        self.ln1 = nn.LayerNorm(d, eps=LAYERNORM_EPS)
        # stored as [in, out] so that `x @ w` is the numpy/ONNX convention
        self.wq = nn.Parameter(torch.empty(d, d))
        self.wk = nn.Parameter(torch.empty(d, d))
        self.wv = nn.Parameter(torch.empty(d, d))
        self.wo = nn.Parameter(torch.empty(d, d))
        self.ln2 = nn.LayerNorm(d, eps=LAYERNORM_EPS)
        self.w1 = nn.Parameter(torch.empty(d, f))
        self.b1 = nn.Parameter(torch.zeros(f))
        self.w2 = nn.Parameter(torch.empty(f, d))
        self.b2 = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        # x: [B,T,D]; attn_bias: [H,T,T] (causal ALiBi, -inf above the diagonal)
        b, t, d = x.shape
        h, hd = self.shape.n_heads, self.shape.head_dim
        xn = self.ln1(x)
        q = (xn @ self.wq).view(b, t, h, hd).transpose(1, 2)  # [B,H,T,hd]
        k = (xn @ self.wk).view(b, t, h, hd).transpose(1, 2)
        v = (xn @ self.wv).view(b, t, h, hd).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype), dropout_p=p)
        x = x + F.dropout(attn.transpose(1, 2).reshape(b, t, d) @ self.wo, p, self.training)
        ffn = F.gelu(self.ln2(x) @ self.w1 + self.b1, approximate="tanh") @ self.w2 + self.b2
        x = x + F.dropout(ffn, p, self.training)
        return x


class WordLM(nn.Module):
    """Full-sequence causal forward of the decode-step model (training only)."""

    def __init__(self, shape: ModelShape, dropout: float = 0.0):
        super().__init__()
        self.shape = shape
        self.embedding = nn.Parameter(torch.empty(shape.vocab_size, shape.d_model))
        self.blocks = nn.ModuleList(Block(shape, dropout) for _ in range(shape.n_layers))
        self.ln_f = nn.LayerNorm(shape.d_model, eps=LAYERNORM_EPS)
        self.register_buffer("slopes", torch.from_numpy(alibi_slopes(shape.n_heads, shape.alibi_max_bias)),
                             persistent=False)
        self._bias_cache: dict = {}

    def reset_parameters(self, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        std = 0.02
        proj_std = std / math.sqrt(2 * self.shape.n_layers)
        with torch.no_grad():
            self.embedding.copy_(torch.randn(self.embedding.shape, generator=gen) * std)
            for block in self.blocks:
                for name in ("wq", "wk", "wv", "w1"):
                    p = getattr(block, name)
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
                for name in ("wo", "w2"):
                    p = getattr(block, name)
                    p.copy_(torch.randn(p.shape, generator=gen) * proj_std)

    def alibi_bias(self, t: int, device, dtype=torch.float32) -> torch.Tensor:
        """[H,T,T]: -slope_h * (i - j) for j <= i, -inf above the diagonal."""
        key = (t, str(device))
        if key not in self._bias_cache:
            pos = torch.arange(t, device=device)
            dist = (pos[:, None] - pos[None, :]).to(torch.float32)  # [T,T] query - key
            bias = -self.slopes.to(device)[:, None, None] * dist[None]
            bias = bias.masked_fill(dist[None] < 0, float("-inf"))
            self._bias_cache[key] = bias
        return self._bias_cache[key].to(dtype)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: int64 [B,T] -> logits float [B,T,V]."""
        x = self.embedding[tokens]
        bias = self.alibi_bias(tokens.shape[1], tokens.device)
        for block in self.blocks:
            x = block(x, bias)
        return self.ln_f(x) @ self.embedding.t()

    def to_numpy_weights(self) -> dict[str, np.ndarray]:
        """float32 weights named as tpu_driver/reference_model.py expects."""
        out = {weight_name(None, "embedding"): self.embedding,
               weight_name(None, "ln_f.weight"): self.ln_f.weight,
               weight_name(None, "ln_f.bias"): self.ln_f.bias}
        for i, block in enumerate(self.blocks):
            own = dict(block.named_parameters())
            for what, attr in LAYER_WEIGHTS.items():
                out[weight_name(i, what)] = own[attr]
        return {k: v.detach().float().cpu().numpy().copy() for k, v in out.items()}

    def load_numpy_weights(self, weights: dict[str, np.ndarray]) -> None:
        own = dict(self.named_parameters())
        mapping = {weight_name(None, "embedding"): "embedding",
                   weight_name(None, "ln_f.weight"): "ln_f.weight",
                   weight_name(None, "ln_f.bias"): "ln_f.bias"}
        for i in range(self.shape.n_layers):
            for what, attr in LAYER_WEIGHTS.items():
                mapping[weight_name(i, what)] = f"blocks.{i}.{attr}"
        with torch.no_grad():
            for np_name, torch_name in mapping.items():
                own[torch_name].copy_(torch.from_numpy(np.asarray(weights[np_name])))


def count_parameters(shape: ModelShape) -> int:
    d, f, v, n = shape.d_model, shape.d_ff, shape.vocab_size, shape.n_layers
    return v * d + 2 * d + n * (4 * d * d + 2 * d * f + 4 * d + f + d)
