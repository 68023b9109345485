"""Backend selection, sources and the onnx backend (no toolchain needed)."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime.errors import UserError
from tpu_driver.backends import BACKEND_NAMES, available_backends, open_backend
from tpu_driver.backends.base import ModelSource, TensorSpec, resolve_source
from tpu_driver.errors import ModelClosedError, TensorWriteError


def write_onnx(path, window=6):
    """y[1,1,4] = x @ W + sum over the window of cache[1,4,window] (a cache-shaped input)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    axes = numpy_helper.from_array(np.array([2], np.int64), "axes")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("ReduceSum", ["cache", "axes"], ["s"], keepdims=0),  # [1,4]
             helper.make_node("Add", ["xw", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4]),
                                           helper.make_tensor_value_info("cache", TensorProto.FLOAT, [1, 4, window])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4])], [w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return rng


def test_onnx_backend_runs_with_preallocated_inputs_and_slice_writes(tmp_path):
    write_onnx(tmp_path / "model.onnx")
    with open_backend("onnx", tmp_path) as backend:
        assert backend.name == "onnx"
        assert backend.inputs["cache"] == TensorSpec("cache", (1, 4, 6), "float32")
        assert list(backend.outputs) == ["y"]
        x = np.arange(4, dtype=np.float32).reshape(1, 1, 4)
        backend.input("x").write(x)
        backend.input("cache").write(np.ones((1, 4, 1)), index=(..., slice(2, 3)))
        cache_buffer = backend.input("cache").array
        backend.run()
        w = onnx.numpy_helper.to_array(onnx.load(str(tmp_path / "model.onnx")).graph.initializer[0])
        assert np.allclose(backend.output("y").read(), x @ w + 1.0)
        backend.input("cache").write(np.full((1, 4, 1), 2.0), index=(..., slice(5, 6)))
        assert backend.input("cache").array is cache_buffer  # written in place, no new buffer
        backend.run()
        assert np.allclose(backend.output("y").read(), x @ w + 3.0)
        assert backend.last_run_ms is not None and backend.last_run_ms >= 0
        with pytest.raises(TensorWriteError, match="'cache'.*shape"):  # a bug in the caller: not a UserError
            backend.input("cache").write(np.ones((1, 4, 5)))
        with pytest.raises(TensorWriteError, match="no input 'nope'"):
            backend.input("nope")
    backend.close()  # idempotent
    with pytest.raises(ModelClosedError, match="after close"):
        backend.run()
    assert not issubclass(ModelClosedError, UserError) and not issubclass(TensorWriteError, UserError)
    with pytest.raises(ModelClosedError, match="after close"):
        backend.run()


def test_sources_bundle_object_dict_folder_and_files(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "model.cvimodel").write_bytes(b"")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 1, 4], "dtype": "float32"}],
         "outputs": [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]}))
    folder = resolve_source(tmp_path)
    assert folder.cvimodel_path == tmp_path / "model.cvimodel" and folder.onnx_path == tmp_path / "model.onnx"
    assert folder.outputs == {"logits": TensorSpec("logits", (1, 10), "float32")}

    class Bundle:
        cvimodel_path = tmp_path / "model.cvimodel"
        onnx_path = None
        manifest = {"inputs": [{"name": "x", "shape": [1, 1, 4]}], "outputs": []}

    source = resolve_source(Bundle())
    assert isinstance(source, ModelSource) and source.onnx_path is None and list(source.inputs) == ["x"]
    assert resolve_source({"onnx": str(tmp_path / "model.onnx")}).cvimodel_path is None
    assert resolve_source(tmp_path / "model.cvimodel").onnx_path is None
    with pytest.raises(UserError, match="no such bundle"):
        resolve_source(tmp_path / "absent")
    with pytest.raises(UserError, match="expected a bundle folder"):
        resolve_source(tmp_path / "manifest.json")


def test_no_silent_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETYPE_TOOLCHAIN_DIR", str(tmp_path / "no-toolchain"))
    monkeypatch.delenv("EDGETYPE_CVIRUNTIME", raising=False)
    write_onnx(tmp_path / "model.onnx")
    with pytest.raises(UserError, match="edgetype toolchain install"):
        open_backend("cmodel", tmp_path)
    with pytest.raises(UserError, match="board's libcviruntime.so"):
        open_backend("tpu", tmp_path)
    with pytest.raises(UserError, match="unknown backend 'gpu'"):
        open_backend("gpu", tmp_path)
    with pytest.raises(UserError, match="needs model.onnx"):
        open_backend("onnx", {"cvimodel": tmp_path / "model.cvimodel"})
    with pytest.raises(TypeError, match="bundle object"):
        open_backend("numpy", str(tmp_path))
    report = available_backends()
    assert list(report) == list(BACKEND_NAMES)
    assert report["cmodel"].available is False and "toolchain install" in report["cmodel"].reason
    assert report["onnx"].available is True and report["onnx"].version


def test_info_json_is_one_object_on_stdout(capsys):
    from runtime.cli import main

    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["backends"]) == set(BACKEND_NAMES)
    for entry in report["backends"].values():
        assert set(entry) == {"name", "available", "reason", "library_path", "version"}
