"""The keystroke core: the vector work that stays on the CPU per key, in two twins.

- `PythonCore` (numpy): the reference.
- `NativeCore` (runtime/native/keystroke_core.c through ctypes): the same operations in C, for the
  board's slow CPU (runtime/native/README.md builds it for x86-64 and riscv64).
Operations (each allocation-free; buffers are the caller's):
- `top_prefix(log_probs, ids, want)`: [(log-prob, token id)] of the candidates of log_probs[ids] at
  or above the want-th best value (all of them when want >= len(ids); ties at that value all kept),
  best first, equal values in the order of `ids`;
- `log_softmax_into(logits, row)`: row = logits - logsumexp(logits), float32.
`open_core(name)` picks one by name ("native", "python", or "auto" = native, else python with the
reason recorded in `core.fallback_reason`); nothing switches without saying so.
numpy + stdlib only (the board runs this).
"""
from __future__ import annotations

import numpy as np


class PythonCore:
    name = "python"
    fallback_reason = None  # set when "auto" asked for native and this ran instead

    def __init__(self, vocab_size: int):
        self._cand = np.zeros(vocab_size, np.float32)  # (V,) log-probs of the prefix-matching words
        self._part = np.zeros(vocab_size, np.float32)  # (V,) partition scratch
        self._keep = np.zeros(vocab_size, dtype=bool)  # (V,) candidates at or above the want-th best
        self._exp = np.zeros(vocab_size, np.float32)  # (V,) scratch for log-softmax

    def top_prefix(self, log_probs: np.ndarray, ids: np.ndarray, want: int) -> list[tuple[float, int]]:
        m = len(ids)
        cand = self._cand[:m]
        np.take(log_probs, ids, out=cand)
        want = min(m, want)
        if want < m:
            part = self._part[:m]
            np.copyto(part, cand)
            part.partition(m - want)
            keep = self._keep[:m]
            np.greater_equal(cand, part[m - want], out=keep)
            chosen = np.flatnonzero(keep)  # (>= want,) small: ties at the want-th value all kept
        else:
            chosen = np.arange(m)
        order = chosen[np.argsort(-cand[chosen], kind="stable")]
        return [(float(cand[j]), int(ids[j])) for j in order]

    def log_softmax_into(self, logits: np.ndarray, row: np.ndarray) -> None:
        np.subtract(logits, logits.max(), out=row)
        np.exp(row, out=self._exp)
        row -= np.float32(np.log(self._exp.sum()))


def open_core(name: str, vocab_size: int):
    if name == "python":
        return PythonCore(vocab_size)
    raise ValueError(f"keystroke core {name!r}: use python")
