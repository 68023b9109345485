"""Backends by name: `open_backend(name, bundle_or_paths, **opts)`; never a silent fallback.

One module per backend (docs/design.md): tpu.py (board), cmodel.py (x86 simulator), onnx.py
(onnxruntime), numpy_ref.py (tpu_driver/reference_model.py math). `available_backends()` says which
run here and why not.
"""
from __future__ import annotations

import importlib

from tpu_driver.errors import UserError
from tpu_driver.backends.base import Availability, TensorSpec  # noqa: F401 - re-exported

BACKEND_NAMES = ("tpu", "cmodel", "onnx", "numpy")
_MODULES = {"tpu": "tpu_driver.backends.tpu", "cmodel": "tpu_driver.backends.cmodel",
            "onnx": "tpu_driver.backends.onnx", "numpy": "tpu_driver.backends.numpy_ref"}


def _module(name: str):
    if name not in _MODULES:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    return importlib.import_module(_MODULES[name])


def open_backend(name: str, bundle_or_paths, **opts):
    """Open backend `name` on a bundle object, a bundle folder, a dict of paths or a model file."""
    module = _module(name)
    if name == "numpy":
        if isinstance(bundle_or_paths, (str, bytes)) or not hasattr(bundle_or_paths, "config"):
            raise TypeError("numpy backend needs a bundle object (runtime.bundle) with config and weights.npz")
        return module.open_numpy_backend(bundle_or_paths)
    return module.open_backend(bundle_or_paths, **opts)


def _numpy_availability() -> Availability:
    try:
        import numpy

        importlib.import_module(_MODULES["numpy"])
    except Exception as error:  # noqa: BLE001 - report any import failure as the reason
        return Availability("numpy", False, f"numpy backend does not import: {error}")
    return Availability("numpy", True, "tpu_driver/reference_model.py math in numpy", numpy.__file__, numpy.__version__)


def available_backends() -> dict:
    """name -> Availability(available, reason, library_path, version), for every backend."""
    result = {}
    for name in BACKEND_NAMES:
        if name == "numpy":
            result[name] = _numpy_availability()
            continue
        try:
            result[name] = _module(name).availability()
        except Exception as error:  # noqa: BLE001 - availability must never raise
            result[name] = Availability(name, False, f"{type(error).__name__}: {error}")
    return result
