"""`edgetype` command line: one dispatcher, each package registers its own subcommands.

Every package owns a `cli.py` with `register(subparsers, groups)`; `groups` holds the shared
sub-command groups (`eval`, `bench`, `board`) so that e.g. `eval ksr` (runtime) and `eval window`
(kv_window) live in their own packages. A subcommand stores its handler as `func` and returns an
exit code. Errors that are the user's (bad file, missing toolchain) are raised as `UserError` and
printed as one line, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from runtime.errors import UserError

# (module, what it provides) in the order they appear in `edgetype --help`
_SUBCOMMAND_MODULES = [
    "tpu_driver.cli",  # info, selftest
    "model_export.cli",  # toolchain, corpus, train, export, verify
    "runtime.cli_engine",  # eval ksr, bench latency, suggest
    "kv_window.cli",  # eval window
    "keyboard_ui.cli",  # demo
    "board_tests.cli",  # board test, board deploy
    "firmware.cli",  # firmware overlay
]
# Packages a board install may leave out; any other import failure is a bug and is raised.
_HOST_ONLY_PACKAGES = {"model_export", "board_tests", "firmware"}
# Third-party packages the board code needs; without them a command cannot start, and says so in
# one line. The init script exports EDGETYPE_ADD_<NAME> (firmware/images.py: how to add it on
# the image the overlay was built for).
_REQUIRED_PACKAGES = {"numpy": "pip install numpy; Debian: apt-get install python3-numpy; "
                               "buildroot: BR2_PACKAGE_PYTHON_NUMPY=y"}
_GROUPS = {
    "eval": "measure suggestion quality (EVALUATION.md)",
    "bench": "measure speed (EVALUATION.md)",
    "board": "talk to a board over its serial console",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgetype",
        description="Keyboard autocomplete with a transformer LM on cvitek CV180x/CV181x TPUs.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups = {}
    for name, help_text in _GROUPS.items():
        group_parser = subparsers.add_parser(name, help=help_text)
        groups[name] = group_parser.add_subparsers(dest=f"{name}_command", metavar="WHAT")
        group_parser.set_defaults(func=lambda args, p=group_parser: (p.print_help(), 2)[1])
    missing = []
    for module_name in _SUBCOMMAND_MODULES:
        package = module_name.split(".")[0]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # A board install carries only the on-board packages (firmware/README.md): the
            # host-only ones are absent there, and their commands are simply not offered.
            # the overlay ships board_tests/onboard but not board_tests/cli.py: the missing
            # module may be the package or the sub-module
            missing_name = error.name or ""
            if package not in _HOST_ONLY_PACKAGES or missing_name not in (package, module_name):
                raise
            missing.append(package)
            continue
        module.register(subparsers, groups)
    if missing:
        parser.epilog = f"not installed here (host-only): {', '.join(missing)}"
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ModuleNotFoundError as error:
        if error.name not in _REQUIRED_PACKAGES:
            raise
        hint = os.environ.get(f"EDGETYPE_ADD_{error.name.upper()}") or _REQUIRED_PACKAGES[error.name]
        print(f"edgetype: error: {sys.executable} has no {error.name} (edgetype's model runs on "
              f"it): {hint}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"edgetype: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgetype: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
