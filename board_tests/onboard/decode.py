"""Feed a token sequence through a backend's decode step, slots filled in order (no pruning).

The on-board tests use this instead of the engine so that a TPU forward is checked against the
bundle's golden logits with nothing else in between (docs/design.md, "The model"): token t goes
into slot t, so `mask` is 0 for slots < t and -10000 from t on, `dist[j] = t - j` for occupied
slots, and each step's `k_new_{l}` / `v_new_{l}` is written into slot t of the caches in place.
Needs numpy; the sequence must fit the window (len(tokens) <= W).
"""
from __future__ import annotations

import numpy as np

MASK_EMPTY = -10000.0


class SequentialDecoder:
    """Buffers are allocated once here; step() copies the outputs (V + 2*L*H*hd floats)."""

    def __init__(self, backend, embedding: np.ndarray):
        self.backend = backend
        self.embedding = embedding  # (V, D) float32, the tied embedding from weights.npz
        mask_spec = backend.inputs["mask"]
        self.window = int(mask_spec.shape[-1])  # W slots
        self.n_layers = sum(1 for name in backend.inputs if name.startswith("k_cache_"))
        self.mask = np.full((1, 1, 1, self.window), MASK_EMPTY, np.float32)  # (1,1,1,W) f32
        self.dist = np.zeros((1, 1, 1, self.window), np.float32)  # (1,1,1,W) f32
        self.x = np.zeros((1, 1, self.embedding.shape[1]), np.float32)  # (1,1,D) f32
        self.position = 0

    def reset(self) -> None:
        self.mask.fill(MASK_EMPTY)
        self.dist.fill(0.0)
        self.position = 0
        for l in range(self.n_layers):
            k_spec = self.backend.inputs[f"k_cache_{l}"]
            v_spec = self.backend.inputs[f"v_cache_{l}"]
            self.backend.input(f"k_cache_{l}").write(np.zeros(k_spec.shape, np.float32))
            self.backend.input(f"v_cache_{l}").write(np.zeros(v_spec.shape, np.float32))

    def step(self, token: int) -> np.ndarray:
        """Run one decode step for `token`; return logits (V,) float32."""
        t = self.position
        if t >= self.window:
            raise AssertionError(f"golden sequence longer than the window W={self.window}")
        self.x[0, 0, :] = self.embedding[token]
        # occupied slots 0..t-1 sit at distance t - j from the new token
        self.dist[0, 0, 0, :t] = np.arange(t, 0, -1, dtype=np.float32)
        self.backend.input("x").write(self.x)
        self.backend.input("mask").write(self.mask)
        self.backend.input("dist").write(self.dist)
        self.backend.run()
        # Every output is read (copied) before any input is written: on the cmodel an output can
        # share device memory with an input, so writing k_cache_0 may overwrite logits or v_new_0.
        logits = np.array(self.backend.output("logits").read(), np.float32).reshape(-1)  # (V,)
        new_kv = [(np.array(self.backend.output(f"k_new_{l}").read(), np.float32),  # (1,H,hd,1)
                   np.array(self.backend.output(f"v_new_{l}").read(), np.float32))  # (1,H,1,hd)
                  for l in range(self.n_layers)]
        for l, (k_new, v_new) in enumerate(new_kv):
            self.backend.input(f"k_cache_{l}").write(k_new, index=(..., slice(t, t + 1)))
            self.backend.input(f"v_cache_{l}").write(v_new, index=(..., slice(t, t + 1), slice(None)))
        self.mask[0, 0, 0, t] = 0.0
        self.position = t + 1
        return logits


def load_embedding(bundle_dir: str) -> np.ndarray:
    import os

    with np.load(os.path.join(bundle_dir, "weights.npz")) as weights:
        return np.ascontiguousarray(weights["embedding"], dtype=np.float32)
