"""CviTensor views, shape checks and dtype conversion, on a CVI_TENSOR filled in by the test.

The accessors (CVI_NN_TensorName/Ptr/...) are stand-ins that read the struct the way
cviruntime's runtime.cpp does; the real library is exercised in tests/sim/.
"""
from pathlib import Path

import numpy as np
import pytest

from tpu_driver import gateway
from tpu_driver.errors import ModelClosedError, TensorWriteError
from tpu_driver.tensor import CviTensor, bf16_bits_to_float32

ffi = gateway.ffi


class StructAccessors:
    """CVI_NN_Tensor* accessors as in cviruntime runtime.cpp (field reads)."""

    def CVI_NN_TensorName(self, t):
        return t.name

    def CVI_NN_TensorShape(self, t):
        return t.shape

    def CVI_NN_TensorCount(self, t):
        return t.count

    def CVI_NN_TensorSize(self, t):
        return t.mem_size

    def CVI_NN_TensorPtr(self, t):
        return ffi.cast("void *", t.sys_mem)

    def CVI_NN_TensorQuantScale(self, t):
        return t.qscale

    def CVI_NN_TensorQuantZeroPoint(self, t):
        return t.zero_point


class FakeModel:
    closed = False


LIBRARY = gateway.Library(Path("/fake/libcviruntime.so"), "explicit", "simulator", lib=StructAccessors(),
                          available_symbols=frozenset(gateway.REQUIRED_SYMBOLS + gateway.OPTIONAL_SYMBOLS))


def make_tensor(shape, fmt, qscale=1.0, keep=None, user_shape=None):
    storage, itemsize = gateway.FMT_STORAGE[fmt]
    count = int(np.prod(shape))
    memory = ffi.new("uint8_t[]", count * itemsize)
    name = ffi.new("char[]", b"t0")
    tensor = ffi.new("CVI_TENSOR *")
    tensor.name = name
    for i, d in enumerate(shape):
        tensor.shape.dim[i] = d
    tensor.shape.dim_size = len(shape)
    tensor.fmt, tensor.count, tensor.mem_size, tensor.sys_mem = fmt, count, count * itemsize, memory
    tensor.qscale = qscale
    if keep is not None:
        keep.extend([memory, name, tensor])
    model = FakeModel()
    return CviTensor(model, tensor, LIBRARY, user_shape), model, memory


def test_fp32_view_is_zero_copy_and_slice_writes_in_place():
    keep = []
    tensor, _, memory = make_tensor((1, 2, 3, 5), 0, keep=keep)
    assert tensor.name == "t0" and tensor.shape == (1, 2, 3, 5) and tensor.dtype == "float32"
    tensor.write(np.ones((1, 2, 3, 1), np.float32) * 7, index=(..., slice(4, 5)))
    raw = np.frombuffer(ffi.buffer(memory), np.float32).reshape(1, 2, 3, 5)
    assert np.all(raw[..., 4] == 7) and not raw[..., :4].any()
    assert np.shares_memory(tensor.read(), tensor.array)


def test_shape_and_dtype_errors_name_the_tensor():
    keep = []
    tensor, _, _ = make_tensor((1, 4), 0, keep=keep)
    with pytest.raises(TensorWriteError, match="'t0'.*shape \\(4,\\) written, expected \\(1, 4\\)"):
        tensor.write(np.zeros(4, np.float32))
    with pytest.raises(TensorWriteError, match="cannot write"):
        tensor.write(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(TensorWriteError, match="shape"):
        tensor.write(np.zeros((1, 2)), index=(..., slice(0, 1)))


def test_bf16_tensor_converts_on_write_and_read():
    keep = []
    tensor, _, memory = make_tensor((1, 8), 3, keep=keep)
    values = np.array([[1.0, 1 + 2 ** -8, -3.5, 0.1, 1e30, -1e-30, 2.0, 1 + 3 * 2 ** -8]], np.float32)
    tensor.write(values)
    raw = np.frombuffer(ffi.buffer(memory), np.uint16)
    assert raw[0] == 0x3F80 and raw[1] == 0x3F80 and raw[7] == 0x3F82  # ties to even
    read = tensor.read()
    assert read.dtype == np.float32 and np.allclose(read, values, rtol=2 ** -8)
    assert np.array_equal(read, bf16_bits_to_float32(raw).reshape(1, 8))
    tensor.write(np.full((1, 1), 5.0), index=(..., slice(2, 3)))
    assert tensor.read()[0, 2] == 5.0 and tensor.read()[0, 0] == 1.0


def test_int8_tensor_quantizes_with_qscale_and_saturates():
    keep = []
    tensor, _, memory = make_tensor((1, 4), 6, qscale=127 / 2.0, keep=keep)  # threshold 2.0
    tensor.write(np.array([[1.0, -2.0, 5.0, 0.004]], np.float32))
    assert np.frombuffer(ffi.buffer(memory), np.int8).tolist() == [64, -127, 127, 0]
    assert np.allclose(tensor.read(), [[64 / 63.5, -2.0, 2.0, 0.0]])


def test_integer_tensor_refuses_fractions_and_out_of_range():
    keep = []
    tensor, _, _ = make_tensor((1, 3), 5, keep=keep)  # UINT16 (token ids arrive like this)
    tensor.write(np.array([[1, 2, 65535]]))
    assert tensor.read().tolist() == [[1.0, 2.0, 65535.0]]
    with pytest.raises(TensorWriteError, match="integers"):
        tensor.write(np.array([[1.5, 2, 3]]))
    with pytest.raises(TensorWriteError, match="range"):
        tensor.write(np.array([[-1, 2, 3]]))


def test_caller_shape_is_used_when_counts_match_and_closed_model_refuses():
    keep = []
    tensor, model, _ = make_tensor((1, 16, 1, 1), 0, keep=keep, user_shape=(1, 1, 16))
    assert tensor.shape == (1, 1, 16) and tensor.runtime_shape == (1, 16, 1, 1)
    tensor2, _, _ = make_tensor((1, 16, 1, 1), 0, keep=keep, user_shape=(1, 1, 15))
    assert tensor2.shape == (1, 16, 1, 1)
    model.closed = True
    with pytest.raises(ModelClosedError):
        tensor.read()
    with pytest.raises(ModelClosedError):
        tensor.write(np.zeros((1, 1, 16)))


def test_runtime_size_smaller_than_count_is_refused():
    keep = []
    memory = ffi.new("uint8_t[]", 8)
    tensor = ffi.new("CVI_TENSOR *")
    name = ffi.new("char[]", b"short")
    keep.extend([memory, tensor, name])
    tensor.name, tensor.fmt, tensor.count, tensor.mem_size, tensor.sys_mem = name, 0, 4, 8, memory
    tensor.shape.dim[0], tensor.shape.dim_size = 4, 1
    with pytest.raises(TensorWriteError, match="only 8 B"):
        CviTensor(FakeModel(), tensor, LIBRARY)
