"""The engine gives the same suggestions on the onnx backend as on the numpy backend."""
import numpy as np
import onnx
import pytest
from test_bundle import make_tiny_model_dir

from runtime.bundle import load_bundle
from runtime.engine import open_session
from tpu_driver.reference_model import load_weights


@pytest.fixture(scope="module")
def onnx_model_dir(tmp_path_factory):
    from model_export.model import ModelShape
    from model_export.onnx_graph import build_decode_step

    directory = make_tiny_model_dir(tmp_path_factory.mktemp("onnx") / "m", window=32)
    cfg = load_bundle(directory).config
    shape = ModelShape(vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                       n_heads=cfg.n_heads, d_ff=cfg.d_ff, window=cfg.window)
    onnx.save(build_decode_step(load_weights(directory / "weights.npz", cfg), shape, cfg.window),
              str(directory / "model.onnx"))
    return directory


def test_onnx_and_numpy_sessions_agree(onnx_model_dir):
    sessions = {name: open_session(onnx_model_dir, backend=name) for name in ("onnx", "numpy")}
    rng = np.random.default_rng(5)
    words = ["the", "cat", "sat", "on", "mat", ".", ",", "\n", "we", "think"]
    for step in range(60):  # past the 32-slot window: evictions happen on both alike
        piece = words[rng.integers(len(words))] + " "
        for session in sessions.values():
            session.insert(piece)
            if step % 7 == 3:
                session.backspace()
                session.backspace()
        onnx_s, numpy_s = sessions["onnx"], sessions["numpy"]
        assert onnx_s.backend_name == "onnx" and numpy_s.backend_name == "numpy"
        np.testing.assert_allclose(onnx_s._current, numpy_s._current, atol=1e-3)
        assert [s.word for s in onnx_s.suggestions(3)] == [s.word for s in numpy_s.suggestions(3)]
    for session in sessions.values():
        session.close()
