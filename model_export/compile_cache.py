"""Compile an ONNX graph to a cvimodel with tpu-mlir, cached by content.

    compiled = compile_onnx(onnx_bytes_or_path, chip="cv181x", quant="BF16", name="dec")
    compiled.cvimodel_path   # ~/.cache/edgetype/compiled/<key>/dec.cvimodel

The key is sha256 over (ONNX bytes, tpu-mlir version, chip, quant, name, extra args, calibration
data), so a changed graph, compiler or flag never reuses a stale cvimodel. Cache root:
`$EDGETYPE_COMPILE_CACHE` or `~/.cache/edgetype/compiled`. An entry is built in a temp folder and
renamed into place only when complete (`compiled.json` written last), so concurrent or
interrupted compiles never leave a half entry that looks valid.

Steps (tpu-mlir tools, run through `model_export.toolchain`): `model_transform.py` -> top MLIR;
for INT8 `run_calibration.py` on the given calibration inputs; `model_deploy.py --processor CHIP
--quantize QUANT` -> cvimodel; `model_tool --info` -> the ION size a bundle records. No vendor
validation run (`--test_input`): it segfaulted on real graphs (PLATFORM.md); verify on the
cmodel with tpu_driver instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_export import toolchain
from runtime.errors import UserError

CHIPS = ("cv180x", "cv181x")
QUANTS = ("BF16", "INT8")
CACHE_FORMAT = 1
RESULT_FILENAME = "compiled.json"


class CompileError(UserError):
    """A tpu-mlir step failed; the message names the step and the log file to read."""


@dataclass(frozen=True)
class CompiledModel:
    cvimodel_path: Path  # the compiled model
    cache_dir: Path  # folder of this cache entry (mlir, logs, calibration table)
    key: str  # sha256 hex of the inputs
    chip: str
    quant: str
    tpu_mlir_version: str
    ion_bytes: int | None  # "CviModel Need ION Memory Size" from model_tool --info
    compile_seconds: float  # time of the original compile (0 for nothing when it was a hit)
    cache_hit: bool


def cache_root() -> Path:
    configured = os.environ.get("EDGETYPE_COMPILE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "edgetype" / "compiled"


def _calibration_digest(calibration_inputs) -> bytes:
    digest = hashlib.sha256()
    for sample in calibration_inputs or []:
        for name in sorted(sample):
            array = np.ascontiguousarray(sample[name], dtype=np.float32)
            digest.update(name.encode() + str(array.shape).encode() + array.tobytes())
    return digest.digest()


def cache_key(onnx_bytes: bytes, tpu_mlir_version: str, args: dict, calibration_inputs=None) -> str:
    """sha256 hex of the ONNX bytes, the tpu-mlir version and the compile arguments."""
    digest = hashlib.sha256()
    digest.update(f"edgetype-compile-cache-{CACHE_FORMAT}\0".encode())
    digest.update(hashlib.sha256(onnx_bytes).digest())
    digest.update(tpu_mlir_version.encode() + b"\0")
    digest.update(json.dumps(args, sort_keys=True).encode() + b"\0")
    digest.update(_calibration_digest(calibration_inputs))
    return digest.hexdigest()


def _run_step(step: str, command: list[str], workdir: Path, env: dict, timeout_s: float) -> str:
    log_path = workdir / f"{step}.log"
    print(f"[compile] {step}: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(command))}",
          file=sys.stderr, flush=True)
    with open(log_path, "w") as log:
        try:
            result = subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CompileError(f"tpu-mlir {step} timed out after {timeout_s:.0f} s; log: {log_path}") from None
    text = log_path.read_text(errors="replace")
    if result.returncode != 0:
        last = [line for line in text.strip().splitlines() if line.strip()][-1:] or [""]
        raise CompileError(f"tpu-mlir {step} failed (exit {result.returncode}): {last[0][:200]}; "
                           f"full log: {log_path}")
    return text


def parse_ion_bytes(model_tool_info: str) -> int | None:
    """`CviModel Need ION Memory Size: (7.38 MB)` -> bytes (MB as printed by model_tool = 2^20)."""
    match = re.search(r"Need ION Memory Size:\s*\(?\s*([0-9.]+)\s*(MB|KB|B)", model_tool_info)
    if not match:
        return None
    scale = {"MB": 1 << 20, "KB": 1 << 10, "B": 1}[match.group(2)]
    return int(round(float(match.group(1)) * scale))


def _onnx_bytes(onnx_model) -> bytes:
    if isinstance(onnx_model, (str, Path)):
        try:
            return Path(onnx_model).read_bytes()
        except OSError as error:
            raise UserError(f"cannot read ONNX file {onnx_model}: {error.strerror}") from None
    if isinstance(onnx_model, (bytes, bytearray)):
        return bytes(onnx_model)
    return onnx_model.SerializeToString()


def _check_args(chip: str, quant: str, name: str, calibration_inputs) -> None:
    if chip not in CHIPS:
        raise UserError(f"chip {chip!r} is not one of {', '.join(CHIPS)}")
    if quant not in QUANTS:
        raise UserError(f"quantization {quant!r} is not one of {', '.join(QUANTS)} (cv18xx supports only these)")
    if quant == "INT8" and not calibration_inputs:
        raise UserError("INT8 compile needs calibration_inputs (a list of {input: array} samples)")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise UserError(f"model name {name!r} must be an identifier (letters, digits, _)")


def _build_program(workdir: Path, name: str, onnx_bytes: bytes, chip: str, quant: str, calibration_inputs,
                   transform_args, deploy_args, env: dict, timeout_s: float, merge_weight: bool,
                   calibration_args=()) -> Path:
    """model_transform (+ run_calibration) + model_deploy of one graph in `workdir`; returns the cvimodel."""
    (workdir / f"{name}.onnx").write_bytes(onnx_bytes)
    mlir = f"{name}.mlir"
    _run_step(f"model_transform_{name}", [str(toolchain.tool_path("model_transform.py")), "--model_name", name,
                                          "--model_def", f"{name}.onnx", "--mlir", mlir, *transform_args],
              workdir, env, timeout_s)
    deploy = [str(toolchain.tool_path("model_deploy.py")), "--mlir", mlir, "--quantize", quant,
              "--processor", chip, "--model", f"{name}.cvimodel"]
    if merge_weight:
        deploy.append("--merge_weight")
    if quant == "INT8":
        data_dir = workdir / f"calibration_{name}"
        data_dir.mkdir()
        lines = []
        for index, sample in enumerate(calibration_inputs):
            path = data_dir / f"sample_{index:04d}.npz"
            np.savez(path, **{k: np.asarray(v, dtype=np.float32) for k, v in sample.items()})
            lines.append(str(path))
        (workdir / f"calibration_list_{name}.txt").write_text("\n".join(lines) + "\n")
        table = f"{name}_cali_table"
        _run_step(f"run_calibration_{name}", [str(toolchain.tool_path("run_calibration.py")), mlir, "--data_list",
                                              f"calibration_list_{name}.txt", "--input_num", str(len(lines)),
                                              *calibration_args, "-o", table],
                  workdir, env, timeout_s)
        deploy += ["--calibration_table", table]
    _run_step(f"model_deploy_{name}", deploy + list(deploy_args), workdir, env, timeout_s)
    cvimodel = workdir / f"{name}.cvimodel"
    if not cvimodel.is_file():
        raise CompileError(f"model_deploy produced no {name}.cvimodel; log: {workdir / f'model_deploy_{name}.log'}")
    return cvimodel


def _cached_build(key: str, root: Path | None, name: str, chip: str, quant: str, version: str, args: dict,
                  onnx_digest: str, build) -> CompiledModel:
    """Return the cache entry `key`, building it with `build(workdir, env) -> cvimodel name` when absent."""
    root = root or cache_root()
    entry = root / key
    result_file = entry / RESULT_FILENAME
    if result_file.is_file():
        meta = json.loads(result_file.read_text())
        cvimodel = entry / meta["cvimodel"]
        if cvimodel.is_file():
            return CompiledModel(cvimodel, entry, key, chip, quant, version, meta.get("ion_bytes"),
                                 meta.get("compile_seconds", 0.0), True)
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    started = time.monotonic()
    try:
        env = toolchain.toolchain_env()
        cvimodel_name = build(workdir, env)
        info = _run_step("model_tool_info", [str(toolchain.tool_path("model_tool")), "--info", cvimodel_name],
                         workdir, env, 600)
        seconds = round(time.monotonic() - started, 1)
        meta = {"cache_format": CACHE_FORMAT, "cvimodel": cvimodel_name, "chip": chip, "quant": quant,
                "tpu_mlir_version": version, "args": args, "ion_bytes": parse_ion_bytes(info),
                "compile_seconds": seconds, "onnx_sha256": onnx_digest}
        (workdir / RESULT_FILENAME).write_text(json.dumps(meta, indent=1) + "\n")
        try:
            workdir.rename(entry)
        except OSError:
            # another process finished the same key first (or a stale dir without result)
            if (entry / RESULT_FILENAME).is_file():
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                shutil.rmtree(entry, ignore_errors=True)
                workdir.rename(entry)
        print(f"[compile] {name} {chip} {quant}: {seconds} s -> {entry}", file=sys.stderr, flush=True)
        return CompiledModel(entry / cvimodel_name, entry, key, chip, quant, version, meta["ion_bytes"], seconds, False)
    except BaseException as error:
        # keep failed work for reading its logs, under a name that is never a cache hit
        failed = root / f".failed-{key[:16]}"
        shutil.rmtree(failed, ignore_errors=True)
        if workdir.exists():
            workdir.rename(failed)
        if isinstance(error, CompileError):
            raise CompileError(str(error).replace(str(workdir), str(failed))) from None
        raise


def compile_onnx(onnx_model, *, chip: str, quant: str = "BF16", name: str = "model",
                 calibration_inputs: list[dict] | None = None, transform_args: tuple = (),
                 deploy_args: tuple = (), timeout_s: float = 1800, root: Path | None = None,
                 calibration_args: tuple = ()) -> CompiledModel:
    """Compile (or fetch from the cache) an ONNX model for `chip` in `quant`.

    onnx_model: bytes, a path, or an `onnx.ModelProto`. INT8 needs `calibration_inputs`: a list
    of {input name: float32 array} samples (PLATFORM.md used 16). `calibration_args` are extra
    `run_calibration.py` options (INT8 only), e.g. `("--cali_method", "use_percentile9999")`.
    Raises UserError/CompileError.
    The cache entry keeps `<name>.onnx`, the mlir files and one log per step.
    """
    _check_args(chip, quant, name, calibration_inputs)
    onnx_bytes = _onnx_bytes(onnx_model)
    toolchain.require_toolchain()
    version = toolchain.tpu_mlir_version()
    args = {"chip": chip, "quant": quant, "name": name, "transform_args": list(transform_args),
            "deploy_args": list(deploy_args)}
    if calibration_args and quant == "INT8":
        args["calibration_args"] = list(calibration_args)  # only when given: older cache keys stay valid
    key = cache_key(onnx_bytes, version, args, calibration_inputs if quant == "INT8" else None)

    def build(workdir: Path, env: dict) -> str:
        return _build_program(workdir, name, onnx_bytes, chip, quant, calibration_inputs, transform_args,
                              deploy_args, env, timeout_s, merge_weight=False,
                              calibration_args=tuple(calibration_args) if quant == "INT8" else ()).name

    return _cached_build(key, root, name, chip, quant, version, args, hashlib.sha256(onnx_bytes).hexdigest(), build)


def compile_onnx_programs(programs: list[dict], *, chip: str, quant: str = "BF16", name: str = "model",
                          transform_args: tuple = (), deploy_args: tuple = (), timeout_s: float = 1800,
                          root: Path | None = None) -> CompiledModel:
    """Several static-shape graphs sharing weights in ONE cvimodel, one program each, in order.

    programs: [{"onnx": bytes|path|ModelProto, "calibration_inputs": [...] (INT8)}, ...]; program i is
    selected at run time with `CviModel(path, program_index=i)` or `model.clone(program_index=i)`
    (OPTION_PROGRAM_INDEX). Built with `model_deploy --merge_weight` in one folder and
    `model_tool --combine`; the combined file's header md5 (left unset by model_tool) is rewritten
    so tpu_driver's integrity check holds.
    """
    if len(programs) < 2:
        raise UserError("compile_onnx_programs needs at least two programs (use compile_onnx for one)")
    for program in programs:
        _check_args(chip, quant, name, program.get("calibration_inputs"))
    onnx_list = [_onnx_bytes(program["onnx"]) for program in programs]
    toolchain.require_toolchain()
    version = toolchain.tpu_mlir_version()
    args = {"chip": chip, "quant": quant, "name": name, "programs": len(programs), "combine": True,
            "transform_args": list(transform_args), "deploy_args": list(deploy_args)}
    calibration = [sample for program in programs for sample in (program.get("calibration_inputs") or [])]
    joined = b"".join(hashlib.sha256(b).digest() for b in onnx_list)
    key = cache_key(joined, version, args, calibration if quant == "INT8" else None)

    def build(workdir: Path, env: dict) -> str:
        from tpu_driver.cvimodel_file import rewrite_md5

        parts = []
        for index, (program, onnx_bytes) in enumerate(zip(programs, onnx_list)):
            parts.append(_build_program(workdir, f"{name}_p{index}", onnx_bytes, chip, quant,
                                        program.get("calibration_inputs"), transform_args, deploy_args, env,
                                        timeout_s, merge_weight=True).name)
        _run_step("model_tool_combine", [str(toolchain.tool_path("model_tool")), "--combine", *parts,
                                         "-o", f"{name}.cvimodel"], workdir, env, timeout_s)
        rewrite_md5(workdir / f"{name}.cvimodel")
        return f"{name}.cvimodel"

    return _cached_build(key, root, name, chip, quant, version, args, hashlib.sha256(joined).hexdigest(), build)
