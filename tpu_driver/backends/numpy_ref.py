"""The numpy backend: `tpu_driver/reference_model.decode_step` math on the bundle's weights.npz.

Same interface as every backend (docs/design.md, "Backends"): `inputs`/`outputs` specs, `input(name)`
/ `output(name)` tensors with `write(values, index=None)` / `read()`, `run()`, `close()`. All
buffers are allocated in `__init__`; `run()` writes into them with `out=` arguments, so a decode
step allocates only head-sized scalars. The oracle is `reference_model.decode_step` (the tests
compare the two). numpy only: nothing on this import path may import cffi or onnx (it runs on a
board whose Python has numpy and nothing else).
"""
from __future__ import annotations

import math
import time

import numpy as np

from tpu_driver.errors import UserError
from tpu_driver.reference_model import LN_EPS, ModelConfig, alibi_slopes, check_weights, load_weights
from tpu_driver import decode_step
from tpu_driver.backends.base import ArrayTensor, Availability, BackendBase, TensorSpec


def decode_step_specs(cfg: ModelConfig) -> tuple[dict, dict]:
    """(inputs, outputs): name -> TensorSpec of the decode-step graph (tpu_driver/decode_step.py)."""
    return decode_step.io_specs(cfg)


class NumpyBackend(BackendBase):
    """The reference decode step in numpy with preallocated buffers."""

    name = "numpy"

    def __init__(self, cfg: ModelConfig, weights: dict[str, np.ndarray], log_probs: bool = False):
        """log_probs: end in a log-softmax like a bundle whose manifest says `logits_are_log_probs`."""
        super().__init__()
        self.log_probs = bool(log_probs)
        try:
            check_weights(weights, cfg)
        except ValueError as error:
            raise UserError(f"numpy backend: {error}; the weights do not match config.json") from None
        self.cfg = cfg
        D, H, hd, W, F = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.window, cfg.d_ff
        self.inputs, self.outputs = decode_step_specs(cfg)
        self._tensors = {name: ArrayTensor(self, spec) for name, spec in {**self.inputs, **self.outputs}.items()}
        self._input_io = {name: self._tensors[name] for name in self.inputs}
        self._output_io = {name: self._tensors[name] for name in self.outputs}
        self._w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self._embedding_t = np.ascontiguousarray(self._w["embedding"].T)  # (D,V) f32: output head
        self._slopes = alibi_slopes(H, cfg.alibi_max_bias).reshape(H, 1)  # (H,1) f32
        self._inv_sqrt_hd = np.float32(1.0 / math.sqrt(hd))
        # work buffers, 1-D views of the [1,1,D] activations
        self._x = np.zeros(D, np.float32)  # (D,) residual stream
        self._h = np.zeros(D, np.float32)  # (D,) layer-normed input
        self._q = np.zeros(D, np.float32)  # (D,) query, viewed (H,hd)
        self._att = np.zeros(D, np.float32)  # (D,) attended values, viewed (H,hd)
        self._proj = np.zeros(D, np.float32)  # (D,) output of Wo / W2
        self._ff = np.zeros(F, np.float32)  # (F,) FFN hidden
        self._ff_tmp = np.zeros(F, np.float32)  # (F,) GELU scratch
        self._bias = np.zeros((H, W + 1), np.float32)  # (H,W+1) ALiBi + mask bias; last column: self
        self._scores = np.zeros((H, 1, W + 1), np.float32)  # (H,1,W+1) attention scores / probabilities
        self._exp = np.zeros(cfg.vocab_size, np.float32)  # (V,) log-softmax scratch

    @classmethod
    def from_bundle(cls, bundle) -> "NumpyBackend":
        """Open on a `runtime.bundle.Bundle` (uses its config.json and weights.npz)."""
        manifest = getattr(bundle, "manifest", None) or {}
        return cls(bundle.config, load_weights(bundle.weights_path, bundle.config),
                   log_probs=bool(manifest.get("logits_are_log_probs")))

    # -- the decode step ------------------------------------------------------------------------
    def _layer_norm(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
        mean = x.mean()
        np.subtract(x, mean, out=out)
        var = np.dot(out, out) / out.shape[0]
        out *= np.float32(1.0 / math.sqrt(var + LN_EPS))
        out *= weight
        out += bias

    def _gelu(self, f: np.ndarray, tmp: np.ndarray) -> None:
        """In place tanh-approximated GELU (reference_model.gelu)."""
        np.multiply(f, f, out=tmp)
        tmp *= f
        tmp *= np.float32(0.044715)
        tmp += f
        tmp *= np.float32(0.7978845608028654)
        np.tanh(tmp, out=tmp)
        tmp += np.float32(1.0)
        tmp *= np.float32(0.5)
        f *= tmp

    def run(self) -> None:
        self._alive()
        started = time.perf_counter()
        self._decode_step()
        self.last_run_ms = (time.perf_counter() - started) * 1e3

    def _decode_step(self) -> None:
        cfg, w, t = self.cfg, self._w, self._tensors
        H, hd, W = cfg.n_heads, cfg.head_dim, cfg.window
        x, h, q, att, proj = self._x, self._h, self._q, self._att, self._proj
        q_heads, att_heads = q.reshape(H, hd), att.reshape(H, hd)  # views
        scores = self._scores
        np.copyto(x, t[decode_step.X].array.reshape(-1))
        # bias = mask - slope_h * dist, and 0 for the token itself (last column)
        np.multiply(self._slopes, t[decode_step.DIST].array.reshape(1, W), out=self._bias[:, :W])
        np.subtract(t[decode_step.MASK].array.reshape(1, W), self._bias[:, :W], out=self._bias[:, :W])
        for l in range(cfg.n_layers):
            p = f"layers.{l}."
            k_cache = t[decode_step.k_cache(l)].array[0]  # (H,hd,W)
            v_cache = t[decode_step.v_cache(l)].array[0]  # (H,W,hd)
            k_new = t[decode_step.k_new(l)].array.reshape(H, hd)  # view of (1,H,hd,1)
            v_new = t[decode_step.v_new(l)].array.reshape(H, hd)  # view of (1,H,1,hd)
            self._layer_norm(x, w[p + "ln1.weight"], w[p + "ln1.bias"], h)
            np.matmul(h, w[p + "attn.wq"], out=q)
            np.matmul(h, w[p + "attn.wk"], out=k_new.reshape(-1))
            np.matmul(h, w[p + "attn.wv"], out=v_new.reshape(-1))
            np.matmul(q_heads[:, None, :], k_cache, out=scores[:, :, :W])  # (H,1,W)
            np.einsum("hd,hd->h", q_heads, k_new, out=scores[:, 0, W])
            scores *= self._inv_sqrt_hd
            scores[:, 0, :] += self._bias
            scores -= scores.max(axis=2, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=2, keepdims=True)
            np.matmul(scores[:, :, :W], v_cache, out=att_heads[:, None, :])  # (H,1,hd)
            att_heads += scores[:, 0, W:] * v_new
            np.matmul(att, w[p + "attn.wo"], out=proj)
            x += proj
            self._layer_norm(x, w[p + "ln2.weight"], w[p + "ln2.bias"], h)
            np.matmul(h, w[p + "mlp.w1"], out=self._ff)
            self._ff += w[p + "mlp.b1"]
            self._gelu(self._ff, self._ff_tmp)
            np.matmul(self._ff, w[p + "mlp.w2"], out=proj)
            proj += w[p + "mlp.b2"]
            x += proj
        self._layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], h)
        logits = t[decode_step.LOGITS].array.reshape(-1)  # (V,) view
        np.matmul(h, self._embedding_t, out=logits)
        if self.log_probs:  # the graph's LogSoftmax (model_export/onnx_graph.py), in place
            logits -= logits.max()
            np.exp(logits, out=self._exp)
            logits -= np.float32(math.log(float(self._exp.sum())))


def availability() -> Availability:
    return Availability("numpy", True, f"numpy {np.__version__} on the host CPU (reference decode step)")


def open_backend(source, **opts) -> NumpyBackend:
    """The numpy backend on a bundle object (`config`, `weights_path`: runtime/bundle.py loads one;
    the driver does not import runtime, so a folder path is not accepted here)."""
    if opts:
        raise TypeError(f"numpy backend: unknown options {', '.join(sorted(opts))}")
    bundle = getattr(source, "bundle", None) or source  # a base.ModelSource carries the bundle
    if not hasattr(bundle, "config") or not hasattr(bundle, "weights_path"):
        raise TypeError("numpy backend needs a bundle object (runtime.bundle.load_bundle) with config and weights_path")
    return NumpyBackend.from_bundle(bundle)


def open_numpy_backend(bundle) -> NumpyBackend:
    """The name tpu_driver/backends/__init__.py calls (same as open_backend)."""
    return open_backend(bundle)
