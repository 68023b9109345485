"""Subcommands of the host-only measurement package for the `edgetype` CLI (see runtime/cli.py):
`eval ksr`, `bench latency` here, `eval window` from measure/cli_window.py. Commands with --json
print exactly one JSON object on stdout; progress goes to stderr."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from measure import cli_window
from measure.ngram import DEFAULT_ORDER
from runtime.argtypes import float_in, int_in, nonnegative_int, seed_int
from runtime.cli_suggest import BACKENDS, RANKING_OPTIONS, add_model_args, open_engine
from runtime.keystroke_core import CORE_NAMES
from runtime.errors import UserError

# The baseline trains on the SHIPPED model's training text (EVALUATION.md): models/default was trained
# on the session-3 corpus, kept as models/corpus/v1/train.txt.gz; models/corpus/train.txt.gz is the
# larger session-4 corpus (docs/corpus.md). Point this back at models/corpus/train.txt.gz when a
# model trained on it ships.
DEFAULT_TRAIN = Path(__file__).resolve().parents[1] / "models" / "corpus" / "v1" / "train.txt.gz"


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    p = groups["eval"].add_parser("ksr", help="keystroke savings and next-word accuracy (EVALUATION.md)")
    p.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text to type (.txt or .txt.gz), or a folder of "
                   "them (e.g. models/corpus/registers: one by_register entry per file)")
    p.add_argument("--suggestions", type=int_in(1, 100), default=3, metavar="K", help="suggestions shown (default 3)")
    add_model_args(p)
    p.add_argument("--plot", metavar="FILE.png", help="KSR and next-word accuracy per text segment")
    p.add_argument("--segments", type=int_in(1, 10000), default=10, help="text segments for --plot (default 10)")
    p.add_argument("--max-chars", type=nonnegative_int, default=0,
                   help="evaluate only the first N characters (0: all; reading stops there too)")
    p.add_argument("--baseline-train", metavar="FILE", default=str(DEFAULT_TRAIN),
                   help="training text of the n-gram baseline (default: the model's training split)")
    p.add_argument("--ngram-order", type=int_in(1, 9), default=DEFAULT_ORDER, help=f"Kneser-Ney order (default {DEFAULT_ORDER}, best on valid: docs/corpus.md)")
    p.add_argument("--no-baseline", action="store_true", help="skip the n-gram baseline column")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval_ksr)

    p = groups["eval"].add_parser("ngram", help="the n-gram baseline alone: perplexity and KSR on the valid split")
    p.add_argument("--train", default=str(DEFAULT_TRAIN))
    p.add_argument("--valid", default="models/corpus/valid.txt.gz")
    p.add_argument("--order", type=int, default=DEFAULT_ORDER)
    p.add_argument("--min-count", type=int, default=2)
    p.add_argument("--ksr-chars", type=int, default=100_000,
                   help="characters of --valid typed by the ideal user (0: skip KSR)")
    p.set_defaults(func=cmd_eval_ngram)

    p = groups["bench"].add_parser("latency", help="keystroke latency over a replayed typing session")
    add_model_args(p)
    p.add_argument("--text", metavar="FILE", help="text to type (default: the held-out test split)")
    p.add_argument("--keystrokes", type=int_in(1, 10**8), default=2000, help="keystrokes to replay (default 2000)")
    p.add_argument("--typo-rate", type=float_in(0.0, 0.5), default=0.03, help="share of keys that are typos, "
                   "fixed by backspace (default 0.03)")
    p.add_argument("--naive-samples", type=int_in(1, 10**6), default=100, help="keystrokes timed for the no-KV-cache "
                   "baseline (default 100)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--plot", metavar="FILE.png", help="latency histogram / time series")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-twin", action="store_true", help="skip the replay on the other keystroke core")
    p.add_argument("--count-instructions", type=int, default=200, metavar="N",
                   help="board CPU term from instructions counted under valgrind over N keystrokes "
                   "(default 200; 0: host time x 50 instead; needs valgrind and `make native-count`)")
    p.set_defaults(func=cmd_bench_latency)

    p = groups["bench"].add_parser("demo", help="end-to-end keystroke cost of the demo over a long text")
    p.add_argument("--backend", choices=BACKENDS, default="onnx", help="model backend (default onnx)")
    p.add_argument("--bundle", metavar="DIR", help="bundle directory (default: the shipped one)")
    p.add_argument("--text", metavar="FILE", help="text to type (default: the held-out test split)")
    p.add_argument("--chars", type=int_in(1, 10**7), default=20000, help="characters of the text to type (default 20000)")
    p.add_argument("--core", choices=CORE_NAMES, default="auto",
                   help="keystroke core (default auto: native, else python, said on stderr and in the JSON)")
    p.add_argument("--no-accept", action="store_true", help="type every character (no Alt+N accepts)")
    p.add_argument("--outside", metavar="N,N,...", help="also time whole `demo --replay` processes typing "
                   "these many characters (wall time minus start-up, per key)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter (what a user waits for; default); cpu: process CPU time (all "
                   "threads), which other load on a shared host does not inflate")
    p.add_argument("--plot", metavar="FILE.png", help="per-key time against position in the text")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_demo)
    cli_window.register(subparsers, groups)


def cmd_eval_ksr(args) -> int:
    from measure.evaluate import (NgramPredictor, check_output_writable, eval_text_files, evaluate_ksr_registers,
                                  load_baseline, plot_ksr, read_eval_text)

    if args.suggestions < 1:
        raise UserError(f"--suggestions {args.suggestions}: need at least 1")
    if args.plot:
        check_output_writable(args.plot)  # before the evaluation, whose result would be lost
    texts, replaced = [], 0
    for register, path in eval_text_files(args.text):  # a folder: one text per register file
        text, replaced_here = read_eval_text(path, args.max_chars)  # --max-chars per file, bounds the read
        if replaced_here:
            print(f"{path}: {replaced_here} invalid UTF-8 sequences replaced by U+FFFD", file=sys.stderr)
        texts.append((register, text))
        replaced += replaced_here
    bundle, session = open_engine(args)
    with session:
        baseline = None
        if not args.no_baseline:
            baseline = NgramPredictor(load_baseline(Path(args.baseline_train), args.ngram_order))
        segment_chars = max(1, len(texts[0][1]) // max(args.segments, 1)) if args.plot else 0
        report = evaluate_ksr_registers(texts, session, args.suggestions, baseline, segment_chars)
    report = {**report, "text": str(args.text), "replaced_chars": replaced,
              **{name: getattr(session, name) for name, *_ in RANKING_OPTIONS},
              "non_ascii_chars": sum(1 for _, text in texts for c in text if ord(c) > 127), "bundle": bundle.describe()}
    if baseline is not None:
        report["baseline"]["train"] = str(args.baseline_train)
        report["baseline"]["order"] = args.ngram_order
    if not args.plot:
        report.pop("segments", None)
        if "baseline" in report:
            report["baseline"].pop("segments", None)
    _print_ksr(args, report)  # results first: a failing plot cannot lose them
    if args.plot:
        plot_ksr(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _print_ksr(args, report: dict) -> None:
    if args.json:
        print(json.dumps(report))
    else:
        rows = [("model (" + report["backend"] + ")", report)] + ([("n-gram baseline", report["baseline"])]
                                                                  if "baseline" in report else [])
        print(f"{'':22} {'KSR':>7} {'top-1':>7} {'top-3':>7} {'keys':>8} {'chars':>8}")
        for label, r in rows:
            print(f"{label:22} {r['ksr']:7.4f} {r['top1_next_word']:7.4f} {r['top3_next_word']:7.4f} "
                  f"{r['keystrokes']:8d} {r['chars']:8d}")
        for register, r in report.get("by_register", {}).items():
            print(f"{'  ' + register:22} {r['ksr']:7.4f} {r['top1_next_word']:7.4f} {r['top3_next_word']:7.4f} "
                  f"{r['keystrokes']:8d} {r['chars']:8d}")


def cmd_bench_demo(args) -> int:
    from measure.bench_demo import run_demo_bench

    report = run_demo_bench(args)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


def cmd_bench_latency(args) -> int:
    from measure.bench import run_latency_bench

    report = run_latency_bench(args)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    if getattr(args, "draw_plot", None):
        args.draw_plot()  # after the results are printed
    return 0


def cmd_eval_ngram(args) -> int:
    """`eval ngram`: train (or load from the cache) the baseline and measure it on a valid split.

    Prints one JSON object: training/loading time, perplexity on --valid, and KSR / next-word
    accuracy (EVALUATION.md, measure/evaluate.py's ideal user) on its first --ksr-chars chars.
    """
    import time

    from measure.evaluate import NgramPredictor, simulate_ideal_user
    from measure.ngram import iter_corpus_paragraphs, load_or_train, perplexity

    for path in (args.train, args.valid):
        if not Path(path).is_file():
            raise UserError(f"{path}: missing; run `edgetype corpus build`")
    started = time.perf_counter()
    model = load_or_train(args.train, args.order, args.min_count)
    report: dict = {"order": model.order, "vocab": model.V, "train": args.train,
                    "ngrams_per_order": [int(len(level["keys"])) for level in model.levels],
                    "load_or_train_s": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    report["valid"] = {**perplexity(model, iter_corpus_paragraphs(args.valid)),
                       "seconds": round(time.perf_counter() - started, 1)}
    if args.ksr_chars:
        paragraphs, size = [], 0
        for paragraph in iter_corpus_paragraphs(args.valid):
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
            if size >= args.ksr_chars:
                break
        text = "\n\n".join(paragraphs) + "\n"
        started = time.perf_counter()
        result = simulate_ideal_user(text, NgramPredictor(model), 3)
        report["ksr"] = {**result.total.metrics(), "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(report))
    return 0
