"""Regression: the decode-step attention pattern of docs/design.md, cv181x BF16, vs onnxruntime.

If a tpu-mlir upgrade breaks this lowering (PLATFORM.md: the Transpose variant computed garbage),
this fails. One layer: K cache [1,H,hd,W], query Reshape [1,H,1,hd] (no Transpose), Concat of the
new k/v, ALiBi bias from mask/dist, softmax, PV, Wo, residual, LayerNorm.
"""
import numpy as np
import onnxruntime as ort

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
