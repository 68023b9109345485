"""A tiny model of the real architecture goes through `edgetype export` for cv181x BF16 and runs
on the cmodel like its ONNX (the graph patterns of docs/design.md lower correctly), and compiled
inputs keep their values across forwards (the K/V window is written one slot per step)."""
from __future__ import annotations

import numpy as np
import pytest

from model_export.export import export_bundle
from model_export.tiny_model import make_tiny_model_dir, write_synthetic_corpus
from model_export.verify import verify_bundle


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory, toolchain):
    root = tmp_path_factory.mktemp("export_sim")
    corpus = write_synthetic_corpus(root / "corpus")
    model_dir = make_tiny_model_dir(root / "model", corpus, d_model=64, n_layers=2, n_heads=4, d_ff=128, window=16)
    summary = export_bundle(model_dir, root / "bundle", "cv181x", "bf16", 16, corpus)  # compile cache
    return root / "bundle", corpus, summary


def test_tiny_bundle_matches_onnx_on_the_cmodel(tiny_bundle):
    bundle, corpus, summary = tiny_bundle
    assert summary["ion_bytes"] and summary["ion_bytes"] < 2 << 20
    result = verify_bundle(bundle, 16, corpus)
    assert result["chip"] == "cv181x" and result["steps"] == 16
    assert result["min_cosine"] >= 0.999, result
    assert result["top1_agreement"] >= 0.9, result
    # tie-aware agreement: only steps whose fp32 top-2 margin is at least one BF16 step count
    clear = result["steps"] - result["near_tie_steps"]
    assert 0 <= result["near_tie_steps"] <= result["steps"]
    assert result["top1_agreement_beyond_bf16_ties"] is None if clear == 0 else 0.0 <= result["top1_agreement_beyond_bf16_ties"] <= 1.0
    assert len(result["reference_top2_margin_at_disagreements"]) == round((1 - result["top1_agreement"]) * 16)


def test_compiled_inputs_survive_a_forward(tiny_bundle):
    """cv18xx puts inputs after the 5th in reusable private memory: export turns reuse off."""
    from runtime.bundle import load_bundle
    from tpu_driver.backends import open_backend

    bundle = load_bundle(tiny_bundle[0])
    rng = np.random.default_rng(0)
    with open_backend("cmodel", bundle) as backend:
        written = {}
        for name, spec in backend.inputs.items():
            written[name] = (rng.standard_normal(spec.shape) * 0.5).astype(np.float32)
            backend.input(name).write(written[name])
        backend.run()
        backend.run()
        from tpu_driver.tensor import bf16_bits_to_float32, float32_to_bf16_bits

        kinds = {t.name: t.dtype for t in backend.model.inputs}
        assert kinds["k_cache_1"] == "bfloat16" and kinds["x"] == "float32"  # K/V BF16 at the boundary (#15)
        for name, values in written.items():
            if kinds[name] == "bfloat16":  # stored rounded to bf16 by the write
                values = bf16_bits_to_float32(float32_to_bf16_bits(values))
            np.testing.assert_array_equal(np.asarray(backend.input(name).read()), values, err_msg=name)


def test_debug_names_compared_tensors(tiny_bundle):
    bundle, corpus, _ = tiny_bundle
    debug = verify_bundle(bundle, 4, corpus, debug=True)["debug"]
    assert debug["compared_tensors"] > 20
    assert debug["first_below_threshold"] is None, debug["first_below_threshold"]
    assert {"l0_q", "k_new_1", "logits"} <= {row["tensor"] for row in debug["tensors"]}


def test_a_graph_that_compiles_but_computes_wrong_leaves_no_bundle(tmp_path, tiny_bundle, monkeypatch):
    """Issue #15 "Bad input": export's own cmodel check refuses a compiled graph that disagrees with its
    ONNX. The compiler is made to build a wrong graph (the head negated) from the right ONNX."""
    import onnx
    from onnx import numpy_helper

    from model_export import compile_cache
    from model_export.compile_cache import CompileError

    real_compile = compile_cache.compile_onnx

    def wrong_compile(onnx_bytes, **kwargs):
        model = onnx.load_from_string(onnx_bytes)
        for i, init in enumerate(model.graph.initializer):
            if init.name == "head":
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), "head"))
        return real_compile(model.SerializeToString(), **kwargs)

    monkeypatch.setattr(compile_cache, "compile_onnx", wrong_compile)
    _, corpus, _ = tiny_bundle
    model_dir = make_tiny_model_dir(tmp_path / "model", corpus, d_model=64, n_layers=2, n_heads=4, d_ff=128, window=16)
    out = tmp_path / "out" / "bundle"
    with pytest.raises(CompileError, match="computes wrong on the cmodel"):
        export_bundle(model_dir, out, "cv181x", "bf16", 16, corpus)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temp folder left either
