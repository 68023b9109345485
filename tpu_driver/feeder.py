"""The one in-order token feeder: tokens go one by one through a backend's decode step, token t into
slot t, nothing pruned (tpu_driver/decode_step.py has the step's contract).

Used wherever tokens are fed one by one outside the engine (whose window prunes: kv_window):
export's golden data, calibration samples and ONNX check (model_export/export.py), verify's
step-by-step comparison (model_export/verify.py) and the on-board golden and latency tests
(board_tests/onboard/decode.py). Slot t: `mask` MASK_OCCUPIED for slots < t, MASK_EMPTY from t
on; `dist[j] = t - j` for the occupied slots, 0 else; each step's k_new/v_new is written into slot
t of the caches in place (one slot per step, no cache copy). The sequence must fit the window.
numpy only: this runs on the board.
"""
from __future__ import annotations

import numpy as np

from tpu_driver import decode_step as step


class InOrderFeeder:
    """Buffers are allocated once here; `step` returns copies of the outputs (V + 2*L*H*hd floats)."""

    def __init__(self, backend, embedding: np.ndarray):
        self.backend = backend
        self.embedding = embedding  # (V, D) float32, the tied embedding from weights.npz
        self.window = int(backend.inputs[step.MASK].shape[-1])  # W slots
        self.n_layers = step.n_layers_of(backend.inputs)
        self.output_names = list(backend.outputs)
        self.x = np.zeros((1, 1, embedding.shape[1]), np.float32)  # (1,1,D) f32
        self.mask = np.full((1, 1, 1, self.window), step.MASK_EMPTY, np.float32)  # (1,1,1,W) f32
        self.dist = np.zeros((1, 1, 1, self.window), np.float32)  # (1,1,1,W) f32
        self.position = 0  # t: the slot the next token goes into
        self.reset()

    def reset(self) -> None:
        """Empty window: every slot empty, the caches zeroed."""
        self.mask.fill(step.MASK_EMPTY)
        self.dist.fill(0.0)
        self.position = 0
        for layer in range(self.n_layers):
            for name in (step.k_cache(layer), step.v_cache(layer)):
                self.backend.input(name).write(np.zeros(self.backend.inputs[name].shape, np.float32))

    def _set_token(self, token: int) -> None:
        t = self.position
        if t >= self.window:
            raise ValueError(f"in-order window of {self.window} slots is full (token {t})")
        self.x[0, 0, :] = self.embedding[token]
        self.dist[0, 0, 0, :t] = np.arange(t, 0, -1, dtype=np.float32)  # occupied slot j: t - j

    def next_inputs(self, token: int) -> dict:
        """Every input the next step would get for `token`, as float32 copies (calibration
        samples, --debug); the caches are read back from the backend. Runs nothing."""
        self._set_token(token)
        feeds = {name: np.array(self.backend.input(name).read(), np.float32) for name in self.backend.inputs}
        feeds.update({step.X: self.x.copy(), step.MASK: self.mask.copy(), step.DIST: self.dist.copy()})
        return feeds

    def step_outputs(self, token: int) -> dict:
        """Run one decode step for `token` and append its K/V; returns name -> float32 copy of
        every output."""
        self._set_token(token)
        backend, t = self.backend, self.position
        backend.input(step.X).write(self.x)
        backend.input(step.MASK).write(self.mask)
        backend.input(step.DIST).write(self.dist)
        backend.run()
        # Every output is read (copied) before any input is written: on the cmodel an output can
        # share device memory with an input, so writing k_cache_0 may overwrite logits or v_new_0.
        outputs = {name: np.array(backend.output(name).read(), np.float32) for name in self.output_names}
        for layer in range(self.n_layers):
            backend.input(step.k_cache(layer)).write(outputs[step.k_new(layer)], index=step.k_slot(t))
            backend.input(step.v_cache(layer)).write(outputs[step.v_new(layer)], index=step.v_slot(t))
        self.mask[0, 0, 0, t] = step.MASK_OCCUPIED
        self.position = t + 1
        return outputs

    def step(self, token: int) -> np.ndarray:
        """Run one decode step for `token`; returns its logits (V,) float32 (a copy)."""
        return self.step_outputs(token)[step.LOGITS].reshape(-1)
