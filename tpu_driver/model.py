"""`CviModel`: a registered cvimodel with its input/output tensors, on the board TPU or the cmodel.

    with CviModel("dec.cvimodel") as model:
        model.input("x").write(x)          # shape-checked, converted to the tensor's format
        model.forward()                    # CVI_NN_Forward
        logits = model.output(0).read()    # float32

Before the runtime sees the file we check it (tpu_driver.cvimodel_file): exists, readable, magic,
md5, not truncated, chip = the runtime's chip, format version <= the runtime's, program index in
range. A bad file raises a ModelFileError/WrongChipError/ModelVersionError instead of crashing.
"""
from __future__ import annotations

import time
from pathlib import Path

from tpu_driver import gateway
from tpu_driver.cvimodel_file import read_cvimodel_info
from tpu_driver.errors import ModelClosedError, ModelFileError, ModelVersionError, TensorWriteError, check_rc
from tpu_driver.tensor import CviTensor

# cvimodel format the simulator of the pinned tpu-mlir (1.30.2) reads: `cvimodel.fbs` MajorVersion 1,
# MinorVersion 4. A board runtime's own limit is not exported by the library: set
# EDGETYPE_RUNTIME_MODEL_VERSION=1.N to pre-check; the runtime itself also refuses newer files.
SIMULATOR_MODEL_VERSION = (1, 4)


def runtime_model_version(library: gateway.Library) -> tuple | None:
    import os

    configured = os.environ.get("EDGETYPE_RUNTIME_MODEL_VERSION")
    if configured:
        major, minor = configured.split(".")[:2]
        return int(major), int(minor)
    return SIMULATOR_MODEL_VERSION if library.kind == "simulator" else None


class CviModel:
    """A cvimodel registered with libcviruntime; close() (or `with`) releases it, idempotently."""

    def __init__(self, path, library=None, program_index: int = 0, output_all_tensors: bool = False,
                 input_shapes: dict | None = None, output_shapes: dict | None = None):
        self.closed = True
        self._handle = None
        self.path = Path(path)
        self.info = read_cvimodel_info(self.path)
        self.library = library if isinstance(library, gateway.Library) else gateway.load_library(library)
        what = f"cvimodel {self.path}"
        if not 0 <= program_index < len(self.info.programs):
            raise ModelFileError(f"{what} has {len(self.info.programs)} program(s); program index "
                                 f"{program_index} is out of range")
        supported = runtime_model_version(self.library)
        if supported is not None and self.info.version[0] == supported[0] and self.info.version[1] > supported[1]:
            raise ModelVersionError(f"{what} is cvimodel format {self.info.version[0]}.{self.info.version[1]}, "
                                    f"newer than this runtime's {supported[0]}.{supported[1]} ('Please update "
                                    "runtime lib'); update the runtime or compile with an older tpu-mlir")
        gateway.claim_chip(self.info.chip, self.library, what)
        lib, ffi = self.library.lib, gateway.ffi
        handle_out = ffi.new("CVI_MODEL_HANDLE *")
        with gateway.native_stdout_to_stderr():
            rc = lib.CVI_NN_RegisterModel(str(self.path).encode(), handle_out)
        check_rc(rc, "CVI_NN_RegisterModel", what)
        self._register(handle_out[0], program_index, output_all_tensors, input_shapes, output_shapes)

    @classmethod
    def _clone_of(cls, parent: "CviModel", program_index: int, input_shapes, output_shapes) -> "CviModel":
        self = cls.__new__(cls)
        self.closed, self._handle = True, None
        self.path, self.info, self.library = parent.path, parent.info, parent.library
        if not 0 <= program_index < len(self.info.programs):
            raise ModelFileError(f"cvimodel {self.path} has {len(self.info.programs)} program(s); "
                                 f"program index {program_index} is out of range")
        if not self.library.has("CVI_NN_CloneModel"):
            raise ModelFileError(f"{self.library.path} has no CVI_NN_CloneModel")
        handle_out = gateway.ffi.new("CVI_MODEL_HANDLE *")
        check_rc(self.library.lib.CVI_NN_CloneModel(parent._live_handle(), handle_out), "CVI_NN_CloneModel",
                 f"cvimodel {self.path}")
        self._register(handle_out[0], program_index, False, input_shapes, output_shapes)
        return self

    def _register(self, raw_handle, program_index, output_all_tensors, input_shapes, output_shapes):
        lib, ffi = self.library.lib, gateway.ffi
        self._handle = gateway.own_model_handle(raw_handle, self.library)
        self.closed = False
        what = f"cvimodel {self.path}"
        try:
            if program_index:
                check_rc(lib.CVI_NN_SetConfig(self._handle, lib.OPTION_PROGRAM_INDEX, ffi.cast("int32_t", program_index)),
                         "CVI_NN_SetConfig(OPTION_PROGRAM_INDEX)", what)
            if output_all_tensors:
                check_rc(lib.CVI_NN_SetConfig(self._handle, lib.OPTION_OUTPUT_ALL_TENSORS, ffi.cast("int32_t", 1)),
                         "CVI_NN_SetConfig(OPTION_OUTPUT_ALL_TENSORS)", what)
            inputs_out, outputs_out = ffi.new("CVI_TENSOR **"), ffi.new("CVI_TENSOR **")
            input_num, output_num = ffi.new("int32_t *"), ffi.new("int32_t *")
            with gateway.native_stdout_to_stderr():
                rc = lib.CVI_NN_GetInputOutputTensors(self._handle, inputs_out, input_num, outputs_out, output_num)
            check_rc(rc, "CVI_NN_GetInputOutputTensors", what)
            self._inputs_c, self._outputs_c = inputs_out[0], outputs_out[0]  # CVI_TENSOR[input_num], [output_num]
            self._input_num, self._output_num = int(input_num[0]), int(output_num[0])
            input_shapes, output_shapes = input_shapes or {}, output_shapes or {}
            self.inputs = [CviTensor(self, self._inputs_c + i, self.library, None, self._handle)
                           for i in range(self._input_num)]
            for tensor in self.inputs:
                if tensor.name in input_shapes:
                    self._reshape(tensor, input_shapes[tensor.name])
            self.outputs = [CviTensor(self, self._outputs_c + i, self.library, None, self._handle)
                            for i in range(self._output_num)]
            for i, tensor in enumerate(self.outputs):
                shape = output_shapes.get(tensor.name, output_shapes.get(i))
                if shape is not None:
                    self._reshape(tensor, shape)
            self.program_index = program_index
            self.version = self.info.version
            if self.library.has("CVI_NN_GetModelVersion"):
                major, minor = ffi.new("int32_t *"), ffi.new("int32_t *")
                check_rc(lib.CVI_NN_GetModelVersion(self._handle, major, minor), "CVI_NN_GetModelVersion", what)
                self.version = (int(major[0]), int(minor[0]))
            self.target = self.info.chip
            if self.library.has("CVI_NN_GetModelTarget"):
                target = lib.CVI_NN_GetModelTarget(self._handle)
                if target != ffi.NULL:
                    self.target = ffi.string(target).decode("ascii", errors="replace")
            self.last_forward_ms: float | None = None
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _reshape(tensor: CviTensor, shape) -> None:
        shape = tuple(int(d) for d in shape)
        size = 1
        for d in shape:
            size *= d
        if size != tensor.count:
            raise TensorWriteError(f"tensor {tensor.name!r}: expected shape {shape} ({size} elements) but the "
                                   f"cvimodel has {tensor.count} elements {tensor.runtime_shape}; wrong model for "
                                   "this bundle?")
        tensor.shape = shape
        tensor.array = tensor.array.reshape(shape)
        if tensor._scratch_u32 is not None:
            tensor._scratch_u32 = tensor._scratch_u32.reshape(shape)
        if tensor._scratch_f32 is not None:
            tensor._scratch_f32 = tensor._scratch_f32.reshape(shape)

    # -----------------------------------------------------------------------------------------
    def _live_handle(self):
        if self.closed:
            raise ModelClosedError(f"cvimodel {self.path} used after close()")
        return self._handle

    def _find(self, tensors: list, key, kind: str) -> CviTensor:
        if isinstance(key, int):
            if 0 <= key < len(tensors):
                return tensors[key]
        else:
            for tensor in tensors:
                if tensor.name == key:
                    return tensor
        names = ", ".join(t.name for t in tensors)
        raise TensorWriteError(f"cvimodel {self.path} has no {kind} {key!r} (it has: {names})")

    def input(self, key) -> CviTensor:
        self._live_handle()
        return self._find(self.inputs, key, "input")

    def output(self, key) -> CviTensor:
        self._live_handle()
        return self._find(self.outputs, key, "output")

    def forward(self) -> None:
        """Run one inference (CVI_NN_Forward) on the current input buffers; sets last_forward_ms."""
        handle = self._live_handle()
        with gateway.native_stdout_to_stderr():
            started = time.perf_counter()
            rc = self.library.lib.CVI_NN_Forward(handle, self._inputs_c, self._input_num, self._outputs_c,
                                                 self._output_num)
            self.last_forward_ms = (time.perf_counter() - started) * 1e3
        check_rc(rc, "CVI_NN_Forward", f"cvimodel {self.path}")

    def forward_async(self):
        """Start an inference; returns a task to pass to forward_wait()."""
        handle = self._live_handle()
        if not self.library.has("CVI_NN_ForwardAsync"):
            raise ModelFileError(f"{self.library.path} has no CVI_NN_ForwardAsync")
        task = gateway.ffi.new("void **")
        with gateway.native_stdout_to_stderr():
            rc = self.library.lib.CVI_NN_ForwardAsync(handle, self._inputs_c, self._input_num, self._outputs_c,
                                                          self._output_num, task)
        check_rc(rc, "CVI_NN_ForwardAsync", f"cvimodel {self.path}")
        return task[0]

    def forward_wait(self, task) -> None:
        """Wait for forward_async(). The runtime returns the task's retCode, which it fills with
        Program::forward()'s bool (1 = done; measured on the simulator), so 1 counts as success."""
        with gateway.native_stdout_to_stderr():
            rc = self.library.lib.CVI_NN_ForwardWait(self._live_handle(), task)
        check_rc(0 if rc == 1 else rc, "CVI_NN_ForwardWait", f"cvimodel {self.path}")

    def clone(self, program_index: int = 0, input_shapes=None, output_shapes=None) -> "CviModel":
        """Another handle on the same weights (CVI_NN_CloneModel), e.g. for another program index."""
        return CviModel._clone_of(self, program_index, input_shapes, output_shapes)

    def close(self) -> None:
        """Release the model (CVI_NN_CleanupModel); safe to call twice.

        The release happens now unless the caller still holds arrays from read()/`.array`: those
        keep the runtime memory alive (stale but valid) and the release happens when they go.
        """
        self.closed = True
        for tensor in getattr(self, "inputs", []) + getattr(self, "outputs", []):
            tensor._release()
        self._handle = None  # last reference (if no caller views): cffi runs CVI_NN_CleanupModel now

    def __enter__(self) -> "CviModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.inputs)} inputs, {len(self.outputs)} outputs"
        return f"CviModel({str(self.path)!r}, chip={self.info.chip}, {state})"
