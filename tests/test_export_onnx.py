"""The exported ONNX decode step (model_export/onnx_graph.py) == tpu_driver/reference_model.py, and
the exporter's checks that need no toolchain."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_export import export, onnx_graph
from model_export.model import ModelShape
from model_export.tiny_model import make_tiny_model_dir, write_synthetic_corpus
from tpu_driver import reference_model as ref
from runtime.cli import main as edgetype_main
from runtime.errors import UserError

CFG = ref.ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_ff=64, window=8)
SHAPE = ModelShape(97, 32, 2, 4, 64, 8)


def noisy_weights(seed):
    rng = np.random.default_rng(seed + 100)
    return {k: (v + rng.standard_normal(v.shape) * 0.05).astype(np.float32)
            for k, v in ref.init_weights(CFG, seed).items()}


def test_graph_has_the_contract_inputs_outputs_and_no_transpose():
    model = onnx_graph.build_decode_step(noisy_weights(0), SHAPE, 8)
    dims = lambda vi: [d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert [(i.name, dims(i)) for i in model.graph.input] == [(n, s) for n, s in onnx_graph.input_specs(SHAPE, 8)]
    assert [(o.name, dims(o)) for o in model.graph.output] == [(n, s) for n, s in onnx_graph.output_specs(SHAPE)]
    assert ("x", [1, 1, 32]) in [(i.name, dims(i)) for i in model.graph.input]
    ops = {node.op_type for node in model.graph.node}
    assert "Transpose" not in ops and "Gather" not in ops  # PLATFORM.md: both break the cv18xx graph
    assert "Erf" not in ops  # no cv18xx lowering
    assert model.opset_import[0].version == onnx_graph.OPSET


@pytest.mark.parametrize("seed", [0, 1])
def test_onnxruntime_step_equals_numpy_reference(seed):
    weights = noisy_weights(seed)
    session = ort.InferenceSession(onnx_graph.build_decode_step(weights, SHAPE, 8).SerializeToString())
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(seed)
    for filled in (0, 3, 8):  # empty, partly filled, full window
        feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in onnx_graph.input_specs(SHAPE, 8)}
        feeds["mask"] = np.where(np.arange(8) < filled, 0.0, ref.MASK_EMPTY).astype(np.float32).reshape(1, 1, 1, 8)
        feeds["dist"] = np.where(np.arange(8) < filled, filled - np.arange(8), 0).astype(np.float32).reshape(1, 1, 1, 8)
        got = dict(zip(names, session.run(None, feeds)))
        logits, k_new, v_new = ref.decode_step(weights, CFG, feeds["x"], feeds["mask"], feeds["dist"],
                                               [feeds[f"k_cache_{l}"] for l in range(2)],
                                               [feeds[f"v_cache_{l}"] for l in range(2)])
        # the graph ends in LogSoftmax (onnx_graph.LOGITS_ARE_LOG_PROBS): log-probabilities
        log_probs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        np.testing.assert_allclose(got["logits"], log_probs, atol=1e-4)
        np.testing.assert_allclose(np.exp(got["logits"].astype(np.float64)).sum(), 1.0, atol=1e-5)
        for layer in range(2):
            np.testing.assert_allclose(got[f"k_new_{layer}"], k_new[layer], atol=1e-5)
            np.testing.assert_allclose(got[f"v_new_{layer}"], v_new[layer], atol=1e-5)
    # the comparison can fail: other weights, other logits
    other = ref.decode_step(noisy_weights(seed + 5), CFG, feeds["x"], feeds["mask"], feeds["dist"],
                            [feeds[f"k_cache_{l}"] for l in range(2)], [feeds[f"v_cache_{l}"] for l in range(2)])[0]
    assert np.abs(other - got["logits"]).max() > 1e-2


def test_raw_logits_variant_equals_numpy_reference():
    weights = noisy_weights(0)
    model = onnx_graph.build_decode_step(weights, SHAPE, 8, log_probs=False)
    assert "LogSoftmax" not in {node.op_type for node in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString())
    rng = np.random.default_rng(3)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in onnx_graph.input_specs(SHAPE, 8)}
    feeds["mask"][...] = 0.0
    feeds["dist"] = (8 - np.arange(8)).astype(np.float32).reshape(1, 1, 1, 8)
    got = session.run(["logits"], feeds)[0]
    want = ref.decode_step(weights, CFG, feeds["x"], feeds["mask"], feeds["dist"],
                           [feeds[f"k_cache_{l}"] for l in range(2)], [feeds[f"v_cache_{l}"] for l in range(2)])[0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_graph_never_copies_the_kv_window():
    """Self-split attention: no op takes a K/V cache except the two attention MatMuls per layer."""
    model = onnx_graph.build_decode_step(noisy_weights(0), SHAPE, 8)
    for layer in range(2):
        users = [(n.op_type, n.name) for n in model.graph.node
                 if f"k_cache_{layer}" in n.input or f"v_cache_{layer}" in n.input]
        assert users == [("MatMul", f"l{layer}_scores_cache"), ("MatMul", f"l{layer}_ctx_cache")], users
    assert onnx_graph.kv_cache_input_positions(SHAPE) == [4, 5, 6, 7]


def test_debug_outputs_expose_each_layer():
    model = onnx_graph.build_decode_step(noisy_weights(0), SHAPE, 8, debug_outputs=True)
    assert [o.name for o in model.graph.output][-2:] == ["layer0_out", "layer1_out"]


def test_ion_estimate_refuses_a_window_too_big_for_the_chip():
    default = ref.ModelConfig()  # V=8192 D=256 L=4
    assert export.check_window_fits(default, "cv180x", 128, "int8")["total"] < 16 << 20
    assert export.check_window_fits(default, "cv181x", 128, "bf16")["total"] < 75 << 20
    with pytest.raises(UserError, match="window 4096 needs about .* MiB of ION on cv180x"):
        export.check_window_fits(default, "cv180x", 4096, "int8")


def test_int8_table_names_the_activation_ops():
    model = onnx_graph.build_decode_step(noisy_weights(0), SHAPE, 8)
    names = [line.split()[0] for line in export.int8_mixed_precision_table(model).read_text().splitlines()
             if not line.startswith("#")]
    assert "l0_ln1_LayerNormalization" in names and "layer1_out_Add" in names and "l1_probs_Softmax" in names
    # weight MatMuls stay INT8; only the activation x activation ones (against the K/V caches) are named
    matmuls = {name for name in names if name.endswith("_MatMul")}
    assert matmuls == {f"l{l}_{what}_MatMul" for l in range(2) for what in export.BF16_ACTIVATION_MATMULS}
    assert "l0_scores_raw_Concat" in names and "l0_probs_cache_Slice" in names and "logits_LogSoftmax" in names


MODEL_TOOL_INFO = """Mlir Version: v1.30.2-20260831
CviModel Need ION Memory Size: (12.34 MB)
Program #0
    inputs      : x,mask
    outputs     : logits_Reshape_f32
    tensor_map  :
        ID   OFFSET      TYPE  N    C    H    W    QSCALE     MEM     NAME
        000  0           fp32  1    1    256  1    1.000000   io_mem  x
        001  0           fp32  1    1    1    128  1.000000   io_mem  mask
        002  8192        bf16  1    1    1    128  1.000000   shared  mask_bf16
        168  8192        fp32  1    8192 1    1    1.000000   private logits_Reshape_f32
"""


def test_model_tool_info_is_parsed():
    info = export.parse_model_tool_info(MODEL_TOOL_INFO)
    assert info["inputs"] == ["x", "mask"] and info["outputs"] == ["logits_Reshape_f32"]
    assert info["ion_bytes"] == round(12.34 * (1 << 20))
    assert info["tensors"]["logits_Reshape_f32"] == {"dtype": "fp32", "nchw": [1, 8192, 1, 1]}
    ins, outs = export.compiled_tensor_specs(info, [("x", [1, 1, 256]), ("mask", [1, 1, 1, 128])],
                                             [("logits", [1, 8192])])
    assert outs == [{"name": "logits", "shape": [1, 8192], "dtype": "float32",
                     "compiled_name": "logits_Reshape_f32", "compiled_nchw": [1, 8192, 1, 1]}]
    with pytest.raises(UserError):
        export.compiled_tensor_specs(info, [("x", [1, 1, 255]), ("mask", [1, 1, 1, 128])], [("logits", [1, 8192])])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    corpus = write_synthetic_corpus(root / "corpus")
    return make_tiny_model_dir(root / "model", corpus), corpus


def test_onnx_only_bundle_round_trips_through_runtime_bundle(tiny, tmp_path, capsys):
    from runtime.bundle import load_bundle, manifest_digest
    from tpu_driver.backends import open_backend

    model_dir, corpus = tiny
    out = tmp_path / "bundle"
    code = edgetype_main(["export", "--chip", "none", "--quant", "f32", "--model", str(model_dir),
                          "--corpus", str(corpus), "-o", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["chip"] is None and summary["window"] == 16
    bundle = load_bundle(out)  # checks format_version, every sha256, shapes against config.json
    manifest = bundle.manifest
    assert manifest["format_version"] == 2 and manifest["window"] == 16
    assert manifest["bundle_id"] == manifest_digest(manifest)  # the manifest is covered
    assert manifest["tokenizer_id"] == bundle.tokenizer.tokenizer_id
    assert [s["name"] for s in manifest["inputs"]][:3] == ["x", "mask", "dist"]
    assert set(manifest["files"]) >= {"model.onnx", "weights.npz", "tokenizer.json", "config.json", "golden.json"}
    assert manifest["onnx_vs_reference_max_abs_logit_diff"] < 1e-3
    # golden.json: the onnx backend reproduces its per-step top-5
    golden = json.loads((out / "golden.json").read_text())
    weights = ref.load_weights(out / "weights.npz", bundle.config)
    from tpu_driver.feeder import InOrderFeeder
    with open_backend("onnx", bundle) as backend:
        feeder = InOrderFeeder(backend, weights["embedding"])
        for step in golden["steps"]:
            logits = feeder.step(step["token"])
            assert [int(i) for i in np.argsort(-logits, kind="stable")[:5]] == step["top5_ids"]
    assert all(1 <= len(case["suggestions"]) <= 3 for case in golden["suggestions"])
    # a tampered file is refused by the runtime
    (out / "golden.json").write_text("{}")
    with pytest.raises(UserError, match="sha256 mismatch"):
        load_bundle(out)


def test_export_errors_are_user_errors(tiny, tmp_path, capsys):
    model_dir, corpus = tiny
    base = ["export", "--model", str(model_dir), "--corpus", str(corpus), "-o", str(tmp_path / "b")]
    assert edgetype_main(base + ["--chip", "cv182x"]) == 2
    assert "unknown chip 'cv182x'" in capsys.readouterr().err
    assert edgetype_main(base + ["--chip", "cv181x", "--quant", "fp16"]) == 2
    assert "unknown quantization 'fp16'" in capsys.readouterr().err
    assert edgetype_main(["export", "--chip", "cv181x", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "b")]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bf16_step_is_the_spacing_of_bfloat16():
    from model_export.verify import bf16_step

    assert bf16_step(1.0) == 2 ** -7 and bf16_step(1.99) == 2 ** -7 and bf16_step(-10.0) == 2 ** -4
    assert bf16_step(0.3) == 2 ** -9 and bf16_step(0.0) == 0.0
    for x in (0.37, 1.5, 9.7, 123.0):  # x + step is the next bfloat16 after x rounded down to bfloat16
        import numpy as np
        bits = np.array([x], np.float32).view(np.uint32) & 0xFFFF0000
        low = bits.view(np.float32)[0]
        assert float((bits + 0x10000).view(np.float32)[0] - low) == bf16_step(x)


def test_bundle_words_are_sorted_so_a_prefix_is_one_id_range(tiny, tmp_path, capsys):
    """Issue #15: export renumbers the words (sorted, after the specials); the map back to the model's
    ids is vocab_order.json; the engine suggests exactly what the model folder suggests; a bundle
    whose map is missing or disagrees with its tokenizer is refused by name."""
    from runtime.bundle import BundleError, load_bundle, seal_manifest
    from runtime.engine import open_session
    from runtime.tokenizer import Tokenizer

    model_dir, corpus = tiny
    out = tmp_path / "bundle"
    assert edgetype_main(["export", "--chip", "none", "--quant", "f32", "--model", str(model_dir),
                          "--corpus", str(corpus), "-o", str(out), "--json"]) == 0, capsys.readouterr().err
    bundle = load_bundle(out)
    source = Tokenizer.load(model_dir / "tokenizer.json")
    assert not source.words_contiguous and source.prefix_id_range("t") is None
    tok = bundle.tokenizer
    order = json.loads((out / "vocab_order.json").read_text())["order"]
    assert [tok.tokens[i] for i in range(tok.vocab_size)] == [source.tokens[i] for i in order]
    assert bundle.manifest["vocab_order"]["source_tokenizer_id"] == source.tokenizer_id
    for prefix in ("", "t", "th", "zzz", "a"):
        lo, hi = tok.prefix_id_range(prefix)
        np.testing.assert_array_equal(tok.prefix_ids(prefix), np.arange(lo, hi))
        assert sorted(tok.tokens[i] for i in range(lo, hi)) == sorted(source.tokens[i] for i in source.prefix_ids(prefix))
    # the permuted embedding row of a word is the model's row of the same word
    model_weights = ref.load_weights(model_dir / "weights.npz", bundle.config)
    bundle_weights = ref.load_weights(out / "weights.npz", bundle.config)
    np.testing.assert_array_equal(bundle_weights["embedding"], model_weights["embedding"][order])
    # same suggestions as the model folder (unsorted ids, gather path), on the sliced path
    text = "the cat sat on the m"
    with open_session(out, backend="numpy") as sorted_session, open_session(model_dir, backend="numpy") as plain:
        for i in range(len(text)):
            sorted_session.insert(text[i])
            plain.insert(text[i])
            got = [(s.word, round(s.prob, 5)) for s in sorted_session.suggestions(3)]
            assert got == [(s.word, round(s.prob, 5)) for s in plain.suggestions(3)], text[: i + 1]
    # refused by name: the map missing, or describing another tokenizer
    manifest = json.loads((out / "manifest.json").read_text())
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(out, broken)
    (broken / "vocab_order.json").unlink()
    with pytest.raises(BundleError, match="vocab_order.json"):
        load_bundle(broken)
    data = json.loads((out / "vocab_order.json").read_text())
    (broken / "vocab_order.json").write_text(json.dumps({**data, "tokenizer_id": "0" * 16}))
    from runtime.bundle import sha256_file
    files = {**manifest["files"], "vocab_order.json": sha256_file(broken / "vocab_order.json")}
    (broken / "manifest.json").write_text(json.dumps(seal_manifest({**manifest, "files": files})))
    with pytest.raises(BundleError, match="vocab_order.json: does not match the bundle's tokenizer"):
        load_bundle(broken)
