"""The committed estimator calibration (models/estimate_calibration.json) matches a fresh compile.

Compiles mobilenet_v2 INT8 for cv181x through the compile cache (the first run ~40 s, then a cache
hit) and checks that the compiled stats the fit was made on are what the toolchain produces now.
"""
import json

import pytest

from model_export import calibrate_estimate as ce


@pytest.mark.sim
def test_committed_network_stats_match_a_compile(toolchain):
    committed = json.loads(ce.RESULT_PATH.read_text())
    row = next(r for r in committed["networks"] if r["chip"] == "cv181x" and r["network"] == "mobilenet_v2")
    fresh = ce.compile_network("mobilenet_v2", "cv181x")
    for key in ("macs", "weight_bytes", "activation_bytes", "tpu_routines", "cpu_routines", "cpu_routine_elements"):
        assert fresh[key] == row[key], key
    assert fresh["ion_bytes"] == row["ion_bytes"]
    from model_export.toolchain import tpu_mlir_version
    assert committed["tpu_mlir_version"] == tpu_mlir_version()
