"""CVI_RC -> exception mapping (tpu_driver/errors.py)."""
import pytest

from runtime.errors import UserError
from tpu_driver import errors
from tpu_driver.errors import CviRuntimeError, check_rc, rc_name

# (n, name) from cvitpu_debug.h / cvi_errno.h: CVI_ERR_TPU_* = 0xC0778000 | n
DOCUMENTED_CODES = [(0x03, "CVI_RC_INVALID_ARG"), (0x07, "CVI_RC_UNINIT"), (0x08, "CVI_RC_UNSUPPORT"),
                    (0x0C, "CVI_RC_NOMEM"), (0x10, "CVI_RC_AGAIN"), (0x12, "CVI_RC_BUSY"),
                    (0x15, "CVI_RC_TIMEOUT"), (0x16, "CVI_RC_DATA_ERR")]


def _as_int32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


@pytest.mark.parametrize("n,name", DOCUMENTED_CODES)
def test_every_documented_code_maps_to_its_name_in_both_signed_forms(n, name):
    code = 0xC0778000 | n
    assert rc_name(code) == name
    assert rc_name(_as_int32(code)) == name  # the C int arrives negative through cffi


def test_success_failure_and_unknown_codes():
    assert rc_name(0) == "CVI_RC_SUCCESS"
    assert rc_name(-1) == "CVI_RC_FAILURE"
    assert rc_name(0xC0778001) == "CVI_ERR_TPU_0x01"
    assert rc_name(5) == "CVI_RC_UNKNOWN_0x00000005"


def test_check_rc_raises_an_error_naming_code_call_and_context():
    check_rc(0, "CVI_NN_Forward")  # success: no exception
    with pytest.raises(CviRuntimeError) as caught:
        check_rc(_as_int32(0xC077800C), "CVI_NN_RegisterModel", "cvimodel /x.cvimodel")
    error = caught.value
    assert isinstance(error, UserError)
    assert error.code == 0xC077800C and error.code_name == "CVI_RC_NOMEM"
    message = str(error)
    assert "CVI_NN_RegisterModel" in message and "CVI_RC_NOMEM" in message and "0xC077800C" in message
    assert "/x.cvimodel" in message and "\n" not in message


def test_every_named_code_has_a_hint():
    for name in list(errors.CVI_RC_NAMES.values()) + ["CVI_RC_FAILURE"]:
        assert name in errors.CVI_RC_HINTS
