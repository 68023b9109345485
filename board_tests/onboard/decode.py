"""The bundle's tied embedding for the on-board tests, which feed tokens in order through a backend
with the one in-order feeder (tpu_driver/feeder.py `InOrderFeeder`): a TPU forward is checked
against the bundle's golden logits with nothing else in between (docs/design.md, "The model").
Needs numpy.
"""
from __future__ import annotations

import os

import numpy as np


def load_embedding(bundle_dir: str) -> np.ndarray:
    """(V, D) float32: the embedding of weights.npz."""
    with np.load(os.path.join(bundle_dir, "weights.npz")) as weights:
        return np.ascontiguousarray(weights["embedding"], dtype=np.float32)
