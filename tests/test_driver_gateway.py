"""Library discovery, device checks, chip binding and the CVI_TENSOR layout (tpu_driver/gateway.py)."""
import ctypes
from pathlib import Path

import pytest

from tpu_driver import gateway
from tpu_driver.errors import DeviceNotFoundError, LibraryNotFoundError, WrongChipError


def _fake_lib(folder: Path, simulator: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "libcviruntime.so"
    path.write_bytes(b"not really a library")
    if simulator:
        (folder / "libcvicmodel.so").write_bytes(b"")
    return path


def test_discovery_order_explicit_env_board_toolchain(tmp_path):
    board1, board2 = _fake_lib(tmp_path / "mnt/system/lib"), _fake_lib(tmp_path / "mnt/system/usr/lib")
    sim = _fake_lib(tmp_path / "venv/tpu_mlir/lib", simulator=True)
    dirs = (str(board1.parent), str(board2.parent))
    env_lib = tmp_path / "env/libcviruntime.so"
    assert gateway.discover_candidates("/x/explicit.so", {"EDGETYPE_CVIRUNTIME": str(env_lib)}, dirs, sim) == \
        [(Path("/x/explicit.so"), "explicit")]
    assert gateway.discover_candidates(None, {"EDGETYPE_CVIRUNTIME": str(env_lib)}, dirs, sim) == [(env_lib, "env")]
    assert gateway.discover_candidates(None, {}, dirs, sim) == [(board1, "board"), (board2, "board"), (sim, "toolchain")]
    board1.unlink()
    assert gateway.discover_candidates(None, {}, dirs, sim) == [(board2, "board"), (sim, "toolchain")]
    assert gateway.discover_candidates(None, {}, (), sim) == [(sim, "toolchain")]
    assert gateway.discover_candidates(None, {}, (), False) == []
    assert gateway.library_kind(sim) == "simulator" and gateway.library_kind(board2) == "board"


def test_missing_or_bad_library_raises_instead_of_crashing(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETYPE_CVIRUNTIME", str(tmp_path / "absent.so"))
    with pytest.raises(LibraryNotFoundError, match="does not exist"):
        gateway.load_library()
    bad = _fake_lib(tmp_path / "bad")
    with pytest.raises(LibraryNotFoundError, match="cannot load"):
        gateway.load_library(bad)
    monkeypatch.delenv("EDGETYPE_CVIRUNTIME")
    monkeypatch.setattr(gateway, "BOARD_LIBRARY_DIRS", ())
    monkeypatch.setattr(gateway, "_toolchain_simulator_library", lambda: None)
    monkeypatch.setattr(gateway, "discover_candidates",
                        lambda explicit=None: [] if explicit is None else [(Path(explicit), "explicit")])
    with pytest.raises(LibraryNotFoundError, match="toolchain install"):
        gateway.load_library()


def test_library_without_the_api_is_refused():
    import _ctypes  # a real shared library that has no CVI_NN_* symbols

    with pytest.raises(LibraryNotFoundError, match="lacks CVI_NN_"):
        gateway.load_library(_ctypes.__file__)


def test_board_device_checks(tmp_path):
    device = tmp_path / "cvi-tpu0"
    device.write_text("")
    gateway.check_board_device({"TPU_DEV": str(device)}, str(tmp_path / "ko/*_tpu.ko"))  # present: fine
    with pytest.raises(DeviceNotFoundError, match="no TPU kernel module"):
        gateway.check_board_device({"TPU_DEV": str(tmp_path / "absent")}, str(tmp_path / "ko/*_tpu.ko"))
    (tmp_path / "ko").mkdir()
    (tmp_path / "ko/cv181x_tpu.ko").write_text("")
    with pytest.raises(DeviceNotFoundError, match="insmod .*cv181x_tpu.ko"):
        gateway.check_board_device({"TPU_DEV": str(tmp_path / "absent")}, str(tmp_path / "ko/*_tpu.ko"))
    assert gateway.tpu_device_path({}) == "/dev/cvi-tpu0"


def test_one_process_one_chip(monkeypatch):
    monkeypatch.setattr(gateway, "_process_chip", None)
    monkeypatch.delenv("SET_CHIP_NAME", raising=False)
    sim = gateway.Library(Path("/x/libcviruntime.so"), "toolchain", "simulator", lib=None)
    gateway.claim_chip("cv181x", sim, "a.cvimodel")
    gateway.claim_chip("cv181x", sim, "b.cvimodel")
    with pytest.raises(WrongChipError, match="cv180x.*cv181x.*one process = one chip"):
        gateway.claim_chip("cv180x", sim, "c.cvimodel")
    monkeypatch.setattr(gateway, "_process_chip", None)
    monkeypatch.setenv("EDGETYPE_CHIP", "cv180x")
    board = gateway.Library(Path("/mnt/system/lib/libcviruntime.so"), "board", "board", lib=None)
    with pytest.raises(WrongChipError, match="--processor cv180x"):
        gateway.claim_chip("cv181x", board, "d.cvimodel")


def test_cvi_tensor_layout_matches_the_c_abi():
    """cffi's layout of the cdef vs an independent ctypes declaration of cviruntime.h (x86-64/riscv64 LP64)."""
    class Shape(ctypes.Structure):
        _fields_ = [("dim", ctypes.c_int32 * 6), ("dim_size", ctypes.c_size_t)]

    class Tensor(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("shape", Shape), ("fmt", ctypes.c_int), ("count", ctypes.c_size_t),
                    ("mem_size", ctypes.c_size_t), ("sys_mem", ctypes.c_void_p), ("paddr", ctypes.c_uint64),
                    ("mem_type", ctypes.c_int), ("qscale", ctypes.c_float), ("zero_point", ctypes.c_int),
                    ("pixel_format", ctypes.c_int), ("aligned", ctypes.c_bool), ("mean", ctypes.c_float * 3),
                    ("scale", ctypes.c_float * 3), ("owner", ctypes.c_void_p), ("reserved", ctypes.c_char * 32)]

    ffi = gateway.ffi
    assert ffi.sizeof("CVI_SHAPE") == ctypes.sizeof(Shape) == 32
    assert ffi.sizeof("CVI_TENSOR") == ctypes.sizeof(Tensor)
    for name, _ in Tensor._fields_:
        assert ffi.offsetof("CVI_TENSOR", name) == getattr(Tensor, name).offset, name
    assert ffi.offsetof("CVI_TENSOR", "sys_mem") == 64  # name 8 + shape 32 + fmt 4(+4) + count 8 + mem_size 8
