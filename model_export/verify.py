"""Check a bundle's compiled cvimodel on the cmodel simulator against its ONNX.

    edgetype verify [BUNDLE] --steps N [--debug] --json
    edgetype verify [BUNDLE] --typing FILE --chars N --json

`--typing` (what the user sees, EVALUATION.md "Verify on what the user sees"): the ideal user of
`eval ksr` types the first N characters of FILE through the engine (runtime/engine.py, session
cache on as shipped) on the cmodel; an onnx session on the same bundle receives the same edits in
lockstep, and at every keystroke both sessions' 3 suggestions are compared (`suggestion_agreement`:
same words in the same order). A second, onnx-only run of the ideal user gives `ksr_reference`
(its own path through the text); `ksr_cmodel` is the cmodel run's KSR.

`--steps` mode:

The same held-out validation tokens (models/corpus/valid.txt.gz, from its first paragraph) go
through the `onnx` and the `cmodel` backends (tpu_driver.backends), each filling its own
append-only K/V window from its own k_new/v_new outputs (slot t = token t, N <= W), so errors that
compound through the cache show. Prints chip, quant, steps, top1_agreement (same argmax next
token), min/mean cosine of the logits, the worst step, and the cmodel time per step; also
top1_word_agreement (same argmax among word tokens: the first suggestion at a word start, which
never is <unk> or punctuation) and, for each disagreement, the reference's top-1 minus top-2
logit (small values are near-ties that BF16's 8-bit mantissa cannot order); near_tie_steps
counts the steps whose reference margin is below one BF16 step of the top logit (`bf16_step`; the
raw logit before the graph's LogSoftmax, which is where the TPU rounds),
and top1_agreement_beyond_bf16_ties is the agreement over the other steps (top1_agreement stays
the plain share over all steps).

`--debug` re-runs the worst step's inputs with every compiled tensor exposed
(OPTION_OUTPUT_ALL_TENSORS) and an ONNX graph with every node output exposed, matches tensors by
name and names the first one (in graph order) whose cosine drops below 0.99.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from tpu_driver import decode_step
from tpu_driver.feeder import InOrderFeeder

VERIFY_PARAGRAPH = 0  # verify and golden.json use valid paragraphs from here on (export calibrates on later ones)


def validation_tokens(tokenizer, corpus_dir: Path, first_paragraph: int, count: int) -> list[int]:
    """`count` tokens of valid.txt.gz from paragraph `first_paragraph` on, each paragraph with <bos>."""
    from model_export.train import read_paragraphs

    paragraphs = read_paragraphs(corpus_dir / "valid.txt.gz")
    tokens: list[int] = []
    for paragraph in paragraphs[first_paragraph:]:
        tokens.extend(tokenizer.encode(paragraph, bos=True))
        if len(tokens) >= count:
            break
    if len(tokens) < count:
        raise UserError(f"{corpus_dir / 'valid.txt.gz'} holds fewer than {count} tokens after paragraph "
                        f"{first_paragraph}")
    return tokens[:count]


def _log(message: str) -> None:
    print(f"[verify] {message}", file=sys.stderr, flush=True)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(a @ b / denom)


def centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the mean-centred vectors: blind to a constant shift of the logits.

    The decode step outputs log-probabilities (logits minus their logsumexp, all negative): a plain
    cosine of two such vectors is near 1 for unrelated distributions because of the shared offset.
    Centring compares the logits themselves, up to the shift that softmax ignores."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return cosine(a - a.mean(), b - b.mean())


RAW_LOGITS = "logits_raw"  # the head's output before the LogSoftmax (model_export/onnx_graph.py)


def reference_onnx_with_raw_logits(bundle, folder: Path) -> Path:
    """The bundle's model.onnx with `logits_raw` also exposed as an output (reference side only).

    verify's near-tie rule needs the BF16 step of the top logit the TPU rounds, i.e. before the
    LogSoftmax; the compiled graph is untouched. Bundles without LogSoftmax: the file as it is."""
    import onnx

    model = onnx.load(str(bundle.onnx_path))
    if RAW_LOGITS not in {out for node in model.graph.node for out in node.output}:
        return Path(bundle.onnx_path)
    model.graph.output.append(onnx.helper.make_tensor_value_info(RAW_LOGITS, onnx.TensorProto.FLOAT,
                                                                 [1, bundle.config.vocab_size]))
    path = folder / "reference.onnx"
    onnx.save(model, str(path))
    return path


def verify_bundle(bundle_dir: Path, steps: int, corpus_dir: Path, debug: bool = False) -> dict:
    from runtime.bundle import load_bundle
    from tpu_driver.reference_model import load_weights
    from tpu_driver.backends import open_backend

    bundle = load_bundle(bundle_dir)
    if bundle.cvimodel_path is None:
        raise UserError(f"{bundle_dir} has no model.cvimodel (an onnx-only bundle?); export with --chip")
    config = bundle.config
    if not 1 <= steps <= config.window:
        raise UserError(f"--steps {steps}: must be 1..{config.window} (the append-only window of this bundle)")
    weights = load_weights(bundle.weights_path, config)
    tokens = validation_tokens(bundle.tokenizer, corpus_dir, VERIFY_PARAGRAPH, steps)

    work = tempfile.TemporaryDirectory(prefix="edgetype-verify-")
    onnx_backend = open_backend("onnx", {"onnx": reference_onnx_with_raw_logits(bundle, Path(work.name))})
    cmodel_backend = open_backend("cmodel", bundle)
    try:
        reference, compiled = InOrderFeeder(onnx_backend, weights["embedding"]), InOrderFeeder(cmodel_backend, weights["embedding"])
        raw_logits = onnx_backend.output(RAW_LOGITS if RAW_LOGITS in onnx_backend.outputs else decode_step.LOGITS)
        is_word = bundle.tokenizer.is_word  # (V,) bool: tokens that can be suggested
        cosines, agree, word_agree, step_ms, margins = [], 0, 0, [], []
        clear, clear_agree = 0, 0  # steps whose reference top-2 margin is at least one BF16 step
        worst = (2.0, -1)
        for i, token in enumerate(tokens):
            want = reference.step(token)
            started = time.perf_counter()
            got = compiled.step(token)
            step_ms.append((time.perf_counter() - started) * 1000)
            c = centred_cosine(want, got)
            cosines.append(c)
            top2 = np.sort(want)[-2:]
            same = bool(np.argmax(want) == np.argmax(got))
            agree += same
            if not same:
                margins.append(round(float(top2[1] - top2[0]), 4))
            # the TPU rounds the logits before the LogSoftmax: one BF16 step of the top raw logit
            if top2[1] - top2[0] >= bf16_step(float(raw_logits.read().max())):
                clear += 1
                clear_agree += same
            word_agree += int(np.argmax(np.where(is_word, want, -np.inf)) == np.argmax(np.where(is_word, got, -np.inf)))
            if c < worst[0]:
                worst = (c, i)
    finally:
        onnx_backend.close()
        cmodel_backend.close()
        work.cleanup()
    result = {"bundle": str(bundle_dir), "chip": bundle.chip, "quant": bundle.quant, "steps": steps,
              "top1_agreement": round(agree / steps, 4), "min_cosine": round(min(cosines), 6),
              "top1_word_agreement": round(word_agree / steps, 4),
              "reference_top2_margin_at_disagreements": margins,
              "near_tie_steps": steps - clear,  # reference top-2 margin below one BF16 step of the top logit
              "top1_agreement_beyond_bf16_ties": round(clear_agree / clear, 4) if clear else None,
              "mean_cosine": round(float(np.mean(cosines)), 6), "worst_step": worst[1],
              "cmodel_ms_per_step_median": round(float(np.median(step_ms)), 1),
              "cosine": "of the mean-centred logits / log-probabilities (verify.centred_cosine)",
              "text": f"{steps} tokens of {corpus_dir}/valid.txt.gz from paragraph {VERIFY_PARAGRAPH}",
              "reference": "onnx backend (onnxruntime float32) on the bundle's model.onnx"}
    if debug:
        result["debug"] = first_divergence(bundle, config, weights, tokens[: worst[1] + 1])
    return result


EXPORT_MIN_COSINE = 0.99  # a wrongly lowered graph measured 0.65 (PLATFORM.md); BF16 and INT8 bundles >= 0.998


def cmodel_check(bundle_dir: Path, tokens: list[int], min_cosine: float = EXPORT_MIN_COSINE) -> dict:
    """Export's own check: `tokens` through the onnx and cmodel backends of a just-written bundle.

    Raises CompileError when the compiled graph computes wrong (min centred cosine of the logits
    below `min_cosine`): export then leaves no bundle behind."""
    from model_export.compile_cache import CompileError
    from runtime.bundle import load_bundle
    from tpu_driver.reference_model import load_weights
    from tpu_driver.backends import open_backend

    bundle = load_bundle(bundle_dir)
    weights = load_weights(bundle.weights_path, bundle.config)
    onnx_backend = open_backend("onnx", bundle)
    cmodel_backend = open_backend("cmodel", bundle)
    try:
        reference = InOrderFeeder(onnx_backend, weights["embedding"])
        compiled = InOrderFeeder(cmodel_backend, weights["embedding"])
        cosines, agree = [], 0
        for token in tokens:
            want, got = reference.step(token), compiled.step(token)
            cosines.append(centred_cosine(want, got))
            agree += int(np.argmax(want) == np.argmax(got))
    finally:
        onnx_backend.close()
        cmodel_backend.close()
    result = {"steps": len(tokens), "min_cosine": round(min(cosines), 6),
              "top1_agreement": round(agree / len(tokens), 4), "threshold": min_cosine}
    if min(cosines) < min_cosine:
        raise CompileError(f"the compiled {bundle.chip} {bundle.quant} decode step computes wrong on the cmodel: "
                           f"min cosine {min(cosines):.4f} vs onnxruntime over {len(tokens)} steps (threshold "
                           f"{min_cosine}); no bundle written. Bisect with a kept bundle: "
                           f"`edgetype verify BUNDLE --debug` (PLATFORM.md traps)")
    return result


class LockstepPredictor:
    """The cmodel session as the ideal user's predictor, with an onnx session fed the same edits.

    Each suggest() compares both sessions' top-3 words (same words, same order) and returns the
    cmodel's, so the user follows the cmodel's path through the text."""

    def __init__(self, primary, shadow, examples: int = 5):
        self.primary, self.shadow = primary, shadow
        self.keystrokes = 0
        self.agreeing = 0
        self.examples: list[dict] = []
        self._max_examples = examples

    def reset(self) -> None:
        self.primary.reset()
        self.shadow.reset()

    def insert(self, text: str) -> None:
        self.primary.insert(text)
        self.shadow.insert(text)

    def suggest(self, k: int) -> list[str]:
        got = [s.word for s in self.primary.suggestions(k)]
        want = [s.word for s in self.shadow.suggestions(k)]
        self.keystrokes += 1
        same = got[:3] == want[:3]
        self.agreeing += same
        if not same and len(self.examples) < self._max_examples:
            self.examples.append({"text_end": self.primary.text[-30:], "cmodel": got[:3], "reference": want[:3]})
        return got


def verify_typing(bundle_dir: Path, text_path: Path, chars: int, k: int = 3) -> dict:
    """`verify --typing`: suggestions and KSR of the engine on the cmodel vs the onnx reference."""
    from runtime.bundle import load_bundle
    from runtime.engine import open_session
    from measure.evaluate import SessionPredictor, read_eval_text, simulate_ideal_user

    if chars < 1:
        raise UserError(f"--chars {chars}: must be >= 1")
    bundle = load_bundle(bundle_dir)
    if bundle.cvimodel_path is None:
        raise UserError(f"{bundle_dir} has no model.cvimodel (an onnx-only bundle?); export with --chip")
    text = read_eval_text(text_path)[0][:chars]
    started = time.perf_counter()
    cmodel = open_session(bundle, backend="cmodel")
    shadow = open_session(bundle, backend="onnx")
    try:
        lockstep = LockstepPredictor(cmodel, shadow)
        run_cmodel = simulate_ideal_user(text, lockstep, k=k).total
        cmodel_forwards = cmodel.forward_calls if hasattr(cmodel, "forward_calls") else None
    finally:
        cmodel.close()
        shadow.close()
    cmodel_seconds = time.perf_counter() - started
    reference = open_session(bundle, backend="onnx")
    try:
        run_reference = simulate_ideal_user(text, SessionPredictor(reference), k=k).total
    finally:
        reference.close()
    return {"bundle": str(bundle_dir), "chip": bundle.chip, "quant": bundle.quant, "mode": "typing",
            "text": f"first {len(text)} characters of {text_path}", "chars": len(text),
            "suggestions": k, "keystrokes": lockstep.keystrokes,
            "suggestion_agreement": round(lockstep.agreeing / max(lockstep.keystrokes, 1), 5),
            "ksr_cmodel": round(run_cmodel.ksr, 5), "ksr_reference": round(run_reference.ksr, 5),
            "ksr_difference": round(run_cmodel.ksr - run_reference.ksr, 5),
            "keystrokes_cmodel_run": run_cmodel.keystrokes, "keystrokes_reference_run": run_reference.keystrokes,
            "cmodel_forward_calls": cmodel_forwards, "cmodel_seconds": round(cmodel_seconds, 1),
            "disagreement_examples": lockstep.examples,
            "keystrokes_note": "keystrokes = suggestion lists compared (one per keystroke of the cmodel run "
                               "before a word character or an acceptance)",
            "reference": "engine on the onnx backend (onnxruntime float32, the bundle's model.onnx), "
                         "session cache on as shipped"}


# Ops whose compiled tensor cannot be read back with OPTION_OUTPUT_ALL_TENSORS: cv18xx lowers a Slice
# to an address offset into its input, and the exposed tensor reads as zeros (cosine 0.0 on the
# self-split attention's probs_cache while the step's outputs match at 0.9996); its consumers are compared.
UNREADABLE_COMPILED_OPS = ("Slice",)


def first_divergence(bundle, config, weights, tokens: list[int], threshold: float = 0.99) -> dict:
    """Run `tokens` (the last one is the step to inspect) and compare every tensor of that step."""
    import onnx
    import onnxruntime as ort

    from tpu_driver.backends import open_backend

    # the inputs of the inspected step, as the onnx backend's own window holds them
    onnx_backend = open_backend("onnx", bundle)
    try:
        feeder = InOrderFeeder(onnx_backend, weights["embedding"])
        for token in tokens[:-1]:
            feeder.step(token)
        feeds = feeder.next_inputs(tokens[-1])
    finally:
        onnx_backend.close()

    model = onnx.load(str(bundle.onnx_path))
    graph_outputs = {o.name for o in model.graph.output}
    order = []
    for node in model.graph.node:
        for name in node.output:
            order.append((name, node.op_type))
            if name not in graph_outputs:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    onnx_values = dict(zip(names, session.run(None, feeds)))

    compiled = open_backend("cmodel", bundle, output_all_tensors=True)
    try:
        for name, value in feeds.items():
            compiled.input(name).write(value)
        compiled.run()
        compiled_values = {name: np.array(compiled.output(name).read(), np.float32) for name in compiled.outputs}
    finally:
        compiled.close()

    # compiled tensor names are "<onnx output>_<OpType>" plus maybe "_f32"/"_bf16"/"_int8"
    by_onnx_name = {}
    for cname, value in compiled_values.items():
        base = cname
        for suffix in ("_f32", "_bf16", "_int8", "_uint8"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        by_onnx_name.setdefault(base, (cname, value))
    rows, first_bad = [], None
    for name, op_type in order:
        if op_type in UNREADABLE_COMPILED_OPS:
            continue
        match = by_onnx_name.get(f"{name}_{op_type}")
        if match is None or name not in onnx_values:
            continue
        cname, value = match
        want = onnx_values[name]
        if value.size != want.size:
            continue
        c = centred_cosine(want, value) if name == decode_step.LOGITS else cosine(want, value)  # log-probs: centred
        rows.append({"tensor": name, "compiled": cname, "cosine": round(c, 6)})
        if first_bad is None and c < threshold:
            first_bad = rows[-1]
    return {"inspected_step": len(tokens) - 1, "compared_tensors": len(rows),
            "first_below_threshold": first_bad, "threshold": threshold, "tensors": rows}


def bf16_step(x: float) -> float:
    """Spacing of bfloat16 numbers (8 significant bits) at |x|: 2^(e-7) for |x| in [2^e, 2^(e+1)).

    A reference top-2 margin below this step can flip by rounding the logits alone, before any
    error of the BF16 compute; `verify` reports agreement without such steps next to the plain one."""
    x = abs(x)
    if x == 0.0 or not np.isfinite(x):
        return 0.0
    return float(2.0 ** (np.floor(np.log2(x)) - 7))


def run_verify_command(args) -> int:
    if getattr(args, "typing", None):
        result = verify_typing(Path(args.bundle), Path(args.typing), args.chars)
        if args.json:
            print(json.dumps(result))
        else:
            print(" ".join(f"{k}={result[k]}" for k in ("chip", "quant", "keystrokes", "suggestion_agreement",
                                                         "ksr_cmodel", "ksr_reference")))
        return 0
    result = verify_bundle(Path(args.bundle), args.steps, Path(args.corpus), args.debug)
    if args.json:
        print(json.dumps(result))
    else:
        summary = {k: result[k] for k in ("chip", "quant", "steps", "top1_agreement", "min_cosine", "mean_cosine")}
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
        if "debug" in result:
            print(f"first tensor below cosine {result['debug']['threshold']}: "
                  f"{result['debug']['first_below_threshold']}")
    return 0
