"""The keystroke core: the vector work that stays on the CPU per key, in two twins.

- `PythonCore` (numpy): the reference.
- `NativeCore` (runtime/native/keystroke_core.c through ctypes): the same operations in C, for the
  board's slow CPU (runtime/native/README.md builds it for x86-64 and riscv64).
Operations (each allocation-free; buffers are the caller's):
- `top_prefix(log_probs, ids, want, span=None)`: [(log-prob, token id)] of the candidates of
  log_probs[ids] at or above the want-th best value (all of them when want >= len(ids); ties at that
  value all kept), best first, equal values in the order of `ids`; with span=(lo, hi) (ids ==
  arange(lo, hi), a prefix-contiguous vocabulary) the candidates are the slice log_probs[lo:hi];
- `log_softmax_into(logits, row)`: row = logits - logsumexp(logits), float32.
`open_core(name)` picks one by name ("native", "python", or "auto" = native, else python with the
reason recorded in `core.fallback_reason`); nothing switches without saying so.
numpy + stdlib only (the board runs this).
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
from pathlib import Path

import numpy as np

from runtime.errors import UserError

ABI_VERSION = 1  # et_abi_version() of runtime/native/keystroke_core.c
CORE_NAMES = ("auto", "native", "python")
NATIVE_DIR = Path(__file__).resolve().parent / "native"
LIBRARY_ENV = "EDGETYPE_CORE_LIB"  # a library path that overrides the built-in one


class NativeCoreError(UserError):
    """The native core asked for by name did not load: says which file and why."""


def native_library_path() -> Path:
    """$EDGETYPE_CORE_LIB, else runtime/native/build/<machine>/libedgetype_core.so (`make native`)."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        return Path(override)
    return NATIVE_DIR / "build" / platform.machine() / "libedgetype_core.so"


class PythonCore:
    name = "python"
    fallback_reason = None  # set when "auto" asked for native and this ran instead

    def __init__(self, vocab_size: int):
        self._cand = np.zeros(vocab_size, np.float32)  # (V,) log-probs of the prefix-matching words
        self._part = np.zeros(vocab_size, np.float32)  # (V,) partition scratch
        self._keep = np.zeros(vocab_size, dtype=bool)  # (V,) candidates at or above the want-th best
        self._exp = np.zeros(vocab_size, np.float32)  # (V,) scratch for log-softmax

    def top_prefix(self, log_probs: np.ndarray, ids: np.ndarray, want: int,
                   span: tuple[int, int] | None = None) -> list[tuple[float, int]]:
        """span=(lo, hi): ids is arange(lo, hi) (a prefix-contiguous vocabulary): the candidates are
        the slice log_probs[lo:hi], read in place, no gather."""
        m = len(ids)
        if span is not None:
            cand = log_probs[span[0]:span[1]]  # (m,) view, only read
        else:
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
        if span is not None:
            return [(float(cand[j]), span[0] + int(j)) for j in order]
        return [(float(cand[j]), int(ids[j])) for j in order]

    def log_softmax_into(self, logits: np.ndarray, row: np.ndarray) -> None:
        np.subtract(logits, logits.max(), out=row)
        np.exp(row, out=self._exp)
        row -= np.float32(np.log(self._exp.sum()))


class NativeCore:
    """The C twin of PythonCore through ctypes (plain C ABI, no libc in the library)."""

    name = "native"
    fallback_reason = None

    def __init__(self, vocab_size: int, path: Path | None = None):
        self.path = path = Path(path) if path is not None else native_library_path()
        if not path.exists():
            raise NativeCoreError(f"native keystroke core {path}: no such file (build it with `make native`)")
        try:
            lib = ctypes.CDLL(str(path))
            version = lib.et_abi_version
        except (OSError, AttributeError) as error:
            raise NativeCoreError(f"native keystroke core {path}: cannot load ({error})") from None
        version.restype = ctypes.c_int32
        if version() != ABI_VERSION:
            raise NativeCoreError(f"native keystroke core {path}: ABI {version()}, this runtime needs "
                                  f"{ABI_VERSION} (rebuild with `make native`)")
        p, i32 = ctypes.c_void_p, ctypes.c_int32
        self._top = lib.et_top_prefix
        self._top.argtypes = [p, p, i32, i32, p, p, i32]
        self._top.restype = i32
        self._softmax = lib.et_log_softmax
        self._softmax.argtypes = [p, p, i32]
        self._softmax.restype = None
        self._lib = lib
        self._out_pos = np.zeros(vocab_size, np.int32)  # (V,) positions in ids, best first
        self._out_val = np.zeros(vocab_size, np.float32)  # (V,) their log-probs
        self._out_pos_ptr, self._out_val_ptr = self._out_pos.ctypes.data, self._out_val.ctypes.data
        self._cap = vocab_size
        self._iota = np.arange(vocab_size, dtype=np.int64)  # (V,) positions for a span (prefix-contiguous ids)

    def top_prefix(self, log_probs: np.ndarray, ids: np.ndarray, want: int,
                   span: tuple[int, int] | None = None) -> list[tuple[float, int]]:
        if span is not None:  # ids == arange(lo, hi): the C loop reads log_probs[lo:hi] in place
            lo, hi = span
            log_probs = _float32_contiguous(log_probs)
            window = log_probs[lo:hi]  # (m,) view
            positions = self._iota[: hi - lo]  # (m,) 0..m-1, preallocated
            n = self._top(_address(window), _address(positions), hi - lo, want, self._out_pos_ptr,
                          self._out_val_ptr, self._cap)
            if n < 0:
                raise RuntimeError(f"et_top_prefix: {-n} candidates > capacity {self._cap}")
            return list(zip(self._out_val[:n].tolist(), (self._out_pos[:n] + lo).tolist()))
        if ids.dtype != np.int64 or not ids.flags.c_contiguous:
            ids = np.ascontiguousarray(ids, dtype=np.int64)  # (only for a caller outside the engine)
        log_probs = _float32_contiguous(log_probs)
        n = self._top(_address(log_probs), _address(ids), len(ids), want, self._out_pos_ptr,
                      self._out_val_ptr, self._cap)
        if n < 0:
            raise RuntimeError(f"et_top_prefix: {-n} candidates > capacity {self._cap}")
        return list(zip(self._out_val[:n].tolist(), ids[self._out_pos[:n]].tolist()))

    def log_softmax_into(self, logits: np.ndarray, row: np.ndarray) -> None:
        if row.dtype != np.float32 or not row.flags.c_contiguous or row.shape != logits.shape:
            raise ValueError("log_softmax_into: row must be a contiguous float32 array shaped like logits")
        logits = _float32_contiguous(logits)
        self._softmax(_address(logits), _address(row), len(row))


def _address(array: np.ndarray) -> int:
    """The data pointer (cheaper than `array.ctypes.data`, which builds an object per call)."""
    return array.__array_interface__["data"][0]


def _float32_contiguous(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.float32 and array.flags.c_contiguous:
        return array
    return np.ascontiguousarray(array, dtype=np.float32)


def open_core(name: str, vocab_size: int, warn=None):
    """The keystroke core by name. "auto": native, else python with the reason said on stderr
    (one line, first thing the run prints about its core) and kept in `fallback_reason`."""
    if name == "python":
        return PythonCore(vocab_size)
    if name == "native":
        return NativeCore(vocab_size)
    if name != "auto":
        raise UserError(f"keystroke core {name!r}: use one of {', '.join(CORE_NAMES)}")
    try:
        return NativeCore(vocab_size)
    except NativeCoreError as error:
        core = PythonCore(vocab_size)
        core.fallback_reason = str(error)
        (warn or _warn)(f"edgetype: keystroke core: python, the numpy twin ({error})")
        return core


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
