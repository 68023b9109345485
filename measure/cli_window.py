"""Subcommands of this package for the `edgetype` CLI (see runtime/cli.py): `eval window`.

    edgetype eval window --text FILE --window W --policy P [--backend numpy|onnx] [--bundle DIR]
                         [--plot FILE.png] [--sweep 16,32,64,128] [--json]

Fidelity of the pruned window against full context on the same tokens (measure/window_fidelity.py,
EVALUATION.md "KV window fidelity"). `--random-weights SEED` runs without a trained model (the
tokenizer is then trained on the text itself): for testing the harness only, numbers mean nothing.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from runtime.argtypes import MAX_WINDOW, int_in, int_list, positive_int, seed_int
from runtime.errors import UserError

from kv_window.policies import DEFAULT_POLICY, POLICIES, POSITION_SCHEMES, policy_class


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    p = groups["eval"].add_parser("window", help="KV window fidelity vs full context (top-1, KL, KSR, step time)")
    p.add_argument("--text", required=True, help="UTF-8 text (or .gz) to evaluate on: held-out prose")
    p.add_argument("--window", type=int_in(2, MAX_WINDOW), default=None, help="slots W (default: the model's compiled window)")
    p.add_argument("--policy", default=DEFAULT_POLICY, choices=POLICIES)
    p.add_argument("--positions", default=None, choices=POSITION_SCHEMES,
                   help="key positions: 'cache' (rank among kept tokens, StreamingLLM) or 'original' "
                        "(token index); default per policy (docs/kv-window.md)")
    p.add_argument("--sink-tokens", type=int_in(0, MAX_WINDOW), default=None, help="default per policy (4; fifo 1)")
    p.add_argument("--evict-batch", type=int_in(1, MAX_WINDOW), default=None, help="default per policy (16; fifo 1)")
    p.add_argument("--backend", default="numpy", choices=("numpy", "onnx"))
    p.add_argument("--bundle", default=None, help="bundle or model directory (default: the shipped one)")
    p.add_argument("--random-weights", type=seed_int, default=None, metavar="SEED",
                   help="no trained model: random weights (tiny config), tokenizer trained on --text")
    p.add_argument("--max-chars", type=positive_int, default=20000, help="evaluate the first N characters (default 20000)")
    p.add_argument("--sweep", type=int_list(2, MAX_WINDOW), default=None, help="comma-separated windows: also run every policy at each")
    p.add_argument("--plot", default=None, help="PNG: fidelity vs window size for every policy (implies --sweep)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run_eval_window)

    b = groups["bench"].add_parser("window", help="a long session through the KV window: constant memory and step time?")
    b.add_argument("--text", required=True, help="UTF-8 text (or .gz), repeated until --chars characters")
    b.add_argument("--chars", type=int_in(1, 10**8), default=100000)
    b.add_argument("--window", type=int_in(2, MAX_WINDOW), default=None)
    b.add_argument("--policy", default=DEFAULT_POLICY, choices=POLICIES)
    b.add_argument("--positions", default=None, choices=POSITION_SCHEMES)
    b.add_argument("--sink-tokens", type=int_in(0, MAX_WINDOW), default=None, help="default per policy (4; fifo 1)")
    b.add_argument("--evict-batch", type=int_in(1, MAX_WINDOW), default=None, help="default per policy (16; fifo 1)")
    b.add_argument("--backend", default="numpy", choices=("numpy", "onnx"))
    b.add_argument("--bundle", default=None)
    b.add_argument("--random-weights", type=seed_int, default=None, metavar="SEED",
                   help="no trained model: random weights of the default config (timing only)")
    b.add_argument("--no-model", action="store_true",
                   help="time the window alone: prepare_step + commit_step, no backend.run()")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=run_bench_window, max_chars=None)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_model(args):
    """(weights, cfg, tokenizer, bundle or None, description)."""
    import numpy as np

    from tpu_driver.reference_model import ModelConfig, init_weights, load_weights

    if args.random_weights is not None:
        from measure.evaluate import read_eval_text
        from runtime.tokenizer import Tokenizer

        text, _ = read_eval_text(args.text)
        tokenizer = Tokenizer.train([text[: args.max_chars]], vocab_size=2048, min_count=1)
        if args.func is run_bench_window:  # timing: the default (shipped) model size
            tokenizer = Tokenizer.train([text], vocab_size=8192, min_count=1)
            cfg = ModelConfig(window=args.window or 128)  # V 8192 etc.: the shipped size
            return (init_weights(cfg, seed=args.random_weights), cfg, tokenizer, None,
                    f"random weights (seed {args.random_weights}, default config)")
        cfg = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4, d_ff=128,
                          window=args.window or 64)
        weights = init_weights(cfg, seed=args.random_weights)
        weights["embedding"] *= np.float32(20.0)  # peakier random distributions, else every KL is ~0
        return weights, cfg, tokenizer, None, f"random weights (seed {args.random_weights}, d_model 64, 2 layers)"
    from runtime.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    try:
        weights = load_weights(bundle.weights_path, bundle.config)
    except (OSError, ValueError) as error:
        raise UserError(f"{bundle.weights_path}: {error}; rebuild the bundle") from None
    return weights, bundle.config, bundle.tokenizer, bundle, str(bundle.dir)


def _open_backend(args, cfg, weights, bundle, slots: int):
    if args.backend == "numpy":
        from tpu_driver.backends.numpy_ref import NumpyBackend

        return NumpyBackend(dataclasses.replace(cfg, window=slots), weights)
    if bundle is None:
        raise UserError("--backend onnx needs a bundle with model.onnx (--bundle DIR), not --random-weights")
    from tpu_driver.backends import open_backend

    return open_backend("onnx", bundle)


def _measure(args, text, tokens, tokenizer, weights, cfg, bundle, full, ksr_full, policy, window, evict_batch):
    from measure.window_fidelity import agreement, ksr, summarize_steps, window_logits
    from kv_window.window import KVWindow

    backend = _open_backend(args, cfg, weights, bundle, slots=window)
    try:
        kv = KVWindow(backend, cfg, policy=policy, window=window, sink_tokens=args.sink_tokens,
                      evict_batch=evict_batch, positions=args.positions, weights=weights)
        rows, step_ms, changed = window_logits(backend, cfg, weights["embedding"], tokens, kv)
    finally:
        backend.close()
    top1, kl = agreement(full, rows)
    result = {"window": window, "policy": policy, "positions": kv.positions, "evict_batch": kv.layout.batch,
              "steps": len(tokens), "top1_agreement": round(top1, 5), "kl_mean": round(kl, 6),
              "ksr_full": round(ksr_full, 5), "ksr_window": round(ksr(text, tokenizer, rows), 5)}
    result.update(summarize_steps(step_ms, changed))
    return result


def run_eval_window(args) -> int:
    from measure.evaluate import read_eval_text

    from measure.evaluate import check_output_writable
    from measure.window_fidelity import full_context_logits, ksr, plot_sweep

    if args.plot:
        check_output_writable(args.plot)  # before the sweep, whose result would be lost
    text, _ = read_eval_text(args.text, args.max_chars)  # --max-chars bounds the read too
    weights, cfg, tokenizer, bundle, model = _load_model(args)
    tokens = tokenizer.encode(text, bos=True)
    window = args.window or cfg.window
    if args.backend == "onnx" and window > cfg.window:
        raise UserError(f"--window {window} > the onnx graph's {cfg.window} slots; use --window <= {cfg.window} "
                        "or --backend numpy")
    _log(f"eval window: {len(text)} chars, {len(tokens)} tokens, model {model}; full-context pass ...")
    full = full_context_logits(weights, cfg, tokens)
    ksr_full = ksr(text, tokenizer, full)
    _log(f"full context: ksr {ksr_full:.4f}; windowed pass (W={window}, {args.policy}) ...")
    result = _measure(args, text, tokens, tokenizer, weights, cfg, bundle, full, ksr_full, args.policy, window,
                      args.evict_batch)
    result.update({"backend": args.backend, "model": model, "text": str(args.text), "chars": len(text),
                   "full_context": "all previous tokens, positions 0..T-1, no pruning (numpy float32, "
                                   "reference_model math)",
                   "timing_note": "step = prepare_step + backend.run + commit_step on this host, gc paused"})
    if args.plot or args.sweep:
        windows = args.sweep or [16, 32, 64, 128]
        sweep = []
        for w in windows:
            if args.backend == "onnx" and w > cfg.window:
                _log(f"sweep: skip W={w} (> onnx graph's {cfg.window} slots)")
                continue
            for policy in POLICIES:
                wanted = policy_class(policy).default_evict_batch if args.evict_batch is None else args.evict_batch
                batch = min(wanted, max(1, w // 8))
                try:
                    row = _measure(args, text, tokens, tokenizer, weights, cfg, bundle, full, ksr_full, policy, w, batch)
                except UserError as error:  # e.g. window too small for the policy's layout
                    _log(f"sweep: skip {policy} W={w}: {error}")
                    continue
                _log(f"sweep: W={w:4d} {policy:8s} top1 {row['top1_agreement']:.4f} kl {row['kl_mean']:.4f} "
                     f"ksr {row['ksr_window']:.4f} (full {ksr_full:.4f}) median {row['median_step_ms']:.3f} ms "
                     f"max {row['max_step_ms']:.3f} ms")
                sweep.append(row)
        result["sweep"] = sweep
        if args.plot:
            result["plot"] = args.plot
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("window", "policy", "positions", "steps", "top1_agreement", "kl_mean", "ksr_full", "ksr_window",
                    "median_step_ms", "max_step_ms"):
            print(f"{key:16s} {result[key]}")
    if args.plot:  # results first: a failing plot cannot lose them
        plot_sweep(result["sweep"], args.plot,
                   f"KV window fidelity, {Path(args.text).name}, {len(tokens)} tokens, {model}")
    return 0


def run_bench_window(args) -> int:
    import platform

    from measure.evaluate import read_eval_text

    from measure.window_fidelity import long_session
    from kv_window.window import KVWindow

    text, _ = read_eval_text(args.text)
    text = (text * (args.chars // max(1, len(text)) + 1))[: args.chars]
    weights, cfg, tokenizer, bundle, model = _load_model(args)
    tokens = tokenizer.encode(text, bos=True)
    window = args.window or cfg.window
    _log(f"bench window: {len(text)} chars, {len(tokens)} tokens, W={window} {args.policy}, {args.backend}, model {model}")
    backend = _open_backend(args, cfg, weights, bundle, slots=window)
    try:
        kv = KVWindow(backend, cfg, policy=args.policy, window=window, sink_tokens=args.sink_tokens,
                      evict_batch=args.evict_batch, positions=args.positions, weights=weights)
        result = long_session(backend, cfg, weights["embedding"], tokens, kv, run_model=not args.no_model)
    finally:
        backend.close()
    result.update({"chars": len(text), "window": window, "policy": args.policy, "positions": kv.positions,
                   "backend": args.backend, "model": model, "host": platform.node() or "?",
                   "timing_note": "step = prepare_step + backend.run + commit_step on this host, gc paused"})
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24s} {value}")
    return 0
