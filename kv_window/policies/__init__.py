"""Pruning policies of the KV window: which tokens keep a slot when the W slots are full.

One policy per file, each a `Policy` subclass (the strategy interface, kv_window/policies/base.py)
that kv_window/window.py (`KVWindow`) calls at its decision points; `REGISTRY` maps the names to
the classes. The plain twin kv_window/reference.py (`ReferenceWindow`) applies the same rules to a
plain list of kept tokens, and the tests check that both keep the same tokens.

- `sliding` (sliding.py): the last W tokens (no sinks).
- `sink` (sink.py): the first `sink_tokens` tokens stay forever, the rest is a FIFO of recent tokens.
- `heavy` (heavy.py): H2O-style, evicts the tokens with the least layer-0 attention (host-computed).
- `pages` (pages.py): Quest-style second tier of host-stored pages, recalled by a layer-0 bound.
- `fifo` (fifo.py): the engine's minimal window: `<bos>` stays, the rest evicts one token at a time.
Measurements behind the defaults: docs/kv-window.md.
"""
from __future__ import annotations

from tpu_driver.errors import UserError

from kv_window.policies.base import Layout, Policy
from kv_window.policies.fifo import Fifo
from kv_window.policies.heavy import Heavy
from kv_window.policies.pages import Pages
from kv_window.policies.sink import Sink
from kv_window.policies.sliding import Sliding

REGISTRY: dict[str, type[Policy]] = {cls.name: cls for cls in (Sliding, Sink, Heavy, Pages, Fifo)}
POLICIES = tuple(REGISTRY)  # the names, in the order sweeps and tests run them
POSITION_SCHEMES = ("cache", "original")
DEFAULT_POLICY = "sink"  # the engine's and the CLI's (measured: docs/kv-window.md)


def policy_class(name: str) -> type[Policy]:
    """The class of policy `name`; a UserError listing the choices for an unknown name."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown KV window policy {name!r}; choose one of {', '.join(POLICIES)}") from None


def resolve_positions(cls: type[Policy], positions: str | None) -> str:
    """The position scheme to use: `positions`, or the policy's measured default."""
    positions = positions or cls.default_positions
    if positions not in POSITION_SCHEMES:
        raise UserError(f"unknown position scheme {positions!r}; choose one of {', '.join(POSITION_SCHEMES)}")
    return positions


__all__ = ["REGISTRY", "POLICIES", "DEFAULT_POLICY", "POSITION_SCHEMES", "Layout", "Policy", "policy_class", "resolve_positions"]
