"""`sliding`: the last W tokens, no sinks; when full the oldest B are evicted."""
from __future__ import annotations

from kv_window.policies.base import Layout, Policy


class Sliding(Policy):
    name = "sliding"
    default_positions = "original"  # the same as cache for a contiguous window

    @classmethod
    def make_layout(cls, window, sink_tokens, evict_batch, pages=None, recent=None) -> Layout:
        return Layout(cls.name, window, 0, evict_batch)  # no sinks, whatever sink_tokens says
