"""The numpy decode step against the full-sequence oracle (tpu_driver/reference_model.py)."""
import numpy as np

from tpu_driver.reference_model import (MASK_EMPTY, ModelConfig, check_weights, decode_step, embed,
                                     forward_sequence, init_weights)


def run_window(weights, cfg, tokens):
    """Decode `tokens` one by one through an append-only W-slot window; (T, V) logits."""
    W, H, hd = cfg.window, cfg.n_heads, cfg.head_dim
    k_caches = [np.zeros((1, H, hd, W), np.float32) for _ in range(cfg.n_layers)]
    v_caches = [np.zeros((1, H, W, hd), np.float32) for _ in range(cfg.n_layers)]
    mask = np.full((1, 1, 1, W), MASK_EMPTY, np.float32)
    slot_pos = np.zeros(W, np.float32)
    rows = []
    for t, token in enumerate(tokens):
        dist = np.where(mask[0, 0, 0] == 0, t - slot_pos, 0).astype(np.float32).reshape(1, 1, 1, W)
        logits, k_new, v_new = decode_step(weights, cfg, embed(weights, token), mask, dist, k_caches, v_caches)
        for l in range(cfg.n_layers):
            k_caches[l][..., t] = k_new[l][..., 0]
            v_caches[l][:, :, t, :] = v_new[l][:, :, 0, :]
        mask[..., t] = 0.0
        slot_pos[t] = t
        rows.append(logits[0])
    return np.stack(rows)


def test_window_decoding_equals_full_attention():
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, window=12)
    weights = init_weights(cfg, seed=1)
    tokens = np.random.default_rng(2).integers(0, cfg.vocab_size, size=12)
    full = forward_sequence(weights, cfg, tokens)
    windowed = run_window(weights, cfg, tokens)
    np.testing.assert_allclose(windowed, full, rtol=1e-4, atol=1e-4)


def test_empty_slots_are_ignored():
    cfg = ModelConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, d_ff=32, window=4)
    weights = init_weights(cfg, seed=3)
    H, hd, W = cfg.n_heads, cfg.head_dim, cfg.window
    mask = np.full((1, 1, 1, W), MASK_EMPTY, np.float32)
    dist = np.zeros((1, 1, 1, W), np.float32)
    garbage = np.random.default_rng(4).standard_normal((1, H, hd, W)).astype(np.float32) * 5
    a = decode_step(weights, cfg, embed(weights, 3), mask, dist, [garbage], [garbage.transpose(0, 1, 3, 2)])[0]
    b = forward_sequence(weights, cfg, [3])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-4)


def test_check_weights_names_the_bad_tensor():
    cfg = ModelConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, d_ff=32, window=4)
    weights = init_weights(cfg)
    weights["layers.0.attn.wq"] = np.zeros((3, 3), np.float32)
    try:
        check_weights(weights, cfg)
    except ValueError as error:
        assert "layers.0.attn.wq" in str(error)
    else:
        raise AssertionError("bad shape accepted")
