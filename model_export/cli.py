"""Subcommands of this package for the `edgetype` CLI (see runtime/cli.py).

toolchain (model_export/toolchain.py), selftest (model_export/selftest.py), corpus (model_export/corpus.py), train, export, verify.
Heavy imports (torch, onnx, the toolchain) happen inside the handlers, so `edgetype --help`
stays fast and works where they are missing.
"""
from __future__ import annotations

import json
from pathlib import Path

from runtime.argtypes import MAX_WINDOW, int_in

REPO = Path(__file__).resolve().parents[1]  # defaults resolve against the checkout, not the cwd


def _cmd_train(args) -> int:
    from model_export.train import run_train_command
    return run_train_command(args)


def _cmd_tokenization_study(args) -> int:
    from model_export.tokenization_study import run_study_command
    return run_study_command(args)


def _cmd_export(args) -> int:
    from model_export.export import run_export_command
    return run_export_command(args)


def _cmd_verify(args) -> int:
    from model_export.verify import run_verify_command
    return run_verify_command(args)


def _cmd_selftest(args) -> int:
    from model_export.selftest import run_selftest

    report = run_selftest(chip=args.chip)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        verdict = "PASS" if report["ok"] else "FAIL"
        print(f"selftest {verdict}: cmodel (simulator, {report['chip']} {report['quant']}) vs onnxruntime "
              f"cosine {report['cosine']:.6f} (need >= {report['min_cosine']}); simulator run "
              f"{report['cmodel_run_ms_simulator']} ms, cvimodel {report['cvimodel']}")
    return 0 if report["ok"] else 1


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    from model_export import calibrate_estimate, corpus, toolchain
    toolchain.register_toolchain(subparsers)
    selftest = subparsers.add_parser("selftest", help="compile a tiny graph, run it on cmodel and onnx, compare")
    selftest.add_argument("--chip", default="cv181x", choices=("cv181x", "cv180x"))
    selftest.add_argument("--json", action="store_true", help="print one JSON object")
    selftest.set_defaults(func=_cmd_selftest)
    corpus.register_corpus(subparsers)
    calibrate_estimate.register(subparsers, groups)

    train = subparsers.add_parser("train", help="train the tokenizer and the model (PyTorch)")
    from model_export.train import add_train_arguments
    add_train_arguments(train)
    train.set_defaults(func=_cmd_train)

    study = subparsers.add_parser("tokenization-study", help="word-level vs character-level KSR (docs/model.md)")
    from model_export.tokenization_study import add_study_arguments
    add_study_arguments(study)
    study.set_defaults(func=_cmd_tokenization_study)

    export = subparsers.add_parser("export", help="export a trained model to a bundle (ONNX + cvimodel)")
    export.add_argument("--chip", required=True, help="cv181x (Duo 256M) or cv180x (Duo); "
                                                      "'none' writes an onnx-only bundle")
    export.add_argument("--quant", default="bf16", help="bf16 or int8")
    export.add_argument("--window", type=int_in(2, MAX_WINDOW), default=None, help="KV window W (default: config.json)")
    export.add_argument("--model", default=str(REPO / "models/default"), help="trained model folder")
    export.add_argument("--corpus", default=str(REPO / "models/corpus"),
                        help="folder with valid.txt.gz (INT8 calibration and golden.json text)")
    export.add_argument("-o", "--output", required=True, help="bundle folder to write")
    export.add_argument("--keep-intermediates", default=None, metavar="DIR",
                        help="copy the tpu-mlir work folder (mlir, logs) here")
    export.add_argument("--bf16-matmuls", default=None, metavar="REGEX",
                        help="int8 only: weight matrices kept BF16, by ONNX initializer name (default per chip: "
                             "model_export/export.py BF16_MATMUL_WEIGHTS_IN_INT8_BY_CHIP)")
    export.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    export.set_defaults(func=_cmd_export)

    verify = subparsers.add_parser("verify", help="compare a bundle's cvimodel (cmodel) with its ONNX step by step")
    verify.add_argument("bundle", nargs="?", default=str(REPO / "models/bundles/cv181x-int8-w128"))
    verify.add_argument("--steps", type=int_in(1, MAX_WINDOW), default=64)
    verify.add_argument("--typing", metavar="FILE", help="type the text through the engine on the cmodel and "
                        "on the onnx reference; report suggestion_agreement, ksr_cmodel, ksr_reference")
    verify.add_argument("--chars", type=int_in(1, 10**8), default=2000, help="with --typing: characters of FILE to type")
    verify.add_argument("--corpus", default=str(REPO / "models/corpus"), help="folder with valid.txt.gz")
    verify.add_argument("--debug", action="store_true",
                        help="name the first compiled tensor that diverges from onnxruntime")
    verify.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    verify.set_defaults(func=_cmd_verify)
