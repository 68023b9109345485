"""The tpu-mlir toolchain: install it into its own Python 3.10 venv, check it, and run its tools.

tpu-mlir (the vendor compiler, PyPI `tpu-mlir`) needs Python 3.10 while edgetype runs on 3.11,
so the toolchain lives in a separate venv (default `~/.cache/edgetype/tpu-mlir-venv`, override
with `$EDGETYPE_TOOLCHAIN_DIR`) and its tools run as subprocesses with `toolchain_env()`.

Other code uses: `require_toolchain()`, `toolchain_env()`, `tool_path(name)`,
`tpu_mlir_version()`, `simulator_library_path()`. The CLI is `edgetype toolchain install|check`.
See PLATFORM.md for why the glibc fix exists.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runtime.errors import UserError
# where the simulator library is: in the driver (the bottom layer), which needs it too
from tpu_driver.simulator_paths import (INSTALL_HINT, TPU_MLIR_VERSION, package_root,  # noqa: F401
                                        simulator_library_path, toolchain_dir, tpu_mlir_version)

# tpu-mlir imports more than it declares (PLATFORM.md): psutil, pkg_resources, torch, onnx*.
PIP_REQUIREMENTS = [
    f"tpu-mlir=={TPU_MLIR_VERSION}",
    "psutil",
    "setuptools<70",
    "onnx==1.14.1",
    "onnxruntime==1.16.3",
    "onnxsim",
    "torch",
]
# The wheel bundles glibc 2.35; on newer hosts tpuc-opt dies ("stack smashing detected") until
# these three are moved out of lib/third_party/ (they are on the tools' RUNPATH).
BUNDLED_GLIBC_FILES = ("libc.so.6", "libm.so.6", "libpthread.so.0")
BUNDLED_GLIBC_VERSION = (2, 35)
GLIBC_MOVED_DIRNAME = "third_party_glibc_moved"
MARKER_FILENAME = "edgetype-toolchain.json"


def _log(message: str) -> None:
    print(f"[toolchain] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# where things are

def venv_python(venv_dir: Path | None = None) -> Path:
    return (venv_dir or toolchain_dir()) / "bin" / "python"


def tool_path(name: str, venv_dir: Path | None = None) -> Path:
    """Absolute path of a tpu-mlir tool, e.g. `model_transform.py`, `model_deploy`, `tpuc-opt`.

    The venv's `bin/` holds a wrapper for every tool with and without `.py`; the wrappers import
    `tpu_mlir` (which sets its own env) and start the real tool with the venv's Python 3.10.
    Raises UserError when the toolchain or the tool is missing.
    """
    venv_dir = venv_dir or toolchain_dir()
    require_toolchain(venv_dir)
    candidates = [venv_dir / "bin" / name]
    if name.endswith(".py"):
        candidates.append(venv_dir / "bin" / name[:-3])
    else:
        candidates.append(venv_dir / "bin" / f"{name}.py")
    root = package_root(venv_dir)
    candidates += [root / "bin" / name, root / "python" / "tools" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"tpu-mlir tool {name!r} not found in {venv_dir}; {INSTALL_HINT} again")


def toolchain_env(base: dict | None = None, venv_dir: Path | None = None) -> dict:
    """Environment for running tpu-mlir tools as subprocesses.

    Mirrors what `tpu_mlir/__init__.py` sets up (PATH, PYTHONPATH, TPUC_ROOT, LD_LIBRARY_PATH),
    with the venv's `bin/` first so `python3` inside the tools is the 3.10 venv, and without any
    trace of the caller's (3.11) venv. Raises UserError when the toolchain is missing.
    """
    venv_dir = venv_dir or toolchain_dir()
    require_toolchain(venv_dir)
    root = package_root(venv_dir)
    env = dict(os.environ if base is None else base)
    for leaked in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
        env.pop(leaked, None)

    def prepend(key: str, parts: list[str]) -> None:
        existing = env.get(key)
        env[key] = os.pathsep.join(parts + ([existing] if existing else []))

    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    # drop the caller's venv bin (it would put python3.11 first)
    caller_bin = str(Path(sys.prefix) / "bin")
    if sys.prefix != sys.base_prefix:
        path = os.pathsep.join(p for p in path.split(os.pathsep) if p != caller_bin)
    env["PATH"] = path
    prepend("PATH", [
        str(venv_dir / "bin"),
        str(root / "bin"),
        str(root / "python" / "tools"),
        str(root / "python" / "utils"),
        str(root / "python" / "test"),
        str(root / "python" / "samples"),
        str(root / "customlayer" / "python"),
    ])
    env["PYTHONPATH"] = os.pathsep.join([
        str(root), str(root / "python"), str(root / "regression"), str(root / "customlayer" / "python"),
    ])
    prepend("LD_LIBRARY_PATH", [str(root / "lib"), str(root / "lib" / "capi"), str(root / "lib" / "third_party")])
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["TPUC_ROOT"] = str(root)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def require_toolchain(venv_dir: Path | None = None) -> Path:
    """Return the toolchain venv dir, or raise UserError saying how to install it."""
    venv_dir = venv_dir or toolchain_dir()
    if not venv_python(venv_dir).exists():
        raise UserError(f"tpu-mlir toolchain not found at {venv_dir}; {INSTALL_HINT} "
                        "(or set EDGETYPE_TOOLCHAIN_DIR)")
    if package_root(venv_dir) is None:
        raise UserError(f"tpu-mlir is not installed in {venv_dir}; {INSTALL_HINT}")
    root = package_root(venv_dir)
    if _glibc_fix_needed() and any((root / "lib" / "third_party" / f).exists() for f in BUNDLED_GLIBC_FILES):
        raise UserError(f"tpu-mlir in {venv_dir} still has its bundled glibc (tpuc-opt would crash); "
                        f"{INSTALL_HINT}")
    return venv_dir


# --------------------------------------------------------------------------------------------
# install

def host_glibc_version() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
        major, minor = text.split()[1].split(".")[:2]
        return int(major), int(minor)
    except (ValueError, IndexError, OSError, AttributeError):
        return None


def _glibc_fix_needed() -> bool:
    version = host_glibc_version()
    return version is not None and version > BUNDLED_GLIBC_VERSION


def apply_glibc_fix(root: Path) -> list[str]:
    """Move the bundled glibc out of `lib/third_party/` on hosts newer than glibc 2.35.

    Returns the names moved (empty when there was nothing to do). Idempotent.
    """
    if not _glibc_fix_needed():
        return []
    source_dir = root / "lib" / "third_party"
    moved_dir = root / "lib" / GLIBC_MOVED_DIRNAME
    moved = []
    for name in BUNDLED_GLIBC_FILES:
        source = source_dir / name
        if source.exists() or source.is_symlink():
            moved_dir.mkdir(exist_ok=True)
            target = moved_dir / name
            if target.exists():
                target.unlink()
            shutil.move(str(source), str(target))
            moved.append(name)
    return moved


def find_python310() -> Path:
    """A Python 3.10 interpreter: `python3.10` on PATH, else pyenv's; UserError when none."""
    on_path = shutil.which("python3.10")
    candidates = [Path(on_path)] if on_path else []
    pyenv_roots = [Path(os.environ["PYENV_ROOT"])] if os.environ.get("PYENV_ROOT") else []
    pyenv_roots.append(Path.home() / ".pyenv")
    for root in pyenv_roots:  # a pyenv shim on PATH only works for the pyenv's selected version
        candidates += [Path(p) for p in sorted(glob.glob(str(root / "versions" / "3.10*" / "bin" / "python3.10")), reverse=True)]
    for candidate in candidates:
        try:
            out = subprocess.run([str(candidate), "-c", "import sys, venv; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 10)":
            return candidate
    raise UserError("tpu-mlir needs Python 3.10 and none was found (looked for python3.10 on PATH "
                    "and $PYENV_ROOT or ~/.pyenv/versions/3.10*); install it, e.g. `pyenv install 3.10` or "
                    "`apt-get install python3.10 python3.10-venv`")


def _marker_path(venv_dir: Path) -> Path:
    return venv_dir / MARKER_FILENAME


def read_marker(venv_dir: Path | None = None) -> dict | None:
    path = _marker_path(venv_dir or toolchain_dir())
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _venv_has_requirements(venv_dir: Path) -> bool:
    """True when the venv can import everything tpu-mlir needs (the pip step can be skipped)."""
    if tpu_mlir_version(venv_dir) != TPU_MLIR_VERSION:
        return False
    probe = ("import importlib.util as u, sys; mods = ['psutil','pkg_resources','onnx','onnxruntime',"
             "'onnxsim','torch']; missing = [m for m in mods if u.find_spec(m) is None]; "
             "print(','.join(missing)); sys.exit(1 if missing else 0)")
    out = subprocess.run([str(venv_python(venv_dir)), "-c", probe], capture_output=True, text=True, timeout=120)
    return out.returncode == 0


def install_toolchain(venv_dir: Path | None = None, force: bool = False) -> dict:
    """Create (or adopt) the tpu-mlir venv, apply the glibc fix, check it; returns check report.

    Idempotent: an existing venv with the right tpu-mlir and imports is adopted without pip;
    re-running only re-checks. `force` re-runs pip.
    """
    venv_dir = venv_dir or toolchain_dir()
    started = time.monotonic()
    if not venv_python(venv_dir).exists():
        python310 = find_python310()
        _log(f"creating venv {venv_dir} with {python310}")
        venv_dir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(python310), "-m", "venv", str(venv_dir)], check=True)
    if force or not _venv_has_requirements(venv_dir):
        _log(f"pip install {' '.join(PIP_REQUIREMENTS)} (several GB, a few minutes)")
        pip = [str(venv_python(venv_dir)), "-m", "pip", "install", "--disable-pip-version-check"]
        if not sys.stderr.isatty():  # progress bars only where a person watches (not in CI logs)
            pip.append("--progress-bar=off")
        result = subprocess.run(pip + PIP_REQUIREMENTS, stdout=sys.stderr)
        if result.returncode != 0:
            raise UserError(f"pip install into {venv_dir} failed (exit {result.returncode}); see the "
                            "pip output above, fix it, then run `edgetype toolchain install` again")
    else:
        _log(f"adopting existing tpu-mlir {TPU_MLIR_VERSION} venv at {venv_dir}")
    root = package_root(venv_dir)
    moved = apply_glibc_fix(root)
    if moved:
        _log(f"moved bundled glibc {', '.join(moved)} to lib/{GLIBC_MOVED_DIRNAME}/")
    report = check_toolchain(venv_dir)
    if not report["ok"]:
        raise UserError(f"toolchain at {venv_dir} installed but fails its check: "
                        + "; ".join(report["problems"]))
    _marker_path(venv_dir).write_text(json.dumps({
        "tpu_mlir_version": report["tpu_mlir_version"],
        "glibc_fix_applied": _glibc_fix_needed(),
        "installed_unix": int(time.time()),
    }, indent=1) + "\n")
    report["install_seconds"] = round(time.monotonic() - started, 1)
    _log(f"toolchain ok ({report['install_seconds']} s)")
    return report


# --------------------------------------------------------------------------------------------
# check

_SIMULATOR_PROBE = r"""
import json, sys
from tpu_driver import gateway
lib = gateway.load_library(sys.argv[1])
print(json.dumps({"path": str(lib.path), "symbols": sorted(lib.available_symbols)}))
"""


def probe_simulator_library(library: Path, timeout_s: float = 60) -> tuple[bool, str]:
    """Load the cmodel `libcviruntime.so` through the gateway in a subprocess (a crash there
    cannot kill us). Returns (ok, detail)."""
    repo_root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo_root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        out = subprocess.run([sys.executable, "-c", _SIMULATOR_PROBE, str(library)], capture_output=True,
                             text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return False, f"loading {library} timed out after {timeout_s} s"
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or [f"exit {out.returncode}"]
        return False, f"loading {library} failed: {tail[0]}"
    return True, out.stdout.strip().splitlines()[-1]


def check_toolchain(venv_dir: Path | None = None) -> dict:
    """Versions, paths and problems of the toolchain; never raises for a broken toolchain."""
    venv_dir = venv_dir or toolchain_dir()
    report = {
        "toolchain_dir": str(venv_dir), "python": None, "python_version": None,
        "tpu_mlir_version": None, "expected_tpu_mlir_version": TPU_MLIR_VERSION,
        "tpuc_opt_path": None, "tpuc_opt_version": None,
        "cviruntime_path": None, "cmodel_path": None, "glibc_host": None, "glibc_fix_applied": None,
        "marker": read_marker(venv_dir), "ok": False, "problems": [],
    }
    problems = report["problems"]
    glibc = host_glibc_version()
    report["glibc_host"] = ".".join(map(str, glibc)) if glibc else None
    python = venv_python(venv_dir)
    if not python.exists():
        problems.append(f"no venv at {venv_dir} ({INSTALL_HINT})")
        return report
    report["python"] = str(python)
    try:
        out = subprocess.run([str(python), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=60)
        report["python_version"] = out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired) as error:
        problems.append(f"venv python does not run: {error}")
    root = package_root(venv_dir)
    if root is None:
        problems.append(f"tpu-mlir not installed in {venv_dir} ({INSTALL_HINT})")
        return report
    report["tpu_mlir_version"] = tpu_mlir_version(venv_dir)
    if report["tpu_mlir_version"] != TPU_MLIR_VERSION:
        problems.append(f"tpu-mlir {report['tpu_mlir_version']} installed, edgetype is tested with "
                        f"{TPU_MLIR_VERSION} ({INSTALL_HINT} to reinstall)")
    left = [f for f in BUNDLED_GLIBC_FILES if (root / "lib" / "third_party" / f).exists()]
    report["glibc_fix_applied"] = not left
    if left and _glibc_fix_needed():
        problems.append(f"bundled glibc still in {root / 'lib' / 'third_party'} ({INSTALL_HINT})")
    tpuc_opt = venv_dir / "bin" / "tpuc-opt"
    if tpuc_opt.exists():
        report["tpuc_opt_path"] = str(tpuc_opt)
        try:
            out = subprocess.run([str(tpuc_opt), "--version"], capture_output=True, text=True, timeout=120,
                                 env=toolchain_env(venv_dir=venv_dir) if not problems else None)
            text = (out.stdout + out.stderr).strip()
            version_lines = [line.strip() for line in text.splitlines() if "version" in line.lower()]
            report["tpuc_opt_version"] = version_lines[0] if version_lines else None
            if out.returncode != 0:
                problems.append(f"`tpuc-opt --version` exited {out.returncode}: {text.splitlines()[-1:] }")
        except (OSError, subprocess.TimeoutExpired, UserError) as error:
            problems.append(f"`tpuc-opt --version` failed: {error}")
    else:
        problems.append(f"tpuc-opt missing in {venv_dir / 'bin'}")
    library = simulator_library_path(venv_dir)
    if library is None:
        problems.append(f"cmodel libcviruntime.so missing in {root / 'lib'}")
    else:
        report["cviruntime_path"] = str(library)
        cmodel = library.parent / "libcvicmodel.so"
        report["cmodel_path"] = str(cmodel) if cmodel.exists() else None
        if not cmodel.exists():
            problems.append(f"libcvicmodel.so missing next to {library}")
        ok, detail = probe_simulator_library(library)
        if not ok:
            problems.append(detail)
    report["ok"] = not problems
    return report


# --------------------------------------------------------------------------------------------
# CLI

def _cmd_install(args) -> int:
    venv_dir = Path(args.dir).expanduser() if args.dir else None
    report = install_toolchain(venv_dir, force=args.force)
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


def _cmd_check(args) -> int:
    venv_dir = Path(args.dir).expanduser() if args.dir else None
    report = check_toolchain(venv_dir)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for key, value in report.items():
            if key not in ("problems", "marker"):
                print(f"{key:22} {value}")
        for problem in report["problems"]:
            print(f"problem: {problem}")
    return 0 if report["ok"] else 1


def register_toolchain(subparsers) -> None:
    """`edgetype toolchain install|check`."""
    parser = subparsers.add_parser("toolchain", help="install / check the tpu-mlir compiler venv")
    sub = parser.add_subparsers(dest="toolchain_command", metavar="WHAT")
    parser.set_defaults(func=lambda args, p=parser: (p.print_help(), 2)[1])
    install = sub.add_parser("install", help=f"create or adopt the tpu-mlir {TPU_MLIR_VERSION} venv (idempotent)")
    install.add_argument("--dir", help="venv folder (default $EDGETYPE_TOOLCHAIN_DIR or ~/.cache/edgetype/tpu-mlir-venv)")
    install.add_argument("--force", action="store_true", help="re-run pip even if the venv looks complete")
    install.add_argument("--json", action="store_true", help="print the check report as one JSON object")
    install.set_defaults(func=_cmd_install)
    check = sub.add_parser("check", help="report versions, paths and problems of the toolchain")
    check.add_argument("--dir", help="venv folder to check")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=_cmd_check)
