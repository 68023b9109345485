"""On the board: the driver loads the bundle, and the TPU forward matches the golden logits."""
from __future__ import annotations

import os

from board_tests.onboard import boardenv
from tpu_driver import decode_step


def _open_backend(bundle_path):
    from runtime.bundle import load_bundle
    from tpu_driver.backends import open_backend

    return open_backend(boardenv.backend_name(), load_bundle(bundle_path))


def test_board_python_has_numpy_and_cffi():
    boardenv.require_board()
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise AssertionError(f"{boardenv.python_info()} has no numpy: the stock buildroot image "
                             "lacks it (build it with BR2_PACKAGE_PYTHON_NUMPY=y or use Debian)")
    if boardenv.backend_name() in ("tpu", "cmodel"):
        try:
            import cffi  # noqa: F401
        except ImportError:
            raise AssertionError(f"{boardenv.python_info()} has no cffi (the TPU driver needs it)")


def test_bundle_loads_and_passes_its_checks():
    boardenv.require_board()
    from runtime.bundle import load_bundle

    path = boardenv.bundle_dir()
    load_bundle(path)  # raises on a bad sha256, a wrong chip, a missing file
    manifest = boardenv.read_manifest(path)
    for key in ("format_version", "chip", "quant", "window", "inputs", "outputs", "files"):
        assert key in manifest, f"{path}/manifest.json has no {key!r}"
    if boardenv.backend_name() in ("tpu", "cmodel"):
        assert os.path.isfile(os.path.join(path, "model.cvimodel")), \
            f"{path} has no model.cvimodel: a TPU backend needs a compiled bundle"


def test_tpu_device_and_module_present():
    kind = boardenv.require_board()
    if kind == "sim":
        boardenv.skip("simulated board: no /dev/cvi-tpu0, the cmodel stands for the TPU")
    dev = os.environ.get("TPU_DEV", os.path.join(boardenv.dev_dir(), "cvi-tpu0"))
    assert os.path.exists(dev), (f"{dev} missing: load the TPU module "
                                 "(insmod /mnt/system/ko/cv18*_tpu.ko) or run S99edgetype")
    assert os.path.exists(os.path.join(boardenv.dev_dir(), "ion")), "/dev/ion missing"


def test_driver_opens_the_requested_backend():
    boardenv.require_board()
    backend = _open_backend(boardenv.bundle_dir())
    try:
        assert backend.name == boardenv.backend_name()
        for name in (decode_step.X, decode_step.MASK, decode_step.DIST, decode_step.k_cache(0), decode_step.v_cache(0)):
            assert name in backend.inputs, f"backend input {name} missing: {sorted(backend.inputs)}"
        assert decode_step.LOGITS in backend.outputs
    finally:
        backend.close()
        backend.close()  # idempotent by contract


def test_tpu_forward_matches_golden_logits():
    """The decode step over golden.json's tokens (slots filled in order) against its fp32
    onnxruntime top-5 logits, with the tolerance of board_tests/onboard/golden.py."""
    boardenv.require_board()
    from board_tests.onboard.decode import load_embedding
    from tpu_driver.feeder import InOrderFeeder
    from board_tests.onboard.golden import compare_logits

    path = boardenv.bundle_dir()
    golden = boardenv.read_golden(path)
    quant = boardenv.read_manifest(path)["quant"]
    backend = _open_backend(path)
    try:
        decoder = InOrderFeeder(backend, load_embedding(path))
        decoder.reset()
        all_logits = [decoder.step(token).copy() for token in golden["tokens"]]
    finally:
        backend.close()
    problems = compare_logits(all_logits, golden, quant, boardenv.backend_name())
    assert not problems, (f"{boardenv.backend_name()} ({quant}) vs golden.json over "
                          f"{len(all_logits)} steps, {len(problems)} problems: " + "; ".join(problems[:3]))
