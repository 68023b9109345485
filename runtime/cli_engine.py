"""Subcommands of the engine for the `edgetype` CLI (see runtime/cli.py): `suggest`, `eval ksr`,
`bench latency`. Commands with --json print exactly one JSON object on stdout; progress goes to stderr."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from kv_window.policies import DEFAULT_POLICY, POLICIES
from runtime.errors import UserError
from runtime.ngram import DEFAULT_ORDER

BACKENDS = ("onnx", "cmodel", "tpu", "numpy")
DEFAULT_TRAIN = Path(__file__).resolve().parents[1] / "models" / "corpus" / "train.txt.gz"


# Session keyword arguments that are also flags: (name, metavar, engine constant, what it is).
RANKING_OPTIONS = (
    ("recent_weight", "LAM", "RECENT_WEIGHT", "share of the session's recent-words cache in the ranking; 0 turns it off"),
    ("recent_bigram_weight", "MU", "RECENT_BIGRAM_WEIGHT", "share of the session's bigram cache; 0 turns it off"),
    ("recent_trigram_backoff", "BETA", "RECENT_TRIGRAM_BACKOFF",
     "pseudo-count of the bigram inside the cache's trigram estimate; large = bigram only"),
    ("lexicon_weight", "W", "LEXICON_WEIGHT", "factor on the OOV-lexicon words' probability; 0 turns the lexicon off"),
)


def _add_model_args(parser, default_backend: str = "onnx") -> None:
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend,
                        help=f"which backend runs the model (default {default_backend}; never falls back)")
    parser.add_argument("--bundle", metavar="DIR", help="bundle directory (default: the shipped one, "
                        "models/bundles/..., else models/default for onnx/numpy)")
    parser.add_argument("--window-policy", metavar="NAME", default=None,
                        help=f"kv_window pruning policy: {', '.join(POLICIES)} (default {DEFAULT_POLICY})")
    for name, metavar, constant, what in RANKING_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=None, metavar=metavar,
                            help=f"{what} (default runtime/engine.py {constant})")


def _open(args):
    from runtime.bundle import default_bundle_dir, load_bundle
    from runtime.engine import open_session

    bundle = load_bundle(args.bundle or default_bundle_dir())
    return bundle, open_session(bundle, backend=args.backend, window_policy=args.window_policy, **session_options(args))


def session_options(args) -> dict:
    """Session keyword arguments from the shared model flags (only those given)."""
    return {name: getattr(args, name) for name, *_ in RANKING_OPTIONS if getattr(args, name, None) is not None}


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    p = subparsers.add_parser("suggest", help="print the suggestions after a text")
    p.add_argument("text", help="typed text (the last word may be partial)")
    p.add_argument("-k", "--suggestions", type=int, default=3)
    p.add_argument("--json", action="store_true")
    _add_model_args(p)
    p.set_defaults(func=cmd_suggest)

    p = groups["eval"].add_parser("ksr", help="keystroke savings and next-word accuracy (EVALUATION.md)")
    p.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text to type (.txt or .txt.gz)")
    p.add_argument("--suggestions", type=int, default=3, metavar="K", help="suggestions shown (default 3)")
    _add_model_args(p)
    p.add_argument("--plot", metavar="FILE.png", help="KSR and next-word accuracy per text segment")
    p.add_argument("--segments", type=int, default=10, help="text segments for --plot (default 10)")
    p.add_argument("--max-chars", type=int, default=0, help="evaluate only the first N characters")
    p.add_argument("--baseline-train", metavar="FILE", default=str(DEFAULT_TRAIN),
                   help="training text of the n-gram baseline (default: the model's training split)")
    p.add_argument("--ngram-order", type=int, default=DEFAULT_ORDER, help=f"Kneser-Ney order (default {DEFAULT_ORDER}, best on valid: docs/corpus.md)")
    p.add_argument("--no-baseline", action="store_true", help="skip the n-gram baseline column")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval_ksr)

    p = groups["bench"].add_parser("latency", help="keystroke latency over a replayed typing session")
    _add_model_args(p)
    p.add_argument("--text", metavar="FILE", help="text to type (default: the held-out test split)")
    p.add_argument("--keystrokes", type=int, default=2000, help="keystrokes to replay (default 2000)")
    p.add_argument("--typo-rate", type=float, default=0.03, help="share of keys that are typos, "
                   "fixed by backspace (default 0.03)")
    p.add_argument("--naive-samples", type=int, default=100, help="keystrokes timed for the no-KV-cache "
                   "baseline (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="FILE.png", help="latency histogram / time series")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_latency)


def cmd_suggest(args) -> int:
    bundle, session = _open(args)
    with session:
        session.insert(args.text)
        suggestions = session.suggestions(args.suggestions)
    if args.json:
        print(json.dumps({"backend": session.backend_name, "text": args.text,
                          "suggestions": [{"word": s.word, "prob": round(s.prob, 6)} for s in suggestions]}))
    else:
        for s in suggestions:
            print(f"{s.word}\t{s.prob:.4f}")
    return 0


def cmd_eval_ksr(args) -> int:
    from runtime.evaluate import NgramPredictor, evaluate_ksr, load_baseline, plot_ksr, read_eval_text

    if args.suggestions < 1:
        raise UserError(f"--suggestions {args.suggestions}: need at least 1")
    text, replaced = read_eval_text(args.text)
    if args.max_chars > 0:
        text = text[:args.max_chars]
    if replaced:
        print(f"{args.text}: {replaced} invalid UTF-8 sequences replaced by U+FFFD", file=sys.stderr)
    bundle, session = _open(args)
    with session:
        baseline = None
        if not args.no_baseline:
            baseline = NgramPredictor(load_baseline(Path(args.baseline_train), args.ngram_order))
        segment_chars = max(1, len(text) // max(args.segments, 1)) if args.plot else 0
        report = evaluate_ksr(text, session, args.suggestions, baseline, segment_chars)
    report = {**report, "text": str(args.text), "replaced_chars": replaced,
              **{name: getattr(session, name) for name, *_ in RANKING_OPTIONS},
              "non_ascii_chars": sum(1 for c in text if ord(c) > 127), "bundle": bundle.describe()}
    if baseline is not None:
        report["baseline"]["train"] = str(args.baseline_train)
        report["baseline"]["order"] = args.ngram_order
    if args.plot:
        plot_ksr(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if not args.plot:
        report.pop("segments", None)
        if "baseline" in report:
            report["baseline"].pop("segments", None)
    if args.json:
        print(json.dumps(report))
    else:
        rows = [("model (" + report["backend"] + ")", report)] + ([("n-gram baseline", report["baseline"])]
                                                                  if "baseline" in report else [])
        print(f"{'':22} {'KSR':>7} {'top-1':>7} {'top-3':>7} {'keys':>8} {'chars':>8}")
        for label, r in rows:
            print(f"{label:22} {r['ksr']:7.4f} {r['top1_next_word']:7.4f} {r['top3_next_word']:7.4f} "
                  f"{r['keystrokes']:8d} {r['chars']:8d}")
    return 0


def cmd_bench_latency(args) -> int:
    from runtime.bench import run_latency_bench

    report = run_latency_bench(args)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0
