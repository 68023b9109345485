"""The TPU-free board code paths, run the same way on riscv64 (qemu) and on x86 (ci/riscv64.sh).

    python3 riscv64_smoke.py --bundle DIR      -> one JSON object on stdout

Checks: the bundle loads and passes its checks (runtime.bundle); the `numpy` backend decodes the
bundle's golden token sequence (top-5 ids and logits per step, compared with golden.json from
onnxruntime fp32: board_tests/onboard/golden.py's fp32 tolerance, 1e-3); the engine's suggestions
for every golden case with the numpy backend (golden's top-3 ids exactly); the KV
window (kv_window.KVWindow, sink policy on 16 slots) over 40 tokens, so it evicts; the keymap
(keyboard_ui.keymap) on a fixed key sequence. Each check records its values so that
board_tests/riscv64.py can compare the riscv64 report with the x86 one number by number.
numpy only, like the board.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback

if __package__ in (None, ""):  # run as a file: make `board_tests.onboard` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _top5(logits):
    import numpy as np

    ids = np.argsort(-logits, kind="stable")[:5]
    return [int(i) for i in ids], [round(float(logits[i]), 4) for i in ids]


def check_bundle(bundle_dir):
    from runtime.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    return {"chip": bundle.chip, "quant": bundle.quant, "window": bundle.window,
            "vocab_size": bundle.config.vocab_size}


def check_numpy_golden(bundle_dir):
    from board_tests.onboard import boardenv
    from board_tests.onboard.decode import load_embedding
    from tpu_driver.feeder import InOrderFeeder
    from board_tests.onboard.golden import compare_logits
    from runtime.bundle import load_bundle
    from tpu_driver.backends import open_backend

    golden = boardenv.read_golden(bundle_dir)
    backend = open_backend("numpy", load_bundle(bundle_dir))
    try:
        decoder = InOrderFeeder(backend, load_embedding(bundle_dir))
        decoder.reset()
        started = time.perf_counter()
        logits = [decoder.step(t).copy() for t in golden["tokens"]]
        step_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(logits))
    finally:
        backend.close()
    problems = compare_logits(logits, golden, load_bundle(bundle_dir).quant, "numpy")
    steps = [_top5(row) for row in logits]
    return {"top5_ids": [s[0] for s in steps], "top5_logits": [s[1] for s in steps],
            "golden_problems": problems, "step_ms": round(step_ms, 2)}


def check_engine(bundle_dir):
    from board_tests.onboard import boardenv
    from board_tests.onboard.golden import compare_suggestions
    from runtime.engine import open_session

    golden = boardenv.read_golden(bundle_dir)
    texts, words, ids, probs, problems = [], [], [], [], []
    session = open_session(bundle=bundle_dir, backend="numpy", recent_weight=0.0,
                           recent_bigram_weight=0.0)  # golden.json is the model alone: no session cache
    try:
        for case in golden["cases"]:
            session.reset()
            session.insert(case["context"] + " " + case["prefix"])  # the context's last word is complete
            got = session.suggestions(k=3)
            texts.append(case["context"] + " " + case["prefix"])
            words.append([s.word for s in got])
            ids.append([int(s.token_id) for s in got])
            probs.append([round(float(s.prob), 5) for s in got])
            problems += compare_suggestions(case, session.context_tokens, ids[-1], words[-1],
                                            "fp32", "numpy")
    finally:
        session.close()
    return {"contexts": texts, "words": words, "suggestion_ids": ids, "probs": probs,
            "golden_words": [case["suggestions"] for case in golden["cases"]],
            "golden_problems": problems}


def check_kv_window(bundle_dir):
    import numpy as np

    from board_tests.onboard import boardenv
    from board_tests.onboard.decode import load_embedding
    from kv_window.window import KVWindow
    from runtime.bundle import load_bundle
    from tpu_driver import decode_step
    from tpu_driver.backends import open_backend

    bundle = load_bundle(bundle_dir)
    embedding = load_embedding(bundle_dir)
    tokens = boardenv.read_golden(bundle_dir)["tokens"]
    backend = open_backend("numpy", bundle)
    try:
        window = KVWindow(backend, bundle.config, policy="sink", window=16, sink_tokens=4,
                          evict_batch=4)
        window.reset()
        x = np.zeros((1, 1, embedding.shape[1]), np.float32)  # (1,1,D) f32
        for i in range(40):
            x[0, 0, :] = embedding[tokens[i % len(tokens)]]
            backend.input(decode_step.X).write(x)
            window.prepare_step()
            backend.run()
            window.commit_step()
        logits = backend.output(decode_step.LOGITS).read().reshape(-1)
        ids, values = _top5(logits)
        kept = [int(t) for t in window.kept_tokens()]
    finally:
        backend.close()
    return {"kept_tokens": kept, "top5_ids": ids, "top5_logits": values}


def check_keymap(_bundle_dir):
    from keyboard_ui.keymap import char_for_key

    # h e l l o , space W(shift) o r l d 1 !(shift+1) with caps lock on: a b
    keys = [(35, False, False), (18, False, False), (38, False, False), (38, False, False),
            (24, False, False), (51, False, False), (57, False, False), (17, True, False),
            (24, False, False), (19, False, False), (38, False, False), (32, False, False),
            (2, False, False), (2, True, False), (30, False, True), (48, True, True)]
    return {"typed": "".join(char_for_key(c, s, k) or "" for c, s, k in keys)}


CHECKS = [("bundle", check_bundle), ("numpy_golden", check_numpy_golden),
          ("engine_suggestions", check_engine), ("kv_window", check_kv_window),
          ("keymap", check_keymap)]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--bundle" not in argv:
        print("usage: riscv64_smoke.py --bundle DIR", file=sys.stderr)
        return 2
    bundle_dir = argv[argv.index("--bundle") + 1]
    try:
        import numpy
        numpy_version = numpy.__version__
    except ImportError:
        numpy_version = None
    report = {"machine": platform.machine(), "python": sys.version.split()[0],
              "numpy": numpy_version, "checks": {}}
    for name, check in CHECKS:
        started = time.perf_counter()
        try:
            values = check(bundle_dir)
            report["checks"][name] = {"ok": True, "values": values}
        except Exception as error:  # noqa: BLE001 - every check reports, none stops the others
            report["checks"][name] = {
                "ok": False, "error": f"{type(error).__name__}: {error}",
                "where": traceback.format_exc(limit=-2).strip().splitlines()[-3:]}
        report["checks"][name]["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(report, sort_keys=True))
    return 0 if all(c["ok"] for c in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
