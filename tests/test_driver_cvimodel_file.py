"""cvimodel header/flatbuffer checks (tpu_driver/cvimodel_file.py) on real and damaged files."""
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from tpu_driver.cvimodel_file import HEADER_SIZE, read_cvimodel_info
from tpu_driver.errors import ModelFileError

FIXTURES = Path(__file__).parent / "sim" / "fixtures"
CV181X = FIXTURES / "tiny_cv181x_bf16.cvimodel"
CV180X = FIXTURES / "tiny_cv180x_int8.cvimodel"


def test_real_cv181x_file_parses():
    info = read_cvimodel_info(CV181X)
    assert info.chip == "cv181x" and info.target == "cv181x"
    assert info.version == (1, 4) and info.body_version[:2] == (1, 4)
    assert info.name == "tiny" and info.mlir_version.startswith("v1.30.2")
    assert len(info.programs) == 1
    (x,), (y,) = info.programs[0].inputs, info.programs[0].outputs
    assert (x.name, x.dtype, int(np.prod(x.shape))) == ("x", "float32", 16)
    assert y.name.startswith("y") and int(np.prod(y.shape)) == 8


def test_real_cv180x_file_parses_and_bytes_work_too():
    info = read_cvimodel_info(CV180X.read_bytes())
    assert info.chip == "cv180x" and info.path is None


def _damaged(tmp_path, data: bytes, name="bad.cvimodel") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("cut", [0, 10, HEADER_SIZE - 1, HEADER_SIZE + 100, 3000, 5167])
def test_truncated_file_is_refused(tmp_path, cut):
    with pytest.raises(ModelFileError, match="short|truncated|md5"):
        read_cvimodel_info(_damaged(tmp_path, CV181X.read_bytes()[:cut]))


def test_flipped_byte_is_refused_by_md5(tmp_path):
    data = bytearray(CV181X.read_bytes())
    data[HEADER_SIZE + 200] ^= 0x55
    with pytest.raises(ModelFileError, match="md5"):
        read_cvimodel_info(_damaged(tmp_path, bytes(data)))


def test_random_bytes_and_other_files_are_not_cvimodels(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ModelFileError, match="not a cvimodel"):
        read_cvimodel_info(_damaged(tmp_path, rng.bytes(4096)))
    with pytest.raises(ModelFileError, match="not a cvimodel"):
        read_cvimodel_info(FIXTURES / "tiny.onnx")


def test_missing_directory_and_unreadable(tmp_path):
    with pytest.raises(ModelFileError, match="no such"):
        read_cvimodel_info(tmp_path / "absent.cvimodel")
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_cvimodel_info(tmp_path)


def test_corrupt_flatbuffer_with_valid_md5_does_not_crash(tmp_path):
    """Garbage body with a recomputed md5: the bounds-checked reader must raise, not crash."""
    data = bytearray(CV181X.read_bytes())
    rng = np.random.default_rng(1)
    body_size = struct.unpack_from("<I", data, 8)[0]
    data[HEADER_SIZE:HEADER_SIZE + body_size] = rng.bytes(body_size)
    data[14:30] = hashlib.md5(bytes(data[HEADER_SIZE:])).digest()
    with pytest.raises(ModelFileError, match="corrupt|truncated"):
        read_cvimodel_info(_damaged(tmp_path, bytes(data)))


def test_chip_and_version_come_from_the_header(tmp_path):
    data = bytearray(CV181X.read_bytes())
    data[30:46] = b"phobos".ljust(16, b"\0")  # the runtime's codename for cv180x
    data[13] = 9  # minor version
    info = read_cvimodel_info(_damaged(tmp_path, bytes(data)))
    assert info.chip == "cv180x" and info.version == (1, 9)
    data[12], data[13] = 1, 0
    with pytest.raises(ModelFileError, match="1.0"):
        read_cvimodel_info(_damaged(tmp_path, bytes(data)))


def test_rewrite_md5_repairs_an_unset_md5_but_not_a_broken_file(tmp_path):
    from tpu_driver.cvimodel_file import rewrite_md5

    data = bytearray(CV181X.read_bytes())
    data[14:30] = bytes(16)  # what `model_tool --combine` leaves behind
    path = _damaged(tmp_path, bytes(data))
    with pytest.raises(ModelFileError, match="model_tool"):
        read_cvimodel_info(path)
    rewrite_md5(path)
    assert path.read_bytes() == CV181X.read_bytes()
    short = _damaged(tmp_path, CV181X.read_bytes()[:1000], "short.cvimodel")
    with pytest.raises(ModelFileError, match="truncated"):
        rewrite_md5(short)
