"""Errors of the TPU driver, and `UserError`, the error type every package shares.

`UserError` is defined here, at the bottom layer, so that the driver imports nothing above it;
`runtime.errors` re-exports it for the packages above. Every driver error the user can fix (no
library, wrong chip, a bad file, a runtime failure) is a `UserError` (one line, exit code 2);
misuse of the API by our own code (TensorWriteError, ModelClosedError) is not.

`CVI_RC` codes (cviruntime `cvitpu_debug.h` -> `cvi_errno.h`) are `0xC0778000 | n`; the generic
failure is -1. `CviRuntimeError` names the code, the call and what the driver was doing.
"""
from __future__ import annotations


class UserError(Exception):
    """An error caused by input or environment (bad file, missing toolchain, wrong chip).

    The CLI prints it as one line naming what is wrong and what to do, exit code 2; never a
    traceback. Library code raises subclasses with the same contract. A programmer error (a bug)
    is not a UserError: let it raise normally, with its traceback.
    """


CVI_RC_SUCCESS = 0
CVI_RC_FAILURE = -1
CVI_ERR_TPU_BASE = 0xC0778000
# n -> name, from cvitpu_debug.h / cvi_errno.h (CVI_ERR_TPU_*)
CVI_RC_NAMES = {
    0x03: "CVI_RC_INVALID_ARG",
    0x07: "CVI_RC_UNINIT",
    0x08: "CVI_RC_UNSUPPORT",
    0x0C: "CVI_RC_NOMEM",
    0x10: "CVI_RC_AGAIN",
    0x12: "CVI_RC_BUSY",
    0x15: "CVI_RC_TIMEOUT",
    0x16: "CVI_RC_DATA_ERR",
}
CVI_RC_HINTS = {
    "CVI_RC_INVALID_ARG": "the runtime rejected the model or an argument (wrong chip, newer cvimodel "
                          "version than the runtime: 'Please update runtime lib')",
    "CVI_RC_NOMEM": "out of ION/device memory (a hung process may still hold ION: see PLATFORM.md)",
    "CVI_RC_DATA_ERR": "the cvimodel data is inconsistent (recompile it)",
    "CVI_RC_UNSUPPORT": "the model needs something this runtime build does not support (e.g. CPU ops)",
    "CVI_RC_TIMEOUT": "the TPU did not finish in time",
    "CVI_RC_BUSY": "the TPU is busy",
    "CVI_RC_UNINIT": "the runtime is not initialised",
    "CVI_RC_AGAIN": "not ready yet; retry",
    "CVI_RC_FAILURE": "generic runtime failure (see the runtime's log lines above)",
}


def rc_name(rc: int) -> str:
    """Name of a CVI_RC value, e.g. 0xC0778003 (or its signed int32 form) -> CVI_RC_INVALID_ARG."""
    if rc == CVI_RC_SUCCESS:
        return "CVI_RC_SUCCESS"
    unsigned = rc & 0xFFFFFFFF
    if unsigned == 0xFFFFFFFF:
        return "CVI_RC_FAILURE"
    if unsigned & 0xFFFFF000 == CVI_ERR_TPU_BASE:
        return CVI_RC_NAMES.get(unsigned & 0xFFF, f"CVI_ERR_TPU_0x{unsigned & 0xFFF:02X}")
    return f"CVI_RC_UNKNOWN_0x{unsigned:08X}"


class TpuDriverError(UserError):
    """Base of every tpu_driver error."""


class LibraryNotFoundError(TpuDriverError):
    """No libcviruntime.so could be found or loaded."""


class DeviceNotFoundError(TpuDriverError):
    """On a board: the TPU device node or kernel module is missing."""


class ModelFileError(TpuDriverError):
    """The file is missing, unreadable, not a cvimodel, truncated or corrupt."""


class WrongChipError(TpuDriverError):
    """The cvimodel was built for another chip than the runtime runs."""


class ModelVersionError(TpuDriverError):
    """The cvimodel is newer than the runtime library supports."""


class TensorWriteError(ValueError):
    """Wrong shape or dtype written to a tensor, or an unknown tensor name: a bug in the caller,
    not a UserError (it raises with its traceback)."""


class ModelClosedError(RuntimeError):
    """The model (or backend) was used after close(): a bug in the caller, not a UserError."""


class CviRuntimeError(TpuDriverError):
    """A CVI_NN_* call returned a non-success CVI_RC."""

    def __init__(self, rc: int, call: str, context: str = ""):
        self.rc = rc
        self.code = rc & 0xFFFFFFFF
        self.code_name = rc_name(rc)
        hint = CVI_RC_HINTS.get(self.code_name, "")
        where = f" ({context})" if context else ""
        super().__init__(f"{call} failed with {self.code_name} (0x{self.code:08X}){where}"
                         + (f": {hint}" if hint else ""))


def check_rc(rc: int, call: str, context: str = "") -> None:
    """Raise CviRuntimeError unless rc is CVI_RC_SUCCESS."""
    if rc != CVI_RC_SUCCESS:
        raise CviRuntimeError(rc, call, context)
