"""The `cmodel` backend: a cvimodel on the x86 cv18xx simulator shipped in the tpu-mlir wheel.

Same code path as `tpu` (tpu_driver.gateway + tpu_driver.model); only the library differs: the
toolchain's `tpu_mlir/lib/libcviruntime.so` (linked to libcvicmodel.so). Simulator env: the
cmodel asserts when `TPU_ENABLE_PMU` is set (PLATFORM.md), so it is removed; the chip comes from
the first model registered in the process. Without the toolchain this raises UserError: it
never falls back to another backend.
"""
from __future__ import annotations

import os
import sys

from tpu_driver import gateway, simulator_paths
from tpu_driver.errors import UserError
from tpu_driver.backends.base import Availability
from tpu_driver.backends.cvimodel_backend import CvimodelBackend

NAME = "cmodel"


def _env_library() -> str | None:
    """$EDGETYPE_CVIRUNTIME (gateway's discovery order): needs no host tooling to find it."""
    return os.environ.get("EDGETYPE_CVIRUNTIME") or None


def simulator_library(explicit=None) -> gateway.Library:
    explicit = explicit or _env_library()
    if explicit is None:
        explicit = simulator_paths.simulator_library_path()
        if explicit is None:
            raise UserError("cmodel backend needs the tpu-mlir toolchain's simulator library; "
                            f"{simulator_paths.INSTALL_HINT}")
    library = gateway.load_library(explicit)
    if library.kind != "simulator":
        raise UserError(f"{library.path} is a board runtime, not the cmodel simulator; use backend 'tpu'")
    return library


def open_backend(source, library=None, program_index: int = 0, output_all_tensors: bool = False, **_ignored):
    if os.environ.pop("TPU_ENABLE_PMU", None) is not None:
        print("[cmodel] unset TPU_ENABLE_PMU: the simulator asserts with it (PLATFORM.md)", file=sys.stderr)
    return CvimodelBackend(NAME, source, simulator_library(library), program_index, output_all_tensors)


def availability() -> Availability:
    if _env_library():  # e.g. the simulated board: the simulator stands where the board's library is
        try:
            library = simulator_library()
        except UserError as error:
            return Availability(NAME, False, str(error), _env_library(), None)
        return Availability(NAME, True, "x86 cv18xx simulator ($EDGETYPE_CVIRUNTIME)",
                            str(library.path), None)
    path = simulator_paths.simulator_library_path()
    if path is None:
        return Availability(NAME, False, f"tpu-mlir toolchain not installed; {simulator_paths.INSTALL_HINT}")
    version = simulator_paths.tpu_mlir_version()
    try:
        library = gateway.load_library(path)
    except UserError as error:
        return Availability(NAME, False, str(error), str(path), version)
    return Availability(NAME, True, f"x86 cv18xx simulator from tpu-mlir {version}", str(library.path), version)
