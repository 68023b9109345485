"""The one module that touches `libcviruntime.so` (cffi, ABI mode: dlopen, no compiler needed).

The cdef below is copied from the documented API (sophgo/cviruntime `include/cviruntime.h`).
Everything else in tpu_driver goes through `load_library()` and the `Library` it returns.

Library discovery order (first hit wins, `discover_candidates()`):
  1. an explicit path (argument)             2. `$EDGETYPE_CVIRUNTIME`
  3. the board's `/mnt/system/lib`, `/mnt/system/usr/lib`
  4. the x86 cmodel simulator build in the tpu-mlir toolchain venv (`tpu_mlir/lib/libcviruntime.so`).
The simulator library's RUNPATH (`$ORIGIN/:$ORIGIN/../lib/third_party/`) finds its neighbours
(libcvikernel, libcvicmodel, the bundled libstdc++), so it needs no LD_LIBRARY_PATH; it needs the
glibc fix of `edgetype toolchain install` only for the compiler tools, not for itself.

Process-wide facts the runtime imposes (PLATFORM.md):
  - one process = one chip: the cmodel takes its chip from the first model registered
    (`SET_CHIP_NAME`); `claim_chip()` enforces that before the runtime sees a second chip;
  - `CVI_NN_SetConfig(OPTION_PROGRAM_INDEX)` asserts (aborts) on an out-of-range index, so callers
    check the index against the file first (tpu_driver.model does);
  - the runtime prints to stdout; `native_stdout_to_stderr()` keeps `--json` stdout clean.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cffi

from tpu_driver import simulator_paths
from tpu_driver.errors import DeviceNotFoundError, LibraryNotFoundError, WrongChipError

LIBRARY_NAME = "libcviruntime.so"
BOARD_LIBRARY_DIRS = ("/mnt/system/lib", "/mnt/system/usr/lib")
DEFAULT_TPU_DEVICE = "/dev/cvi-tpu0"
BOARD_KERNEL_MODULE_GLOB = "/mnt/system/ko/cv18*_tpu.ko"

CDEF = """
typedef enum {
  CVI_FMT_FP32 = 0, CVI_FMT_INT32 = 1, CVI_FMT_UINT32 = 2, CVI_FMT_BF16 = 3,
  CVI_FMT_INT16 = 4, CVI_FMT_UINT16 = 5, CVI_FMT_INT8 = 6, CVI_FMT_UINT8 = 7
} CVI_FMT;
typedef enum { CVI_MEM_SYSTEM = 1, CVI_MEM_DEVICE = 2 } CVI_MEM_TYPE_E;
typedef enum {
  CVI_NN_PIXEL_RGB_PACKED = 0, CVI_NN_PIXEL_BGR_PACKED = 1, CVI_NN_PIXEL_RGB_PLANAR = 2,
  CVI_NN_PIXEL_BGR_PLANAR = 3, CVI_NN_PIXEL_YUV_NV12 = 11, CVI_NN_PIXEL_YUV_NV21 = 12,
  CVI_NN_PIXEL_YUV_420_PLANAR = 13, CVI_NN_PIXEL_GRAYSCALE = 15, CVI_NN_PIXEL_TENSOR = 100,
  CVI_NN_PIXEL_RGBA_PLANAR = 1000, CVI_NN_PIXEL_PLANAR = 101, CVI_NN_PIXEL_PACKED = 102
} CVI_NN_PIXEL_FORMAT_E;
typedef enum {
  OPTION_OUTPUT_ALL_TENSORS = 4, OPTION_PROGRAM_INDEX = 9, OPTION_BATCH_SIZE = 1,
  OPTION_SKIP_POSTPROCESS = 6, OPTION_PREPARE_BUF_FOR_INPUTS = 2, OPTION_PREPARE_BUF_FOR_OUTPUTS = 3,
  OPTION_SKIP_PREPROCESS = 5, OPTION_INPUT_MEM_TYPE = 7, OPTION_OUTPUT_MEM_TYPE = 8
} CVI_CONFIG_OPTION;

typedef struct {
  int32_t dim[6];
  size_t dim_size;
} CVI_SHAPE;

typedef struct {
  char                  *name;
  CVI_SHAPE             shape;
  CVI_FMT               fmt;
  size_t                count;
  size_t                mem_size;
  uint8_t               *sys_mem;
  uint64_t              paddr;
  CVI_MEM_TYPE_E        mem_type;
  float                 qscale;
  int                   zero_point;
  CVI_NN_PIXEL_FORMAT_E pixel_format;
  bool                  aligned;
  float                 mean[3];
  float                 scale[3];
  void                  *owner;
  char                  reserved[32];
} CVI_TENSOR;

typedef void *CVI_MODEL_HANDLE;
typedef int CVI_RC;

CVI_RC CVI_NN_RegisterModel(const char *model_file, CVI_MODEL_HANDLE *model);
CVI_RC CVI_NN_RegisterModelFromBuffer(const int8_t *buf, uint32_t size, CVI_MODEL_HANDLE *model);
CVI_RC CVI_NN_CloneModel(CVI_MODEL_HANDLE model, CVI_MODEL_HANDLE *cloned);
CVI_RC CVI_NN_GetModelVersion(CVI_MODEL_HANDLE model, int32_t *major, int32_t *minor);
const char *CVI_NN_GetModelTarget(CVI_MODEL_HANDLE model);
CVI_RC CVI_NN_SetConfig(CVI_MODEL_HANDLE model, CVI_CONFIG_OPTION option, ...);
CVI_RC CVI_NN_GetInputOutputTensors(CVI_MODEL_HANDLE model, CVI_TENSOR **inputs,
    int32_t *input_num, CVI_TENSOR **outputs, int32_t *output_num);
CVI_RC CVI_NN_Forward(CVI_MODEL_HANDLE model, CVI_TENSOR inputs[], int32_t input_num,
    CVI_TENSOR outputs[], int32_t output_num);
CVI_RC CVI_NN_ForwardAsync(CVI_MODEL_HANDLE model, CVI_TENSOR inputs[], int32_t input_num,
    CVI_TENSOR outputs[], int32_t output_num, void **task_no);
CVI_RC CVI_NN_ForwardWait(CVI_MODEL_HANDLE model, void *task_no);
CVI_RC CVI_NN_CleanupModel(CVI_MODEL_HANDLE model);
CVI_TENSOR *CVI_NN_GetTensorByName(const char *name, CVI_TENSOR *tensors, int32_t num);
char *CVI_NN_TensorName(CVI_TENSOR *tensor);
void *CVI_NN_TensorPtr(CVI_TENSOR *tensor);
size_t CVI_NN_TensorSize(CVI_TENSOR *tensor);
size_t CVI_NN_TensorCount(CVI_TENSOR *tensor);
float CVI_NN_TensorQuantScale(CVI_TENSOR *tensor);
int CVI_NN_TensorQuantZeroPoint(CVI_TENSOR *tensor);
CVI_SHAPE CVI_NN_TensorShape(CVI_TENSOR *tensor);
CVI_RC CVI_NN_SetTensorPtr(CVI_TENSOR *tensor, void *mem);
void CVI_NN_Global_SetSharedMemorySize(size_t size);
"""
# functions the driver needs; the rest of the cdef is optional (checked with available_symbols)
REQUIRED_SYMBOLS = (
    "CVI_NN_RegisterModel", "CVI_NN_GetInputOutputTensors", "CVI_NN_Forward", "CVI_NN_CleanupModel",
    "CVI_NN_TensorPtr", "CVI_NN_TensorSize", "CVI_NN_TensorCount", "CVI_NN_TensorName",
    "CVI_NN_TensorShape", "CVI_NN_SetConfig",
)
OPTIONAL_SYMBOLS = (
    "CVI_NN_RegisterModelFromBuffer", "CVI_NN_CloneModel", "CVI_NN_GetModelVersion",
    "CVI_NN_GetModelTarget", "CVI_NN_ForwardAsync", "CVI_NN_ForwardWait", "CVI_NN_GetTensorByName",
    "CVI_NN_TensorQuantScale", "CVI_NN_TensorQuantZeroPoint", "CVI_NN_SetTensorPtr",
    "CVI_NN_Global_SetSharedMemorySize",
)
# CVI_FMT -> (numpy storage dtype name, bytes per element)
FMT_STORAGE = {0: ("float32", 4), 1: ("int32", 4), 2: ("uint32", 4), 3: ("uint16", 2),
               4: ("int16", 2), 5: ("uint16", 2), 6: ("int8", 1), 7: ("uint8", 1)}
FMT_NAMES = {0: "FP32", 1: "INT32", 2: "UINT32", 3: "BF16", 4: "INT16", 5: "UINT16", 6: "INT8", 7: "UINT8"}

ffi = cffi.FFI()
ffi.cdef(CDEF)

_libraries: dict[str, "Library"] = {}
_lock = threading.Lock()
_process_chip: str | None = None


@dataclass
class Library:
    path: Path
    source: str  # "explicit" | "env" | "board" | "toolchain"
    kind: str  # "board" (real TPU) | "simulator" (x86 cmodel)
    lib: object = field(repr=False)
    available_symbols: frozenset = frozenset()

    def has(self, symbol: str) -> bool:
        return symbol in self.available_symbols


def _toolchain_simulator_library() -> Path | None:
    return simulator_paths.simulator_library_path()  # None on the board (no toolchain there)


def discover_candidates(explicit=None, environ=None, board_dirs=BOARD_LIBRARY_DIRS,
                        toolchain_library=None) -> list[tuple[Path, str]]:
    """Candidate library paths in discovery order, as (path, source); existing files only,
    except an explicit or env path, which is returned even when missing (to report it)."""
    environ = os.environ if environ is None else environ
    candidates = []
    if explicit:
        return [(Path(explicit), "explicit")]
    if environ.get("EDGETYPE_CVIRUNTIME"):
        return [(Path(environ["EDGETYPE_CVIRUNTIME"]), "env")]
    for directory in board_dirs:
        path = Path(directory) / LIBRARY_NAME
        if path.is_file():
            candidates.append((path, "board"))
    # toolchain_library: None = look it up, False = skip the simulator, a path = use that
    simulator = _toolchain_simulator_library() if toolchain_library is None else toolchain_library
    if simulator and Path(simulator).is_file():
        candidates.append((Path(simulator), "toolchain"))
    return candidates


def library_kind(path: Path) -> str:
    """'simulator' when the cmodel (libcvicmodel.so) sits next to the library, else 'board'."""
    return "simulator" if (Path(path).parent / "libcvicmodel.so").exists() else "board"


def tpu_device_path(environ=None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("TPU_DEV") or DEFAULT_TPU_DEVICE


def check_board_device(environ=None, module_glob: str = BOARD_KERNEL_MODULE_GLOB) -> None:
    """On a board: raise DeviceNotFoundError when the TPU device node (or its module) is missing."""
    import glob

    device = tpu_device_path(environ)
    if os.path.exists(device):
        return
    modules = glob.glob(module_glob)
    loaded = ""
    try:
        loaded = Path("/proc/modules").read_text()
    except OSError:
        pass
    if modules and not any(Path(m).stem in loaded for m in modules):
        raise DeviceNotFoundError(f"TPU device {device} is missing and the kernel module is not loaded; "
                                  f"run `insmod {modules[0]}` (or fix the init script), then retry")
    if not modules:
        raise DeviceNotFoundError(f"TPU device {device} is missing and no TPU kernel module matches "
                                  f"{module_glob}; this image has no TPU driver (PLATFORM.md), use a "
                                  "Milk-V SDK image with the cv18xx tpu module (or set TPU_DEV)")
    raise DeviceNotFoundError(f"TPU device {device} is missing although the TPU module is loaded; "
                              "check dmesg (or set TPU_DEV to the device node)")


def load_library(explicit=None, check_device: bool = True) -> Library:
    """dlopen the runtime library (once per path per process). Raises LibraryNotFoundError."""
    candidates = discover_candidates(explicit)
    if not candidates:
        raise LibraryNotFoundError(
            f"no {LIBRARY_NAME} found (looked at $EDGETYPE_CVIRUNTIME, {', '.join(BOARD_LIBRARY_DIRS)} and "
            "the tpu-mlir toolchain); on the host run `edgetype toolchain install`, on a board install the "
            "TPU runtime, or set EDGETYPE_CVIRUNTIME")
    path, source = candidates[0]
    if not path.is_file():
        raise LibraryNotFoundError(f"{path} (from {'EDGETYPE_CVIRUNTIME' if source == 'env' else 'the given path'}) "
                                   f"does not exist; point it at a {LIBRARY_NAME}")
    key = str(path.resolve())
    with _lock:
        if key in _libraries:
            library = _libraries[key]
        else:
            try:
                lib = ffi.dlopen(key)
            except OSError as error:
                raise LibraryNotFoundError(f"cannot load {path}: {str(error).splitlines()[0]}; "
                                           "reinstall it (`edgetype toolchain install` for the simulator)") from None
            available = set()
            for symbol in REQUIRED_SYMBOLS + OPTIONAL_SYMBOLS:
                try:
                    getattr(lib, symbol)
                    available.add(symbol)
                except AttributeError:
                    pass
            missing = [s for s in REQUIRED_SYMBOLS if s not in available]
            if missing:
                raise LibraryNotFoundError(f"{path} lacks {', '.join(missing)}; it is not a usable cviruntime")
            library = Library(path=path, source=source, kind=library_kind(path), lib=lib,
                              available_symbols=frozenset(available))
            _libraries[key] = library
    if check_device and library.kind == "board":
        check_board_device()
    return library


def process_chip() -> str | None:
    """The chip this process's runtime is bound to (first model registered), or None."""
    return _process_chip


def claim_chip(chip: str, library: Library, what: str) -> None:
    """Bind this process to `chip` on first use; WrongChipError when a model for another chip comes.

    Simulator: the first registered model fixes the chip (SET_CHIP_NAME). Board: the library is
    built for one chip; `$EDGETYPE_CHIP` or the device tree says which.
    """
    global _process_chip
    with _lock:
        expected = _process_chip
        if expected is None and library.kind == "board":
            expected = board_chip()
        if expected is None and library.kind == "simulator" and os.environ.get("SET_CHIP_NAME"):
            expected = os.environ["SET_CHIP_NAME"]
        if expected is not None and expected != chip:
            where = ("this process's simulator is already bound to it (PLATFORM.md: one process = one chip; "
                     "use a separate process)") if library.kind == "simulator" else "this board runs it"
            raise WrongChipError(f"{what} was compiled for {chip} but the runtime runs {expected}: {where}; "
                                 f"recompile with `--processor {expected}` or use a {chip} runtime")
        _process_chip = chip


def board_chip() -> str | None:
    """cv180x / cv181x of this board from `$EDGETYPE_CHIP` or the device tree; None when unknown."""
    if os.environ.get("EDGETYPE_CHIP"):
        return os.environ["EDGETYPE_CHIP"]
    try:
        compatible = Path("/proc/device-tree/compatible").read_bytes().decode("ascii", errors="replace").lower()
    except OSError:
        return None
    if any(tag in compatible for tag in ("cv1800", "cv180x")):
        return "cv180x"
    if any(tag in compatible for tag in ("cv181", "sg2002", "sg2000", "cv1812")):
        return "cv181x"
    return None


class NativeBuffer:
    """A runtime-owned buffer as a numpy array source; the arrays keep `keepalive` alive.

    numpy arrays made from it (and every view of them) hold this object as their base, and it
    holds the model handle, so the runtime memory is not freed (CVI_NN_CleanupModel) while any
    array still points into it: reading an old view after close() gives stale numbers, never a
    segfault.
    """

    def __init__(self, pointer, shape: tuple, typestr: str, keepalive):
        address = int(ffi.cast("uintptr_t", pointer))
        self.__array_interface__ = {"data": (address, False), "shape": tuple(shape), "typestr": typestr,
                                    "version": 3}
        self._keepalive = keepalive


def cleanup_model(handle) -> None:
    """ffi.gc destructor of a model handle: CVI_NN_CleanupModel with its prints sent to stderr."""
    library = _handle_libraries.pop(int(ffi.cast("uintptr_t", handle)), None)
    if library is None:
        return
    with native_stdout_to_stderr():
        library.lib.CVI_NN_CleanupModel(handle)


_handle_libraries: dict[int, "Library"] = {}


def own_model_handle(raw_handle, library: "Library"):
    """Tie a registered model handle to CVI_NN_CleanupModel (runs when the last reference goes)."""
    _handle_libraries[int(ffi.cast("uintptr_t", raw_handle))] = library
    return ffi.gc(raw_handle, cleanup_model)


@contextlib.contextmanager
def native_stdout_to_stderr():
    """Point fd 1 at fd 2 while native code runs (the runtime prints progress to stdout)."""
    try:
        sys.stdout.flush()
    except (AttributeError, ValueError):
        pass
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
