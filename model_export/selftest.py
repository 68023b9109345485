"""`edgetype selftest`: compile (or fetch from the cache) a tiny graph, run it on cmodel and onnx.

The graph is x[1,1,32] @ W1[32,64] -> Tanh -> @ W2[64,16], fixed seed, cv181x BF16. Prints the
cosine between the cmodel (simulator) and onnxruntime outputs; passes at >= 0.999.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SELFTEST_MIN_COSINE = 0.999


def tiny_onnx_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1234)
    w1 = numpy_helper.from_array((rng.standard_normal((32, 64)) * 0.2).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((64, 16)) * 0.2).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Tanh", ["h"], ["t"]),
         helper.make_node("MatMul", ["t", "w2"], ["y"])],
        "edgetype_selftest",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 16])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgetype")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.dot(a, b) / denominator) if denominator else float("nan")


def run_selftest(chip: str = "cv181x") -> dict:
    from model_export.compile_cache import compile_onnx
    from tpu_driver.backends import open_backend

    onnx_bytes = tiny_onnx_bytes()
    started = time.monotonic()
    compiled = compile_onnx(onnx_bytes, chip=chip, quant="BF16", name="selftest")
    compile_s = time.monotonic() - started
    onnx_path = compiled.cache_dir / "selftest.onnx"
    if not onnx_path.exists():
        onnx_path = Path(tempfile.mkdtemp(prefix="edgetype-selftest-")) / "selftest.onnx"
        onnx_path.write_bytes(onnx_bytes)
    x = np.random.default_rng(7).standard_normal((1, 1, 32)).astype(np.float32)  # (1,1,32) f32
    paths = {"cvimodel": compiled.cvimodel_path, "onnx": onnx_path}
    with open_backend("cmodel", paths) as sim, open_backend("onnx", paths) as ort:
        for backend in (sim, ort):
            backend.input("x").write(x)
            backend.run()
        y_sim, y_ort = sim.output("y").read().copy(), ort.output("y").read().copy()
        sim_ms, ort_ms = sim.last_run_ms, ort.last_run_ms
    value = cosine(y_sim, y_ort)
    print(f"[selftest] cmodel vs onnxruntime cosine {value:.6f}", file=sys.stderr)
    return {"ok": bool(value >= SELFTEST_MIN_COSINE), "cosine": value, "min_cosine": SELFTEST_MIN_COSINE,
            "chip": chip, "quant": "BF16", "cvimodel": str(compiled.cvimodel_path), "cache_hit": compiled.cache_hit,
            "compile_or_fetch_s": round(compile_s, 2), "cmodel_run_ms_simulator": round(sim_ms, 3),
            "onnx_run_ms": round(ort_ms, 3), "max_abs_diff": float(np.max(np.abs(y_sim - y_ort)))}
