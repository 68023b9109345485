"""`edgetype` command line: one dispatcher, each package registers its own subcommands.

Every package owns a `cli.py` with `register(subparsers, groups)`; `groups` holds the shared
sub-command groups (`eval`, `bench`, `board`) so that e.g. `bench latency` (measure)
and `bench calibrate-estimate` (model_export) live in their own packages. A subcommand stores its handler as `func` and returns an
exit code. Errors that are the user's (bad file, missing toolchain) are raised as `UserError` and
printed as one line, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from runtime.errors import UserError

# (module, what it provides) in the order they appear in `edgetype --help`
_SUBCOMMAND_MODULES = [
    "tpu_driver.cli",  # info
    "runtime.cli_suggest",  # suggest
    "keyboard_ui.cli",  # demo
    "model_export.cli",  # toolchain, selftest, corpus, train, export, verify, bench calibrate-estimate
    "measure.cli",  # eval ksr, eval window, bench latency
    "board_tests.cli",  # board test, board deploy
    "firmware.cli",  # firmware overlay
]
# Host-only command modules: a board install (the firmware overlay) leaves them out, and their
# commands are then simply not offered. The overlay ships board_tests/__init__.py and
# board_tests/onboard/ but not board_tests/cli.py, so presence is checked per module, not per
# package. A board module that is missing, or any import error inside a present module, is a
# broken install or a bug and is raised.
HOST_ONLY_MODULES = frozenset({"model_export.cli", "measure.cli", "board_tests.cli", "firmware.cli"})
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


def _module_present(module_name: str) -> bool:
    """True when `module_name` can be found (its package imports and the file is there)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # the parent package itself is absent
        return False


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`edgetype: error: ...`, exit 2) like a UserError;
    `--help` still prints the usage. Sub-parsers inherit the class."""

    def error(self, message: str):
        command = self.prog[len("edgetype"):].strip() if self.prog.startswith("edgetype") else self.prog
        where = f"{command}: " if command else ""
        self.exit(2, f"edgetype: error: {where}{' '.join(message.split())}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
        if module_name in HOST_ONLY_MODULES and not _module_present(module_name):
            missing.append(module_name)
            continue
        importlib.import_module(module_name).register(subparsers, groups)
    if missing:
        parser.epilog = f"not installed here (host-only): {', '.join(missing)}"
    return parser


def _missing_package_line(error: ModuleNotFoundError) -> str | None:
    """One line for a required third-party package that is missing, else None (a bug: raise)."""
    if error.name not in _REQUIRED_PACKAGES:
        return None
    hint = os.environ.get(f"EDGETYPE_ADD_{error.name.upper()}") or _REQUIRED_PACKAGES[error.name]
    return f"edgetype: error: {sys.executable} has no {error.name} (edgetype's model runs on it): {hint}"


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except ModuleNotFoundError as error:
        # the parser no longer needs numpy, but the commands do (the driver's tensors, the model)
        line = _missing_package_line(error)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    except UserError as error:
        print(f"edgetype: error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, always
        return 2
    except KeyboardInterrupt:
        print("edgetype: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
