"""The `suggest` subcommand (see runtime/cli.py) and the model flags every engine command shares.

Board side: `edgetype suggest` runs on the board. The measurement commands (`eval ksr`,
`bench latency`, host only) live in measure/cli.py and reuse `add_model_args` / `open_engine`.
Commands with --json print exactly one JSON object on stdout; progress goes to stderr.
"""
from __future__ import annotations

import json

from kv_window.policies import DEFAULT_POLICY, POLICIES
from runtime.argtypes import float_in, int_in
from runtime.keystroke_core import CORE_NAMES

BACKENDS = ("onnx", "cmodel", "tpu", "numpy")


# Session keyword arguments that are also flags: (name, metavar, engine constant, what it is).
RANKING_OPTIONS = (
    ("recent_weight", "LAM", "RECENT_WEIGHT", "share of the session's recent-words cache in the ranking; 0 turns it off"),
    ("recent_bigram_weight", "MU", "RECENT_BIGRAM_WEIGHT", "share of the session's bigram cache; 0 turns it off"),
    ("recent_trigram_backoff", "BETA", "RECENT_TRIGRAM_BACKOFF",
     "pseudo-count of the bigram inside the cache's trigram estimate; large = bigram only"),
    ("lexicon_weight", "W", "LEXICON_WEIGHT", "factor on the OOV-lexicon words' probability; 0 turns the lexicon off"),
)


def add_model_args(parser, default_backend: str = "onnx") -> None:
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend,
                        help=f"which backend runs the model (default {default_backend}; never falls back)")
    parser.add_argument("--bundle", metavar="DIR", help="bundle directory (default: the shipped one, "
                        "models/bundles/..., else models/default for onnx/numpy)")
    parser.add_argument("--window-policy", metavar="NAME", default=None,
                        help=f"kv_window pruning policy: {', '.join(POLICIES)} (default {DEFAULT_POLICY})")
    parser.add_argument("--core", choices=CORE_NAMES, default="auto",
                        help="keystroke core (runtime/keystroke_core.py; default auto: native, else the "
                        "numpy twin with a warning on stderr)")
    for name, metavar, constant, what in RANKING_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), type=float_in(0.0, 1e6), default=None, metavar=metavar,
                            help=f"{what} (default runtime/engine.py {constant})")


def open_engine(args):
    from runtime.bundle import default_bundle_dir, load_bundle
    from runtime.engine import open_session

    bundle = load_bundle(args.bundle or default_bundle_dir())
    return bundle, open_session(bundle, backend=args.backend, window_policy=args.window_policy, **session_options(args))


def session_options(args) -> dict:
    """Session keyword arguments from the shared model flags (only those given)."""
    options = {name: getattr(args, name) for name, *_ in RANKING_OPTIONS if getattr(args, name, None) is not None}
    if getattr(args, "core", "auto") != "auto":  # auto is the Session's default
        options["core"] = args.core
    return options


def register(subparsers, groups):
    """Add `suggest`; `groups` holds the shared `eval`/`bench`/`board` groups."""
    p = subparsers.add_parser("suggest", help="print the suggestions after a text")
    p.add_argument("text", help="typed text (the last word may be partial)")
    p.add_argument("-k", "--suggestions", type=int_in(1, 100), default=3)
    p.add_argument("--json", action="store_true")
    add_model_args(p)
    p.set_defaults(func=cmd_suggest)


def cmd_suggest(args) -> int:
    bundle, session = open_engine(args)
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
