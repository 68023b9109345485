"""What the `tpu` and `cmodel` backends share: a cvimodel run through tpu_driver.model.CviModel.

The two differ only in which libcviruntime.so they load (board build vs x86 simulator build):
the same gateway, the same code path. Tensor names: inputs keep their ONNX names in the
cvimodel; outputs get compiler names (e.g. `logits_Gemm_f32`), so they are mapped to the
bundle's/ONNX's output names by position (the compiler keeps the output order).
"""
from __future__ import annotations

import numpy as np

from tpu_driver.backends.base import BackendBase, TensorSpec, resolve_source, specs_from_onnx
from tpu_driver.model import CviModel
from tpu_driver.errors import TensorWriteError, UserError


class OutputSnapshot:
    """float32 copy of one output, taken right after each forward into a buffer allocated once.

    The runtime may place an output in memory that a later input write or forward reuses (seen
    on a small compiled graph on the cmodel): reading outputs from the snapshot makes the
    order of "read outputs" and "write next inputs" irrelevant to callers (engine, kv_window).
    """

    def __init__(self, name: str, tensor):
        self.name = name
        self.shape = tuple(tensor.shape)
        self.tensor = tensor
        self.values = np.zeros(self.shape, dtype=np.float32)  # (shape) float32, refreshed by take()

    def take(self) -> None:
        tensor = self.tensor
        if tensor.fmt == 0:
            np.copyto(self.values, tensor.array)
        elif tensor.fmt == 3:  # bf16 bits -> float32 in place: no temporary
            wide = self.values.view(np.uint32)
            np.copyto(wide, tensor.array, casting="unsafe")
            wide <<= np.uint32(16)
        else:
            np.copyto(self.values, tensor.read())

    def read(self, index=None) -> np.ndarray:
        return self.values if index is None else self.values[index]

    def write(self, values, index=None) -> None:
        raise TensorWriteError(f"output {self.name!r} is read-only")


class CvimodelBackend(BackendBase):
    def __init__(self, name: str, source, library, program_index: int = 0, output_all_tensors: bool = False):
        super().__init__()
        self.name = name
        source = resolve_source(source)
        if source.cvimodel_path is None:
            raise UserError(f"{name} backend needs a cvimodel, and the given model has none "
                            "(an onnx-only bundle?); export with --chip cv181x/cv180x or use the onnx backend")
        expected_inputs, expected_outputs = source.inputs, source.outputs
        if expected_inputs is None and source.onnx_path is not None and source.onnx_path.exists():
            expected_inputs, expected_outputs = specs_from_onnx(source.onnx_path)
        input_shapes = {n: s.shape for n, s in (expected_inputs or {}).items() if all(d > 0 for d in s.shape)}
        self.model = CviModel(source.cvimodel_path, library=library, program_index=program_index,
                              output_all_tensors=output_all_tensors, input_shapes=input_shapes)
        try:
            self._bind(expected_inputs, expected_outputs, output_all_tensors)
        except BaseException:
            self.model.close()
            raise
        self.library_path = str(self.model.library.path)

    def _bind(self, expected_inputs, expected_outputs, output_all_tensors) -> None:
        model = self.model
        for tensor in model.inputs:
            if expected_inputs is not None and tensor.name not in expected_inputs:
                raise UserError(f"cvimodel {model.path} input {tensor.name!r} is not among the bundle's inputs "
                                f"({', '.join(expected_inputs)}); the cvimodel and the bundle do not match")
            self.inputs[tensor.name] = TensorSpec(tensor.name, tensor.shape, "float32")
            self._input_io[tensor.name] = tensor
        names = list(expected_outputs) if expected_outputs and not output_all_tensors else None
        if names is not None and len(names) != len(model.outputs):
            raise UserError(f"cvimodel {model.path} has {len(model.outputs)} outputs, the bundle names "
                            f"{len(names)}; the cvimodel and the bundle do not match")
        for i, tensor in enumerate(model.outputs):
            name = names[i] if names else tensor.name
            if names:
                want = tuple(expected_outputs[name].shape)
                if all(d > 0 for d in want):
                    CviModel._reshape(tensor, want)
            self.outputs[name] = TensorSpec(name, tensor.shape, "float32")
            self._output_io[name] = OutputSnapshot(name, tensor)
        self._snapshots = list(self._output_io.values())

    def run(self) -> None:
        self._alive()
        self.model.forward()
        self.last_run_ms = self.model.last_forward_ms
        for snapshot in self._snapshots:
            snapshot.take()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.model.close()
