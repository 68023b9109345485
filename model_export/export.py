"""Export a trained model to a bundle: ONNX decode step, tpu-mlir compile, manifest, golden data.

    edgetype export --chip cv181x|cv180x --quant bf16|int8 --window W [--model models/default]
                    -o DIR [--keep-intermediates DIR]

Steps: load the model folder (config.json, weights.npz, tokenizer.json); estimate the ION the
compiled step needs and refuse a window too big for the chip; build the ONNX graph
(model_export/onnx_graph.py) and check it with onnxruntime against tpu_driver/reference_model.py on
validation tokens; for INT8 collect calibration inputs by running the ONNX step over held-out
validation text; compile through the compile cache (model_export/compile_cache.py); read the
compiled tensors and the ION size back (`model_tool --info`); write manifest.json and golden.json.
The bundle is built in a temp folder beside DIR and renamed into place at the end.
`--chip none` writes an onnx-only bundle (no cvimodel; onnx and numpy backends only).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_export.verify import VERIFY_PARAGRAPH, cmodel_check, validation_tokens
from runtime.bundle import ION_LIMIT_BYTES, VOCAB_ORDER_FILE, seal_manifest, sha256_file
from runtime.errors import UserError
from tpu_driver import decode_step

CHIPS = ("cv180x", "cv181x")
QUANTS = ("bf16", "int8")
# cv18xx gives only the first 5 graph tensors their own io memory (tpu-mlir CVAddressAssign:
# `io_outs.size() < 5`); the other inputs live in the private region, where the allocator reuses
# an input's bytes for later tensors once the input is consumed: k_cache_1 was overwritten by the
# outputs during every forward, so a K/V window written one slot per step (kv_window, engine) got
# corrupted. Turning memory reuse off keeps every input intact across forwards (costs ~1 MB of
# activations). model_deploy has no flag for it; its --iomem_set value is pasted unquoted into
# `--address-assign="iomem_set=..."`, so this passes `reuse_addr=false` to that pass.
# tests/sim/test_export_sim.py checks that inputs survive a forward.
DEPLOY_ARGS = ("--iomem_set", " reuse_addr=false")


def kv_boundary_deploy_args(shape) -> tuple:
    """model_deploy options that keep the K/V cache inputs in BF16 at the graph boundary.

    `--quant_input --quant_input_list i,j,..` strips the fp32 -> bf16 input casts of those inputs
    (1-based, graph order), so the cvimodel's k_cache_*/v_cache_* are BF16 tensors the runtime
    writes directly (tpu_driver.tensor converts one slot per step) and the TPU reads 2 bytes per
    element instead of reading 4 and writing and re-reading a 2-byte copy. In the INT8 model the
    caches feed only the activation x activation MatMuls, which cv18xx runs in BF16, so they are
    BF16 there too (tests/sim checks the compiled dtypes of both chips).
    """
    from model_export import onnx_graph

    positions = ",".join(str(i) for i in onnx_graph.kv_cache_input_positions(shape))
    return ("--quant_input", "--quant_input_list", positions)
# INT8 keeps weights INT8 but runs the activation-only ops in BF16 (cv18xx mixes per op through
# model_deploy --quantize_table): LayerNorm, softmax, the residual adds, GELU's pointwise ops, the
# ALiBi bias. INT8 residual adds and LayerNorm outputs lost most of the accuracy (verify --debug:
# layer-1 query cosine 0.97); with this table logits min cosine went 0.986 -> 0.997 over 64 steps
# at the same ION (7.4 MB). The tensor names are tpu-mlir's "<onnx output>_<OpType>".
# Concat/Slice (the small score rows of the self-split attention) and the final LogSoftmax stay
# BF16 too: an INT8 Concat would quantize the attention scores before the softmax.
BF16_OP_TYPES_IN_INT8 = ("Add", "Mul", "LayerNormalization", "Softmax", "Tanh", "Concat", "Slice", "LogSoftmax")
# The activation x activation MatMuls (scores and values against the K/V caches) run in BF16 on
# cv18xx anyway (PLATFORM.md); naming them keeps that explicit (their tpu-mlir names are
# "<onnx output>_MatMul": no weight, so no Gemm renaming).
BF16_ACTIVATION_MATMULS = ("scores_cache", "score_self", "ctx_cache")
# INT8 MatMuls kept in BF16, chosen by the name of their weight in tpu-mlir's top MLIR (ONNX
# initializer names survive model_transform; the MatMul op names do not: MatMul+Add becomes a Gemm
# named "_v_<n>_Gemm"). verify --debug put the largest per-tensor losses at the residual adds after
# the FFN down-projection (W2, its input is the GELU output with outliers) and the INT8 head
# quantizes logits in steps coarser than most top-2 margins; both in BF16: top1 0.89 -> 0.94 over
# 64 steps, plus the attention output projection (wo, 0.26 M parameters): 0.95 (docs/model.md).
# q/k/v and FFN W1 weights stay INT8.
BF16_MATMUL_WEIGHTS_IN_INT8 = r"head|l[0-9]+_w2|l[0-9]+_wo"
# cv181x: its gates are tighter (top-1 beyond ties >= 0.99, min cosine >= 0.999, step <= 3.5 ms;
# issue #15): all-BF16 weights estimate 3.66 ms, so only the q/k/v projections (0.79 M parameters)
# are INT8 (3.34 ms; verify over 128 steps: top-1 1.0, min cosine 0.99964); q/k/v/o INT8 gave top-1
# beyond ties 0.9836 < 0.99 (docs/model.md, "Issue #15").
BF16_MATMUL_WEIGHTS_IN_INT8_BY_CHIP = {"cv180x": BF16_MATMUL_WEIGHTS_IN_INT8,
                                       "cv181x": r"head|l[0-9]+_w1|l[0-9]+_w2|l[0-9]+_wo"}
# run_calibration threshold method (its default is kl); measured in docs/model.md
INT8_CALIBRATION_ARGS = ("--cali_method", "use_percentile9999")
# Chips whose compiler cannot lower the graph's final LogSoftmax over V logits: the graph then
# ends in the raw logits (manifest `logits_are_log_probs: false`) and the runtime normalises on the CPU.
LOG_SOFTMAX_UNSUPPORTED = {
    "cv180x": "tpu-mlir 1.30.2 aborts in codegen: TgBf16SoftmaxKernel.cpp:217 softmaxLargeSizeHandler(): "
              "Assertion `tl_lut_working' failed (8,192 logits; cv181x compiles and matches)",
}
GOLDEN_STEPS = 48
EXPORT_CHECK_STEPS = 16  # cmodel vs ONNX steps export runs before it writes a bundle (~0.5 s each)
CALIBRATION_SAMPLES = 128  # decode-step inputs, from CALIBRATION_SAMPLES // 8 windows of text (32: worse cosine)
# verify/golden use valid paragraphs from VERIFY_PARAGRAPH (model_export/verify.py) on, calibration from here
CALIBRATION_FIRST_PARAGRAPH = 200


def _log(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ model folder ---
@dataclass
class TrainedModel:
    folder: Path
    config: object  # tpu_driver.reference_model.ModelConfig
    weights: dict  # name -> float32 ndarray
    tokenizer: object  # runtime.tokenizer.Tokenizer
    model_id: str


def load_model_folder(folder: Path) -> TrainedModel:
    from tpu_driver import reference_model
    from runtime.tokenizer import Tokenizer

    for name in ("config.json", "weights.npz", "tokenizer.json"):
        if not (folder / name).is_file():
            raise UserError(f"{folder / name} is missing; train a model first (`edgetype train -o {folder}`)")
    config = reference_model.ModelConfig.load(folder / "config.json")
    try:
        weights = reference_model.load_weights(folder / "weights.npz", config)
    except ValueError as error:
        raise UserError(f"{folder / 'weights.npz'}: {error}; retrain or fix config.json") from None
    try:
        tokenizer = Tokenizer.load(folder / "tokenizer.json")
    except ValueError as error:
        raise UserError(f"{error}; retrain the model") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(f"{folder / 'tokenizer.json'} has {tokenizer.vocab_size} tokens, config.json says "
                        f"{config.vocab_size}; they belong to different models")
    model_id = json.loads((folder / "config.json").read_text()).get("model_id") or \
        hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()[:16]
    return TrainedModel(folder, config, weights, tokenizer, model_id)


# The bundle's token ids: the model's words renumbered in sorted order right after the specials, so
# that the words sharing any typed prefix form one contiguous id range and the engine's prefix
# filter is a slice of the log-probabilities, not a gather (issue #15). The embedding rows (and so
# the tied head's columns) are permuted the same way; the map back to the model folder's ids is
# `vocab_order.json` (runtime/bundle.py refuses a bundle whose map is missing or disagrees).
VOCAB_ORDER = True


def words_sorted_model(model: TrainedModel) -> tuple[TrainedModel, np.ndarray]:
    """(model with the words-sorted tokenizer and embedding, order) with order[new id] = old id."""
    tokenizer, order = model.tokenizer.words_sorted_first()
    weights = dict(model.weights)
    weights["embedding"] = np.ascontiguousarray(weights["embedding"][order])  # (V,D) rows in the new order
    return TrainedModel(model.folder, model.config, weights, tokenizer, model.model_id), order


# ------------------------------------------------------------------------------ ION estimate ---
def estimate_ion_bytes(config, window: int, quant: str) -> dict:
    """Estimate of the ION a compiled decode step needs, before compiling (bytes).

    weights: every matrix on the TPU (q/k/v/o, FFN, the tied head) at 2 bytes (bf16) or, for int8,
    1 byte except the head, FFN W2 and wo (kept BF16, see BF16_MATMUL_WEIGHTS_IN_INT8) at 2,
    plus LayerNorm/bias/lookup tables; io: the float32 inputs (x, mask, dist, K/V caches) and
    outputs; activations: the bf16 concatenated K/V of one layer twice plus the FFN hidden and
    logits. A 15 % margin covers alignment and lookup tables: with 10 % the estimate was 1.7 %
    above the real figure for BF16 but 4.5 % below it for INT8 with the BF16 activation table
    (default model, W=128; with the head, W2 and wo in BF16 the INT8 estimate is 4.1 % above the
    real 11,198,792 B). `model_tool --info` gives the real figure after compiling.
    """
    D, F, V, L = config.d_model, config.d_ff, config.vocab_size, config.n_layers
    W = window
    matrix_params = L * (4 * D * D + 2 * D * F) + V * D
    small_params = L * (4 * D + F + D) + 2 * D
    if quant == "int8":  # head, FFN W2, wo stay BF16 in an INT8 build (BF16_MATMUL_WEIGHTS_IN_INT8)
        bf16_params = L * (F * D + D * D) + V * D
        matrix_bytes = (matrix_params - bf16_params) + 2 * bf16_params
    else:
        matrix_bytes = 2 * matrix_params
    weight_bytes = matrix_bytes + small_params * 4 + 64 * 1024
    io_bytes = 4 * (D + 2 * W + L * 2 * D * W) + 4 * (V + L * 2 * D)
    activation_bytes = 2 * (2 * 2 * D * (W + 1) + F + V + 8 * D)
    total = int(1.15 * (weight_bytes + io_bytes + activation_bytes))
    return {"weights": weight_bytes, "io": io_bytes, "activations": activation_bytes, "total": total}


def check_window_fits(config, chip: str, window: int, quant: str) -> dict:
    estimate = estimate_ion_bytes(config, window, quant)
    limit = ION_LIMIT_BYTES[chip]
    if estimate["total"] > limit:
        mib = estimate["total"] / (1 << 20)
        raise UserError(f"window {window} needs about {mib:.1f} MiB of ION on {chip} in {quant} "
                        f"(estimate), over the {limit >> 20} MiB carve-out; choose a smaller --window")
    return estimate


# ------------------------------------------------------------------------------ onnx stepping --
class OnnxStepper:
    """The ONNX decode step over a token sequence, slot t = token t: onnxruntime (tpu_driver's onnx
    backend) fed by the one in-order feeder (tpu_driver/feeder.py)."""

    def __init__(self, onnx_bytes: bytes, config, weights, window: int):
        from tpu_driver.backends import open_backend
        from tpu_driver.feeder import InOrderFeeder

        self._folder = tempfile.TemporaryDirectory(prefix="edgetype-export-step-")
        path = Path(self._folder.name) / "model.onnx"
        path.write_bytes(onnx_bytes)
        self.backend = open_backend("onnx", path)
        self.log_probs = any(node.op_type == "LogSoftmax" and decode_step.LOGITS in node.output
                             for node in _onnx_nodes(onnx_bytes))
        self.config, self.weights, self.window = config, weights, window
        self.feeder = InOrderFeeder(self.backend, weights["embedding"])

    @property
    def t(self) -> int:
        return self.feeder.position

    def reset(self) -> None:
        self.feeder.reset()

    def inputs_for(self, token: int) -> dict:
        """The inputs of the next step (copies: safe to keep as a calibration sample)."""
        return self.feeder.next_inputs(token)

    def step(self, token: int) -> dict:
        """One step; name -> float32 copy of every output."""
        return self.feeder.step_outputs(token)

    def close(self) -> None:
        self.backend.close()
        self._folder.cleanup()


def _onnx_nodes(onnx_bytes: bytes):
    import onnx

    return onnx.load_from_string(onnx_bytes).graph.node


def check_onnx_against_reference(stepper: OnnxStepper, tokens: list[int], atol: float = 1e-3) -> float:
    """Max |onnx - numpy reference| of the logits over `tokens`; raises when over `atol`."""
    from tpu_driver import reference_model as ref

    c = stepper.config
    stepper.reset()
    worst = 0.0
    for token in tokens:
        feeds = stepper.inputs_for(token)
        outputs = stepper.step(token)  # the same inputs, run by onnxruntime
        logits, _, _ = ref.decode_step(stepper.weights, c, feeds[decode_step.X], feeds[decode_step.MASK],
                                       feeds[decode_step.DIST],
                                       [feeds[decode_step.k_cache(l)] for l in range(c.n_layers)],
                                       [feeds[decode_step.v_cache(l)] for l in range(c.n_layers)])
        if stepper.log_probs:  # the graph ends in LogSoftmax
            logits = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        worst = max(worst, float(np.abs(outputs[decode_step.LOGITS] - logits).max()))
    stepper.reset()
    if worst > atol:
        raise RuntimeError(f"ONNX decode step disagrees with tpu_driver/reference_model.py: max |logit diff| "
                           f"{worst:.2e} > {atol}; the exporter is wrong")
    return worst


def calibration_samples(stepper: OnnxStepper, tokens: list[int], count: int) -> list[dict]:
    """Inputs of `count` steps spread over windows filled from empty to full (INT8 calibration)."""
    stepper.reset()
    W = stepper.window
    picks = set(np.linspace(0, len(tokens) - 1, count).round().astype(int).tolist())
    samples = []
    for i, token in enumerate(tokens):
        if stepper.t >= W:
            stepper.reset()
        if i in picks:
            samples.append(stepper.inputs_for(token))
        stepper.step(token)
    stepper.reset()
    return samples


def golden_data(stepper: OnnxStepper, tokenizer, tokens: list[int]) -> dict:
    """Per step the ONNX top-5 next-token ids and logits; and top-3 suggestions for fixed contexts."""
    from runtime.suggestion_rule import accept
    from runtime.tokenizer import is_sentence_start

    stepper.reset()
    steps = []
    for token in tokens:
        logits = stepper.step(token)[decode_step.LOGITS][0]
        top = np.argsort(-logits, kind="stable")[:5]
        steps.append({"token": int(token), "top5_ids": [int(i) for i in top],
                      "top5_logits": [round(float(logits[i]), 4) for i in top]})
    suggestions = []
    for context, prefix in (("The president said that", ""), ("The president said that", "t"),
                            ("It was the first time in", ""), ("I would like to", "s")):
        stepper.reset()
        ids = tokenizer.encode(context, bos=True)
        for token in ids:
            logits = stepper.step(token)[decode_step.LOGITS][0]
        candidates = tokenizer.prefix_ids(prefix)
        start = is_sentence_start(context + " ")
        best, words, seen = [], [], set()
        for i in candidates[np.argsort(-logits[candidates], kind="stable")]:  # the suggestion rule, best first
            word = tokenizer.surface(int(i), prefix, start)
            if accept(word, prefix, seen):
                best.append(int(i))
                words.append(word)
                if len(best) == 3:
                    break
        suggestions.append({"context": context, "prefix": prefix, "context_ids": [int(i) for i in ids],
                            "top3_ids": best, "suggestions": words})
    stepper.reset()
    return {"format_version": 1, "backend": "onnx (onnxruntime, float32)",
            "window": "append-only: slot t holds token t; dist = t - slot; mask 0 for occupied slots",
            "bos": True, "steps": steps, "suggestions": suggestions,
            "note": "tokens are the first tokens of models/corpus/valid.txt.gz (held-out validation text); "
                    "suggestions: top-3 word tokens after the context's tokens, filtered by prefix, cased "
                    "by runtime.tokenizer.Tokenizer.surface, kept by runtime/suggestion_rule.py"}


def matmuls_by_weight_name(onnx_bytes: bytes, weight_pattern: str) -> list[str]:
    """tpu-mlir op names of the MatMuls whose weight operand's name fully matches `weight_pattern`.

    Runs `model_transform.py` on the ONNX (a few seconds, in a temp folder) and reads the top MLIR:
    `%7 = "top.Weight"() ... loc(#loc7)`, `#loc7 = loc("l0_w2")`, `%9 = "top.MatMul"(%5, %7, %8) ...
    loc(#loc9)`, `#loc9 = loc("_v_251_Gemm")`. Same ONNX bytes and tool as the compile, so the same names.
    """
    from model_export import toolchain
    from model_export.compile_cache import CompileError

    with tempfile.TemporaryDirectory(prefix="edgetype-transform-") as work:
        (Path(work) / "g.onnx").write_bytes(onnx_bytes)
        result = subprocess.run([str(toolchain.tool_path("model_transform.py")), "--model_name", "g",
                                 "--model_def", "g.onnx", "--mlir", "g.mlir"], cwd=work,
                                env=toolchain.toolchain_env(), capture_output=True, text=True)
        mlir = Path(work) / "g.mlir"
        if result.returncode != 0 or not mlir.is_file():
            raise CompileError(f"model_transform failed while naming BF16 MatMuls: {result.stdout[-300:]}")
        text = mlir.read_text()
    locs = dict(re.findall(r'^#(loc[0-9]+) = loc\("([^"]+)"\)', text, re.M))
    weights = {ssa: locs.get(loc) for ssa, loc in
               re.findall(r'^\s*(%[0-9]+) = "top\.Weight"\(\).*loc\(#(loc[0-9]+)\)', text, re.M)}
    names = []
    for operands, loc in re.findall(r'^\s*%[0-9]+ = "top\.MatMul"\(([^)]*)\).*loc\(#(loc[0-9]+)\)', text, re.M):
        args = [a.strip() for a in operands.split(",")]
        if len(args) > 1 and re.fullmatch(weight_pattern, weights.get(args[1]) or "") and loc in locs:
            names.append(locs[loc])
    return names


def int8_mixed_precision_table(onnx_model, bf16_op_names: tuple | list = ()) -> Path:
    """A model_deploy --quantize_table putting the activation-only ops in BF16 (see above).

    `bf16_op_names`: further tpu-mlir op names to put in BF16 (see `matmuls_by_weight_name`).
    Written under the compile cache root, named by its content, so the cache key (which holds
    the path) changes exactly when the table does.
    """
    from model_export.compile_cache import cache_root

    names = [f"{node.output[0]}_{node.op_type}" for node in onnx_model.graph.node
             if node.op_type in BF16_OP_TYPES_IN_INT8 or
             (node.op_type == "MatMul" and node.output[0].split("_", 1)[-1] in BF16_ACTIVATION_MATMULS)] + \
        list(bf16_op_names)
    text = "# edgetype: activation-only ops in BF16 inside an INT8 model\n" + \
        "".join(f"{name} BF16\n" for name in names)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = cache_root() / "qtables" / f"int8_act_bf16_{digest}.qtable"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.write_text(text)
    return path


# ------------------------------------------------------------------------------ cvimodel info --
def parse_model_tool_info(info: str) -> dict:
    """Inputs/outputs (name, shape, dtype) and ION bytes from `model_tool --info` text."""
    from model_export.compile_cache import parse_ion_bytes

    program = info.split("Program #0", 1)[-1]
    inputs = re.search(r"^\s*inputs\s*:\s*(\S+)", program, re.M)
    outputs = re.search(r"^\s*outputs\s*:\s*(\S+)", program, re.M)
    tensors = {}
    for match in re.finditer(r"^\s*\d+\s+\d+\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+(\S+)\s*$",
                             program, re.M):
        dtype, n, c, h, w, name = match.groups()
        tensors.setdefault(name, {"dtype": dtype, "nchw": [int(n), int(c), int(h), int(w)]})
    return {"inputs": inputs.group(1).split(",") if inputs else [],
            "outputs": outputs.group(1).split(",") if outputs else [],
            "tensors": tensors, "ion_bytes": parse_ion_bytes(info)}


def model_tool_info(cvimodel: Path) -> str:
    import subprocess

    from model_export import toolchain

    result = subprocess.run([str(toolchain.tool_path("model_tool")), "--info", str(cvimodel)],
                            env=toolchain.toolchain_env(), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise UserError(f"model_tool --info {cvimodel} failed: {result.stderr.strip()[-200:]}")
    return result.stdout


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8", "uint8": "uint8", "int16": "int16",
           "uint16": "uint16", "int32": "int32"}


def compiled_tensor_specs(info: dict, onnx_inputs, onnx_outputs) -> tuple[list, list]:
    """Manifest entries: contract name, shape, dtype and the cvimodel's own name and dtype.

    The compiler keeps input names and the output order but renames outputs (`logits_Reshape_f32`);
    outputs are matched by position, as tpu_driver does. Shapes are the contract (ONNX) shapes:
    the cvimodel stores every tensor as 4-d NCHW, so its element count is checked instead.
    """
    def entries(names, compiled_names, section):
        if len(names) != len(compiled_names):
            raise UserError(f"cvimodel has {len(compiled_names)} {section}, the ONNX graph {len(names)}")
        out = []
        for (name, shape), compiled in zip(names, compiled_names):
            tensor = info["tensors"].get(compiled)
            if tensor is None:
                raise UserError(f"cvimodel {section[:-1]} {compiled!r} is missing from model_tool's tensor map")
            if int(np.prod(tensor["nchw"])) != int(np.prod(shape)):
                raise UserError(f"cvimodel {section[:-1]} {compiled} has {tensor['nchw']} elements, ONNX {name} "
                                f"has shape {shape}")
            out.append({"name": name, "shape": list(shape), "dtype": _DTYPES.get(tensor["dtype"], tensor["dtype"]),
                        "compiled_name": compiled, "compiled_nchw": tensor["nchw"]})
        return out

    return entries(onnx_inputs, info["inputs"], "inputs"), entries(onnx_outputs, info["outputs"], "outputs")


# ------------------------------------------------------------------------------ the export -----

def export_bundle(model_dir: Path, output: Path, chip: str, quant: str, window: int | None = None,
                  corpus_dir: Path = Path("models/corpus"), keep_intermediates: Path | None = None,
                  bf16_matmul_weights: str | None = None) -> dict:
    """Write a bundle (module docstring). bf16_matmul_weights: INT8 only, regex of the weight
    matrices kept BF16 (default BF16_MATMUL_WEIGHTS_IN_INT8_BY_CHIP[chip])."""
    import onnx

    from model_export import onnx_graph
    from model_export.model import ModelShape

    chip = chip.lower()
    quant = quant.lower()
    if chip not in CHIPS + ("none",):
        raise UserError(f"unknown chip {chip!r}: use cv181x (Milk-V Duo 256M, SG2002), cv180x (Milk-V Duo, "
                        f"CV1800B) or none (onnx-only bundle)")
    if quant not in QUANTS + (("f32",) if chip == "none" else ()):
        raise UserError(f"unknown quantization {quant!r}: cv18xx TPUs run bf16 or int8")
    if bf16_matmul_weights is not None and quant != "int8":
        raise UserError("--bf16-matmuls applies to --quant int8 only (a bf16 model has every MatMul in BF16)")
    if quant == "int8":
        bf16_matmul_weights = bf16_matmul_weights or BF16_MATMUL_WEIGHTS_IN_INT8_BY_CHIP.get(chip,
                                                                                              BF16_MATMUL_WEIGHTS_IN_INT8)
        try:
            re.compile(bf16_matmul_weights)
        except re.error as error:
            raise UserError(f"--bf16-matmuls {bf16_matmul_weights!r}: not a regular expression ({error})") from None
    started = time.monotonic()
    model = load_model_folder(model_dir)
    source_tokenizer_id = model.tokenizer.tokenizer_id
    if VOCAB_ORDER:  # renumber the words in sorted order; the tied embedding/head follows (module docstring)
        model, order = words_sorted_model(model)
    config = model.config
    window = window or config.window
    if window < 1:
        raise UserError(f"--window must be >= 1 (got {window})")
    estimate = check_window_fits(config, chip, window, quant) if chip != "none" else None
    if chip != "none":
        from model_export import toolchain
        toolchain.require_toolchain()

    shape = ModelShape(config.vocab_size, config.d_model, config.n_layers, config.n_heads, config.d_ff, window,
                       config.alibi_max_bias)
    log_probs = onnx_graph.LOGITS_ARE_LOG_PROBS and chip not in LOG_SOFTMAX_UNSUPPORTED
    if not log_probs and chip in LOG_SOFTMAX_UNSUPPORTED:
        _log(f"{chip}: no LogSoftmax in the graph ({LOG_SOFTMAX_UNSUPPORTED[chip]}); "
             "output `logits` stays raw and the runtime normalises it (manifest logits_are_log_probs: false)")
    onnx_model = onnx_graph.build_decode_step(model.weights, shape, window, log_probs=log_probs)
    onnx_bytes = onnx_model.SerializeToString()
    stepper = OnnxStepper(onnx_bytes, config, model.weights, window)
    check_tokens = validation_tokens(model.tokenizer, corpus_dir, VERIFY_PARAGRAPH, min(GOLDEN_STEPS, window))
    onnx_error = check_onnx_against_reference(stepper, check_tokens)
    _log(f"ONNX decode step == numpy reference over {len(check_tokens)} validation tokens "
         f"(max |logit diff| {onnx_error:.1e})")

    bundle_config = json.loads((model_dir / "config.json").read_text())
    bundle_config["window"] = window
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; a bundle is copied to boards and read by others
    try:
        compiled = None
        bf16_matmuls = []  # tpu-mlir op names of INT8-graph MatMuls kept in BF16
        if chip != "none":
            from model_export.compile_cache import compile_onnx

            calibration = None
            if quant == "int8":
                calib_tokens = validation_tokens(model.tokenizer, corpus_dir, CALIBRATION_FIRST_PARAGRAPH,
                                                 CALIBRATION_SAMPLES // 8 * window)
                calibration = calibration_samples(stepper, calib_tokens, CALIBRATION_SAMPLES)
                _log(f"INT8 calibration: {len(calibration)} decode-step inputs from {len(calib_tokens)} tokens "
                     f"of valid.txt.gz (paragraphs {CALIBRATION_FIRST_PARAGRAPH}+)")
            from model_export.compile_cache import CompileError
            deploy_args = DEPLOY_ARGS + kv_boundary_deploy_args(shape)
            if quant == "int8":
                bf16_matmuls = matmuls_by_weight_name(onnx_bytes, bf16_matmul_weights) if bf16_matmul_weights else []
                _log(f"INT8: MatMuls kept in BF16 (weights matching {bf16_matmul_weights!r}): "
                     f"{', '.join(bf16_matmuls)}")
                deploy_args += ("--quantize_table", str(int8_mixed_precision_table(onnx_model, bf16_matmuls)))
            try:
                compiled = compile_onnx(onnx_bytes, chip=chip, quant=quant.upper(), name="decode",
                                        calibration_inputs=calibration, deploy_args=deploy_args,
                                        calibration_args=INT8_CALIBRATION_ARGS if quant == "int8" else ())
            except CompileError as error:
                failed = re.search(r"(\S*\.failed-[0-9a-f]+)", str(error))
                if keep_intermediates and failed:
                    shutil.rmtree(keep_intermediates, ignore_errors=True)
                    shutil.copytree(failed.group(1), keep_intermediates)
                    raise CompileError(f"{error} (work folder copied to {keep_intermediates})") from None
                raise
            if keep_intermediates:
                keep = Path(keep_intermediates)
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(compiled.cache_dir, keep)
                _log(f"tpu-mlir work folder copied to {keep}")
            shutil.copyfile(compiled.cvimodel_path, tmp / "model.cvimodel")
            info_text = model_tool_info(tmp / "model.cvimodel")
            info = parse_model_tool_info(info_text)
            from measure.board_estimate import parse_model_tool_info as routines_of
            routines = {k: v for k, v in routines_of(info_text).items() if k != "ion_bytes"}
            inputs, outputs = compiled_tensor_specs(info, onnx_graph.input_specs(shape, window),
                                                    onnx_graph.output_specs(shape))
            ion_bytes = info["ion_bytes"]
        else:
            inputs = [{"name": n, "shape": s, "dtype": "float32"} for n, s in onnx_graph.input_specs(shape, window)]
            outputs = [{"name": n, "shape": s, "dtype": "float32"} for n, s in onnx_graph.output_specs(shape)]
            ion_bytes = None
            routines = None
        onnx.save(onnx_model, tmp / "model.onnx")
        if VOCAB_ORDER:  # the renumbered tokenizer and embedding rows, and the map back to the model's ids
            np.savez(tmp / "weights.npz", **model.weights)
            model.tokenizer.save(tmp / "tokenizer.json")
            vocab_order = {"file": VOCAB_ORDER_FILE, "word_ids": list(model.tokenizer.prefix_id_range("")),
                           "source_tokenizer_id": source_tokenizer_id,
                           "rule": "specials, then the word tokens sorted (each typed prefix is one id range), "
                                   "then the other tokens in the model's order"}
            (tmp / VOCAB_ORDER_FILE).write_text(json.dumps({
                "format": "edgetype-vocab-order", "format_version": 1, "tokenizer_id": model.tokenizer.tokenizer_id,
                "source_tokenizer_id": source_tokenizer_id, "word_ids": vocab_order["word_ids"],
                "order": [int(i) for i in order],
                "note": "order[bundle token id] = token id in the model folder's tokenizer.json"}) + "\n")
        else:
            vocab_order = None
            shutil.copyfile(model_dir / "weights.npz", tmp / "weights.npz")
            shutil.copyfile(model_dir / "tokenizer.json", tmp / "tokenizer.json")
        (tmp / "config.json").write_text(json.dumps(bundle_config, indent=2, sort_keys=True) + "\n")
        golden = golden_data(stepper, model.tokenizer,
                             validation_tokens(model.tokenizer, corpus_dir, VERIFY_PARAGRAPH,
                                               min(GOLDEN_STEPS, window)))
        (tmp / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {
            "format_version": None,  # seal_manifest: the current version and the bundle_id over it all
            "model_id": model.model_id,
            "tokenizer_id": model.tokenizer.tokenizer_id,
            "chip": None if chip == "none" else chip,
            "quant": quant if chip != "none" else "f32",
            "window": window,
            "config": {k: bundle_config[k] for k in ("vocab_size", "d_model", "n_layers", "n_heads",
                                                      "d_ff", "window")},
            "inputs": inputs,
            "outputs": outputs,
            # output `logits` holds log-probabilities (LogSoftmax in the graph): the runtime skips its own
            "logits_are_log_probs": log_probs,
            "vocab_order": vocab_order,
            "decode_step": {"attention": onnx_graph.ATTENTION_FORM,
                            "kv_cache_dtype": onnx_graph.KV_CACHE_INPUT_DTYPE if compiled else "float32",
                            "compiled_routines": routines},
            "tpu_mlir_version": compiled.tpu_mlir_version if compiled else None,
            "ion_bytes": ion_bytes,
            "ion_bytes_source": "model_tool --info: CviModel Need ION Memory Size" if compiled else None,
            "ion_bytes_estimate": estimate["total"] if estimate else None,
            "ion_limit_bytes": ION_LIMIT_BYTES.get(chip),
            "onnx_vs_reference_max_abs_logit_diff": onnx_error,
            "calibration": ({"text": "models/corpus/valid.txt.gz", "first_paragraph": CALIBRATION_FIRST_PARAGRAPH,
                             "samples": CALIBRATION_SAMPLES,
                             "bf16_op_types": list(BF16_OP_TYPES_IN_INT8),
                             "bf16_matmul_weights": bf16_matmul_weights, "bf16_matmuls": bf16_matmuls,
                             "run_calibration_args": list(INT8_CALIBRATION_ARGS)} if quant == "int8" else None),
            "deploy_args": [Path(a).name if a.startswith("/") else a for a in deploy_args] if compiled else None,
            "files": files,
            "created_by": "edgetype export (model_export/export.py)",
        }
        manifest = seal_manifest(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if compiled:  # a graph that compiles but computes wrong (PLATFORM.md) must leave no bundle

            check = cmodel_check(tmp, check_tokens[:EXPORT_CHECK_STEPS])
            _log(f"cmodel == ONNX over {check['steps']} steps: min centred cosine {check['min_cosine']}, "
                 f"top1 {check['top1_agreement']}")
            manifest = seal_manifest({**manifest, "export_cmodel_check": check})
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if output.exists():
            old = output.with_name(f".{output.name}.old-{int(time.time())}")
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = round(time.monotonic() - started, 1)
    _log(f"bundle {output}: chip {chip} quant {quant} window {window} ion_bytes {ion_bytes} ({seconds} s)")
    return {"bundle": str(output), "chip": manifest["chip"], "quant": manifest["quant"], "window": window,
            "model_id": model.model_id, "ion_bytes": ion_bytes,
            "ion_mib": round(ion_bytes / (1 << 20), 2) if ion_bytes else None,
            "ion_bytes_estimate": manifest["ion_bytes_estimate"],
            "cvimodel_bytes": (output / "model.cvimodel").stat().st_size if compiled else None,
            "compile_cache_hit": compiled.cache_hit if compiled else None, "seconds": seconds}


def run_export_command(args) -> int:
    result = export_bundle(Path(args.model), Path(args.output), args.chip, args.quant, args.window,
                           Path(args.corpus), Path(args.keep_intermediates) if args.keep_intermediates else None,
                           getattr(args, "bf16_matmuls", None))
    if args.json:
        print(json.dumps(result))
    else:
        print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0
