"""ONNX graphs for the simulator tests, built with onnx.helper (fixed seeds)."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# W (24) differs from hd (16) so a swapped K/V layout cannot pass by accident
ATTENTION_DIMS = {"d_model": 64, "n_heads": 4, "window": 24}


def _model(nodes, name, inputs, outputs, initializers) -> bytes:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgetype-tests")
    model.ir_version = 8  # readable by the toolchain's onnx 1.14
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def mlp_onnx(d_in: int = 32, d_hidden: int = 64, d_out: int = 16, seed: int = 0, tokens: int = 1) -> bytes:
    """x[1,T,d_in] @ W1 -> Tanh -> @ W2 -> y[1,T,d_out]; and a second output z = y * 2 (same weights for any T)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((d_in, d_hidden)) * 0.2).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((d_hidden, d_out)) * 0.2).astype(np.float32), "w2")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Tanh", ["h"], ["t"]),
             helper.make_node("MatMul", ["t", "w2"], ["y"]), helper.make_node("Mul", ["y", "two"], ["z"])]
    return _model(nodes, "mlp", [_f32("x", (1, tokens, d_in))],
                  [_f32("y", (1, tokens, d_out)), _f32("z", (1, tokens, d_out))], [w1, w2, two])


def alibi_slopes(n_heads: int) -> np.ndarray:
    return np.array([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)], np.float32)


def attention_layer_onnx(d_model: int = 64, n_heads: int = 4, window: int = 24, seed: int = 0,
                         self_split: bool = False) -> bytes:
    """One decode-step layer in the pattern of docs/design.md (the one that lowers correctly).

    Inputs x[1,1,D], mask/dist[1,1,1,W], k_cache_0[1,H,hd,W], v_cache_0[1,H,W,hd]; outputs
    y[1,1,D] (after attention, Wo, residual, LayerNorm), k_new_0[1,H,hd,1], v_new_0[1,H,1,hd].
    self_split=True: the shipped form (model_export/onnx_graph.py): the caches are never concatenated
    with the new key/value (that copies the whole window every step); the token's score against its
    own key is a separate [1,H,1,1] MatMul, the small score rows are concatenated, and the value
    side is `probs[:W] @ V_cache + probs[W] * v_new`.
    """
    D, H, W = d_model, n_heads, window
    hd = D // H
    rng = np.random.default_rng(seed)

    def weight(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        weight("wq", (D, D), 1 / math.sqrt(D)), weight("wk", (D, D), 1 / math.sqrt(D)),
        weight("wv", (D, D), 1 / math.sqrt(D)), weight("wo", (D, D), 1 / math.sqrt(D)),
        numpy_helper.from_array(np.ones(D, np.float32), "ln1_w"), numpy_helper.from_array(np.zeros(D, np.float32), "ln1_b"),
        numpy_helper.from_array(np.ones(D, np.float32), "ln2_w"), numpy_helper.from_array(np.zeros(D, np.float32), "ln2_b"),
        numpy_helper.from_array(np.array([1, H, 1, hd], np.int64), "q_shape"),
        numpy_helper.from_array(np.array([1, H, hd, 1], np.int64), "k_shape"),
        numpy_helper.from_array(np.array([1, H, 1, hd], np.int64), "v_shape"),
        numpy_helper.from_array(np.array([1, 1, D], np.int64), "o_shape"),
        numpy_helper.from_array(-alibi_slopes(H).reshape(1, H, 1, 1), "neg_slopes"),
        numpy_helper.from_array(np.zeros((1, H, 1, 1), np.float32), "self_bias"),
        numpy_helper.from_array(np.array(1 / math.sqrt(hd), np.float32), "inv_sqrt_hd"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln1_w", "ln1_b"], ["h"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["h", "wq"], ["q_flat"]),
        helper.make_node("MatMul", ["h", "wk"], ["k_flat"]),
        helper.make_node("MatMul", ["h", "wv"], ["v_flat"]),
        helper.make_node("Reshape", ["q_flat", "q_shape"], ["q"]),  # [1,H,1,hd], no Transpose
        helper.make_node("Reshape", ["k_flat", "k_shape"], ["k_new_0"]),  # [1,H,hd,1]
        helper.make_node("Reshape", ["v_flat", "v_shape"], ["v_new_0"]),  # [1,H,1,hd]
    ]
    if self_split:
        inits += [numpy_helper.from_array(np.array([0], np.int64), "s0"),
                  numpy_helper.from_array(np.array([W], np.int64), "sW"),
                  numpy_helper.from_array(np.array([W + 1], np.int64), "sW1"),
                  numpy_helper.from_array(np.array([3], np.int64), "ax3")]
        nodes += [
            helper.make_node("MatMul", ["q", "k_cache_0"], ["scores_cache"]),  # [1,H,1,W]
            helper.make_node("MatMul", ["q", "k_new_0"], ["score_self"]),  # [1,H,1,1]
            helper.make_node("Concat", ["scores_cache", "score_self"], ["scores_raw"], axis=3),  # [1,H,1,W+1]
        ]
    else:
        nodes += [
            helper.make_node("Concat", ["k_cache_0", "k_new_0"], ["keys"], axis=3),  # [1,H,hd,W+1]
            helper.make_node("Concat", ["v_cache_0", "v_new_0"], ["values"], axis=2),  # [1,H,W+1,hd]
            helper.make_node("MatMul", ["q", "keys"], ["scores_raw"]),  # [1,H,1,W+1]
        ]
    nodes += [
        helper.make_node("Mul", ["scores_raw", "inv_sqrt_hd"], ["scores_scaled"]),
        # bias = mask - slope_h * dist, written so that only the RIGHT operand broadcasts: the cv18xx
        # backend asserts "only broadcast right operand supported!" for Mul(slopes[1,H,1,1], dist[1,1,1,W])
        helper.make_node("Concat", ["dist"] * H, ["dist_heads"], axis=1),  # [1,H,1,W]
        helper.make_node("Mul", ["dist_heads", "neg_slopes"], ["neg_slope_dist"]),  # [1,H,1,W] * [1,H,1,1]
        helper.make_node("Add", ["neg_slope_dist", "mask"], ["bias_w"]),  # [1,H,1,W] + [1,1,1,W]
        helper.make_node("Concat", ["bias_w", "self_bias"], ["bias"], axis=3),  # [1,H,1,W+1]
        helper.make_node("Add", ["scores_scaled", "bias"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
    ]
    if self_split:
        nodes += [
            helper.make_node("Slice", ["probs", "s0", "sW", "ax3"], ["probs_cache"]),  # [1,H,1,W]
            helper.make_node("Slice", ["probs", "sW", "sW1", "ax3"], ["prob_self"]),  # [1,H,1,1]
            helper.make_node("MatMul", ["probs_cache", "v_cache_0"], ["attended_cache"]),  # [1,H,1,hd]
            helper.make_node("Mul", ["v_new_0", "prob_self"], ["attended_self"]),  # right operand broadcasts
            helper.make_node("Add", ["attended_cache", "attended_self"], ["attended"]),  # [1,H,1,hd]
        ]
    else:
        nodes.append(helper.make_node("MatMul", ["probs", "values"], ["attended"]))  # [1,H,1,hd]
    nodes += [
        helper.make_node("Reshape", ["attended", "o_shape"], ["attended_flat"]),  # [1,1,D]
        helper.make_node("MatMul", ["attended_flat", "wo"], ["proj"]),
        helper.make_node("Add", ["x", "proj"], ["residual"]),
        helper.make_node("LayerNormalization", ["residual", "ln2_w", "ln2_b"], ["y"], axis=-1, epsilon=1e-5),
    ]
    inputs = [_f32("x", (1, 1, D)), _f32("mask", (1, 1, 1, W)), _f32("dist", (1, 1, 1, W)),
              _f32("k_cache_0", (1, H, hd, W)), _f32("v_cache_0", (1, H, W, hd))]
    outputs = [_f32("y", (1, 1, D)), _f32("k_new_0", (1, H, hd, 1)), _f32("v_new_0", (1, H, 1, hd))]
    return _model(nodes, "attention_layer", inputs, outputs, inits)


def attention_inputs(d_model: int = 64, n_heads: int = 4, window: int = 24, occupied: int = 17,
                     seed: int = 1) -> dict:
    """Random decode-step inputs: `occupied` slots filled (dist 1..), the rest empty (mask -10000)."""
    D, H, W = d_model, n_heads, window
    hd = D // H
    rng = np.random.default_rng(seed)
    mask = np.full((1, 1, 1, W), -10000.0, np.float32)
    dist = np.zeros((1, 1, 1, W), np.float32)
    slots = rng.permutation(W)[:occupied]
    mask[..., slots] = 0.0
    dist[..., slots] = rng.permutation(np.arange(1, occupied + 1)).astype(np.float32)
    return {"x": rng.standard_normal((1, 1, D)).astype(np.float32), "mask": mask, "dist": dist,
            "k_cache_0": rng.standard_normal((1, H, hd, W)).astype(np.float32),
            "v_cache_0": rng.standard_normal((1, H, W, hd)).astype(np.float32)}


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
