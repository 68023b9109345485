"""Error paths with real files and the real library; chip-dependent cases run in subprocesses."""
import numpy as np
import pytest

from sim_helpers import FIXTURES, run_python
from tpu_driver.errors import LibraryNotFoundError, ModelFileError, ModelVersionError
from tpu_driver.model import CviModel

CV181X = FIXTURES / "tiny_cv181x_bf16.cvimodel"
CV180X = FIXTURES / "tiny_cv180x_int8.cvimodel"


def test_damaged_files_raise_before_the_runtime_sees_them(tmp_path, toolchain):
    data = CV181X.read_bytes()
    cases = {"truncated": data[: len(data) // 2], "random": np.random.default_rng(0).bytes(len(data)),
             "corrupt": data[:3000] + bytes([data[3000] ^ 0xFF]) + data[3001:], "empty": b""}
    for name, content in cases.items():
        path = tmp_path / f"{name}.cvimodel"
        path.write_bytes(content)
        with pytest.raises(ModelFileError):
            CviModel(path)
    with pytest.raises(ModelFileError, match="no such"):
        CviModel(tmp_path / "absent.cvimodel")


def test_newer_format_than_the_runtime_is_refused(tmp_path, toolchain):
    data = bytearray(CV181X.read_bytes())
    data[13] = 9  # header minor version 1.9 (md5 covers only what follows the header)
    path = tmp_path / "future.cvimodel"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelVersionError, match="1.9.*newer.*1.4"):
        CviModel(path)


def test_missing_library_is_an_error_not_a_crash(toolchain):
    with pytest.raises(LibraryNotFoundError, match="does not exist"):
        CviModel(CV181X, library="/nonexistent/libcviruntime.so")


WRONG_CHIP = r"""
import json, sys
from tpu_driver.model import CviModel
from tpu_driver.errors import WrongChipError
with CviModel(sys.argv[1]) as first:
    try:
        CviModel(sys.argv[2])
        print(json.dumps({"raised": None}))
    except WrongChipError as error:
        print(json.dumps({"raised": "WrongChipError", "message": str(error)}))
"""

RUNTIME_REFUSES = r"""
import json, sys
from tpu_driver import gateway
from tpu_driver.errors import CviRuntimeError, check_rc
from tpu_driver.model import CviModel
with CviModel(sys.argv[1]) as first:   # binds the simulator to cv181x
    handle = gateway.ffi.new("CVI_MODEL_HANDLE *")
    with gateway.native_stdout_to_stderr():  # bypass our pre-checks: ask the runtime itself
        rc = first.library.lib.CVI_NN_RegisterModel(sys.argv[2].encode(), handle)
    try:
        check_rc(rc, "CVI_NN_RegisterModel")
        print(json.dumps({"code_name": None}))
    except CviRuntimeError as error:
        print(json.dumps({"code_name": error.code_name, "code": error.code, "message": str(error)}))
"""


def test_wrong_chip_is_refused_by_our_check(toolchain):
    result = run_python(WRONG_CHIP, str(CV181X), str(CV180X))
    assert result["raised"] == "WrongChipError"
    assert "cv180x" in result["message"] and "cv181x" in result["message"]


def test_wrong_chip_is_refused_by_the_runtime_with_a_named_code(toolchain):
    result = run_python(RUNTIME_REFUSES, str(CV181X), str(CV180X))
    assert result["code_name"] == "CVI_RC_INVALID_ARG" and result["code"] == 0xC0778003


INT8_CV180X = r"""
import json, sys
import numpy as np, onnxruntime as ort
from tpu_driver.backends import open_backend
x = np.random.default_rng(21).standard_normal((1, 1, 32)).astype(np.float32)
with open_backend("cmodel", {"cvimodel": sys.argv[1], "onnx": sys.argv[2]}) as sim:
    sim.input("x").write(x)
    sim.run()
    y = sim.output("y").read().astype(np.float64).ravel()
    chip = sim.model.target
ref = ort.InferenceSession(sys.argv[2]).run(["y"], {"x": x})[0].astype(np.float64).ravel()
print(json.dumps({"chip": chip, "cosine": float(y @ ref / np.linalg.norm(y) / np.linalg.norm(ref))}))
"""


def test_cv180x_int8_runs_in_its_own_process(compiled_mlp_cv180x_int8):
    compiled, _ = compiled_mlp_cv180x_int8
    result = run_python(INT8_CV180X, str(compiled.cvimodel_path), str(compiled.cache_dir / "mlp.onnx"))
    assert result["chip"] == "cv180x"
    assert result["cosine"] >= 0.99, result
