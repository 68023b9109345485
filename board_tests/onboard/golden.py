"""How close a backend must come to the bundle's golden.json (boardenv.read_golden).

golden.json holds fp32 onnxruntime results (model_export/export.py golden_data). Two kinds of
backend are compared with it, with different tolerances (docs/board.md lists them):

fp32 backends (`onnx`, `numpy`) must reproduce it nearly exactly:
  - per step, the logits of golden's top-5 ids within FP32_LOGIT_ATOL (golden rounds to 4
    decimals; numpy vs onnxruntime measured 5e-5 on the shipped bundles);
  - per step, no other id above golden's 5th logit + FP32_LOGIT_ATOL (same top-5, up to near-ties);
  - suggestions: the same top-3 ids in the same order, the same words (lowercased).

compiled backends (`cmodel`, `tpu`: BF16 or INT8 arithmetic) are compared as the quantisation
allows (QUANT_TOLERANCE; measured on the cmodel with the shipped bundles, 48 steps: bf16 max
|diff| 1.5 % of the logit scale, argmax in golden's top-5 48/48, centred cosine 0.9995, suggestion
top-3 identical in 4/4 cases; int8 6.6 %, 48/48, 0.984, 3/4 identical and 1 with 2 of 3):
  - per step, |logit - golden| at golden's top-5 ids <= `logit_rel` x max(1, |golden top-1|);
  - argmax in golden's top-5 on at least `top1_in_top5` of the steps;
  - cosine of the centred top-5 logits (each step minus its mean, all steps concatenated)
    >= `centred_cosine`: the shape of the distribution near its top, not a uniform shift;
  - suggestions, every case: the top-1 suggestion is one of golden's top-3, and at least
    `top3_overlap` of the 3 suggested ids are among golden's top-3 (near-ties may swap the rest).
numpy only (the board's python has it).
"""
from __future__ import annotations

import numpy as np

FP32_BACKENDS = ("onnx", "numpy")
FP32_LOGIT_ATOL = 1e-3
QUANT_TOLERANCE = {
    "bf16": {"logit_rel": 0.05, "top1_in_top5": 0.9, "centred_cosine": 0.995, "top3_overlap": 2},
    "int8": {"logit_rel": 0.15, "top1_in_top5": 0.9, "centred_cosine": 0.95, "top3_overlap": 2},
}


def is_fp32(backend: str) -> bool:
    return backend in FP32_BACKENDS


def quant_tolerance(quant: str) -> dict:
    quant = (quant or "").lower()
    if quant not in QUANT_TOLERANCE:
        raise AssertionError(f"no golden tolerance for quant {quant!r} (knows "
                             f"{', '.join(QUANT_TOLERANCE)}): add one to board_tests/onboard/golden.py")
    return QUANT_TOLERANCE[quant]


def compare_logits(all_logits: list, golden: dict, quant: str, backend: str) -> list[str]:
    """Problems (empty when the per-step logits agree with golden.json within the tolerance).

    all_logits: one (V,) float32 array per golden step; golden: boardenv.read_golden's dict.
    """
    if len(all_logits) != len(golden["top_ids"]):
        return [f"{len(all_logits)} steps decoded, golden has {len(golden['top_ids'])}"]
    problems = []
    if is_fp32(backend):
        for i, logits in enumerate(all_logits):
            ids = golden["top_ids"][i]
            want = np.asarray(golden["top_logits"][i], np.float32)  # (5,)
            worst = float(np.max(np.abs(logits[ids] - want)))
            if worst > FP32_LOGIT_ATOL:
                problems.append(f"step {i}: top-5 logits differ by {worst:.5f} > {FP32_LOGIT_ATOL}")
            others = np.delete(logits, ids)
            if others.size and float(others.max()) > want[-1] + FP32_LOGIT_ATOL:
                order = np.argsort(-logits, kind="stable")[:6]  # (6,) ids, best first
                outsider = int(order[~np.isin(order, ids)][0])
                problems.append(f"step {i}: id {outsider} ({float(others.max()):.4f}) is above "
                                f"golden's 5th logit {float(want[-1]):.4f}: top-5 ids differ")
        return problems
    tol = quant_tolerance(quant)
    hits, got_centred, want_centred = 0, [], []
    for i, logits in enumerate(all_logits):
        ids = golden["top_ids"][i]
        want = np.asarray(golden["top_logits"][i], np.float32)  # (5,)
        got = logits[ids]  # (5,)
        bound = tol["logit_rel"] * max(1.0, float(np.max(np.abs(want))))
        worst = float(np.max(np.abs(got - want)))
        if worst > bound:
            problems.append(f"step {i}: top-5 logits differ by {worst:.4f} > {bound:.4f} "
                            f"({tol['logit_rel']:.0%} of the scale, {quant})")
        hits += int(np.argmax(logits)) in ids
        got_centred.append(got - got.mean())
        want_centred.append(want - want.mean())
    steps = len(all_logits)
    if hits < tol["top1_in_top5"] * steps:
        problems.append(f"argmax in golden's top-5 on {hits}/{steps} steps < "
                        f"{tol['top1_in_top5']:.0%} ({quant})")
    a, b = np.concatenate(got_centred), np.concatenate(want_centred)
    cosine = float(a @ b / max(1e-12, float(np.linalg.norm(a) * np.linalg.norm(b))))
    if cosine < tol["centred_cosine"]:
        problems.append(f"centred top-5 logits cosine {cosine:.4f} < {tol['centred_cosine']} ({quant})")
    return problems


def compare_suggestions(case: dict, context_ids: list, ids: list, words: list, quant: str,
                        backend: str) -> list[str]:
    """Problems of one suggestion case (golden['cases'][i]) given the engine's context token ids
    and its top-3 suggestion ids and words."""
    where = f"context {case['context']!r} prefix {case['prefix']!r}"
    if list(context_ids) != case["context_ids"]:
        return [f"{where}: context tokens {list(context_ids)} != golden {case['context_ids']}"]
    want_ids, want_words = case["top3_ids"], [w.lower() for w in case["suggestions"]]
    if is_fp32(backend):
        problems = []
        if list(ids) != want_ids:
            problems.append(f"{where}: suggestion ids {list(ids)} != golden {want_ids}")
        if [w.lower() for w in words] != want_words:
            problems.append(f"{where}: suggestions {list(words)} != golden {case['suggestions']}")
        return problems
    tol = quant_tolerance(quant)
    if not ids:
        return [f"{where}: no suggestions (golden {case['suggestions']})"]
    problems = []
    if ids[0] not in want_ids:
        problems.append(f"{where}: top suggestion {words[0]!r} (id {ids[0]}) not in golden's top-3 "
                        f"{case['suggestions']}")
    shared = len(set(ids) & set(want_ids))
    need = min(tol["top3_overlap"], len(want_ids))
    if shared < need:
        problems.append(f"{where}: {shared} of {list(words)} in golden's top-3 "
                        f"{case['suggestions']}, want >= {need} ({quant})")
    for token_id, word in zip(ids, words):
        if token_id in want_ids and word.lower() != want_words[want_ids.index(token_id)]:
            problems.append(f"{where}: id {token_id} is {word!r}, golden "
                            f"{case['suggestions'][want_ids.index(token_id)]!r}")
    return problems
