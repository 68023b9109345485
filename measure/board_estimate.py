"""Board latency ESTIMATOR: time on a Milk-V Duo / Duo 256M, from shapes, never a measurement.

EVALUATION.md "Board estimate". One forward (decode step) on the board is estimated as

    step_ms = tpu_submits * SUBMIT_MS                              # CVI_NN_Forward / TPU routine submits
            + moved_bytes / ddr_bytes_per_ms                       # weights + K/V + activations through DDR
            + 2 * macs / (int8_ops_per_ms * quant_rate * efficiency[chip])   # TIU work at the achieved rate
            + cpu_routine_elements * CPU_QUANT_NS_PER_ELEMENT * 1e-6         # CPU routines inside the cvimodel

and one keystroke as `forward_calls * step_ms + host_overhead_ms * cpu_scale` (our Python/numpy
runtime measured on the host, scaled for the C906 @ 1 GHz). Memory and compute add (no overlap):
that variant fits the vendor's published timings better than max() (docs/board-estimate.md).
`efficiency[chip]` (the achieved fraction of the INT8 peak) is the only fitted parameter, one per
chip, fitted by `edgetype bench calibrate-estimate` on resnet18 + mobilenet_v2 compiled for that
chip against the vendor's published board times; it is read from models/estimate_calibration.json.
Every function returns its number together with an `assumptions` dict: all inputs, constants and
the formula as a string. numpy + stdlib only (imports on the board; no toolchain).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from runtime.errors import UserError
from runtime.percentiles import percentiles
from tpu_driver import decode_step as step_spec

LABEL = "ESTIMATE, not a measurement"
CALIBRATION_PATH = Path(__file__).resolve().parents[1] / "models" / "estimate_calibration.json"

# Board facts (PLATFORM.md). Peak rates are the vendor's marketing INT8 TOPS (TPU at 500 MHz).
BOARDS = {
    "cv180x": {"board": "Milk-V Duo (CV1800B)", "int8_tops": 0.5, "ddr_gbps": 2.7, "memory": "64 MB DDR2"},
    "cv181x": {"board": "Milk-V Duo 256M (SG2002)", "int8_tops": 1.0, "ddr_gbps": 3.7, "memory": "256 MB DDR3"},
}
# BF16 MAC rate as a fraction of the INT8 rate: NOT published for cv18xx; ASSUMED 1/4 (a bf16 MAC
# needs ~2x the datapath width of an int8 MAC and a multi-cycle multiply). Sensitivity 1/2 .. 1/8
# is printed with every BF16 estimate.
QUANT_RATE_FRACTION = {"int8": 1.0, "bf16": 0.25}
BF16_RATE_SENSITIVITY = (0.5, 0.25, 0.125)
BYTES_PER_WEIGHT = {"int8": 1, "bf16": 2}
SUBMIT_MS = 0.5  # per TPU submit (PLATFORM.md: 250-650 us measured on CV1800B even for tiny work)
# A cvimodel can hold CPU routines (e.g. `quant`: fp32 input -> int8) that run on the C906 inside
# CVI_NN_Forward. ASSUMED cost per element of the vendor's scalar C loop (load, scale, round,
# saturate, store at ~1 GHz, in-order): 10 ns; sensitivity 5 .. 20 ns is printed.
CPU_QUANT_NS_PER_ELEMENT = 10.0
CPU_QUANT_NS_SENSITIVITY = (5.0, 10.0, 20.0)
EFFICIENCY_SCALE_SENSITIVITY = (1.0, 0.5, 0.1)
# C906 @ 1 GHz vs this x86 host for our Python+numpy keystroke path: PLATFORM.md says ~30-100x;
# we take 50x and print 30x and 100x next to it.
DEFAULT_CPU_SCALE = 50.0
CPU_SCALE_SENSITIVITY = (30.0, 50.0, 100.0)
# K/V window traffic per element per step, read off the compiled bundles' tensor maps
# (`model_tool --info`). The window input is read once at its own dtype; on top of that, each
# 2-byte on-chip copy of it is written and read once:
# - "concat" attention (K/V caches concatenated with the new key/value, bundles before issue #15):
#   a cast copy when the caches are float32, plus the Concat copy: 2 passes (fp32) or 1 (bf16);
# - "self-split" attention (model_export/onnx_graph.py): no Concat copy: 1 pass (fp32 cast) or 0 (bf16).
KV_COPY_PASSES = 2  # the "concat" graph with float32 caches (the default when a manifest says nothing)
KV_COPY_PASSES_BY_FORM = {("concat", True): 2, ("concat", False): 1, ("self-split", True): 1,
                          ("self-split", False): 0}  # (attention form, caches float32) -> passes
KV_COPY_BYTES = 2

STEP_FORMULA = ("step_ms = tpu_submits*submit_ms + moved_bytes/(ddr_gbps*1e6) + 2*macs/(int8_tops*1e9*"
                "quant_rate_fraction*efficiency[chip]) + cpu_routine_elements*cpu_ns_per_element*1e-6")
KEYSTROKE_FORMULA = "keystroke_ms = forward_calls_per_keystroke*step_ms + host_overhead_ms*cpu_scale"


class Estimate(NamedTuple):
    ms: object  # float, or an ndarray when the inputs were arrays
    assumptions: dict


# ------------------------------------------------------------------------------- stats input ---

def normalise_quant(quant: str) -> str:
    q = str(quant).lower()
    if q not in QUANT_RATE_FRACTION:
        raise UserError(f"quantization {quant!r}: the board estimate knows {', '.join(QUANT_RATE_FRACTION)}")
    return q


def check_chip(chip: str) -> str:
    if chip not in BOARDS:
        raise UserError(f"chip {chip!r}: the board estimate knows {', '.join(BOARDS)}")
    return chip


_DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "int8": 1, "uint8": 1, "int16": 2,
                "uint16": 2, "int32": 4}


def weight_matrices(V: int, D: int, L: int, F: int) -> dict[str, int]:
    """Element count of each weight matrix of the decode step, by its ONNX initializer name."""
    sizes = {"head": V * D}
    for layer in range(L):
        sizes.update({f"l{layer}_wq": D * D, f"l{layer}_wk": D * D, f"l{layer}_wv": D * D,
                      f"l{layer}_wo": D * D, f"l{layer}_w1": D * F, f"l{layer}_w2": F * D})
    return sizes


def decode_step_stats(config: dict, quant: str, inputs: list | None = None,
                      bf16_weights: str | None = None, decode_step: dict | None = None,
                      logits_are_log_probs: bool = False) -> dict:
    """Work of one decode step (docs/design.md graph), analytic from the config.

    config: vocab_size V, d_model D, n_layers L, n_heads H, d_ff F, window W.
    inputs: the manifest's [{name, shape, dtype}] (their dtype sets the bytes the TPU reads);
    default: every input float32 with the design.md shapes.
      weight_elements = L*(4*D*D + 2*D*F) + V*D          (Wq,Wk,Wv,Wo,W1,W2; tied head; LN ignored)
      macs            = weight_elements + L*2*D*(W+1)    (matrix x vector, then q.K and p.V over W+1 keys)
      kv_elements     = 2*L*D*W                          (K and V windows, read every step)
      moved_bytes     = weight_elements*bytes(quant)     (every weight read once per step)
                      + input_bytes + kv_elements*KV_COPY_PASSES*2*KV_COPY_BYTES
                      + L*(10*D + 2*F + 4*H*(W+1))*2 + V*(2+4)   (activations, logits bf16 + f32 out)
    For an INT8 model with float32 inputs the compiler quantizes those inputs in CPU routines and
    splits the TPU work in two submits (seen in `model_tool --info` of cv180x-int8-w128); else 1.
    bf16_weights: in a mixed INT8 model, a regex of the weight matrices kept in BF16 (the
    manifest's `calibration.bf16_matmul_weights`, e.g. "head|l[0-9]+_w2"): those cost 2 bytes.
    decode_step: the manifest's `decode_step` ({attention, kv_cache_dtype, compiled_routines}):
    the attention form and the caches' dtype set KV_COPY_PASSES (KV_COPY_PASSES_BY_FORM); the
    compiled routines (read from `model_tool --info` at export) replace the analytic submit and
    CPU-routine counts. logits_are_log_probs: the graph ends in LogSoftmax (+ one bf16 read and
    write of the V logits).
    """
    quant = normalise_quant(quant)
    try:
        V, D, L, H, F, W = (int(config[k]) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "window"))
    except KeyError as missing:
        raise UserError(f"config lacks {missing}; the board estimate needs vocab_size, d_model, n_layers, "
                        "n_heads, d_ff, window") from None
    if inputs is None:
        shape = step_spec.ModelConfig(vocab_size=V, d_model=D, n_layers=L, n_heads=H, d_ff=F, window=W)
        inputs = [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in step_spec.input_specs(shape)]
    weight_elements = L * (4 * D * D + 2 * D * F) + V * D
    macs = weight_elements + L * 2 * D * (W + 1)
    kv_elements = 2 * L * D * W
    input_bytes, float_input_elements = 0, 0
    kv_float32 = True
    for spec in inputs:
        elements = math.prod(int(d) for d in spec["shape"])
        dtype = str(spec.get("dtype", "float32")).lower()
        if dtype not in _DTYPE_BYTES:
            raise UserError(f"input {spec.get('name')!r} has dtype {dtype!r} the board estimate does not know")
        input_bytes += elements * _DTYPE_BYTES[dtype]
        if dtype in ("float32", "fp32") and spec.get("name") != step_spec.MASK:  # mask feeds a bf16 Add on the TPU
            float_input_elements += elements
        if str(spec.get("name", "")).startswith("k_cache_"):
            kv_float32 = dtype in ("float32", "fp32")
    decode_step = decode_step or {}
    attention = decode_step.get("attention") or "concat"
    if (attention, kv_float32) not in KV_COPY_PASSES_BY_FORM:
        raise UserError(f"decode_step.attention {attention!r}: the board estimate knows "
                        f"{', '.join(sorted({a for a, _ in KV_COPY_PASSES_BY_FORM}))}")
    kv_copy_passes = KV_COPY_PASSES_BY_FORM[(attention, kv_float32)]
    activation_bytes = L * (10 * D + 2 * F + 4 * H * (W + 1)) * 2 + V * (2 + 4) + (V * 4 if logits_are_log_probs else 0)
    bf16_weight_elements = 0
    if quant == "int8" and bf16_weights:
        pattern = re.compile(bf16_weights)
        bf16_weight_elements = sum(n for name, n in weight_matrices(V, D, L, F).items() if pattern.fullmatch(name))
    weight_bytes = weight_elements * BYTES_PER_WEIGHT[quant] + bf16_weight_elements * (2 - BYTES_PER_WEIGHT[quant])
    kv_copy_bytes = kv_elements * kv_copy_passes * 2 * KV_COPY_BYTES
    int8_float_inputs = quant == "int8" and float_input_elements > 0
    tpu_submits = 2 if int8_float_inputs else 1
    cpu_routine_elements = int(float_input_elements) if int8_float_inputs else 0
    routines_source = "analytic (an INT8 model with float32 inputs: CPU quant routines, 2 TPU routines)"
    compiled_routines = decode_step.get("compiled_routines")
    if compiled_routines:
        tpu_submits = int(compiled_routines["tpu_routines"])
        cpu_routine_elements = int(compiled_routines["cpu_routine_elements"])
        routines_source = "compiled (manifest decode_step.compiled_routines, from model_tool --info)"
    return {
        "source": "analytic decode step (measure/board_estimate.py decode_step_stats)",
        "quant": quant, "config": {"vocab_size": V, "d_model": D, "n_layers": L, "n_heads": H, "d_ff": F, "window": W},
        "macs": int(macs), "weight_elements": int(weight_elements), "weight_bytes": int(weight_bytes),
        "bf16_weight_elements": int(bf16_weight_elements), "bf16_weights": bf16_weights if bf16_weight_elements else None,
        "kv_elements": int(kv_elements), "input_bytes": int(input_bytes), "kv_copy_bytes": int(kv_copy_bytes),
        "kv_copy_passes": kv_copy_passes, "attention": attention, "kv_cache_float32": kv_float32,
        "logits_are_log_probs": bool(logits_are_log_probs),
        "activation_bytes": int(activation_bytes),
        "moved_bytes": int(weight_bytes + input_bytes + kv_copy_bytes + activation_bytes),
        "tpu_submits": tpu_submits,
        "cpu_routine_elements": cpu_routine_elements,
        "routines_source": routines_source,
    }


def bundle_step_stats(bundle) -> dict:
    """Decode-step stats of a bundle: a `runtime.bundle.Bundle` or a bundle folder (manifest.json +
    config.json). Returns decode_step_stats(...) plus chip, quant and the bundle path."""
    if hasattr(bundle, "manifest") and hasattr(bundle, "dir"):
        directory, manifest = Path(bundle.dir), dict(bundle.manifest or {})
    else:
        directory = Path(bundle)
        manifest = _read_json(directory / "manifest.json") if (directory / "manifest.json").is_file() else {}
    config = dict(manifest.get("config") or {})
    if (directory / "config.json").is_file():
        config.update(_read_json(directory / "config.json"))
    if not config:
        raise UserError(f"{directory}: no config.json or manifest config; the board estimate needs the model shape")
    if "window" in manifest:
        config["window"] = manifest["window"]
    quant = str(manifest.get("quant") or "bf16").lower()
    inputs = manifest.get("inputs") or None
    bf16_weights = (manifest.get("calibration") or {}).get("bf16_matmul_weights")
    stats = decode_step_stats(config, quant, inputs, bf16_weights, manifest.get("decode_step"),
                              bool(manifest.get("logits_are_log_probs")))
    stats.update({"chip": manifest.get("chip"), "bundle": str(directory), "ion_bytes": manifest.get("ion_bytes")})
    return stats


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON ({error}); re-create it") from None


# --------------------------------------------------------------------------- compiled models ---

def parse_model_tool_info(text: str) -> dict:
    """Read `model_tool --info X.cvimodel` output: weight section bytes, TPU/CPU routines, ION size.

    cpu_routine_elements sums the elements of the inputs of every `cpu` routine (tensor_map shapes).
    """
    weight_bytes = sum(int(m.group(1)) for m in re.finditer(r"^\s*\d+\s+weight\s+\S+\s+(\d+)", text, re.M))
    shapes = {}
    for m in re.finditer(r"^\s*\d+\s+\d+\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+(\S+)\s*$", text, re.M):
        shapes.setdefault(m.group(6), int(m.group(2)) * int(m.group(3)) * int(m.group(4)) * int(m.group(5)))
    tpu, cpu, cpu_elements, cpu_functions = 0, 0, 0, []
    for m in re.finditer(r"#\d+\s+(tpu|cpu)\s*\n\s*inputs\s*:\s*(\S*)\s*\n(?:.*\n){1,2}?\s*(?:function|section)\s*:\s*(\S+)",
                         text):
        if m.group(1) == "tpu":
            tpu += 1
        else:
            cpu += 1
            cpu_functions.append(m.group(3))
            cpu_elements += sum(shapes.get(name, 0) for name in m.group(2).split(",") if name)
    ion = re.search(r"Need ION Memory Size:\s*\(?\s*([0-9.]+)\s*(MB|KB|B)", text)
    ion_bytes = int(round(float(ion.group(1)) * {"MB": 1 << 20, "KB": 1 << 10, "B": 1}[ion.group(2)])) if ion else None
    return {"weight_bytes": weight_bytes, "tpu_routines": tpu, "cpu_routines": cpu,
            "cpu_functions": sorted(set(cpu_functions)), "cpu_routine_elements": cpu_elements, "ion_bytes": ion_bytes}


# ------------------------------------------------------------------------------ calibration ---

def load_calibration(path: Path | None = None) -> dict:
    """The committed fit (models/estimate_calibration.json): {"efficiency": {chip: fraction}, ...}."""
    path = Path(path) if path else CALIBRATION_PATH
    if not path.is_file():
        raise UserError(f"{path} is missing; run `edgetype bench calibrate-estimate` (host, needs the toolchain)")
    data = _read_json(path)
    efficiency = (data.get("fit") or {}).get("efficiency")
    if not efficiency or not all(chip in efficiency for chip in BOARDS):
        raise UserError(f"{path} has no fit.efficiency for {', '.join(BOARDS)}; re-run `edgetype bench calibrate-estimate`")
    return data


def step_ms_from_work(*, chip: str, quant: str, macs: float, moved_bytes: float, tpu_submits: int,
                      cpu_routine_elements: float, efficiency: float, quant_rate_fraction: float | None = None,
                      cpu_ns_per_element: float = CPU_QUANT_NS_PER_ELEMENT, combine: str = "sum") -> dict:
    """The step formula on explicit work numbers; returns every term in ms.

    combine="sum" (the estimator) adds memory and compute time; "max" (for comparison) takes the larger.
    """
    board = BOARDS[check_chip(chip)]
    quant = normalise_quant(quant)
    rate = QUANT_RATE_FRACTION[quant] if quant_rate_fraction is None else quant_rate_fraction
    memory_ms = moved_bytes / (board["ddr_gbps"] * 1e6)
    compute_ms = 2.0 * macs / (board["int8_tops"] * 1e9 * rate * efficiency)
    submits_ms = tpu_submits * SUBMIT_MS
    cpu_ms = cpu_routine_elements * cpu_ns_per_element * 1e-6
    if combine == "sum":
        device_ms = memory_ms + compute_ms
    elif combine == "max":
        device_ms = max(memory_ms, compute_ms)
    else:
        raise ValueError(f"combine={combine!r}")
    return {"step_ms": submits_ms + device_ms + cpu_ms, "submits_ms": submits_ms, "memory_ms": memory_ms,
            "compute_ms": compute_ms, "cpu_routine_ms": cpu_ms}


def estimate_step_ms(bundle_or_stats, chip: str | None = None, quant: str | None = None, *,
                     efficiency: dict | None = None, calibration_path: Path | None = None) -> Estimate:
    """ESTIMATE of one forward (decode step) on the board, in ms, with its assumptions.

    bundle_or_stats: a Bundle, a bundle folder, or a stats dict (decode_step_stats / bundle_step_stats).
    chip/quant: default to the bundle's; a host-only bundle (no chip) must be given a chip.
    efficiency: {chip: fraction of INT8 peak}; default: the committed calibration.
    """
    if isinstance(bundle_or_stats, dict):
        stats = dict(bundle_or_stats)
    else:
        stats = bundle_step_stats(bundle_or_stats)
    chip = check_chip(chip or stats.get("chip") or "")
    quant = normalise_quant(quant or stats.get("quant") or "bf16")
    if stats.get("quant") and normalise_quant(stats["quant"]) != quant and "config" in stats:
        stats = {**decode_step_stats(stats["config"], quant), "chip": stats.get("chip"), "bundle": stats.get("bundle")}
    calibration_source = "argument"
    if efficiency is None:
        calibration = load_calibration(calibration_path)
        efficiency = calibration["fit"]["efficiency"]
        calibration_source = str(calibration_path or CALIBRATION_PATH)
    work = {k: stats[k] for k in ("macs", "moved_bytes", "tpu_submits", "cpu_routine_elements")}
    terms = step_ms_from_work(chip=chip, quant=quant, efficiency=float(efficiency[chip]), **work)
    sensitivity = {}
    if quant == "bf16":
        sensitivity["step_ms_by_bf16_rate_fraction"] = {
            str(f): round(step_ms_from_work(chip=chip, quant=quant, efficiency=float(efficiency[chip]),
                                            quant_rate_fraction=f, **work)["step_ms"], 3)
            for f in BF16_RATE_SENSITIVITY}
    # The efficiency was fitted on convolutions; a decode step is matrix x vector, which may use
    # the TIU worse: show the step at 1/2 and 1/10 of the fitted efficiency.
    sensitivity["step_ms_by_efficiency_scale"] = {
        str(scale): round(step_ms_from_work(chip=chip, quant=quant, efficiency=float(efficiency[chip]) * scale,
                                            **work)["step_ms"], 3)
        for scale in EFFICIENCY_SCALE_SENSITIVITY}
    if work["cpu_routine_elements"]:
        sensitivity["step_ms_by_cpu_ns_per_element"] = {
            str(ns): round(step_ms_from_work(chip=chip, quant=quant, efficiency=float(efficiency[chip]),
                                             cpu_ns_per_element=ns, **work)["step_ms"], 3)
            for ns in CPU_QUANT_NS_SENSITIVITY}
    board = BOARDS[chip]
    assumptions = {
        "label": LABEL, "formula": STEP_FORMULA, "chip": chip, "board": board["board"], "quant": quant,
        "int8_tops": board["int8_tops"], "ddr_gbps": board["ddr_gbps"],
        "quant_rate_fraction": QUANT_RATE_FRACTION[quant],
        "quant_rate_fraction_note": "BF16 rate ASSUMED 1/4 of INT8 (not published)" if quant == "bf16" else "INT8 peak",
        "efficiency": float(efficiency[chip]), "efficiency_source": calibration_source,
        "efficiency_note": "achieved fraction of the INT8 peak, FITTED on resnet18+mobilenet_v2 (vendor board times)",
        "submit_ms": SUBMIT_MS, "cpu_ns_per_element": CPU_QUANT_NS_PER_ELEMENT,
        **{k: v for k, v in stats.items() if k not in ("chip",)},
        **{k: round(v, 4) for k, v in terms.items()},
        **sensitivity,
    }
    return Estimate(round(terms["step_ms"], 4), assumptions)


PREFILL_FORMULA = ("decode: tokens*step_ms;  chunk graph of C tokens: ceil(tokens/C)*(tpu_submits*submit_ms + "
                   "(weight_bytes + input_bytes + kv_copy_bytes + C*activation_bytes)/ddr + C*compute_ms + cpu_ms)")


def estimate_prefill_ms(bundle_or_stats, tokens: int, chunk: int, *, efficiency: dict | None = None,
                        calibration_path: Path | None = None) -> Estimate:
    """ESTIMATE: feeding `tokens` tokens at once (a paste, a session restored) one decode step each
    versus a prefill-chunk graph of `chunk` tokens per forward (issue #15 item 4; not built).

    A chunk forward reads every weight and the K/V window once for its C tokens; activations and
    MACs scale with C (the attention inside the chunk, C*C*D, is left out: small next to the
    weights for C <= 32). Returns the chunked time; the assumptions carry the decode-step time too.
    """
    if tokens < 1 or chunk < 1:
        raise UserError(f"tokens {tokens} and chunk {chunk} must be >= 1")
    step = estimate_step_ms(bundle_or_stats, efficiency=efficiency, calibration_path=calibration_path)
    a = step.assumptions
    board = BOARDS[a["chip"]]
    bytes_per_ms = board["ddr_gbps"] * 1e6
    per_chunk_bytes = a["weight_bytes"] + a["input_bytes"] + a["kv_copy_bytes"] + chunk * a["activation_bytes"]
    chunk_ms = (a["tpu_submits"] * SUBMIT_MS + per_chunk_bytes / bytes_per_ms + chunk * a["compute_ms"]
                + a["cpu_routine_ms"])
    chunks = math.ceil(tokens / chunk)
    decode_ms = tokens * float(step.ms)
    chunked_ms = chunks * chunk_ms
    return Estimate(round(chunked_ms, 3), {
        "label": LABEL, "formula": PREFILL_FORMULA, "chip": a["chip"], "quant": a["quant"], "tokens": tokens,
        "chunk": chunk, "chunks": chunks, "chunk_forward_ms": round(chunk_ms, 4), "step_ms": float(step.ms),
        "decode_ms": round(decode_ms, 3), "chunked_ms": round(chunked_ms, 3),
        "speedup": round(decode_ms / chunked_ms, 2), "step": a})


def estimate_keystroke_ms(step_stats, forward_calls_per_keystroke, host_overhead_ms,
                          cpu_scale: float = DEFAULT_CPU_SCALE) -> Estimate:
    """ESTIMATE per keystroke on the board: forward_calls * step_ms + host_overhead_ms * cpu_scale.

    step_stats: an Estimate from estimate_step_ms (or its step ms as a number).
    forward_calls_per_keystroke, host_overhead_ms: numbers or equal-length arrays (one per keystroke,
    as measured on the host); the result has the same form. The assumptions carry the formula, the
    inputs (summarised for arrays) and the result at cpu_scale 30x / 50x / 100x.
    """
    if isinstance(step_stats, Estimate):
        step_ms, step_assumptions = float(step_stats.ms), step_stats.assumptions
    elif isinstance(step_stats, (int, float, np.floating)):
        step_ms, step_assumptions = float(step_stats), None
    else:
        raise TypeError("step_stats: pass the Estimate returned by estimate_step_ms (or a step time in ms)")
    if not cpu_scale > 0:
        raise UserError(f"cpu_scale {cpu_scale}: use a positive factor (PLATFORM.md: ~30-100)")
    scalar = np.ndim(forward_calls_per_keystroke) == 0 and np.ndim(host_overhead_ms) == 0
    calls = np.asarray(forward_calls_per_keystroke, dtype=np.float64)
    overhead = np.asarray(host_overhead_ms, dtype=np.float64)
    if calls.shape != overhead.shape and not scalar and calls.ndim and overhead.ndim:
        raise ValueError(f"forward_calls {calls.shape} and host_overhead_ms {overhead.shape} differ in shape")

    def at(scale: float):
        return calls * step_ms + overhead * scale

    def summary(values):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0:
            return round(float(values), 4)
        return {**percentiles(values, (50, 95)),
                "mean": round(float(values.mean()), 4)}

    result = at(cpu_scale)
    assumptions = {
        "label": LABEL, "formula": KEYSTROKE_FORMULA, "step_ms": step_ms, "cpu_scale": cpu_scale,
        "cpu_scale_note": "C906 @ 1 GHz vs this host for Python+numpy: ASSUMED (PLATFORM.md: ~30-100x)",
        "forward_calls_per_keystroke": summary(calls), "host_overhead_ms": summary(overhead),
        "keystroke_ms_by_cpu_scale": {str(s): summary(at(s)) for s in CPU_SCALE_SENSITIVITY},
        "step": step_assumptions,
    }
    return Estimate(round(float(result), 4) if scalar else result, assumptions)
