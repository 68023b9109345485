"""The engine on the cmodel simulator (a BF16 cv181x cvimodel of a tiny model) vs onnxruntime fp32.

Needs the tpu-mlir toolchain (`edgetype toolchain install`): fails, not skips, without it."""
import shutil

import numpy as np
import onnx
import pytest
from test_bundle import make_tiny_model_dir

from runtime.bundle import load_bundle
from runtime.engine import open_session
from tpu_driver.reference_model import init_weights


@pytest.mark.sim
def test_cmodel_session_tracks_onnx(tmp_path):
    from model_export.compile_cache import compile_onnx
    from model_export.model import ModelShape
    from model_export.onnx_graph import build_decode_step

    directory = make_tiny_model_dir(tmp_path / "m", window=32)
    cfg = load_bundle(directory).config
    weights = init_weights(cfg, seed=0)  # unscaled: BF16-friendly magnitudes
    np.savez(directory / "weights.npz", **weights)
    shape = ModelShape(vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                       n_heads=cfg.n_heads, d_ff=cfg.d_ff, window=cfg.window)
    onnx.save(build_decode_step(weights, shape, cfg.window), str(directory / "model.onnx"))
    compiled = compile_onnx(directory / "model.onnx", chip="cv181x", quant="BF16", name="tiny")  # cached
    shutil.copy(compiled.cvimodel_path, directory / "model.cvimodel")
    sim, ref = open_session(directory, backend="cmodel"), open_session(directory, backend="onnx")
    try:
        assert sim.backend_name == "cmodel"
        for piece in ["The ", "cat ", "sat ", "on ", "the ", "mat", ". ", "The ", "dog", "\n", "We "]:
            for session in (sim, ref):
                session.insert(piece)
            assert sim.last_forward_calls == ref.last_forward_calls
            l1 = np.abs(np.exp(sim._current) - np.exp(ref._current)).sum()
            assert l1 < 0.05, (piece, l1)  # BF16 vs fp32 next-token distributions
        sim.backspace()
        ref.backspace()
        assert sim.suggestions(3)[0].word in [s.word for s in ref.suggestions(3)]
    finally:
        sim.close()
        ref.close()
