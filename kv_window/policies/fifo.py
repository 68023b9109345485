"""`fifo`: the engine's minimal window (once runtime/engine.py `_AppendOnlyWindow`). The first token
(`<bos>`) keeps its slot; the other W-1 slots are a FIFO that evicts the oldest token one at a time;
key positions are token indices. The `sink` rules with 1 sink, batches of 1 and original positions."""
from __future__ import annotations

from kv_window.policies.sink import Sink


class Fifo(Sink):
    name = "fifo"
    default_positions = "original"
    default_sink_tokens = 1
    default_evict_batch = 1
