"""Subcommands of this package for the `edgetype` CLI (see runtime/cli.py)."""


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
