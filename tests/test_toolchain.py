"""model_export/toolchain.py and model_export/compile_cache.py without running tpu-mlir."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from model_export import compile_cache, toolchain
from runtime.errors import UserError


def fake_venv(root: Path, version: str = "1.30.2", glibc_in_third_party: bool = True) -> Path:
    """A folder laid out like the tpu-mlir venv (no real binaries)."""
    site = root / "lib" / "python3.10" / "site-packages"
    package = site / "tpu_mlir"
    (package / "lib" / "third_party").mkdir(parents=True)
    (package / "bin").mkdir()
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text("#!/bin/sh\n")
    for tool in ("model_transform", "model_transform.py", "model_deploy.py", "tpuc-opt"):
        (root / "bin" / tool).write_text("#!/bin/sh\n")
    (package / "bin" / "model_tool").write_text("")
    (package / "lib" / "libcviruntime.so").write_text("")
    dist = site / f"tpu_mlir-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tpu_mlir\nVersion: {version}\n")
    if glibc_in_third_party:
        for name in toolchain.BUNDLED_GLIBC_FILES:
            (package / "lib" / "third_party" / name).write_text("glibc 2.35")
    return root


def test_locations_version_and_tools(tmp_path, monkeypatch):
    venv = fake_venv(tmp_path / "venv", glibc_in_third_party=False)
    monkeypatch.setenv("EDGETYPE_TOOLCHAIN_DIR", str(venv))
    assert toolchain.toolchain_dir() == venv
    assert toolchain.tpu_mlir_version() == "1.30.2"
    assert toolchain.simulator_library_path() == venv / "lib/python3.10/site-packages/tpu_mlir/lib/libcviruntime.so"
    assert toolchain.tool_path("model_transform.py") == venv / "bin" / "model_transform.py"
    assert toolchain.tool_path("model_deploy") == venv / "bin" / "model_deploy.py"
    assert toolchain.tool_path("model_tool") == venv / "lib/python3.10/site-packages/tpu_mlir/bin/model_tool"
    with pytest.raises(UserError, match="not found"):
        toolchain.tool_path("no_such_tool")


def test_toolchain_env_puts_the_310_venv_first_and_drops_the_callers_venv(tmp_path, monkeypatch):
    venv = fake_venv(tmp_path / "venv", glibc_in_third_party=False)
    caller_bin = str(Path(sys.prefix) / "bin")
    base = {"PATH": f"{caller_bin}:/usr/bin", "PYTHONHOME": "/x", "VIRTUAL_ENV": sys.prefix, "LD_LIBRARY_PATH": "/opt"}
    env = toolchain.toolchain_env(base, venv_dir=venv)
    package = venv / "lib/python3.10/site-packages/tpu_mlir"
    path = env["PATH"].split(":")
    assert path[0] == str(venv / "bin") and str(package / "bin") in path and "/usr/bin" in path
    if sys.prefix != sys.base_prefix:
        assert caller_bin not in path
    assert "PYTHONHOME" not in env and env["VIRTUAL_ENV"] == str(venv) and env["TPUC_ROOT"] == str(package)
    assert env["LD_LIBRARY_PATH"].split(":") == [str(package / "lib"), str(package / "lib/capi"),
                                                 str(package / "lib/third_party"), "/opt"]
    assert str(package / "python") in env["PYTHONPATH"].split(":")


def test_require_toolchain_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETYPE_TOOLCHAIN_DIR", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="edgetype toolchain install"):
        toolchain.require_toolchain()
    venv = fake_venv(tmp_path / "venv")  # bundled glibc still in place
    monkeypatch.setattr(toolchain, "host_glibc_version", lambda: (2, 36))
    with pytest.raises(UserError, match="bundled glibc"):
        toolchain.require_toolchain(venv)


def test_glibc_fix_moves_three_files_only_on_newer_hosts_and_is_idempotent(tmp_path, monkeypatch):
    venv = fake_venv(tmp_path / "venv")
    package = toolchain.package_root(venv)
    monkeypatch.setattr(toolchain, "host_glibc_version", lambda: (2, 35))
    assert toolchain.apply_glibc_fix(package) == []
    monkeypatch.setattr(toolchain, "host_glibc_version", lambda: (2, 36))
    assert sorted(toolchain.apply_glibc_fix(package)) == sorted(toolchain.BUNDLED_GLIBC_FILES)
    moved = package / "lib" / "third_party_glibc_moved"
    assert sorted(p.name for p in moved.iterdir()) == sorted(toolchain.BUNDLED_GLIBC_FILES)
    assert not any((package / "lib/third_party" / n).exists() for n in toolchain.BUNDLED_GLIBC_FILES)
    assert toolchain.apply_glibc_fix(package) == []
    toolchain.require_toolchain(venv)  # no longer complains


def test_missing_python310_is_a_user_error_naming_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PYENV_ROOT", raising=False)
    with pytest.raises(UserError, match="Python 3.10.*pyenv install 3.10"):
        toolchain.find_python310()


def test_check_reports_problems_without_raising(tmp_path):
    report = toolchain.check_toolchain(tmp_path / "absent")
    assert report["ok"] is False and "toolchain install" in report["problems"][0]
    assert json.loads(json.dumps(report)) == report


def test_cli_check_json_prints_one_object(tmp_path, monkeypatch, capsys):
    from runtime.cli import main

    monkeypatch.setenv("EDGETYPE_TOOLCHAIN_DIR", str(tmp_path / "absent"))
    assert main(["toolchain", "check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["toolchain_dir"] == str(tmp_path / "absent")


def test_cache_key_depends_on_every_input():
    args = {"chip": "cv181x", "quant": "BF16", "name": "m", "transform_args": [], "deploy_args": []}
    base = compile_cache.cache_key(b"onnx", "1.30.2", args)
    assert base == compile_cache.cache_key(b"onnx", "1.30.2", dict(args))
    assert len(base) == 64
    others = {compile_cache.cache_key(b"onnx2", "1.30.2", args),
              compile_cache.cache_key(b"onnx", "1.31.0", args),
              compile_cache.cache_key(b"onnx", "1.30.2", {**args, "chip": "cv180x"}),
              compile_cache.cache_key(b"onnx", "1.30.2", {**args, "quant": "INT8"}),
              compile_cache.cache_key(b"onnx", "1.30.2", args, [{"x": np.zeros(2)}]),
              compile_cache.cache_key(b"onnx", "1.30.2", args, [{"x": np.ones(2)}])}
    assert base not in others and len(others) == 6


def test_ion_size_parsing_and_argument_checks(tmp_path):
    assert compile_cache.parse_ion_bytes("CviModel Need ION Memory Size: (7.38 MB)") == round(7.38 * 2 ** 20)
    assert compile_cache.parse_ion_bytes("nothing here") is None
    with pytest.raises(UserError, match="cv180x, cv181x"):
        compile_cache.compile_onnx(b"", chip="bm1684x")
    with pytest.raises(UserError, match="BF16, INT8"):
        compile_cache.compile_onnx(b"", chip="cv181x", quant="F16")
    with pytest.raises(UserError, match="calibration"):
        compile_cache.compile_onnx(b"", chip="cv180x", quant="INT8")
    with pytest.raises(UserError, match="cannot read ONNX"):
        compile_cache.compile_onnx(tmp_path / "absent.onnx", chip="cv181x")
