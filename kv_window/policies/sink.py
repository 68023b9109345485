"""`sink`: the first `sink_tokens` tokens keep their slots forever (StreamingLLM "attention sinks"),
the other slots are a FIFO of the most recent tokens, emptied B at a time (the oldest first).
Default policy of the engine; cache positions (measured, docs/kv-window.md)."""
from __future__ import annotations

from kv_window.policies.base import Policy


class Sink(Policy):
    name = "sink"
    default_positions = "cache"
