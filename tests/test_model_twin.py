"""The PyTorch training twin (model_export/model.py) computes what tpu_driver/reference_model.py does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model_export.model import ModelShape, WordLM, count_parameters
from tpu_driver import reference_model as ref

SHAPE = ModelShape(vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_ff=64, window=16)
CFG = ref.ModelConfig(97, 32, 2, 4, 64, 16)


def trained_looking_model(seed=0) -> WordLM:
    """Random weights with non-trivial LayerNorm gains and biases (init alone leaves them 1/0)."""
    model = WordLM(SHAPE)
    model.reset_parameters(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def decode_token_by_token(weights, tokens):
    """Logits [T,V] from ref.decode_step with an append-only window (slot t holds token t)."""
    W, H, hd = CFG.window, CFG.n_heads, CFG.head_dim
    mask = np.full((1, 1, 1, W), ref.MASK_EMPTY, np.float32)
    dist = np.zeros((1, 1, 1, W), np.float32)
    k_caches = [np.zeros((1, H, hd, W), np.float32) for _ in range(CFG.n_layers)]
    v_caches = [np.zeros((1, H, W, hd), np.float32) for _ in range(CFG.n_layers)]
    rows = []
    for t, token in enumerate(tokens):
        dist[:] = 0
        dist[0, 0, 0, :t] = t - np.arange(t)
        logits, k_new, v_new = ref.decode_step(weights, CFG, ref.embed(weights, token), mask, dist,
                                               k_caches, v_caches)
        rows.append(logits[0])
        for layer in range(CFG.n_layers):
            k_caches[layer][..., t] = k_new[layer][..., 0]
            v_caches[layer][:, :, t, :] = v_new[layer][:, :, 0, :]
        mask[0, 0, 0, t] = 0.0
    return np.stack(rows)


def test_weights_have_the_reference_names_and_shapes():
    weights = trained_looking_model().to_numpy_weights()
    ref.check_weights(weights, CFG)
    assert set(weights) == set(ref.weight_shapes(CFG))
    assert sum(w.size for w in weights.values()) == count_parameters(SHAPE)


@pytest.mark.parametrize("seed", [0, 1])
def test_full_sequence_equals_reference_decode_steps(seed):
    model = trained_looking_model(seed)
    weights = model.to_numpy_weights()
    tokens = np.random.default_rng(seed).integers(0, SHAPE.vocab_size, size=12)
    with torch.no_grad():
        full = model(torch.from_numpy(tokens)[None]).numpy()[0]  # [T,V]
    stepped = decode_token_by_token(weights, tokens)
    np.testing.assert_allclose(full, stepped, atol=1e-4)
    np.testing.assert_allclose(full, ref.forward_sequence(weights, CFG, tokens), atol=1e-4)
    # the check can fail: a model with other weights gives other logits
    other = trained_looking_model(seed + 10).to_numpy_weights()
    assert np.abs(decode_token_by_token(other, tokens) - full).max() > 1e-2


def test_numpy_weights_round_trip():
    model = trained_looking_model(3)
    weights = model.to_numpy_weights()
    fresh = WordLM(SHAPE)
    fresh.load_numpy_weights(weights)
    for name, value in fresh.to_numpy_weights().items():
        np.testing.assert_array_equal(value, weights[name])
