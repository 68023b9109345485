"""Plain, slow twin of the KV window, and a tiny backend over numpy arrays: the test oracle.

`ReferenceWindow` is the "full attention over what the window keeps" semantics of
kv_window/window.py (`KVWindow`, the fast path): it keeps a plain sorted list of kept token
indices and a dict of every token's K/V, and each step recomputes attention over exactly those
tokens with `tpu_driver.reference_model.decode_step` (compact caches, no slots, no mask), applying the
policy rules of kv_window/policies/ with plain Python (its own code, not the policy objects: only
their slot layout and shared math are imported). Rollback is a stack of snapshots. Nothing here is
fast or allocation-free; that is the point.

`ArrayBackend` is the decode-step interface of docs/design.md over plain numpy arrays and
`reference_model.decode_step`, so the fast window can be tested and measured without a bundle.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from tpu_driver import decode_step as step
from tpu_driver.reference_model import MASK_EMPTY, ModelConfig, alibi_slopes, decode_step, embed

from kv_window.policies import DEFAULT_POLICY, policy_class, resolve_positions
from kv_window.policies.layer0 import Layer0Query, layer0_attention
from kv_window.policies.pages import page_upper_bound, page_usable, store_capacity


class ArrayIO:
    """One tensor of `ArrayBackend`: write(values, index=None) in place with a shape check; read()."""

    def __init__(self, name: str, array: np.ndarray):
        self.name = name
        self.shape = array.shape
        self.array = array

    def write(self, values, index=None) -> None:
        target = self.array if index is None else self.array[index]
        values = np.asarray(values)
        if values.shape != target.shape:
            raise ValueError(f"tensor {self.name!r}: wrote shape {values.shape}, expected {target.shape}")
        target[...] = values

    def read(self, index=None) -> np.ndarray:
        return self.array if index is None else self.array[index]


class ArrayBackend:
    """Decode-step backend over numpy arrays (`slots` key/value slots; default cfg.window)."""

    name = "arrays"

    def __init__(self, weights: dict, cfg: ModelConfig, slots: int | None = None):
        self.weights, self.cfg = weights, cfg
        in_specs, out_specs = step.io_specs(cfg, slots or cfg.window)
        self._in = {n: ArrayIO(n, np.zeros(s.shape, np.float32)) for n, s in in_specs.items()}
        self._out = {n: ArrayIO(n, np.zeros(s.shape, np.float32)) for n, s in out_specs.items()}
        self._in[step.MASK].array.fill(MASK_EMPTY)
        self.inputs = {n: io for n, io in self._in.items()}  # name -> object with .shape
        self.outputs = {n: io for n, io in self._out.items()}
        self.last_run_ms = None

    def input(self, name: str) -> ArrayIO:
        return self._in[name]

    def output(self, name: str) -> ArrayIO:
        return self._out[name]

    def run(self) -> None:
        started = time.perf_counter()
        L = self.cfg.n_layers
        logits, k_new, v_new = decode_step(
            self.weights, self.cfg, self._in[step.X].array, self._in[step.MASK].array, self._in[step.DIST].array,
            [self._in[step.k_cache(l)].array for l in range(L)], [self._in[step.v_cache(l)].array for l in range(L)])
        self._out[step.LOGITS].array[...] = logits
        for l in range(L):
            self._out[step.k_new(l)].array[...] = k_new[l]
            self._out[step.v_new(l)].array[...] = v_new[l]
        self.last_run_ms = (time.perf_counter() - started) * 1e3

    def close(self) -> None:
        pass


class ReferenceWindow:
    """Plain twin of `KVWindow` driving the model itself: `step(token) -> logits (V,)`."""

    def __init__(self, weights: dict, cfg: ModelConfig, policy: str = DEFAULT_POLICY, window: int | None = None,
                 sink_tokens: int | None = None, evict_batch: int | None = None, positions: str | None = None,
                 max_rollback: int = 64, pages: int | None = None, recent: int | None = None,
                 store_tokens: int = 1024):
        self.weights, self.cfg, self.policy = weights, cfg, policy
        rules = policy_class(policy)  # its slot layout and defaults; the decisions are made below, plainly
        self.positions = resolve_positions(rules, positions)
        self.window = window or cfg.window
        self.layout = rules.make_layout(self.window, rules.default_sink_tokens if sink_tokens is None else sink_tokens,
                                        rules.default_evict_batch if evict_batch is None else evict_batch, pages, recent)
        self.max_rollback = max_rollback
        self.store = store_capacity(self.window, max_rollback, self.layout.batch, store_tokens)
        self.query = Layer0Query(weights, cfg)
        self.slopes = alibi_slopes(cfg.n_heads, cfg.alibi_max_bias)
        self.kv: dict[int, tuple[list, list]] = {}  # token -> ([k (H,hd)] per layer, [v (H,hd)] per layer)
        self.reset()

    def reset(self) -> None:
        self.n_tokens = 0
        self.kept: list[int] = []  # sorted token indices (sliding/sink/heavy)
        self.scores: dict[int, float] = {}  # heavy: accumulated layer-0 attention
        self.blocks = [-1] * self.layout.pages  # pages: page id per block
        self.n_pages = 0
        self.history: list = []

    # -- what the window holds ------------------------------------------------------------
    def kept_tokens(self) -> list[int]:
        if self.policy != "pages":
            return list(self.kept)
        lay = self.layout
        recent_first = lay.sinks + self.n_pages * lay.batch
        tokens = [i for i in range(min(lay.sinks, self.n_tokens))]
        for m in self.blocks:
            if m >= 0:
                tokens += range(lay.sinks + m * lay.batch, lay.sinks + (m + 1) * lay.batch)
        tokens += range(recent_first, self.n_tokens)
        return sorted(tokens)

    def key_positions(self) -> dict[int, int]:
        """token -> key position (`dist` = query position - key position)."""
        kept = self.kept_tokens()
        if self.positions == "cache":
            return {token: rank for rank, token in enumerate(kept)}
        return {token: token for token in kept}

    def query_position(self) -> int:
        return len(self.kept_tokens()) if self.positions == "cache" else self.n_tokens

    # -- one token ------------------------------------------------------------------------
    def step(self, token: int) -> np.ndarray:
        cfg, lay, t = self.cfg, self.layout, self.n_tokens
        self.history.append(copy.deepcopy((self.n_tokens, self.kept, self.scores, self.blocks, self.n_pages)))
        self.history = self.history[-self.max_rollback:]
        x = embed(self.weights, token)
        self.query.compute(x)
        if self.policy == "pages":
            self._choose_pages()
        kept = self.kept_tokens()
        positions, qpos = self.key_positions(), self.query_position()
        H, hd, n = cfg.n_heads, cfg.head_dim, len(kept)
        k_caches = [np.zeros((1, H, hd, n), np.float32) for _ in range(cfg.n_layers)]
        v_caches = [np.zeros((1, H, n, hd), np.float32) for _ in range(cfg.n_layers)]
        for j, i in enumerate(kept):
            for l in range(cfg.n_layers):
                k_caches[l][0, :, :, j] = self.kv[i][0][l]
                v_caches[l][0, :, j, :] = self.kv[i][1][l]
        dist = np.array([qpos - positions[i] for i in kept], np.float32).reshape(1, 1, 1, n)
        mask = np.zeros((1, 1, 1, n), np.float32)
        if self.policy == "heavy":
            keys0 = np.array([self.kv[i][0][0] for i in kept], np.float32).reshape(n, H, hd)
            bias = -self.slopes[:, None] * dist.reshape(1, n)
            weights, self_weight = layer0_attention(self.query.q, self.query.k, keys0, bias)
            for j, i in enumerate(kept):
                self.scores[i] += float(weights[j])
        logits, k_new, v_new = decode_step(self.weights, cfg, x, mask, dist, k_caches, v_caches)
        self.kv[t] = ([k[0, :, :, 0].copy() for k in k_new], [v[0, :, 0, :].copy() for v in v_new])
        # commit: evict a batch when the recent part is full, then keep the new token
        recent = [i for i in kept if i >= lay.sinks and (self.policy != "pages" or i >= lay.sinks + self.n_pages * lay.batch)]
        if t >= lay.sinks and len(recent) == lay.ring:
            if self.policy == "pages":
                self.n_pages += 1  # the oldest batch of recent tokens becomes a stored page
            else:
                if self.policy == "heavy":
                    eligible = sorted((self.scores[i], i) for i in recent if i < t - lay.recent)
                    victims = [i for _, i in eligible[: lay.batch]]
                else:
                    victims = recent[: lay.batch]
                for i in victims:
                    self.kept.remove(i)
                    self.scores.pop(i, None)
        if self.policy != "pages":
            self.kept.append(t)
        if self.policy == "heavy":
            self.scores[t] = self_weight
        self.n_tokens = t + 1
        return logits[0]

    def rollback(self, n: int = 1) -> None:
        if n > len(self.history):
            raise ValueError(f"rollback({n}) deeper than the {len(self.history)} kept snapshots")
        for _ in range(n):
            self.n_tokens, self.kept, self.scores, self.blocks, self.n_pages = self.history.pop()

    # -- pages ----------------------------------------------------------------------------
    def _choose_pages(self) -> None:
        lay = self.layout

        def usable(m):
            return page_usable(m, self.n_pages, self.n_tokens, lay.sinks, lay.batch, self.store, self.max_rollback)

        def bound(m):
            keys0 = np.array([self.kv[lay.sinks + m * lay.batch + i][0][0] for i in range(lay.batch)])  # (B,H,hd)
            return float(page_upper_bound(self.query.q, keys0.min(axis=0), keys0.max(axis=0)))

        self.blocks = [m if m < 0 or usable(m) else -1 for m in self.blocks]
        candidates = [m for m in range(self.n_pages) if usable(m) and m not in self.blocks]
        if not candidates:
            return
        best = max(candidates, key=lambda m: (bound(m), -m))  # highest bound, oldest first on ties
        if -1 in self.blocks:
            self.blocks[self.blocks.index(-1)] = best
            return
        bounds = [bound(m) for m in self.blocks]
        worst = bounds.index(min(bounds))
        if bound(best) > bounds[worst]:
            self.blocks[worst] = best

