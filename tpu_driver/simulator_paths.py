"""Where the tpu-mlir toolchain's x86 simulator library is (no toolchain needed to ask).

The `cmodel` backend and the gateway's library discovery need only this lookup, so it lives in the
driver (the bottom layer) and `model_export/toolchain.py`, which installs the toolchain, reads it
from here. stdlib only: it imports on the board, where it finds nothing.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

TPU_MLIR_VERSION = "1.30.2"  # the tpu-mlir release the project pins (docs/driver.md)
INSTALL_HINT = "run `edgetype toolchain install`"


def toolchain_dir() -> Path:
    """The venv folder: `$EDGETYPE_TOOLCHAIN_DIR` or `~/.cache/edgetype/tpu-mlir-venv`."""
    configured = os.environ.get("EDGETYPE_TOOLCHAIN_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "edgetype" / "tpu-mlir-venv"


def package_root(venv_dir: Path | None = None) -> Path | None:
    """`.../site-packages/tpu_mlir` inside the venv, or None when tpu-mlir is not installed."""
    venv_dir = venv_dir or toolchain_dir()
    matches = sorted(glob.glob(str(venv_dir / "lib" / "python3.*" / "site-packages" / "tpu_mlir")))
    for match in matches:
        if (Path(match) / "lib").is_dir():
            return Path(match)
    return None


def simulator_library_path(venv_dir: Path | None = None) -> Path | None:
    """The x86 cmodel build of `libcviruntime.so` shipped in the wheel (None when absent).

    Its RUNPATH (`$ORIGIN/:$ORIGIN/../lib/third_party/`) finds libcvikernel/libcvicmodel and the
    bundled libstdc++, so a plain `dlopen` by absolute path works without LD_LIBRARY_PATH.
    """
    root = package_root(venv_dir)
    if root is None:
        return None
    path = root / "lib" / "libcviruntime.so"
    return path if path.is_file() else None


def tpu_mlir_version(venv_dir: Path | None = None) -> str | None:
    """Installed tpu-mlir version read from its dist-info (no subprocess), or None."""
    root = package_root(venv_dir)
    if root is None:
        return None
    for metadata in sorted(glob.glob(str(root.parent / "tpu_mlir-*.dist-info" / "METADATA"))):
        for line in Path(metadata).read_text(errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None
