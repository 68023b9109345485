"""Board latency estimator (measure/board_estimate.py): arithmetic, parsing, and the committed fit."""
import json
import math

import numpy as np
import pytest

from measure import board_estimate as be
from runtime.errors import UserError

TINY = {"vocab_size": 10, "d_model": 4, "n_layers": 1, "n_heads": 2, "d_ff": 8, "window": 3}
DEFAULT_SHAPE = {"vocab_size": 8192, "d_model": 256, "n_layers": 4, "n_heads": 4, "d_ff": 1024, "window": 128}


def test_decode_step_stats_by_hand():
    stats = be.decode_step_stats(TINY, "bf16")
    # weights: L*(4*D*D + 2*D*F) + V*D = 1*(64 + 64) + 40
    assert stats["weight_elements"] == 168
    assert stats["weight_bytes"] == 336  # bf16
    # macs: weights + L*2*D*(W+1) = 168 + 2*4*4
    assert stats["macs"] == 200
    assert stats["kv_elements"] == 2 * 1 * 4 * 3
    # default inputs all float32: x (4) + mask (3) + dist (3) + k (2*2*3) + v (12) elements
    assert stats["input_bytes"] == 4 * (4 + 3 + 3 + 12 + 12)
    assert stats["kv_copy_bytes"] == 24 * be.KV_COPY_PASSES * 2 * be.KV_COPY_BYTES
    activations = 1 * (10 * 4 + 2 * 8 + 4 * 2 * 4) * 2 + 10 * 6
    assert stats["activation_bytes"] == activations
    assert stats["moved_bytes"] == 336 + 136 + stats["kv_copy_bytes"] + activations
    assert stats["tpu_submits"] == 1 and stats["cpu_routine_elements"] == 0


def test_int8_with_float_inputs_has_cpu_quant_and_two_submits():
    stats = be.decode_step_stats(TINY, "int8")
    assert stats["weight_bytes"] == 168
    assert stats["tpu_submits"] == 2
    assert stats["cpu_routine_elements"] == 4 + 3 + 24  # x, dist, K/V windows (not mask)
    bf16_inputs = [{"name": "x", "shape": [1, 1, 4], "dtype": "bfloat16"}]
    no_float = be.decode_step_stats(TINY, "int8", bf16_inputs)
    assert no_float["tpu_submits"] == 1 and no_float["cpu_routine_elements"] == 0


def test_step_formula_terms_by_hand():
    terms = be.step_ms_from_work(chip="cv181x", quant="int8", macs=1e9, moved_bytes=3.7e6, tpu_submits=1,
                                 cpu_routine_elements=1000, efficiency=0.5)
    assert terms["memory_ms"] == pytest.approx(1.0)  # 3.7 MB at 3.7 GB/s
    assert terms["compute_ms"] == pytest.approx(4.0)  # 2 GOP at 1 TOPS * 0.5
    assert terms["submits_ms"] == pytest.approx(0.5)
    assert terms["cpu_routine_ms"] == pytest.approx(0.01)
    assert terms["step_ms"] == pytest.approx(5.51)
    bf16 = be.step_ms_from_work(chip="cv180x", quant="bf16", macs=1e9, moved_bytes=0, tpu_submits=0,
                                cpu_routine_elements=0, efficiency=1.0)
    assert bf16["compute_ms"] == pytest.approx(2e9 / (0.5e12 * 0.25) * 1e3)
    overlap = be.step_ms_from_work(chip="cv181x", quant="int8", macs=1e9, moved_bytes=3.7e6, tpu_submits=1,
                                   cpu_routine_elements=0, efficiency=0.5, combine="max")
    assert overlap["step_ms"] == pytest.approx(4.5)


def test_estimate_step_ms_labels_inputs_and_sensitivity():
    estimate = be.estimate_step_ms(be.decode_step_stats(DEFAULT_SHAPE, "bf16"), "cv181x", efficiency={"cv181x": 0.2})
    ms, assumptions = estimate  # unpacks as (number, assumptions)
    assert assumptions["label"] == be.LABEL and "step_ms =" in assumptions["formula"]
    for key in ("ddr_gbps", "int8_tops", "efficiency", "submit_ms", "macs", "moved_bytes", "quant_rate_fraction"):
        assert key in assumptions
    by_rate = assumptions["step_ms_by_bf16_rate_fraction"]
    assert by_rate["0.5"] < by_rate["0.25"] < by_rate["0.125"]
    assert by_rate["0.25"] == pytest.approx(ms, abs=1e-3)
    with pytest.raises(UserError):
        be.estimate_step_ms(be.decode_step_stats(TINY, "bf16"), "cv1835", efficiency={"cv1835": 1})


def test_estimate_step_ms_requantises_config_stats():
    stats = be.decode_step_stats(TINY, "bf16")
    as_int8 = be.estimate_step_ms(stats, "cv180x", "int8", efficiency={"cv180x": 0.1})
    assert as_int8.assumptions["weight_bytes"] == 168 and as_int8.assumptions["tpu_submits"] == 2


def test_keystroke_estimate_scalar_and_arrays():
    step = be.Estimate(2.0, {"x": 1})
    ms, assumptions = be.estimate_keystroke_ms(step, 1, 0.1, cpu_scale=50)
    assert ms == pytest.approx(2.0 + 5.0)
    assert assumptions["keystroke_ms_by_cpu_scale"] == {"30.0": 5.0, "50.0": 7.0, "100.0": 12.0}
    assert assumptions["step"] == {"x": 1}
    calls = np.array([0, 0, 1, 2])
    overhead = np.array([0.01, 0.02, 0.1, 0.2])
    per_key, assumptions = be.estimate_keystroke_ms(step, calls, overhead, cpu_scale=30)
    np.testing.assert_allclose(per_key, calls * 2.0 + overhead * 30)
    assert assumptions["forward_calls_per_keystroke"]["mean"] == pytest.approx(0.75)
    with pytest.raises(UserError):
        be.estimate_keystroke_ms(step, 1, 0.1, cpu_scale=0)


MODEL_TOOL_INFO = """\
Mlir Version: v1.30.2-20260831
For cv180x chip ONLY
CviModel Need ION Memory Size: (7.34 MB)

Sections:
ID   TYPE      NAME                     SIZE        OFFSET      MD5
000  weight    weight                   5277024     0           18f7af0bc4cef4284ad688219f8c3fa2
001  cmdbuf    subfunc_1                6912        5277024     db499d72cf738861872dee2efa1700a1

Program #0
    routines    :
     #00  cpu
        inputs  : x
        outputs : x_si8
        function: quant
     #01  tpu
        inputs  : x_si8,mask
        outputs : y
        section : subfunc_1
     #02  cpu
        inputs  : k_cache_0
        outputs : k_si8
        function: quant

    tensor_map  :
        ID   OFFSET      TYPE  N    C    H    W    QSCALE     MEM     NAME
        000  0           fp32  1    1    256  1    1.000000   io_mem  x
        001  0           fp32  1    1    1    128  1.000000   io_mem  mask
        003  0           fp32  1    4    64   128  1.000000   io_mem  k_cache_0
"""


def test_parse_model_tool_info():
    info = be.parse_model_tool_info(MODEL_TOOL_INFO)
    assert info["weight_bytes"] == 5277024
    assert info["tpu_routines"] == 1 and info["cpu_routines"] == 2
    assert info["cpu_functions"] == ["quant"]
    assert info["cpu_routine_elements"] == 256 + 4 * 64 * 128
    assert info["ion_bytes"] == round(7.34 * (1 << 20))


def test_bundle_step_stats_from_manifest(tmp_path):
    manifest = {"chip": "cv180x", "quant": "int8", "window": 3, "config": TINY, "ion_bytes": 123,
                "inputs": [{"name": "x", "shape": [1, 1, 4], "dtype": "float32"},
                           {"name": "mask", "shape": [1, 1, 1, 3], "dtype": "float32"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    stats = be.bundle_step_stats(tmp_path)
    assert stats["chip"] == "cv180x" and stats["quant"] == "int8"
    assert stats["input_bytes"] == 4 * 7 and stats["cpu_routine_elements"] == 4
    estimate = be.estimate_step_ms(tmp_path, efficiency={"cv180x": 0.05})
    assert estimate.assumptions["chip"] == "cv180x" and estimate.ms > 2 * be.SUBMIT_MS


def test_missing_calibration_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="calibrate-estimate"):
        be.load_calibration(tmp_path / "absent.json")


def test_committed_calibration_reproduces_its_rows():
    """models/estimate_calibration.json must agree with the formula in this code."""
    data = be.load_calibration()
    efficiency = data["fit"]["efficiency"]
    assert all(0 < e <= 1 for e in efficiency.values())
    variant = data["variants"][data["fit"]["variant"]]
    assert variant["efficiency"] == efficiency
    rows = {(r["chip"], r["network"]): r for r in variant["rows"]}
    assert len(rows) == 4
    for net in data["networks"]:
        terms = be.step_ms_from_work(chip=net["chip"], quant="int8", macs=net["macs"], moved_bytes=net["moved_bytes"],
                                     tpu_submits=max(net["tpu_routines"], 1),
                                     cpu_routine_elements=net["cpu_routine_elements"] * variant["cpu_routines_counted"],
                                     efficiency=efficiency[net["chip"]])
        assert terms["step_ms"] == pytest.approx(rows[(net["chip"], net["network"])]["estimate_ms"], abs=0.001)
        assert math.isclose(net["published_ms"], rows[(net["chip"], net["network"])]["published_ms"])


@pytest.mark.parametrize("bundle", ["cv181x-int8-w128", "cv180x-int8-w128"])
def test_shipped_bundles_estimate(bundle):
    from pathlib import Path

    directory = Path(__file__).resolve().parents[1] / "models" / "bundles" / bundle
    ms, assumptions = be.estimate_step_ms(directory)
    assert assumptions["chip"] == bundle.split("-")[0]
    assert assumptions["memory_ms"] > 0 and assumptions["compute_ms"] > 0
    assert assumptions["submits_ms"] == pytest.approx(assumptions["submit_ms"] * assumptions["tpu_submits"])
    assert ms == pytest.approx(assumptions["submits_ms"] + assumptions["memory_ms"]
                               + assumptions["compute_ms"] + assumptions["cpu_routine_ms"], abs=1e-3)


def test_efficiency_sensitivity_grows_the_step():
    _, assumptions = be.estimate_step_ms(be.decode_step_stats(DEFAULT_SHAPE, "int8"), "cv180x",
                                         efficiency={"cv180x": 0.05})
    by_scale = assumptions["step_ms_by_efficiency_scale"]
    assert by_scale["1.0"] < by_scale["0.5"] < by_scale["0.1"]
    by_ns = assumptions["step_ms_by_cpu_ns_per_element"]
    assert by_ns["5.0"] < by_ns["10.0"] < by_ns["20.0"]


def test_mixed_int8_bundle_counts_its_bf16_weights_at_two_bytes():
    from measure.board_estimate import decode_step_stats, weight_matrices
    config = {"vocab_size": 100, "d_model": 8, "n_layers": 2, "n_heads": 2, "d_ff": 16, "window": 4}
    plain = decode_step_stats(config, "int8")
    mixed = decode_step_stats(config, "int8", bf16_weights=r"head|l[0-9]+_w2")
    extra = 100 * 8 + 2 * 16 * 8  # head + both W2 matrices, one more byte each
    assert mixed["weight_bytes"] - plain["weight_bytes"] == extra
    assert mixed["moved_bytes"] - plain["moved_bytes"] == extra
    assert sum(weight_matrices(100, 8, 2, 16).values()) == plain["weight_elements"]
    assert decode_step_stats(config, "bf16", bf16_weights="head")["weight_bytes"] == decode_step_stats(config, "bf16")["weight_bytes"]


def test_self_split_bf16_window_moves_no_kv_copy():
    """Issue #15: the K/V window in BF16 at the boundary, no Concat copy: read once, 2 bytes/element."""
    H, hd, W = 2, 2, 3
    inputs = [{"name": "x", "shape": [1, 1, 4], "dtype": "float32"},
              {"name": "mask", "shape": [1, 1, 1, W], "dtype": "float32"},
              {"name": "dist", "shape": [1, 1, 1, W], "dtype": "float32"},
              {"name": "k_cache_0", "shape": [1, H, hd, W], "dtype": "bfloat16"},
              {"name": "v_cache_0", "shape": [1, H, W, hd], "dtype": "bfloat16"}]
    old = be.decode_step_stats(TINY, "bf16")  # concat graph, float32 caches
    new = be.decode_step_stats(TINY, "bf16", inputs, decode_step={"attention": "self-split"})
    assert old["kv_copy_passes"] == 2 and new["kv_copy_passes"] == 0 and new["kv_copy_bytes"] == 0
    assert new["input_bytes"] == 4 * (4 + 3 + 3) + 2 * 24
    assert old["moved_bytes"] - new["moved_bytes"] == 2 * 24 + old["kv_copy_bytes"]
    fp32_split = be.decode_step_stats(TINY, "bf16", decode_step={"attention": "self-split"})
    assert fp32_split["kv_copy_passes"] == 1  # the cast copy remains
    assert be.decode_step_stats(TINY, "bf16", inputs, decode_step={"attention": "concat"})["kv_copy_passes"] == 1
    with pytest.raises(UserError):
        be.decode_step_stats(TINY, "bf16", inputs, decode_step={"attention": "flash"})


def test_compiled_routines_replace_the_analytic_submits():
    routines = {"tpu_routines": 1, "cpu_routines": 0, "cpu_routine_elements": 0}
    analytic = be.decode_step_stats(TINY, "int8")
    compiled = be.decode_step_stats(TINY, "int8", decode_step={"compiled_routines": routines})
    assert analytic["tpu_submits"] == 2 and compiled["tpu_submits"] == 1 and compiled["cpu_routine_elements"] == 0
    assert compiled["routines_source"].startswith("compiled")
    log_probs = be.decode_step_stats(TINY, "bf16", logits_are_log_probs=True)
    assert log_probs["activation_bytes"] - be.decode_step_stats(TINY, "bf16")["activation_bytes"] == 10 * 4


def test_prefill_chunk_estimate_reads_the_weights_once_per_chunk():
    stats = be.decode_step_stats(DEFAULT_SHAPE, "bf16")
    stats["chip"] = "cv181x"
    eff = {"cv181x": 0.3, "cv180x": 0.05}
    step = be.estimate_step_ms(stats, efficiency=eff)
    one = be.estimate_prefill_ms(stats, tokens=7, chunk=1, efficiency=eff)
    assert one.ms == pytest.approx(7 * step.ms, rel=1e-3)  # chunk 1 is the decode step
    chunked = be.estimate_prefill_ms(stats, tokens=32, chunk=16, efficiency=eff)
    a = chunked.assumptions
    assert a["chunks"] == 2 and a["speedup"] > 4
    by_hand = 0.5 + (stats["weight_bytes"] + stats["input_bytes"] + stats["kv_copy_bytes"]
                     + 16 * stats["activation_bytes"]) / 3.7e6 + 16 * step.assumptions["compute_ms"]
    assert a["chunk_forward_ms"] == pytest.approx(by_hand, rel=1e-3)
    with pytest.raises(UserError):
        be.estimate_prefill_ms(stats, tokens=0, chunk=4, efficiency=eff)
