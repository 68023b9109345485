"""The numpy backend (tpu_driver/backends/numpy_ref.py) against the reference decode step."""
import subprocess
import sys

import numpy as np
import pytest

from runtime.errors import UserError
from tpu_driver.errors import ModelClosedError, TensorWriteError
from tpu_driver.reference_model import MASK_EMPTY, ModelConfig, decode_step, init_weights
from tpu_driver.backends.numpy_ref import NumpyBackend

CFG = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, window=8)


def _random_inputs(rng, cfg, occupied):
    W = cfg.window
    x = rng.standard_normal((1, 1, cfg.d_model)).astype(np.float32)
    mask = np.full((1, 1, 1, W), MASK_EMPTY, np.float32)
    dist = np.zeros((1, 1, 1, W), np.float32)
    mask[..., :occupied] = 0.0
    dist[..., :occupied] = np.arange(occupied, 0, -1)
    ks = [rng.standard_normal((1, cfg.n_heads, cfg.head_dim, W)).astype(np.float32) for _ in range(cfg.n_layers)]
    vs = [rng.standard_normal((1, cfg.n_heads, W, cfg.head_dim)).astype(np.float32) for _ in range(cfg.n_layers)]
    return x, mask, dist, ks, vs


@pytest.mark.parametrize("occupied", [0, 3, 8])
def test_matches_reference_decode_step(occupied):
    rng = np.random.default_rng(1)
    weights = init_weights(CFG, seed=3)
    # larger weights than init so that attention is not uniform
    weights = {k: (v * 20 if v.ndim == 2 else v) for k, v in weights.items()}
    x, mask, dist, ks, vs = _random_inputs(rng, CFG, occupied)
    want_logits, want_k, want_v = decode_step(weights, CFG, x, mask, dist, ks, vs)
    backend = NumpyBackend(CFG, weights)
    backend.input("x").write(x)
    backend.input("mask").write(mask)
    backend.input("dist").write(dist)
    for l in range(CFG.n_layers):
        backend.input(f"k_cache_{l}").write(ks[l])
        backend.input(f"v_cache_{l}").write(vs[l])
    backend.run()
    np.testing.assert_allclose(backend.output("logits").read(), want_logits, rtol=1e-4, atol=1e-4)
    for l in range(CFG.n_layers):
        np.testing.assert_allclose(backend.output(f"k_new_{l}").read(), want_k[l], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(backend.output(f"v_new_{l}").read(), want_v[l], rtol=1e-4, atol=1e-5)


def test_slice_write_and_specs():
    backend = NumpyBackend(CFG, init_weights(CFG))
    assert backend.name == "numpy"
    assert backend.inputs["k_cache_1"].shape == (1, 4, 8, 8) and backend.outputs["logits"].shape == (1, 50)
    k = backend.input("k_cache_0")
    k.write(np.ones((1, 4, 8, 1)), index=(..., slice(2, 3)))
    assert k.read()[..., 2].sum() == 32 and k.read().sum() == 32
    with pytest.raises(TensorWriteError, match="k_cache_0"):
        k.write(np.ones((1, 4, 8, 2)), index=(..., slice(2, 3)))
    with pytest.raises(TensorWriteError, match="no input"):
        backend.input("tokens")
    backend.close()
    backend.close()
    with pytest.raises(ModelClosedError, match="after close"):
        backend.run()


def test_session_on_numpy_backend_imports_numpy_only(tmp_path):
    """Opening a session on the numpy backend (what the board runs) pulls in no cffi/onnx/torch."""
    from test_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "b")
    code = ("import sys; from runtime.engine import open_session; "
            f"s = open_session({str(bundle)!r}, backend='numpy'); s.insert('the cat '); assert s.suggestions(3); "
            "bad = [m for m in ('cffi', 'onnx', 'onnxruntime', 'matplotlib', 'torch') if m in sys.modules]; "
            "assert not bad, bad; print(type(s.window).__name__)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "KVWindow"


def test_log_probs_mode_is_the_graphs_log_softmax():
    """A bundle whose graph ends in LogSoftmax (manifest logits_are_log_probs): same outputs here."""
    rng = np.random.default_rng(2)
    weights = {k: (v * 20 if v.ndim == 2 else v) for k, v in init_weights(CFG, seed=3).items()}
    x, mask, dist, ks, vs = _random_inputs(rng, CFG, 5)
    raw = decode_step(weights, CFG, x, mask, dist, ks, vs)[0].astype(np.float64)
    want = raw - raw.max() - np.log(np.exp(raw - raw.max()).sum())
    backend = NumpyBackend(CFG, weights, log_probs=True)
    for name, value in [("x", x), ("mask", mask), ("dist", dist)] + \
            [(f"k_cache_{l}", ks[l]) for l in range(2)] + [(f"v_cache_{l}", vs[l]) for l in range(2)]:
        backend.input(name).write(value)
    for _ in range(2):  # in place: a second run gives the same row
        backend.run()
        np.testing.assert_allclose(backend.output("logits").read(), want, rtol=1e-4, atol=1e-4)
    assert abs(np.exp(backend.output("logits").read().astype(np.float64)).sum() - 1.0) < 1e-5
