"""The W-slot KV window of a compiled decode step: slots, mask, positions, pruning, rollback.

Fast path. `KVWindow` owns the K/V slots of every layer as the compiled graph lays them out
(`k_cache_{l}` (1,H,hd,W), `v_cache_{l}` (1,H,W,hd)), the additive `mask` (1,1,1,W) and the key
distances `dist` (1,1,1,W), and writes them in place into the backend's input tensors:
- a step writes one slot per layer (the new token's K/V) plus mask and dist (W floats each);
- slots are indirect (`slot_token[j]` = which token slot j holds), so an eviction only empties
  `evict_batch` mask entries: nothing is compacted or copied across the window;
- everything a `rollback` needs is kept: an undo log of the last `max_rollback` steps; evicted
  tokens' K/V stay in their slots until a commit reuses the slot, and that commit first saves what
  it overwrites (one slot row), so backspace across an eviction restores the window exactly and no
  step copies more than one slot.
Its plain, slow twin is kv_window/reference.py (`ReferenceWindow`): full attention over the tokens
the window keeps, the oracle of tests/test_kv_*.py.

The window names no policy: every decision that differs between policies (which slots to empty,
page swaps, attention scores) is a call on its `Policy` object (`self.strategy`, one class per file
in kv_window/policies/, chosen by name; the hooks are listed in kv_window/policies/base.py).

Usage per token (the engine): write `x`; `prepare_step()`; `backend.run()`; `commit_step()`.
numpy only: this runs on the board.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from tpu_driver import decode_step as step
from tpu_driver.errors import UserError
from tpu_driver.reference_model import MASK_EMPTY, ModelConfig

from kv_window.policies import DEFAULT_POLICY, policy_class, resolve_positions

_ALL = slice(None)


class RollbackTooDeep(ValueError):
    """rollback(n) asked for more steps than the undo log keeps (`rollback_depth`): re-feed instead."""


class KVWindow:
    """Fixed-size KV window over a backend's decode-step inputs (see the module docstring).

    sink_tokens / evict_batch / positions: None = the policy's defaults. The policy's own options:
    weights (heavy, pages: layer 0 on the host), pages and store_tokens (pages), recent (heavy).
    """

    def __init__(self, backend, cfg: ModelConfig, policy: str = DEFAULT_POLICY, window: int | None = None,
                 sink_tokens: int | None = None, evict_batch: int | None = None, positions: str | None = None,
                 max_rollback: int = 64, weights: dict | None = None, pages: int | None = None,
                 recent: int | None = None, store_tokens: int = 1024):
        self.backend = backend
        self.cfg = cfg
        self.policy = policy  # the name; the decisions are self.strategy's
        strategy_class = policy_class(policy)
        self.positions = resolve_positions(strategy_class, positions)
        specs = getattr(backend, "inputs", None)
        self.slots = int(specs[step.MASK].shape[-1]) if specs and step.MASK in specs else cfg.window  # compiled W
        self.window = int(window if window is not None else self.slots)  # slots this window uses
        if not 1 <= self.window <= self.slots:
            raise UserError(f"KV window of {self.window} slots does not fit the model's {self.slots} "
                            f"compiled slots (mask input); use --window <= {self.slots}")
        self.layout = strategy_class.make_layout(
            self.window, strategy_class.default_sink_tokens if sink_tokens is None else sink_tokens,
            strategy_class.default_evict_batch if evict_batch is None else evict_batch, pages, recent)
        self.max_rollback = int(max_rollback)
        L, H, hd, W = cfg.n_layers, cfg.n_heads, cfg.head_dim, self.slots

        self.slot_token = np.full(W, -1, np.int64)  # (W,) token index held by each slot, -1 empty
        self.slot_pos = np.zeros(W, np.float32)  # (W,) key position of each slot (by self.positions)
        self.slot_live = np.zeros(W, np.float32)  # (W,) 1.0 occupied, 0.0 empty
        self.mask = np.full((1, 1, 1, W), MASK_EMPTY, np.float32)  # (1,1,1,W) additive mask input
        self.dist = np.zeros((1, 1, 1, W), np.float32)  # (1,1,1,W) query minus key position input
        self.mask_row, self.dist_row = self.mask.reshape(W), self.dist.reshape(W)  # (W,) views
        self.mirror_k = np.zeros((L, W, H, hd), np.float32)  # host copy of every slot's keys
        self.mirror_v = np.zeros((L, W, H, hd), np.float32)  # host copy of every slot's values
        # what each logged commit overwrote in its slot (an evicted token's K/V, or garbage): undoing
        # the commit puts it back, so undoing an eviction needs no K/V writes. (M,L,H,hd) f32 each.
        self._overwritten_k = np.zeros((max(1, self.max_rollback), L, H, hd), np.float32)
        self._overwritten_v = np.zeros((max(1, self.max_rollback), L, H, hd), np.float32)
        self.slot_changes = 0  # evictions + page swaps so far: a step changed the kept set iff it moved

        self._mask_in, self._dist_in = backend.input(step.MASK), backend.input(step.DIST)
        self._k_in = [backend.input(step.k_cache(l)) for l in range(L)]
        self._v_in = [backend.input(step.v_cache(l)) for l in range(L)]
        self._k_out = [backend.output(step.k_new(l)) for l in range(L)]
        self._v_out = [backend.output(step.v_new(l)) for l in range(L)]
        self.strategy = strategy_class(self, weights=weights, store_tokens=store_tokens)
        self.reset()

    # -- public state ------------------------------------------------------------------------
    @property
    def rollback_depth(self) -> int:
        """How many committed tokens `rollback` can undo now."""
        return len(self._log)

    def kept_tokens(self) -> np.ndarray:
        """Sorted token indices the window holds (what the next token attends to, besides itself)."""
        return np.sort(self.slot_token[self.slot_token >= 0])

    def query_position(self) -> int:
        return self.occupied if self.positions == "cache" else self.n_tokens

    # -- the step ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty window, token count 0 (slot contents stay but are masked)."""
        lay = self.layout
        self.n_tokens = 0  # tokens seen (committed)
        self.occupied = 0  # slots in use
        self.slot_token.fill(-1)
        self.slot_live.fill(0.0)
        self.slot_pos.fill(0.0)
        self.mask_row.fill(MASK_EMPTY)
        self.dist_row.fill(0.0)
        self._free = deque(range(lay.ring_start, lay.ring_start + lay.ring))  # free FIFO slots, in order
        self._log: deque = deque(maxlen=self.max_rollback)  # per committed step: list of undo records
        self._pending: list | None = None  # undo records of a prepared, uncommitted step
        self.strategy.reset()
        self._mask_in.write(self.mask)
        self._dist_in.write(self.dist)
        self._mask_dirty = False

    def prepare_step(self, x: np.ndarray | None = None) -> None:
        """Write `mask` and `dist` for the next token (call after writing its `x`; `x` (1,1,D) spares
        policies that need it a read of the backend's input)."""
        if self._pending is not None:
            self._undo(self._pending)
        self._pending = records = []
        self.strategy.begin_step(x, records)
        np.subtract(np.float32(self.query_position()), self.slot_pos, out=self.dist_row)
        self.dist_row *= self.slot_live
        self.strategy.observe(records)
        if self._mask_dirty:
            self._mask_in.write(self.mask)
            self._mask_dirty = False
        self._dist_in.write(self.dist)

    def commit_step(self) -> None:
        """Store the token just run (its `k_new_{l}`/`v_new_{l}` outputs) into a slot."""
        if self._pending is None:
            raise RuntimeError("commit_step() without prepare_step()")
        records, self._pending = self._pending, None
        lay, t = self.layout, self.n_tokens
        if t < lay.sinks:
            slot = t
        else:
            if not self._free:
                self._evict(records)
            slot = self._free.popleft()
        saved = t % len(self._overwritten_k)
        self._overwritten_k[saved] = self.mirror_k[:, slot]
        self._overwritten_v[saved] = self.mirror_v[:, slot]
        for l in range(self.cfg.n_layers):
            k_new = self._k_out[l].read()  # (1,H,hd,1)
            v_new = self._v_out[l].read()  # (1,H,1,hd)
            self._k_in[l].write(k_new, index=(_ALL, _ALL, _ALL, slice(slot, slot + 1)))
            self._v_in[l].write(v_new, index=(_ALL, _ALL, slice(slot, slot + 1), _ALL))
            self.mirror_k[l, slot] = k_new[0, :, :, 0]
            self.mirror_v[l, slot] = v_new[0, :, 0, :]
        self.slot_pos[slot] = self.query_position()
        self.occupy(slot, t)
        self.strategy.on_commit(slot, t)
        self.n_tokens = t + 1
        records.append(("commit", slot, saved))
        self._log.append(records)

    def rollback(self, n: int = 1) -> None:
        """Undo the last n committed tokens (and any prepared step), restoring evicted tokens."""
        if n < 0:
            raise ValueError(f"rollback({n}): n must be >= 0")
        if n > len(self._log):
            raise RollbackTooDeep(f"rollback({n}) but only {len(self._log)} steps are kept "
                                  f"(max_rollback={self.max_rollback}): reset() and feed the text again")
        if self._pending is not None:
            self._undo(self._pending)
            self._pending = None
        for _ in range(n):
            self._undo(self._log.pop())
        if self._mask_dirty:
            self._mask_in.write(self.mask)
            self._mask_dirty = False

    # -- slot bookkeeping (the policies' tools too) ------------------------------------------
    def occupy(self, slot: int, token: int) -> None:
        self.slot_token[slot] = token
        self.slot_live[slot] = 1.0
        self.mask_row[slot] = 0.0
        self.occupied += 1
        self._mask_dirty = True

    def vacate(self, slot: int) -> None:
        self.slot_token[slot] = -1
        self.slot_live[slot] = 0.0
        self.mask_row[slot] = MASK_EMPTY
        self.occupied -= 1
        self._mask_dirty = True

    def renumber(self) -> None:
        """Cache positions (StreamingLLM): kept tokens get positions 0..k-1 in token order."""
        if self.positions != "cache":
            return
        live = np.flatnonzero(self.slot_token >= 0)
        order = live[np.argsort(self.slot_token[live], kind="stable")]
        self.slot_pos[order] = np.arange(len(order), dtype=np.float32)

    def write_slots(self, slots: np.ndarray, k_rows: np.ndarray, v_rows: np.ndarray) -> None:
        """Write K/V rows (L,n,H,hd) into `slots` (n,), one backend write per run of adjacent slots."""
        start = 0
        n = len(slots)
        while start < n:
            end = start + 1
            while end < n and slots[end] == slots[end - 1] + 1:
                end += 1
            a, b = int(slots[start]), int(slots[start]) + (end - start)
            for l in range(self.cfg.n_layers):
                self._k_in[l].write(k_rows[l, start:end].transpose(1, 2, 0)[None], index=(_ALL, _ALL, _ALL, slice(a, b)))
                self._v_in[l].write(v_rows[l, start:end].transpose(1, 0, 2)[None], index=(_ALL, _ALL, slice(a, b), _ALL))
                self.mirror_k[l, a:b] = k_rows[l, start:end]
                self.mirror_v[l, a:b] = v_rows[l, start:end]
            start = end

    # -- eviction (at commit, when the recent FIFO is full) ----------------------------------
    def _evict(self, records: list) -> None:
        lay = self.layout
        ring = slice(lay.ring_start, lay.ring_start + lay.ring)
        tokens = self.slot_token[ring]  # (R,) all occupied: the FIFO is full
        chosen = self.strategy.choose_victims(ring, tokens)  # (B,) indices into the FIFO
        chosen = chosen[np.argsort(tokens[chosen], kind="stable")]  # oldest first
        slots = chosen + lay.ring_start  # (B,) int64
        # the evicted K/V stay in their slots until a commit overwrites them (and saves them first)
        record = ("evict", slots, self.slot_token[slots].copy(), self.slot_pos[slots].copy())
        self.strategy.on_evict(slots, records)
        self.slot_token[slots] = -1  # vacate the batch: O(B) host writes, no K/V moves
        self.slot_live[slots] = 0.0
        self.mask_row[slots] = MASK_EMPTY
        self.occupied -= len(slots)
        self._mask_dirty = True
        self.slot_changes += 1
        self._free.extend(slots.tolist())
        self.renumber()
        records.append(record)

    # -- undo --------------------------------------------------------------------------------
    def _undo(self, records: list) -> None:
        for record in reversed(records):
            kind = record[0]
            if kind == "commit":
                _, slot, saved = record
                self.write_slots(np.array([slot]), self._overwritten_k[saved][:, None], self._overwritten_v[saved][:, None])
                self.vacate(slot)
                self.n_tokens -= 1
                if slot >= self.layout.sinks:
                    self._free.appendleft(slot)
            elif kind == "evict":
                _, slots, tokens, positions = record
                for _ in slots:
                    self._free.pop()
                for slot, token in zip(slots, tokens):
                    self.occupy(int(slot), int(token))
                self.slot_pos[slots] = positions
                self.renumber()
            else:  # ("policy", ...): what the policy logged
                self.strategy.undo(record[1:])
