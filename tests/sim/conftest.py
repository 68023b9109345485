"""Simulator tests: compiled cvimodels run on the cv18xx cmodel through the cffi driver.

Every test here is marked `sim`. They need the tpu-mlir toolchain (`edgetype toolchain install`)
and FAIL (not skip) without it. Compiled models are cached under ~/.cache/edgetype/compiled/
(model_export/compile_cache.py), so only the first run pays the compile time.

One process = one chip (PLATFORM.md): in-process tests use cv181x only; cv180x runs in subprocesses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sim_graphs


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.sim)


@pytest.fixture(scope="session")
def toolchain():
    from model_export.toolchain import require_toolchain

    return require_toolchain()  # raises UserError ("run `edgetype toolchain install`") when missing


@pytest.fixture(scope="session")
def compiled_mlp(toolchain):
    from model_export.compile_cache import compile_onnx

    onnx_bytes = sim_graphs.mlp_onnx()
    return compile_onnx(onnx_bytes, chip="cv181x", quant="BF16", name="mlp"), onnx_bytes


@pytest.fixture(scope="session")
def compiled_attention(toolchain):
    from model_export.compile_cache import compile_onnx

    onnx_bytes = sim_graphs.attention_layer_onnx(**sim_graphs.ATTENTION_DIMS)
    return compile_onnx(onnx_bytes, chip="cv181x", quant="BF16", name="attention"), onnx_bytes


@pytest.fixture(scope="session")
def compiled_mlp_cv180x_int8(toolchain):
    from model_export.compile_cache import compile_onnx

    onnx_bytes = sim_graphs.mlp_onnx()
    rng = np.random.default_rng(5)
    calibration = [{"x": rng.standard_normal((1, 1, 32)).astype(np.float32)} for _ in range(16)]
    return compile_onnx(onnx_bytes, chip="cv180x", quant="INT8", name="mlp", calibration_inputs=calibration), onnx_bytes


@pytest.fixture(scope="session")
def compiled_two_programs(toolchain):
    """One cvimodel, two programs sharing weights: the MLP for 1 token (program 0) and 4 tokens (1)."""
    from model_export.compile_cache import compile_onnx_programs

    graphs = [sim_graphs.mlp_onnx(tokens=1), sim_graphs.mlp_onnx(tokens=4)]
    return compile_onnx_programs([{"onnx": g} for g in graphs], chip="cv181x", quant="BF16", name="mlp2"), graphs
