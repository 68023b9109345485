"""The static-shape ONNX decode step of docs/design.md, built node by node from numpy weights.

Built with `onnx.helper` rather than traced from PyTorch so that every op and layout is the one
that lowered correctly through tpu-mlir (PLATFORM.md): the query is reshaped straight to
[1,H,1,hd] (no Transpose), the K cache arrives transposed [1,H,hd,W], ALiBi enters as an additive
bias `Concat(mask - slope_h * dist, 0)`. The embedding lookup stays on the host (no Gather).

The token attends to itself without copying the window ("self-split" attention, the numpy
backend's form): scores against the W cached keys (`q @ k_cache`, [1,H,1,W]) and against its own
key (`q @ k_new`, [1,H,1,1]) are concatenated (a few hundred bytes), and after the softmax the
values are `probs[:W] @ v_cache + probs[W] * v_new`. The earlier form concatenated k_new/v_new
onto the caches, which made the TPU copy the whole K/V window every step (plus a cast copy while
the caches were float32); tests/sim/test_sim_attention.py keeps both forms under test.

The K/V caches are float32 in the ONNX (onnxruntime's reference) and BF16 in the compiled
cvimodel: export strips their input casts (`KV_CACHE_INPUT_DTYPE`, model_deploy --quant_input_list),
so the runtime writes bf16 slots and the TPU reads them as they are.

The graph ends in LogSoftmax: output `logits` holds log-probabilities (`LOGITS_ARE_LOG_PROBS`,
recorded in the bundle manifest), so the runtime does not normalise 8,192 logits on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_export.model import LAYERNORM_EPS, ModelShape, weight_name
from tpu_driver import decode_step as step
from tpu_driver.reference_model import alibi_slopes

OPSET = 17  # LayerNormalization is an opset-17 op; tpu-mlir's converter reads it directly
KV_CACHE_INPUT_DTYPE = "bfloat16"  # k_cache_*/v_cache_* in the compiled cvimodel (float32 in the ONNX)
LOGITS_ARE_LOG_PROBS = True  # output `logits` = LogSoftmax(logits): log-probabilities
ATTENTION_FORM = "self-split"  # no K/V window copy on the TPU (module docstring)


def kv_cache_input_positions(shape: ModelShape) -> list[int]:
    """1-based positions of the k_cache_*/v_cache_* inputs in graph order (model_deploy --quant_input_list)."""
    return step.kv_cache_input_positions(shape)


def input_specs(shape: ModelShape, window: int) -> list[tuple[str, list[int]]]:
    """Decode-step inputs (name, shape), all float32, in graph order (tpu_driver/decode_step.py)."""
    return [(spec.name, list(spec.shape)) for spec in step.input_specs(shape, window)]


def output_specs(shape: ModelShape) -> list[tuple[str, list[int]]]:
    """Decode-step outputs (name, shape), all float32, in graph order (tpu_driver/decode_step.py)."""
    return [(spec.name, list(spec.shape)) for spec in step.output_specs(shape)]


class _GraphBuilder:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output


def build_decode_step(weights: dict[str, np.ndarray], shape: ModelShape, window: int,
                      debug_outputs: bool = False, log_probs: bool = LOGITS_ARE_LOG_PROBS) -> onnx.ModelProto:
    """ONNX ModelProto of one decode step with a window of `window` slots.

    log_probs=True ends the graph in LogSoftmax (output `logits` = log-probabilities); False gives
    the raw logits (tests compare both with tpu_driver/reference_model.py).

    debug_outputs=True also exposes each layer's residual stream (`layer{l}_out`, [1,1,D]) as a
    graph output, for bisecting a compiled graph that disagrees (`edgetype verify --debug`).
    """
    d, h, hd, n_layers = shape.d_model, shape.n_heads, shape.head_dim, shape.n_layers
    f32 = lambda name: np.asarray(weights[name], dtype=np.float32)  # noqa: E731
    g = _GraphBuilder()

    shape_q = g.const("shape_q", np.array([1, h, 1, hd], np.int64))
    shape_k = g.const("shape_k", np.array([1, h, hd, 1], np.int64))
    shape_v = g.const("shape_v", np.array([1, h, 1, hd], np.int64))
    shape_x = g.const("shape_x", np.array([1, 1, d], np.int64))
    # Slice bounds of the probabilities: [0, W) over the cached slots, [W, W+1) the token itself
    slice_0 = g.const("slice_0", np.array([0], np.int64))
    slice_w = g.const("slice_w", np.array([window], np.int64))
    slice_w1 = g.const("slice_w1", np.array([window + 1], np.int64))
    slice_axis = g.const("slice_axis", np.array([3], np.int64))

    # ALiBi bias over the W slots plus the new token (distance 0): [1,H,1,W+1], shared by layers
    # cv18xx broadcasts only the right operand of a binary op (TgBroadcastKernel), so dist is
    # first repeated over the heads and the mask comes last.
    neg_slopes = g.const("alibi_neg_slopes", -alibi_slopes(h, shape.alibi_max_bias).reshape(1, h, 1, 1))
    dist_heads = g.op("Concat", [step.DIST] * h, "dist_heads", axis=1)  # [1,H,1,W]
    alibi = g.op("Mul", [dist_heads, neg_slopes], "alibi_bias")  # [1,H,1,W]
    slot_bias = g.op("Add", [alibi, step.MASK], "slot_bias")  # [1,H,1,W]
    self_bias = g.const("self_bias", np.zeros((1, h, 1, 1), np.float32))
    attn_bias = g.op("Concat", [slot_bias, self_bias], "attn_bias", axis=3)  # [1,H,1,W+1]

    inv_sqrt_hd = g.const("inv_sqrt_hd", np.array(1.0 / math.sqrt(hd), np.float32))
    half = g.const("half", np.array(0.5, np.float32))
    one = g.const("one", np.array(1.0, np.float32))
    gelu_c = g.const("gelu_c", np.array(math.sqrt(2.0 / math.pi), np.float32))
    gelu_c3 = g.const("gelu_c3", np.array(0.044715, np.float32))

    x = step.X  # [1,1,D]
    for l in range(n_layers):  # noqa: E741
        w = lambda what: f32(weight_name(l, what))  # noqa: E731, B023
        p = f"l{l}_"
        xn = g.op("LayerNormalization", [x, g.const(p + "ln1_g", w("ln1.weight")),
                                         g.const(p + "ln1_b", w("ln1.bias"))],
                  p + "ln1", axis=-1, epsilon=LAYERNORM_EPS)
        q = g.op("MatMul", [xn, g.const(p + "wq", w("attn.wq"))], p + "q_flat")  # [1,1,D]
        q = g.op("Reshape", [q, shape_q], p + "q")  # [1,H,1,hd], no Transpose (PLATFORM.md)
        k = g.op("MatMul", [xn, g.const(p + "wk", w("attn.wk"))], p + "k_flat")
        k_new = g.op("Reshape", [k, shape_k], step.k_new(l))  # [1,H,hd,1]
        v = g.op("MatMul", [xn, g.const(p + "wv", w("attn.wv"))], p + "v_flat")
        v_new = g.op("Reshape", [v, shape_v], step.v_new(l))  # [1,H,1,hd]
        # self-split attention (module docstring): the caches are read, never copied
        scores_cache = g.op("MatMul", [q, step.k_cache(l)], p + "scores_cache")  # [1,H,1,W]
        score_self = g.op("MatMul", [q, k_new], p + "score_self")  # [1,H,1,1]
        scores = g.op("Concat", [scores_cache, score_self], p + "scores_raw", axis=3)  # [1,H,1,W+1]
        scores = g.op("Mul", [scores, inv_sqrt_hd], p + "scores_scaled")
        scores = g.op("Add", [scores, attn_bias], p + "scores")
        probs = g.op("Softmax", [scores], p + "probs", axis=-1)  # [1,H,1,W+1]
        probs_cache = g.op("Slice", [probs, slice_0, slice_w, slice_axis], p + "probs_cache")  # [1,H,1,W]
        prob_self = g.op("Slice", [probs, slice_w, slice_w1, slice_axis], p + "prob_self")  # [1,H,1,1]
        ctx_cache = g.op("MatMul", [probs_cache, step.v_cache(l)], p + "ctx_cache")  # [1,H,1,hd]
        ctx_self = g.op("Mul", [v_new, prob_self], p + "ctx_self")  # [1,H,1,hd]; the right operand broadcasts
        ctx = g.op("Add", [ctx_cache, ctx_self], p + "ctx")  # [1,H,1,hd]
        ctx = g.op("Reshape", [ctx, shape_x], p + "ctx_flat")  # [1,1,D]
        attn = g.op("MatMul", [ctx, g.const(p + "wo", w("attn.wo"))], p + "attn_out")
        x = g.op("Add", [x, attn], p + "resid1")
        xn = g.op("LayerNormalization", [x, g.const(p + "ln2_g", w("ln2.weight")),
                                         g.const(p + "ln2_b", w("ln2.bias"))],
                  p + "ln2", axis=-1, epsilon=LAYERNORM_EPS)
        hidden = g.op("MatMul", [xn, g.const(p + "w1", w("mlp.w1"))], p + "ffn_in")  # [1,1,F]
        hidden = g.op("Add", [hidden, g.const(p + "b1", w("mlp.b1"))], p + "ffn_in_b")
        # GELU, tanh form (tpu_driver/reference_model.py): 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3)))
        cube = g.op("Mul", [g.op("Mul", [hidden, hidden], p + "gelu_sq"), hidden], p + "gelu_cube")
        inner = g.op("Add", [hidden, g.op("Mul", [cube, gelu_c3], p + "gelu_c3h3")], p + "gelu_poly")
        tanh = g.op("Tanh", [g.op("Mul", [inner, gelu_c], p + "gelu_arg")], p + "gelu_tanh")
        gate = g.op("Mul", [g.op("Add", [tanh, one], p + "gelu_1p"), half], p + "gelu_gate")
        hidden = g.op("Mul", [hidden, gate], p + "gelu")
        ffn = g.op("MatMul", [hidden, g.const(p + "w2", w("mlp.w2"))], p + "ffn_out")  # [1,1,D]
        ffn = g.op("Add", [ffn, g.const(p + "b2", w("mlp.b2"))], p + "ffn_out_b")
        x = g.op("Add", [x, ffn], f"layer{l}_out")

    xn = g.op("LayerNormalization", [x, g.const("lnf_g", f32(weight_name(None, "ln_f.weight"))),
                                     g.const("lnf_b", f32(weight_name(None, "ln_f.bias")))],
              "ln_f", axis=-1, epsilon=LAYERNORM_EPS)
    head = g.const("head", np.ascontiguousarray(f32(weight_name(None, "embedding")).T))  # [D,V]
    logits = g.op("MatMul", [xn, head], "logits_3d")  # [1,1,V]
    shape_logits = g.const("shape_logits", np.array([1, shape.vocab_size], np.int64))
    if log_probs:  # log-softmax on the TPU (lookup-table exp/log on cv18xx; tests/sim checks it)
        logits = g.op("Reshape", [logits, shape_logits], "logits_raw")  # [1,V]
        g.op("LogSoftmax", [logits], step.LOGITS, axis=-1)  # [1,V] log-probabilities
    else:
        g.op("Reshape", [logits, shape_logits], step.LOGITS)

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
              for n, s in input_specs(shape, window)]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
               for n, s in output_specs(shape)]
    if debug_outputs:
        outputs += [helper.make_tensor_value_info(f"layer{l}_out", TensorProto.FLOAT, [1, 1, d])
                    for l in range(n_layers)]  # noqa: E741
    graph = helper.make_graph(g.nodes, "edgetype_decode_step", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edgetype")
    model.ir_version = 8  # readable by the onnx 1.14 inside the tpu-mlir toolchain
    onnx.checker.check_model(model)
    return model
