"""Subcommands of this package for the `edgetype` CLI (see runtime/cli.py): info.

`selftest` compiles a graph, so it lives with the compiler in model_export/ (host only)."""
from __future__ import annotations

import json
import platform

from tpu_driver import simulator_paths


def info_report() -> dict:
    from tpu_driver.backends import available_backends

    backends = {name: a.as_dict() for name, a in available_backends().items()}
    try:
        from tpu_driver import gateway

        tpu_device, board_chip = gateway.tpu_device_path(), gateway.board_chip()
    except ModuleNotFoundError as error:  # an image without cffi (Milk-V V2): tpu says why above
        if error.name != "cffi":
            raise
        tpu_device = board_chip = None
    report = {"backends": backends, "machine": platform.machine(), "python": platform.python_version(),
              "tpu_device": tpu_device, "board_chip": board_chip}
    report["toolchain"] = {"dir": str(simulator_paths.toolchain_dir()),
                           "tpu_mlir_version": simulator_paths.tpu_mlir_version(),
                           "expected_tpu_mlir_version": simulator_paths.TPU_MLIR_VERSION}
    return report


def _cmd_info(args) -> int:
    report = info_report()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, entry in report["backends"].items():
        mark = "yes" if entry["available"] else "no "
        version = f" {entry['version']}" if entry["version"] else ""
        print(f"{name:7} {mark}{version:10} {entry['reason']}")
        if entry["library_path"]:
            print(f"{'':11}{entry['library_path']}")
    return 0


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    info = subparsers.add_parser("info", help="which backends (tpu, cmodel, onnx, numpy) run here, and why not")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_cmd_info)
