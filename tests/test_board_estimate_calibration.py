"""MAC counting on tiny ONNX graphs and the efficiency fit of model_export/calibrate_estimate.py."""
import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from model_export import calibrate_estimate as ce


def _graph(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _init(name, shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def test_conv_grouped_conv_and_gemm_macs():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),  # 4->6, 8x8
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2],
                         group=6),  # depthwise 6, 4x4
        helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wg"], ["y"], transB=1),  # 6 -> 5
    ]
    model = _graph(nodes, [x], [y], [_init("w1", (6, 4, 3, 3)), _init("w2", (6, 1, 3, 3)), _init("wg", (5, 6))])
    counts = ce.count_onnx(model.SerializeToString())
    conv1 = (6 * 8 * 8) * (4 * 3 * 3)
    conv2 = (6 * 4 * 4) * (1 * 3 * 3)
    gemm = 5 * 6
    assert counts["per_op"] == {"Conv": conv1 + conv2, "Gemm": gemm}
    assert counts["macs"] == conv1 + conv2 + gemm
    assert counts["weight_elements"] == 6 * 36 + 6 * 9 + 30
    # traffic ops: conv1 (x in, c1 out), conv2 (r1 in, c2 out), pool (c2 in, p out), gemm (f in, y out)
    assert counts["activation_elements"] == (256 + 384) + (384 + 96) + (96 + 6) + (6 + 5)


def test_batched_matmul_macs():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 1, 16])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4, 16, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 32])
    model = _graph([helper.make_node("MatMul", ["a", "b"], ["y"])], [a, b], [y], [])
    counts = ce.count_onnx(model)
    assert counts["macs"] == 4 * 32 * 16
    assert counts["activation_elements"] == 64 + 4 * 16 * 32 + 128  # both operands are activations


def test_dynamic_shape_is_a_user_error():
    from runtime.errors import UserError

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])
    model = _graph([helper.make_node("MatMul", ["a", "w"], ["y"])], [a], [y], [_init("w", (16, 8))])
    with pytest.raises(UserError, match="static shape"):
        ce.count_onnx(model)


def _row(chip, network, macs, moved_bytes, published_ms):
    return {"chip": chip, "network": network, "macs": macs, "weight_bytes": moved_bytes, "activation_bytes": 0,
            "tpu_routines": 1, "cpu_routine_elements": 0, "published_ms": published_ms}


def test_fit_recovers_a_known_efficiency_and_leave_one_out():
    rows = [_row("cv181x", "a", 2e9, 8e6, 0), _row("cv181x", "b", 3e8, 1.5e7, 0)]
    for row in rows:  # synthetic "published" times made by the model itself at efficiency 0.27
        row["published_ms"] = ce.predict_ms(row, 0.27)
    assert ce.fit_efficiency(rows) == pytest.approx(0.27, rel=1e-4)
    assert ce.fit_efficiency(rows[:1]) == pytest.approx(0.27, rel=1e-4)
    report = ce.fit_report(rows)
    variant = report["variants"][ce.FIT_VARIANT]
    assert variant["loo_max_factor"] == pytest.approx(1.0, abs=1e-3)
    assert report["fit"]["efficiency"]["cv181x"] == pytest.approx(0.27, abs=1e-4)


def test_fit_loo_sees_a_model_mismatch():
    rows = [_row("cv180x", "a", 2e9, 8e6, 0), _row("cv180x", "b", 3e8, 1.5e7, 0)]
    rows[0]["published_ms"] = ce.predict_ms(rows[0], 0.05)
    rows[1]["published_ms"] = ce.predict_ms(rows[1], 0.2)  # networks disagree on efficiency
    variant = ce.fit_report(rows)["variants"]["sum_per_chip"]
    assert variant["loo_max_factor"] > 1.5
    assert math.isclose(variant["rows"][0]["loo_efficiency"], 0.2, rel_tol=1e-3)


@pytest.mark.slow
def test_networks_have_the_published_mac_counts():
    """resnet18 1.814 GMAC / 11.69 M params, mobilenet_v2 0.300 GMAC / 3.50 M params (papers, 224x224)."""
    resnet = ce.count_onnx(ce.export_network_onnx("resnet18"))
    mobilenet = ce.count_onnx(ce.export_network_onnx("mobilenet_v2"))
    assert resnet["macs"] == pytest.approx(1.814e9, rel=0.005)
    assert resnet["weight_elements"] == pytest.approx(11.69e6, rel=0.01)
    assert mobilenet["macs"] == pytest.approx(0.300e9, rel=0.01)
    assert mobilenet["weight_elements"] == pytest.approx(3.50e6, rel=0.01)


def test_register_adds_bench_calibrate_estimate():
    import argparse

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command")
    bench = subparsers.add_parser("bench").add_subparsers(dest="bench_command")
    ce.register(subparsers, {"bench": bench})
    args = parser.parse_args(["bench", "calibrate-estimate", "--json", "--keystrokes", "0", "--no-write"])
    assert args.json and args.keystrokes == 0 and args.no_write and args.func is ce._cmd_calibrate
