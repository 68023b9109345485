"""The cffi driver on the real cmodel library: results, struct layout, lifetime, errors."""
import numpy as np
import onnxruntime as ort
import pytest

import sim_graphs
from tpu_driver import gateway
from tpu_driver.cvimodel_file import read_cvimodel_info
from tpu_driver.errors import ModelClosedError, ModelFileError, TensorWriteError
from tpu_driver.model import CviModel


def reference(onnx_bytes, x):
    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def test_mlp_bf16_matches_onnxruntime(compiled_mlp):
    compiled, onnx_bytes = compiled_mlp
    x = np.random.default_rng(11).standard_normal((1, 1, 32)).astype(np.float32)
    y_ref, z_ref = reference(onnx_bytes, x)
    with CviModel(compiled.cvimodel_path, input_shapes={"x": (1, 1, 32)}) as model:
        assert model.library.kind == "simulator" and model.target == "cv181x" and model.version == (1, 4)
        model.input("x").write(x)
        model.forward()
        y, z = model.output(0).read().reshape(1, 1, 16), model.output(1).read().reshape(1, 1, 16)
        assert model.last_forward_ms is not None
    assert sim_graphs.cosine(y, y_ref) >= 0.999
    assert sim_graphs.cosine(z, z_ref) >= 0.999
    assert np.max(np.abs(z - 2 * y)) <= 0.05 * np.max(np.abs(z))


def test_cvi_tensor_struct_layout_against_the_real_library(compiled_mlp, compiled_attention):
    """For every tensor of real models: the accessors agree with the struct fields cffi reads."""
    ffi = gateway.ffi
    for compiled, _ in (compiled_mlp, compiled_attention):
        info = read_cvimodel_info(compiled.cvimodel_path)
        with CviModel(compiled.cvimodel_path) as model:
            lib = model.library.lib
            assert [t.name for t in model.inputs] == [t.name for t in info.programs[0].inputs]
            assert [t.name for t in model.outputs] == [t.name for t in info.programs[0].outputs]
            for tensor, expected in zip(model.inputs + model.outputs, info.programs[0].inputs + info.programs[0].outputs):
                c = tensor._cdata
                assert lib.CVI_NN_TensorPtr(c) == ffi.cast("void *", c.sys_mem)
                assert lib.CVI_NN_TensorSize(c) == c.mem_size
                assert lib.CVI_NN_TensorCount(c) == c.count == int(np.prod(expected.shape))
                assert ffi.string(lib.CVI_NN_TensorName(c)) == ffi.string(c.name) == expected.name.encode()
                shape = lib.CVI_NN_TensorShape(c)
                assert shape.dim_size == c.shape.dim_size and 1 <= shape.dim_size <= 6
                assert list(shape.dim)[:shape.dim_size] == list(c.shape.dim)[:c.shape.dim_size]
                assert lib.CVI_NN_TensorQuantScale(c) == pytest.approx(c.qscale)
                assert c.mem_type == 1  # CVI_MEM_SYSTEM
                assert c.mem_size == c.count * gateway.FMT_STORAGE[c.fmt][1]
                assert c.fmt == {"float32": 0, "bfloat16": 3, "int8": 6, "uint16": 5}[expected.dtype]


def test_async_forward_and_clone_give_the_same_result(compiled_mlp):
    compiled, _ = compiled_mlp
    x = np.random.default_rng(12).standard_normal((1, 16, 2, 1)).astype(np.float32).reshape(1, 1, 32)
    with CviModel(compiled.cvimodel_path, input_shapes={"x": (1, 1, 32)}) as model:
        model.input("x").write(x)
        model.forward()
        y_sync = model.output(0).read().copy()
        model.output(0).write(np.zeros(model.output(0).shape))
        task = model.forward_async()
        model.forward_wait(task)
        assert np.array_equal(model.output(0).read(), y_sync)
        with model.clone(input_shapes={"x": (1, 1, 32)}) as twin:
            twin.input("x").write(x)
            twin.forward()
            assert np.array_equal(twin.output(0).read(), y_sync)
        assert np.array_equal(model.output(0).read(), y_sync)  # the original survives the clone's close


def test_bad_use_raises_and_never_crashes(compiled_mlp):
    compiled, _ = compiled_mlp
    with pytest.raises(ModelFileError, match="program index 3 is out of range"):
        CviModel(compiled.cvimodel_path, program_index=3)  # the runtime would assert() here
    model = CviModel(compiled.cvimodel_path)
    with pytest.raises(TensorWriteError, match="shape"):
        model.input("x").write(np.zeros((1, 33), np.float32))
    with pytest.raises(TensorWriteError, match="no input 'y'.*it has: x"):
        model.input("y")
    with pytest.raises(TensorWriteError, match="expected shape"):
        CviModel(compiled.cvimodel_path, input_shapes={"x": (1, 1, 31)})
    x_tensor = model.input("x")
    model.close()
    model.close()  # idempotent
    with pytest.raises(ModelClosedError):
        model.forward()
    with pytest.raises(ModelClosedError):
        x_tensor.read()


def test_native_output_goes_to_stderr_not_stdout(compiled_mlp, capfd):
    compiled, _ = compiled_mlp
    with CviModel(compiled.cvimodel_path) as model:
        model.forward()
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "bm_run_cmdbuf" in captured.err or "Cmodel" in captured.err


def test_views_outlive_close_without_crashing_and_release_follows(compiled_mlp):
    compiled, _ = compiled_mlp
    model = CviModel(compiled.cvimodel_path)
    model.input("x").write(np.ones(model.input("x").shape, np.float32))
    model.forward()
    view = model.output(0).read()  # FP32: a zero-copy view of runtime memory
    expected = view.copy()
    handle_key = int(gateway.ffi.cast("uintptr_t", model._handle))
    model.close()
    assert np.array_equal(view, expected)  # memory kept alive by the view, not freed under it
    assert handle_key in gateway._handle_libraries  # not yet cleaned up
    del view
    import gc

    gc.collect()
    assert handle_key not in gateway._handle_libraries  # CVI_NN_CleanupModel ran when the view went


def test_output_all_tensors_exposes_intermediates_for_debugging(compiled_mlp):
    """OPTION_OUTPUT_ALL_TENSORS: the way to find where a compiled graph goes wrong (PLATFORM.md)."""
    compiled, onnx_bytes = compiled_mlp
    x = np.random.default_rng(13).standard_normal((1, 1, 32)).astype(np.float32)
    with CviModel(compiled.cvimodel_path, output_all_tensors=True) as model:
        names = [t.name for t in model.outputs]
        assert len(names) > 2 and "x" in names, names  # more than the two graph outputs
        model.input("x").write(x.reshape(model.input("x").shape))
        model.forward()
        # the BF16 tensor before the output cast (Tanh is fused into the MatMul group, so not visible)
        internal = model.output("y_MatMul")
        assert internal.fmt_name == "BF16"
        got = internal.read().ravel()
    y_ref = reference(onnx_bytes, x)[0]
    assert sim_graphs.cosine(got, y_ref) >= 0.999


def test_two_programs_in_one_cvimodel_select_by_index_and_clone(compiled_two_programs):
    compiled, graphs = compiled_two_programs
    info = read_cvimodel_info(compiled.cvimodel_path)  # md5 valid after compile_onnx_programs' rewrite
    assert [int(np.prod(p.inputs[0].shape)) for p in info.programs] == [32, 128]
    rng = np.random.default_rng(14)
    x1 = rng.standard_normal((1, 1, 32)).astype(np.float32)
    x4 = rng.standard_normal((1, 4, 32)).astype(np.float32)
    with CviModel(compiled.cvimodel_path, input_shapes={"x": (1, 1, 32)}) as step, \
            step.clone(program_index=1, input_shapes={"x": (1, 4, 32)}) as chunk:
        step.input("x").write(x1)
        chunk.input("x").write(x4)
        step.forward()
        chunk.forward()
        assert sim_graphs.cosine(step.output(0).read(), reference(graphs[0], x1)[0]) >= 0.999
        assert sim_graphs.cosine(chunk.output(0).read(), reference(graphs[1], x4)[0]) >= 0.999
    with CviModel(compiled.cvimodel_path, program_index=1) as direct:
        assert direct.input("x").count == 128
    with pytest.raises(ModelFileError, match="2 program"):
        CviModel(compiled.cvimodel_path, program_index=2)
