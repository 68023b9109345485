"""Tensors of a registered cvimodel: numpy views of the runtime's buffers, with dtype conversion.

`CviTensor.array` is a zero-copy numpy view of the runtime's `sys_mem` in its storage dtype
(uint16 for BF16). `read()` returns float32 (a view for FP32, a converted array for BF16/INT8);
`write(values, index)` checks the shape and converts in place (BF16 with round-to-nearest-even,
INT8 with the tensor's qscale), using a scratch buffer allocated once, so steady-state writes
allocate nothing proportional to the tensor. Views die with the model: never keep one past close().
"""
from __future__ import annotations

import numpy as np

from tpu_driver import gateway
from tpu_driver.errors import ModelClosedError, TensorWriteError

_BF16_NAN = np.uint32(0x7FC0)


# ---------------------------------------------------------------------------------------------
# bf16 <-> float32 (bf16 = the high 16 bits of a float32)

def float32_to_bf16_bits(values: np.ndarray, out: np.ndarray | None = None,
                         scratch: np.ndarray | None = None) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16) with round-to-nearest-even; NaN stays NaN.

    out: uint16 array of values' shape (written in place); scratch: uint32 array of that shape.
    """
    values = np.asarray(values, dtype=np.float32)
    bits = scratch if scratch is not None else np.empty(values.shape, dtype=np.uint32)
    np.copyto(bits, values.view(np.uint32) if values.ndim else values.reshape(1).view(np.uint32).reshape(()))
    nan = np.isnan(values)
    # rounding bias 0x7FFF + lsb of the kept half: ties go to even
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    bits += np.uint32(0x7FFF)
    bits += lsb
    bits >>= np.uint32(16)
    if nan.any():
        bits[nan] = _BF16_NAN
    if out is None:
        return bits.astype(np.uint16)
    np.copyto(out, bits, casting="unsafe")
    return out


def bf16_bits_to_float32(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32 (exact)."""
    bits = np.asarray(bits, dtype=np.uint16)
    wide = bits.astype(np.uint32) << np.uint32(16)
    if out is None:
        return wide.view(np.float32)
    np.copyto(out, wide.view(np.float32))
    return out


# ---------------------------------------------------------------------------------------------

class CviTensor:
    """One input or output tensor of a CviModel (wraps a `CVI_TENSOR *` owned by the runtime)."""

    def __init__(self, model, cdata, library: gateway.Library, shape: tuple | None = None, keepalive=None):
        self._model = model  # its .closed is checked on every access
        self._cdata = cdata  # CVI_TENSOR *
        lib = library.lib
        self.name: str = gateway.ffi.string(lib.CVI_NN_TensorName(cdata)).decode("utf-8", errors="replace")
        runtime_shape = lib.CVI_NN_TensorShape(cdata)
        self.runtime_shape: tuple = tuple(int(runtime_shape.dim[i]) for i in range(int(runtime_shape.dim_size)))
        self.fmt: int = int(cdata.fmt)
        self.fmt_name: str = gateway.FMT_NAMES.get(self.fmt, f"FMT{self.fmt}")
        self.count: int = int(lib.CVI_NN_TensorCount(cdata))
        self.mem_size: int = int(lib.CVI_NN_TensorSize(cdata))
        self.qscale: float = float(lib.CVI_NN_TensorQuantScale(cdata)) if library.has("CVI_NN_TensorQuantScale") \
            else float(cdata.qscale)
        self.zero_point: int = int(lib.CVI_NN_TensorQuantZeroPoint(cdata)) \
            if library.has("CVI_NN_TensorQuantZeroPoint") else int(cdata.zero_point)
        if self.fmt not in gateway.FMT_STORAGE:
            raise TensorWriteError(f"tensor {self.name!r}: unknown CVI_FMT {self.fmt}")
        storage, itemsize = gateway.FMT_STORAGE[self.fmt]
        if self.count * itemsize > self.mem_size:
            raise TensorWriteError(f"tensor {self.name!r}: runtime reports {self.count} elements of "
                                   f"{itemsize} B but only {self.mem_size} B of memory")
        # shape: the caller's (ONNX/manifest) shape when it has the same element count, else the runtime's
        if shape is not None and int(np.prod(shape)) == self.count:
            self.shape = tuple(int(d) for d in shape)
        else:
            self.shape = self.runtime_shape if int(np.prod(self.runtime_shape)) == self.count else (self.count,)
        pointer = lib.CVI_NN_TensorPtr(cdata)
        if pointer == gateway.ffi.NULL:
            raise TensorWriteError(f"tensor {self.name!r} has no system memory (device-memory tensor)")
        # (shape) storage dtype, zero-copy on the runtime's memory; keeps `keepalive` (the handle) alive
        self.array = np.asarray(gateway.NativeBuffer(pointer, (self.count,), np.dtype(storage).str,
                                                     keepalive)).reshape(self.shape)
        self._scratch_u32 = np.zeros(self.shape, dtype=np.uint32) if self.fmt == 3 else None  # (shape) bf16 conversion
        self._scratch_f32 = np.zeros(self.shape, dtype=np.float32) if self.fmt in (4, 6, 7) else None  # (shape) quant

    def _release(self) -> None:
        """Drop our arrays at close (views the caller still holds keep the memory alive)."""
        self.array = self._scratch_u32 = self._scratch_f32 = None

    @property
    def dtype(self) -> str:
        """Logical dtype: float32 / bfloat16 / int8 / ..."""
        return {0: "float32", 3: "bfloat16"}.get(self.fmt, gateway.FMT_STORAGE[self.fmt][0])

    def _alive(self) -> None:
        if self._model.closed:
            raise ModelClosedError(f"tensor {self.name!r} used after its model was closed")

    def read(self, index=None) -> np.ndarray:
        """float32 values (a view for FP32, a new array for BF16/INT8)."""
        self._alive()
        stored = self.array if index is None else self.array[index]
        if self.fmt == 0:
            return stored
        if self.fmt == 3:
            return bf16_bits_to_float32(stored)
        if self.fmt in (4, 6, 7) and self.qscale not in (0.0, 1.0):
            return (stored.astype(np.float32) - np.float32(self.zero_point)) / np.float32(self.qscale)
        return stored.astype(np.float32)

    def write(self, values, index=None) -> None:
        """Write `values` into the tensor (or into `array[index]`), converting dtype in place."""
        self._alive()
        target = self.array if index is None else self.array[index]
        values = np.asarray(values)
        if values.dtype.kind not in "fiub":
            raise TensorWriteError(f"tensor {self.name!r}: cannot write {values.dtype} values, need numbers")
        if values.shape != target.shape:
            where = "" if index is None else f"[{index}]"
            raise TensorWriteError(f"tensor {self.name!r}{where}: shape {values.shape} written, expected "
                                   f"{target.shape}")
        if self.fmt == 0:
            np.copyto(target, values, casting="unsafe")
        elif self.fmt == 3:
            scratch = self._scratch_u32 if index is None else self._scratch_u32[index]
            float32_to_bf16_bits(values.astype(np.float32, copy=False), out=target, scratch=scratch)
        elif self.fmt in (4, 6, 7):
            info = np.iinfo(target.dtype)
            scratch = self._scratch_f32 if index is None else self._scratch_f32[index]
            np.copyto(scratch, values, casting="unsafe")
            if self.qscale not in (0.0, 1.0):
                scratch *= np.float32(self.qscale)
                scratch += np.float32(self.zero_point)
            np.rint(scratch, out=scratch)
            np.clip(scratch, info.min, info.max, out=scratch)
            np.copyto(target, scratch, casting="unsafe")
        else:  # integer formats (e.g. token ids as UINT16/INT32): exact integers only
            if values.dtype.kind == "f" and not np.all(np.rint(values) == values):
                raise TensorWriteError(f"tensor {self.name!r} holds {self.fmt_name}: write integers")
            info = np.iinfo(target.dtype)
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise TensorWriteError(f"tensor {self.name!r}: values outside {self.fmt_name} range")
            np.copyto(target, values, casting="unsafe")

    def __repr__(self) -> str:
        return f"CviTensor({self.name!r}, shape={self.shape}, fmt={self.fmt_name}, qscale={self.qscale})"
