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
the window keeps, the oracle of tests/test_kv_*.py. Policies: kv_window/policies.py.

Usage per token (the engine): write `x`; `prepare_step()`; `backend.run()`; `commit_step()`.
numpy only: this runs on the board.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from runtime.errors import UserError
from runtime.reference_model import MASK_EMPTY, ModelConfig, alibi_slopes

from kv_window.policies import Layer0Query, Layout, check_policy, layer0_attention, page_usable, store_capacity

_ALL = slice(None)


class RollbackTooDeep(ValueError):
    """rollback(n) asked for more steps than the undo log keeps (`rollback_depth`): re-feed instead."""


class KVWindow:
    """Fixed-size KV window over a backend's decode-step inputs (see the module docstring)."""

    def __init__(self, backend, cfg: ModelConfig, policy: str = "sink", window: int | None = None,
                 sink_tokens: int = 4, evict_batch: int = 16, positions: str | None = None,
                 max_rollback: int = 64, weights: dict | None = None, pages: int | None = None,
                 recent: int | None = None, store_tokens: int = 1024):
        self.backend = backend
        self.cfg = cfg
        self.policy = policy
        self.positions = check_policy(policy, positions)
        specs = getattr(backend, "inputs", None)
        self.slots = int(specs["mask"].shape[-1]) if specs and "mask" in specs else cfg.window  # compiled W
        self.window = int(window if window is not None else self.slots)  # slots this window uses
        if not 1 <= self.window <= self.slots:
            raise UserError(f"KV window of {self.window} slots does not fit the model's {self.slots} "
                            f"compiled slots (mask input); use --window <= {self.slots}")
        self.layout = Layout(policy, self.window, sink_tokens, evict_batch, pages, recent)
        self.max_rollback = int(max_rollback)
        L, H, hd, W = cfg.n_layers, cfg.n_heads, cfg.head_dim, self.slots
        self._slopes = alibi_slopes(H, cfg.alibi_max_bias)[:, None].astype(np.float32)  # (H,1)

        self.slot_token = np.full(W, -1, np.int64)  # (W,) token index held by each slot, -1 empty
        self.slot_pos = np.zeros(W, np.float32)  # (W,) key position of each slot (by self.positions)
        self.slot_live = np.zeros(W, np.float32)  # (W,) 1.0 occupied, 0.0 empty
        self.mask = np.full((1, 1, 1, W), MASK_EMPTY, np.float32)  # (1,1,1,W) additive mask input
        self.dist = np.zeros((1, 1, 1, W), np.float32)  # (1,1,1,W) query minus key position input
        self._mask_row, self._dist_row = self.mask.reshape(W), self.dist.reshape(W)  # (W,) views
        self.mirror_k = np.zeros((L, W, H, hd), np.float32)  # host copy of every slot's keys
        self.mirror_v = np.zeros((L, W, H, hd), np.float32)  # host copy of every slot's values
        self.scores = np.zeros(W, np.float64)  # (W,) heavy: accumulated layer-0 attention per slot
        # what each logged commit overwrote in its slot (an evicted token's K/V, or garbage): undoing
        # the commit puts it back, so undoing an eviction needs no K/V writes. (M,L,H,hd) f32 each.
        self._overwritten_k = np.zeros((max(1, self.max_rollback), L, H, hd), np.float32)
        self._overwritten_v = np.zeros((max(1, self.max_rollback), L, H, hd), np.float32)

        self._mask_in, self._dist_in = backend.input("mask"), backend.input("dist")
        self._k_in = [backend.input(f"k_cache_{l}") for l in range(L)]
        self._v_in = [backend.input(f"v_cache_{l}") for l in range(L)]
        self._k_out = [backend.output(f"k_new_{l}") for l in range(L)]
        self._v_out = [backend.output(f"v_new_{l}") for l in range(L)]

        self._query = None
        if policy in ("heavy", "pages"):
            weights = weights if weights is not None else getattr(backend, "weights", None)
            if weights is None:
                raise UserError(f"KV window policy {policy!r} needs the model weights (layer 0's query is "
                                f"computed on the host): pass weights=<weights.npz dict>")
            self._query = Layer0Query(weights, cfg)
        self._pending_self_score = 0.0

        # pages: the host-side second tier (token store) and the page blocks of the window
        B = self.layout.batch
        self.store_tokens = 0
        if policy == "pages":
            self.store_tokens = store_capacity(self.window, self.max_rollback, B, store_tokens)
            C = self.store_tokens
            self.store_k = np.zeros((L, C, H, hd), np.float32)  # (L,C,H,hd) keys of token i at (i-S) % C
            self.store_v = np.zeros((L, C, H, hd), np.float32)  # (L,C,H,hd) values, same cells
            n_store_pages = C // B
            self.page_min = np.zeros((n_store_pages, H, hd), np.float32)  # layer-0 key min per stored page
            self.page_max = np.zeros((n_store_pages, H, hd), np.float32)  # layer-0 key max per stored page
            self._page_tmp = np.zeros((2, n_store_pages, cfg.n_heads, hd), np.float32)  # scratch
        self.block_page = np.full(self.layout.pages, -1, np.int64)  # (P,) page id in each block, -1 empty
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
        self.n_pages = 0  # pages formed (pages policy): page m = tokens S+mB .. S+mB+B-1
        self.slot_token.fill(-1)
        self.slot_live.fill(0.0)
        self.slot_pos.fill(0.0)
        self.scores.fill(0.0)
        self.block_page.fill(-1)
        self._mask_row.fill(MASK_EMPTY)
        self._dist_row.fill(0.0)
        self._free = deque(range(lay.ring_start, lay.ring_start + lay.ring))  # free FIFO slots, in order
        self._log: deque = deque(maxlen=self.max_rollback)  # per committed step: list of undo records
        self._pending: list | None = None  # undo records of a prepared, uncommitted step
        self._mask_in.write(self.mask)
        self._dist_in.write(self.dist)
        self._mask_dirty = False

    def prepare_step(self, x: np.ndarray | None = None) -> None:
        """Write `mask` and `dist` for the next token (call after writing its `x`)."""
        if self._pending is not None:
            self._undo(self._pending)
        self._pending = records = []
        if self._query is not None:
            self._query.compute(x if x is not None else self.backend.input("x").read())
        if self.policy == "pages":
            self._choose_pages(records)
        qpos = self.query_position()
        np.subtract(np.float32(qpos), self.slot_pos, out=self._dist_row)
        self._dist_row *= self.slot_live
        if self.policy == "heavy":
            self._accumulate_attention(records)
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
            if self.policy == "pages" and t >= lay.sinks:
                cell = (t - lay.sinks) % self.store_tokens
                self.store_k[l, cell] = self.mirror_k[l, slot]
                self.store_v[l, cell] = self.mirror_v[l, slot]
        self.slot_pos[slot] = self.query_position()
        self._occupy(slot, t)
        if self.policy == "heavy":
            self.scores[slot] = self._pending_self_score
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

    # -- slot bookkeeping --------------------------------------------------------------------
    def _occupy(self, slot: int, token: int) -> None:
        self.slot_token[slot] = token
        self.slot_live[slot] = 1.0
        self._mask_row[slot] = 0.0
        self.occupied += 1
        self._mask_dirty = True

    def _vacate(self, slot: int) -> None:
        self.slot_token[slot] = -1
        self.slot_live[slot] = 0.0
        self._mask_row[slot] = MASK_EMPTY
        self.occupied -= 1
        self._mask_dirty = True

    def _renumber(self) -> None:
        """Cache positions (StreamingLLM): kept tokens get positions 0..k-1 in token order."""
        if self.positions != "cache":
            return
        live = np.flatnonzero(self.slot_token >= 0)
        order = live[np.argsort(self.slot_token[live], kind="stable")]
        self.slot_pos[order] = np.arange(len(order), dtype=np.float32)

    def _write_slots(self, slots: np.ndarray, k_rows: np.ndarray, v_rows: np.ndarray) -> None:
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
        if self.policy == "heavy":
            eligible = tokens < self.n_tokens - lay.recent
            ranked = np.where(eligible, self.scores[ring], np.inf)
            chosen = np.argpartition(ranked, lay.batch - 1)[: lay.batch]
        else:
            chosen = np.argpartition(tokens, lay.batch - 1)[: lay.batch]
        chosen = chosen[np.argsort(tokens[chosen], kind="stable")]  # oldest first
        slots = chosen + lay.ring_start  # (B,) int64
        # the evicted K/V stay in their slots until a commit overwrites them (and saves them first)
        record = ("evict", slots, self.slot_token[slots].copy(), self.slot_pos[slots].copy(), self.scores[slots].copy())
        if self.policy == "pages":  # the evicted batch is the next page of the host store
            C, B = self.store_tokens, lay.batch
            m = self.n_pages
            cell = (m * B) % C // B
            keys0 = self.mirror_k[0, slots]  # (B,H,hd)
            np.min(keys0, axis=0, out=self.page_min[cell])
            np.max(keys0, axis=0, out=self.page_max[cell])
            self.n_pages += 1
        self.slot_token[slots] = -1  # vacate the batch: O(B) host writes, no K/V moves
        self.slot_live[slots] = 0.0
        self._mask_row[slots] = MASK_EMPTY
        self.scores[slots] = 0.0
        self.occupied -= len(slots)
        self._mask_dirty = True
        self._free.extend(slots.tolist())
        self._renumber()
        records.append(record)

    # -- heavy: layer-0 attention on the host -------------------------------------------------
    def _accumulate_attention(self, records: list) -> None:
        bias = self._mask_row[None, :] - self._slopes * self._dist_row[None, :]  # (H,W)
        weights, self_weight = layer0_attention(self._query.q, self._query.k, self.mirror_k[0], bias)
        records.append(("scores", self.scores.copy()))
        self.scores += weights * self.slot_live
        self._pending_self_score = self_weight

    # -- pages: choose which stored pages occupy the page blocks ------------------------------
    def _page_usable(self, m: int) -> bool:
        """Page m is complete and its store cells stay intact for max_rollback more steps."""
        lay = self.layout
        return page_usable(m, self.n_pages, self.n_tokens, lay.sinks, lay.batch, self.store_tokens, self.max_rollback)

    def _choose_pages(self, records: list) -> None:
        lay = self.layout
        for b in range(lay.pages):  # drop pages about to leave the store
            m = int(self.block_page[b])
            if m >= 0 and not self._page_usable(m):
                self._place_page(b, -1, records)
        if self.n_pages == 0:
            return
        q = self._query.q
        np.multiply(q, self.page_min, out=self._page_tmp[0])
        np.multiply(q, self.page_max, out=self._page_tmp[1])
        np.maximum(self._page_tmp[0], self._page_tmp[1], out=self._page_tmp[0])
        bound = self._page_tmp[0].sum(-1).max(-1)  # (n_store_pages,) == page_upper_bound(q, min, max)
        n_cells, lay = len(bound), self.layout
        # usable pages are the contiguous range [first_usable, n_pages) (see page_usable)
        lowest_first = self.n_tokens + self.max_rollback + lay.batch - self.store_tokens - lay.sinks
        first_usable = max(0, -(-lowest_first // lay.batch), self.n_pages - n_cells)
        if first_usable >= self.n_pages:
            return
        candidates = bound[np.arange(first_usable, self.n_pages) % n_cells]  # (n,) small
        for m in self.block_page:
            if m >= first_usable:
                candidates[m - first_usable] = -np.inf
        j = int(np.argmax(candidates))  # first maximum: the oldest page on ties
        best, best_score = first_usable + j, float(candidates[j])
        if best_score == -np.inf:
            best = -1
        if best < 0:
            return
        empty = np.flatnonzero(self.block_page < 0)
        if len(empty):
            self._place_page(int(empty[0]), best, records)
            return
        worst_block = int(np.argmin([bound[int(m) % n_cells] for m in self.block_page]))
        if best_score > bound[int(self.block_page[worst_block]) % n_cells]:
            self._place_page(worst_block, best, records)

    def _place_page(self, block: int, page: int, records: list | None) -> None:
        """Put stored page `page` (or nothing, -1) into page block `block`: B slot writes per layer."""
        lay = self.layout
        B, a = lay.batch, lay.blocks_start + block * lay.batch
        old = int(self.block_page[block])
        if records is not None:
            records.append(("page", block, old))
        for slot in range(a, a + B):
            if self.slot_token[slot] >= 0:
                self._vacate(slot)
        if page >= 0:
            cell = (page * B) % self.store_tokens
            self._write_slots(np.arange(a, a + B), self.store_k[:, cell:cell + B], self.store_v[:, cell:cell + B])
            first = lay.sinks + page * B
            for i in range(B):
                self._occupy(a + i, first + i)
                self.slot_pos[a + i] = first + i
        self.block_page[block] = page
        self._renumber()

    # -- undo --------------------------------------------------------------------------------
    def _undo(self, records: list) -> None:
        for record in reversed(records):
            kind = record[0]
            if kind == "commit":
                _, slot, saved = record
                self._write_slots(np.array([slot]), self._overwritten_k[saved][:, None], self._overwritten_v[saved][:, None])
                self._vacate(slot)
                self.scores[slot] = 0.0
                self.n_tokens -= 1
                if slot >= self.layout.sinks:
                    self._free.appendleft(slot)
            elif kind == "evict":
                _, slots, tokens, positions, scores = record
                for _ in slots:
                    self._free.pop()
                for slot, token in zip(slots, tokens):
                    self._occupy(int(slot), int(token))
                self.slot_pos[slots] = positions
                self.scores[slots] = scores
                if self.policy == "pages":
                    self.n_pages -= 1
                self._renumber()
            elif kind == "scores":
                self.scores[:] = record[1]
            elif kind == "page":
                _, block, old = record
                self._place_page(block, old, None)
