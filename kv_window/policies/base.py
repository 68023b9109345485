"""The strategy interface of a KV-window pruning policy, and the slot layout all policies share.

`KVWindow` (kv_window/window.py) owns the slots, mask, dist, mirrors and the undo log, and names no
policy: at each of its decision points it calls its `Policy` object (one subclass per file in this
folder, chosen by name through kv_window/policies/__init__.py):

| window step | hook | what the policy may do there |
|---|---|---|
| construction | `make_layout` (class method), `__init__` | split the W slots; allocate its own buffers once |
| `reset()` | `reset()` | empty its own state |
| `prepare_step()`, before mask/dist | `begin_step(x, records)` | change which tokens hold slots (page swaps) |
| `prepare_step()`, after mask/dist | `observe(records)` | score the kept tokens (attention) |
| `commit_step()`, FIFO full | `choose_victims(ring, tokens)` | which B slots of the recent FIFO to empty |
| `commit_step()`, eviction | `on_evict(slots, records)` | keep what leaves (page store) |
| `commit_step()`, after the write | `on_commit(slot, token)` | per-slot bookkeeping |
| `rollback()` | `undo(record)` | undo a record it appended as `("policy", ...)` |

A policy keeps its undo records in the window's log by appending `("policy", payload...)` tuples
to `records`; the window hands each back to `undo(payload)` in reverse order. The base class is the
plain recent-FIFO policy: no hooks, the oldest B tokens of the FIFO are evicted.
The plain twin kv_window/reference.py applies the same rules without this machinery.
"""
from __future__ import annotations

import numpy as np

from tpu_driver.errors import UserError


class Layout:
    """How a policy splits the `window` slots: sinks [0,S), recent FIFO [S,S+R), page blocks after."""

    def __init__(self, policy: str, window: int, sinks: int, batch: int, pages: int = 0, recent: int = 0):
        self.policy = policy
        self.window = window
        self.sinks = sinks  # S: slots kept forever by the first S tokens
        self.batch = batch  # B: slots emptied per eviction
        if self.sinks < 0 or self.batch < 1:
            raise UserError(f"sink_tokens must be >= 0 and evict_batch >= 1 (got {sinks}, {batch})")
        self.pages = pages  # P: page blocks of B slots each
        self.ring = window - self.sinks - self.pages * self.batch  # R: slots of the recent FIFO
        if self.ring < self.batch + 1:
            raise UserError(f"window {window} too small for policy {policy!r}: {self.sinks} sinks + "
                            f"{self.pages} pages of {self.batch} leave {self.ring} recent slots, need > "
                            f"evict_batch {self.batch}; use a larger --window or a smaller evict_batch")
        self.recent = recent  # the most recent tokens that are never evicted (heavy)
        self.ring_start = self.sinks
        self.blocks_start = self.sinks + self.ring


class Policy:
    """Recent FIFO behind `sink_tokens` sinks; subclasses override the hooks they need."""

    name = "fifo-base"
    default_positions = "original"  # position scheme when none is given (docs/kv-window.md)
    default_sink_tokens = 4
    default_evict_batch = 16
    needs_weights = False  # True: computes layer 0 on the host from weights.npz

    @classmethod
    def make_layout(cls, window: int, sink_tokens: int, evict_batch: int, pages: int | None = None,
                    recent: int | None = None) -> Layout:
        return Layout(cls.name, window, sink_tokens, evict_batch)

    def __init__(self, window, weights: dict | None = None, store_tokens: int = 1024):
        self.window = window  # the KVWindow whose decisions this policy makes

    def reset(self) -> None:
        pass

    def begin_step(self, x, records: list) -> None:
        pass

    def observe(self, records: list) -> None:
        pass

    def choose_victims(self, ring: slice, tokens: np.ndarray) -> np.ndarray:
        """Indices into the full recent FIFO (`tokens` (R,) int64, slot_token[ring]) of the B to evict."""
        return np.argpartition(tokens, self.window.layout.batch - 1)[: self.window.layout.batch]

    def on_evict(self, slots: np.ndarray, records: list) -> None:
        pass

    def on_commit(self, slot: int, token: int) -> None:
        pass

    def undo(self, payload: tuple) -> None:
        raise RuntimeError(f"policy {self.name!r} logged no undo records, got {payload!r}")
