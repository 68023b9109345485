"""`pages`: Quest-style second tier. The W slots are sinks + a recent FIFO + `pages` page blocks of
B slots. Tokens leaving the FIFO form pages of B tokens kept in a host store of `store_tokens`
tokens with the per-page min/max of layer-0 keys; every step the Quest bound of the host layer-0
query chooses which stored pages occupy the blocks, at most one page swapped per step (B slot
writes), so no step costs more than one batch. Cache positions by default."""
from __future__ import annotations

import numpy as np

from kv_window.policies.base import Layout
from kv_window.policies.layer0 import Layer0Policy


def page_upper_bound(q: np.ndarray, kmin: np.ndarray, kmax: np.ndarray) -> np.ndarray:
    """Quest bound of q.k over a page, max over heads: q (H,hd); kmin/kmax (..., H, hd) -> (...)."""
    return np.maximum(q * kmin, q * kmax).sum(-1).max(-1)


def store_capacity(window: int, max_rollback: int, batch: int, store_tokens: int) -> int:
    """Tokens in the host store: >= store_tokens, room for the window, the rollback depth and a few
    pages, rounded up to whole pages."""
    need = max(store_tokens, window + max_rollback + 4 * batch)
    return -(-need // batch) * batch


def page_usable(page: int, n_pages: int, n_tokens: int, sinks: int, batch: int, store: int, max_rollback: int) -> bool:
    """Page `page` is complete and its host-store cells stay intact for max_rollback more steps."""
    first = sinks + page * batch
    return page < n_pages and first + store >= n_tokens + max_rollback + batch


class Pages(Layer0Policy):
    name = "pages"
    default_positions = "cache"

    @classmethod
    def make_layout(cls, window, sink_tokens, evict_batch, pages=None, recent=None) -> Layout:
        if pages is None:
            pages = max(1, (window - max(0, sink_tokens)) // (2 * max(1, evict_batch)))
        return Layout(cls.name, window, sink_tokens, evict_batch, pages=pages)

    def __init__(self, window, weights=None, store_tokens=1024):
        super().__init__(window, weights)
        cfg, lay = window.cfg, window.layout
        L, H, hd, B = cfg.n_layers, cfg.n_heads, cfg.head_dim, lay.batch
        self.store_tokens = C = store_capacity(lay.window, window.max_rollback, B, store_tokens)
        self.store_k = np.zeros((L, C, H, hd), np.float32)  # (L,C,H,hd) keys of token i at (i-S) % C
        self.store_v = np.zeros((L, C, H, hd), np.float32)  # (L,C,H,hd) values, same cells
        n_store_pages = C // B
        self.page_min = np.zeros((n_store_pages, H, hd), np.float32)  # layer-0 key min per stored page
        self.page_max = np.zeros((n_store_pages, H, hd), np.float32)  # layer-0 key max per stored page
        self._page_tmp = np.zeros((2, n_store_pages, H, hd), np.float32)  # scratch
        self.block_page = np.full(lay.pages, -1, np.int64)  # (P,) page id in each block, -1 empty
        self.n_pages = 0  # pages formed: page m = tokens S+mB .. S+mB+B-1

    def reset(self) -> None:
        self.block_page.fill(-1)
        self.n_pages = 0

    # -- the step ----------------------------------------------------------------------------
    def begin_step(self, x, records: list) -> None:
        super().begin_step(x, records)  # the layer-0 query of the new token
        self._choose_pages(records)

    def on_commit(self, slot: int, token: int) -> None:
        lay = self.window.layout
        if token >= lay.sinks:  # every non-sink token's K/V into the store
            cell = (token - lay.sinks) % self.store_tokens
            self.store_k[:, cell] = self.window.mirror_k[:, slot]
            self.store_v[:, cell] = self.window.mirror_v[:, slot]

    def on_evict(self, slots: np.ndarray, records: list) -> None:
        """The evicted batch (oldest first) is the next page of the host store."""
        B = self.window.layout.batch
        cell = (self.n_pages * B) % self.store_tokens // B
        keys0 = self.window.mirror_k[0, slots]  # (B,H,hd)
        np.min(keys0, axis=0, out=self.page_min[cell])
        np.max(keys0, axis=0, out=self.page_max[cell])
        self.n_pages += 1
        records.append(("policy", "formed"))

    def undo(self, payload: tuple) -> None:
        if payload[0] == "formed":
            self.n_pages -= 1
        else:
            _, block, old = payload
            self._place_page(block, old, None)

    # -- which stored pages occupy the page blocks -------------------------------------------
    def _page_usable(self, m: int) -> bool:
        w, lay = self.window, self.window.layout
        return page_usable(m, self.n_pages, w.n_tokens, lay.sinks, lay.batch, self.store_tokens, w.max_rollback)

    def _choose_pages(self, records: list) -> None:
        w, lay = self.window, self.window.layout
        for b in range(lay.pages):  # drop pages about to leave the store
            m = int(self.block_page[b])
            if m >= 0 and not self._page_usable(m):
                self._place_page(b, -1, records)
        if self.n_pages == 0:
            return
        q = self.query.q
        np.multiply(q, self.page_min, out=self._page_tmp[0])
        np.multiply(q, self.page_max, out=self._page_tmp[1])
        np.maximum(self._page_tmp[0], self._page_tmp[1], out=self._page_tmp[0])
        bound = self._page_tmp[0].sum(-1).max(-1)  # (n_store_pages,) == page_upper_bound(q, min, max)
        n_cells = len(bound)
        # usable pages are the contiguous range [first_usable, n_pages) (see page_usable)
        lowest_first = w.n_tokens + w.max_rollback + lay.batch - self.store_tokens - lay.sinks
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
        w, lay = self.window, self.window.layout
        B, a = lay.batch, lay.blocks_start + block * lay.batch
        old = int(self.block_page[block])
        if records is not None:
            records.append(("policy", "page", block, old))
            w.slot_changes += 1
        for slot in range(a, a + B):
            if w.slot_token[slot] >= 0:
                w.vacate(slot)
        if page >= 0:
            cell = (page * B) % self.store_tokens
            w.write_slots(np.arange(a, a + B), self.store_k[:, cell:cell + B], self.store_v[:, cell:cell + B])
            first = lay.sinks + page * B
            for i in range(B):
                w.occupy(a + i, first + i)
                w.slot_pos[a + i] = first + i
        self.block_page[block] = page
        w.renumber()
