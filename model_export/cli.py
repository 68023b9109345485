"""Subcommands of this package for the `edgetype` CLI (see runtime/cli.py)."""
from model_export.toolchain import register_toolchain


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    register_toolchain(subparsers)
