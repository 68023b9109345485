"""The `onnx` backend: onnxruntime (CPU) on the bundle's model.onnx.

Inputs are preallocated float32 arrays handed to onnxruntime each run (no copy per step);
`write(values, index)` writes a slice in place. Outputs are the arrays of the last run.
"""
from __future__ import annotations

import time

import numpy as np

from tpu_driver.errors import UserError
from tpu_driver.backends.base import (ArrayTensor, Availability, BackendBase, TensorSpec, resolve_source,
                                      specs_from_onnx)

NAME = "onnx"


class OnnxBackend(BackendBase):
    name = NAME

    def __init__(self, source, threads: int = 1):
        super().__init__()
        import onnxruntime

        source = resolve_source(source)
        if source.onnx_path is None or not source.onnx_path.exists():
            raise UserError(f"onnx backend needs model.onnx and the given model has none ({source.onnx_path})")
        graph_inputs, graph_outputs = specs_from_onnx(source.onnx_path)
        for name, spec in graph_inputs.items():
            if any(d <= 0 for d in spec.shape):
                raise UserError(f"{source.onnx_path}: input {name!r} has a dynamic shape {spec.shape}; export static shapes")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(source.onnx_path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
            raise UserError(f"{source.onnx_path}: onnxruntime cannot load it ({str(error).splitlines()[0][:160]})") from None
        self.onnx_path = source.onnx_path
        for name, spec in graph_inputs.items():
            self.inputs[name] = spec
            self._input_io[name] = ArrayTensor(self, spec)
        for name, spec in graph_outputs.items():
            self.outputs[name] = spec
            self._output_io[name] = ArrayTensor(self, spec)
        self._feed = {name: io.array for name, io in self._input_io.items()}  # name -> preallocated input
        self._output_names = list(graph_outputs)

    def run(self) -> None:
        self._alive()
        started = time.perf_counter()
        results = self.session.run(self._output_names, self._feed)
        self.last_run_ms = (time.perf_counter() - started) * 1e3
        for name, value in zip(self._output_names, results):
            io = self._output_io[name]
            if io.array.shape != value.shape:  # dynamic output dims: adopt the real shape once
                io.array = np.zeros(value.shape, dtype=np.float32)
                io.shape = value.shape
                self.outputs[name] = TensorSpec(name, value.shape, "float32")
            np.copyto(io.array, value, casting="unsafe")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.session = None


def open_backend(source, threads: int = 1, **_ignored) -> OnnxBackend:
    return OnnxBackend(source, threads=threads)


def availability() -> Availability:
    try:
        import onnxruntime
    except ImportError as error:
        return Availability(NAME, False, f"onnxruntime is not installed ({error})")
    return Availability(NAME, True, "onnxruntime CPU", onnxruntime.__file__, onnxruntime.__version__)
