"""The `tpu` backend: a cvimodel on the board's TPU through the board's libcviruntime.so.

Library: $EDGETYPE_CVIRUNTIME or /mnt/system/lib (gateway discovery), and it must be a board
build (not the x86 simulator: that is the `cmodel` backend; no silent substitution). The TPU
device (/dev/cvi-tpu0, or $TPU_DEV) must exist.
"""
from __future__ import annotations

from tpu_driver.errors import UserError
from tpu_driver import gateway
from tpu_driver.backends.base import Availability
from tpu_driver.backends.cvimodel_backend import CvimodelBackend

NAME = "tpu"


def board_library(explicit=None) -> gateway.Library:
    candidates = [c for c in gateway.discover_candidates(explicit, toolchain_library=False)]
    board = [(p, s) for p, s in candidates if not p.exists() or gateway.library_kind(p) == "board"]
    if not board:
        raise UserError("tpu backend needs the board's libcviruntime.so (/mnt/system/lib) and none is here; "
                        "on the host use backend 'cmodel' (simulator) or set EDGETYPE_CVIRUNTIME")
    return gateway.load_library(board[0][0])


def open_backend(source, library=None, program_index: int = 0, output_all_tensors: bool = False, **_ignored):
    return CvimodelBackend(NAME, source, board_library(library), program_index, output_all_tensors)


def availability() -> Availability:
    try:
        library = board_library()
    except UserError as error:
        return Availability(NAME, False, str(error))
    return Availability(NAME, True, f"board TPU {gateway.tpu_device_path()} ({gateway.board_chip() or 'chip unknown'})",
                        str(library.path), None)
