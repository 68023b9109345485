"""The backend interface (docs/design.md, "Backends") and what every backend shares.

numpy only: imported by numpy_ref.py on the board, so nothing here may import cffi or onnx.

    backend.name                      # "tpu" | "cmodel" | "onnx" | "numpy"
    backend.inputs / backend.outputs  # dict name -> TensorSpec(name, shape, dtype)
    backend.input(name)  -> TensorIO  # .write(values, index=None) converts dtype, checks shape; .read()
    backend.output(name) -> TensorIO  # .read() -> float32 ndarray
    backend.run()                     # one forward; backend.last_run_ms is its time ("model_ms")
    backend.close()                   # idempotent; also a context manager

Each backend module provides `open_backend(source, **opts)` and `availability() -> Availability`.
`source` is a bundle object (attributes `cvimodel_path` / `onnx_path`, optional `inputs`/`outputs`
lists of {name, shape, dtype} or a `manifest` dict holding them), a dict {"cvimodel": .., "onnx": ..},
or a path: a `.cvimodel`, a `.onnx`, or a bundle folder (`model.cvimodel`, `model.onnx`, `manifest.json`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tpu_driver.decode_step import TensorSpec  # noqa: F401 - the backend interface's tensor description
from tpu_driver.errors import ModelClosedError, TensorWriteError, UserError


class TensorIO(Protocol):
    name: str
    shape: tuple

    def write(self, values, index=None) -> None: ...

    def read(self, index=None) -> np.ndarray: ...


@dataclass(frozen=True)
class Availability:
    name: str
    available: bool
    reason: str  # why not (or what it runs on when available)
    library_path: str | None = None
    version: str | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "available": self.available, "reason": self.reason,
                "library_path": self.library_path, "version": self.version}


@dataclass
class ModelSource:
    """Where a backend finds its model, and the tensor names/shapes the bundle promises."""
    cvimodel_path: Path | None
    onnx_path: Path | None
    inputs: dict | None  # name -> TensorSpec, in graph order (None when unknown)
    outputs: dict | None  # name -> TensorSpec, in graph order
    bundle: object = None


def _specs(entries) -> dict | None:
    if not entries:
        return None
    specs = {}
    for entry in entries:
        if isinstance(entry, TensorSpec):
            specs[entry.name] = entry
        elif isinstance(entry, dict):
            specs[entry["name"]] = TensorSpec(entry["name"], tuple(entry["shape"]), entry.get("dtype", "float32"))
        else:
            specs[entry.name] = TensorSpec(entry.name, tuple(entry.shape), getattr(entry, "dtype", "float32"))
    return specs


def _spec_dict(value):
    if isinstance(value, dict) and value and all(isinstance(v, TensorSpec) for v in value.values()):
        return dict(value)
    return _specs(value)


def resolve_source(source) -> ModelSource:
    """Normalise a bundle object / dict / path into a ModelSource (see module docstring)."""
    if source is None:
        raise UserError("no model given: pass a bundle folder, a .cvimodel or a .onnx file")
    if isinstance(source, ModelSource):
        return source
    if isinstance(source, dict):
        cvimodel, onnx = source.get("cvimodel"), source.get("onnx")
        return ModelSource(Path(cvimodel) if cvimodel else None, Path(onnx) if onnx else None,
                           _spec_dict(source.get("inputs")), _spec_dict(source.get("outputs")))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            manifest = {}
            if (path / "manifest.json").is_file():
                try:
                    manifest = json.loads((path / "manifest.json").read_text())
                except ValueError as error:
                    raise UserError(f"{path / 'manifest.json'}: not valid JSON ({error}); re-export the bundle") from None
            cvimodel, onnx = path / "model.cvimodel", path / "model.onnx"
            return ModelSource(cvimodel if cvimodel.exists() else None, onnx if onnx.exists() else None,
                               _specs(manifest.get("inputs")), _specs(manifest.get("outputs")))
        if path.suffix == ".cvimodel":
            return ModelSource(path, None, None, None)
        if path.suffix == ".onnx":
            return ModelSource(None, path, None, None)
        if not path.exists():
            raise UserError(f"{path}: no such bundle folder or model file")
        raise UserError(f"{path}: expected a bundle folder, a .cvimodel or a .onnx file")
    # a bundle object (runtime.bundle.Bundle)
    cvimodel = getattr(source, "cvimodel_path", None)
    onnx = getattr(source, "onnx_path", None)
    manifest = getattr(source, "manifest", None) or {}
    inputs = getattr(source, "inputs", None) or (manifest.get("inputs") if isinstance(manifest, dict) else None)
    outputs = getattr(source, "outputs", None) or (manifest.get("outputs") if isinstance(manifest, dict) else None)
    return ModelSource(Path(cvimodel) if cvimodel else None, Path(onnx) if onnx else None,
                       _spec_dict(inputs), _spec_dict(outputs), bundle=source)


def specs_from_onnx(onnx_path: Path) -> tuple[dict, dict]:
    """(inputs, outputs) TensorSpecs of an ONNX file's graph, in order (host only: imports onnx)."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - onnx raises many types for a bad file
        raise UserError(f"{onnx_path}: cannot read ONNX ({str(error).splitlines()[0][:120]}); re-export it") from None

    def spec(value_info) -> TensorSpec:
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim)
        return TensorSpec(value_info.name, dims, "float32")

    initializers = {init.name for init in model.graph.initializer}
    inputs = {v.name: spec(v) for v in model.graph.input if v.name not in initializers}
    outputs = {v.name: spec(v) for v in model.graph.output}
    return inputs, outputs


class ArrayTensor:
    """A float32 buffer owned by a host backend (onnx, numpy): TensorIO over a numpy array."""

    def __init__(self, backend, spec: TensorSpec):
        self._backend = backend
        self.name = spec.name
        self.shape = tuple(spec.shape)
        self.dtype = "float32"
        self.array = np.zeros(self.shape, dtype=np.float32)  # (spec.shape) float32

    def write(self, values, index=None) -> None:
        """Copy `values` into the buffer (or into `array[index]`), checking dtype and shape."""
        self._backend._alive()
        target = self.array if index is None else self.array[index]
        values = np.asarray(values)
        if values.dtype.kind not in "fiub":
            raise TensorWriteError(f"{self._backend.name} backend: tensor {self.name!r}: cannot write {values.dtype} values")
        if values.shape != target.shape:
            where = "" if index is None else f"[{index}]"
            raise TensorWriteError(f"{self._backend.name} backend: tensor {self.name!r}{where}: shape {values.shape} "
                                   f"written, expected {target.shape}")
        np.copyto(target, values, casting="unsafe")

    def read(self, index=None) -> np.ndarray:
        """float32 values: a view of the buffer (valid until the next run())."""
        self._backend._alive()
        return self.array if index is None else self.array[index]


class BackendBase:
    """Shared lifetime handling: input()/output() lookups, close(), context manager."""

    name = "base"

    def __init__(self):
        self.inputs: dict = {}
        self.outputs: dict = {}
        self._input_io: dict = {}
        self._output_io: dict = {}
        self.closed = False
        self.last_run_ms: float | None = None

    def _alive(self) -> None:
        if self.closed:
            raise ModelClosedError(f"{self.name} backend used after close()")

    def input(self, name: str):
        self._alive()
        if name not in self._input_io:
            raise TensorWriteError(f"{self.name} backend has no input {name!r} (inputs: {', '.join(self.inputs)})")
        return self._input_io[name]

    def output(self, name: str):
        self._alive()
        if name not in self._output_io:
            raise TensorWriteError(f"{self.name} backend has no output {name!r} (outputs: {', '.join(self.outputs)})")
        return self._output_io[name]

    def run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
