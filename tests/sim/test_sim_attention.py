"""Regression: the decode-step attention pattern of docs/design.md, cv181x BF16, vs onnxruntime.

If a tpu-mlir upgrade breaks this lowering (PLATFORM.md: the Transpose variant computed garbage),
this fails. One layer: K cache [1,H,hd,W], query Reshape [1,H,1,hd] (no Transpose), Concat of the
new k/v, ALiBi bias from mask/dist, softmax, PV, Wo, residual, LayerNorm; and the shipped form (issue #15):
self-split attention with BF16 K/V caches at the boundary, on both chips.
"""
import numpy as np
import onnxruntime as ort
import pytest

import sim_graphs
from tpu_driver.backends import open_backend

OUTPUTS = ("y", "k_new_0", "v_new_0")


def test_attention_layer_cv181x_bf16_matches_onnxruntime(compiled_attention):
    compiled, onnx_bytes = compiled_attention
    onnx_path = compiled.cache_dir / "attention.onnx"
    feeds = sim_graphs.attention_inputs(**sim_graphs.ATTENTION_DIMS)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    with open_backend("cmodel", {"cvimodel": compiled.cvimodel_path, "onnx": onnx_path}) as sim:
        assert list(sim.outputs) == list(OUTPUTS)  # compiler output names mapped back by position
        for name, value in feeds.items():
            sim.input(name).write(value)
        for step in range(2):
            sim.run()
            expected = dict(zip(OUTPUTS, session.run(list(OUTPUTS), feeds)))
            for name in OUTPUTS:
                got = sim.output(name).read()
                assert got.shape == expected[name].shape
                assert sim_graphs.cosine(got, expected[name]) >= 0.99, (step, name)
            # step 2: store the new key/value into an empty slot, as kv_window does (one slot, in place)
            empty = int(np.flatnonzero(feeds["mask"][0, 0, 0] < 0)[0])
            slot = (..., slice(empty, empty + 1))
            feeds["k_cache_0"][slot] = expected["k_new_0"]
            feeds["v_cache_0"][:, :, empty:empty + 1, :] = expected["v_new_0"]
            feeds["mask"][slot] = 0.0
            feeds["dist"] = np.where(feeds["mask"] == 0, feeds["dist"] + 1, 0).astype(np.float32)
            feeds["dist"][slot] = 1.0
            sim.input("k_cache_0").write(expected["k_new_0"], index=slot)
            sim.input("v_cache_0").write(expected["v_new_0"], index=(slice(None), slice(None), slice(empty, empty + 1)))
            sim.input("mask").write(feeds["mask"])
            sim.input("dist").write(feeds["dist"])


# Issue #15: the shipped form. K/V caches BF16 at the graph boundary (model_deploy --quant_input_list:
# the runtime writes bf16 slots, no fp32 cast on the TPU) and self-split attention (no copy of the
# window: q @ k_cache and q @ k_new, probs[:W] @ v_cache + probs[W] * v_new).
BF16_KV_DEPLOY_ARGS = ("--iomem_set", " reuse_addr=false", "--quant_input", "--quant_input_list", "4,5")

_SELF_SPLIT_SCRIPT = r"""
import json, sys
import numpy as np, onnxruntime as ort
sys.path.insert(0, "tests/sim")
import sim_graphs
from test_sim_attention import BF16_KV_DEPLOY_ARGS, OUTPUTS
from model_export.compile_cache import compile_onnx
from tpu_driver.backends import open_backend

chip = sys.argv[1]
onnx_bytes = sim_graphs.attention_layer_onnx(**sim_graphs.ATTENTION_DIMS, self_split=True)
compiled = compile_onnx(onnx_bytes, chip=chip, quant="BF16", name="attention", deploy_args=BF16_KV_DEPLOY_ARGS)
feeds = sim_graphs.attention_inputs(**sim_graphs.ATTENTION_DIMS)
session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
result = {"cosines": [], "tensor_map": open(compiled.cache_dir / "model_tool_info.log").read()}
with open_backend("cmodel", {"cvimodel": compiled.cvimodel_path, "onnx": compiled.cache_dir / "attention.onnx"}) as sim:
    result["fmts"] = {t.name: t.fmt_name for t in sim.model.inputs}
    for name, value in feeds.items():
        sim.input(name).write(value)
    for step in range(2):
        sim.run()
        expected = dict(zip(OUTPUTS, session.run(list(OUTPUTS), feeds)))
        result["cosines"].append({n: sim_graphs.cosine(sim.output(n).read(), expected[n]) for n in OUTPUTS})
        # as kv_window does: the new key/value into one empty slot, written in place (bf16 conversion)
        empty = int(np.flatnonzero(feeds["mask"][0, 0, 0] < 0)[0])
        k_new, v_new = sim.output("k_new_0").read().copy(), sim.output("v_new_0").read().copy()
        feeds["k_cache_0"][..., empty:empty + 1] = k_new
        feeds["v_cache_0"][:, :, empty:empty + 1, :] = v_new
        feeds["mask"][..., empty] = 0.0
        feeds["dist"] = np.where(feeds["mask"] == 0, feeds["dist"] + 1, 0).astype(np.float32)
        feeds["dist"][..., empty] = 1.0
        sim.input("k_cache_0").write(k_new, index=(..., slice(empty, empty + 1)))
        sim.input("v_cache_0").write(v_new, index=(slice(None), slice(None), slice(empty, empty + 1)))
        sim.input("mask").write(feeds["mask"])
        sim.input("dist").write(feeds["dist"])
print(json.dumps(result))
"""


@pytest.mark.parametrize("chip", ["cv181x", "cv180x"])
def test_self_split_attention_with_bf16_kv_boundary_matches_onnxruntime(chip, toolchain):
    from sim_helpers import run_python

    result = run_python(_SELF_SPLIT_SCRIPT, chip, timeout=600)  # own process: one chip per process
    assert result["fmts"]["k_cache_0"] == "BF16" and result["fmts"]["v_cache_0"] == "BF16", result["fmts"]
    assert result["fmts"]["x"] == "FP32"
    for step, cosines in enumerate(result["cosines"]):
        for name, c in cosines.items():
            assert c >= 0.999, (chip, step, name, c)
    # no on-chip copy of the window: neither a Concat of the caches nor a cast of them
    tensor_map = result["tensor_map"]
    assert "keys_Concat" not in tensor_map and "values_Concat" not in tensor_map
    assert "k_cache_0" in tensor_map and "k_cache_0keys" not in tensor_map
