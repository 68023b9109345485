"""The overlay as the unit under test: its own file tree, in an interpreter that sees nothing else.

Host-only. `build_root()` builds the overlay with firmware/overlay.py, exactly as
`edgetype firmware overlay` does, and extracts it into a fresh directory standing for the board's
root file system. `board_python()` makes (once, cached under ~/.cache/edgetype/board-pythons) a
virtual environment standing for an image's python3: the standard library plus exactly the
third-party packages firmware/images.py lists for that image (symlinked from this interpreter's
site-packages, or for another Python version, e.g. the V1 image's 3.9, installed from PyPI with
that Python's pip into the cache). `run_module()` runs `python -I` (no PYTHONPATH, no user site,
no script directory) with only the overlay's `opt/edgetype/lib` put on sys.path, so a module the
overlay does not ship fails to import here as it would on the board.

Used by the simulated board (board_tests/simboard.py: its `python3` is board_python()'s, its file
system the extracted overlay), ci/riscv64.sh (extracts the same tarball into the riscv64 rootfs)
and tests/test_overlay_startup.py.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from firmware.images import IMAGES

CACHE = Path(os.environ.get("EDGETYPE_CACHE", Path.home() / ".cache" / "edgetype"))
# import name -> the top-level entries of site-packages it needs (its compiled parts included)
SITE_ENTRIES = {
    "numpy": ("numpy", "numpy.libs"),
    "cffi": ("cffi", "_cffi_backend", "pycparser"),
    "evdev": ("evdev",),
    "serial": ("serial",),
}
PYPI_NAMES = {"numpy": "numpy", "cffi": "cffi", "evdev": "evdev", "serial": "pyserial"}
LIB = "opt/edgetype/lib"
# run a module the way `python3 -m MODULE` does, with sys.path = [lib] + the interpreter's own
BOOTSTRAP = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); module = sys.argv.pop(1); "
             "sys.argv[0] = module; runpy.run_module(module, run_name='__main__', alter_sys=True)")


@dataclass
class OverlayRoot:
    root: Path  # the board's "/" (the overlay extracted into it)
    record: dict  # what build_overlay returned (overlay.json plus output, bytes, sha256)

    @property
    def lib(self) -> Path:
        return self.root / LIB

    def describe(self) -> dict:
        """What a report says about the tree that ran."""
        return {"kind": "overlay", "root": str(self.root), "lib": str(self.lib),
                "board": self.record["board"], "image": self.record["image"],
                "overlay_sha256": self.record["sha256"], "files": len(self.record["files"])}


def build_root(dest: str | Path, *, board: str = "duo256m", image: str | None = None,
               bundle: str | Path | None = None, with_bundle: bool = False) -> OverlayRoot:
    """Build the overlay and extract it into `dest` (created; must not hold an older root)."""
    from firmware.overlay import build_overlay

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgetype-overlay-") as tmp:
        tarball = Path(tmp) / f"edgetype-{board}.tar.gz"
        record = build_overlay(board, tarball, bundle=bundle, with_bundle=with_bundle, image=image)
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():  # our own tarball, but never write outside dest
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise ValueError(f"overlay member {member.name!r} leaves the root")
            tar.extractall(dest)
    return OverlayRoot(dest, record)


def link_bundle(root: OverlayRoot, bundle: str | Path) -> Path:
    """Put a host bundle at ROOT/opt/edgetype/bundle (a symlink: bundles are tens of MB)."""
    link = root.root / "opt/edgetype/bundle"
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(Path(bundle).resolve())
    return link


# ----------------------------------------------------------------------------- image Pythons
def _python_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def find_python(version: str) -> str:
    """An interpreter of `version` (major.minor): this one, pyenv's, or `pythonX.Y` on PATH."""
    if "%d.%d" % sys.version_info[:2] == version:
        return sys.executable
    # PYENV_ROOT first: with a fresh HOME (a clean CI clone) ~/.pyenv is not where pyenv lives
    roots = [Path(os.environ["PYENV_ROOT"])] if os.environ.get("PYENV_ROOT") else []
    roots.append(Path.home() / ".pyenv")
    for root in roots:
        candidates = sorted((root / "versions").glob(f"{version}.*/bin/python{version}"))
        if candidates:
            return str(candidates[-1])
    found = shutil.which(f"python{version}")
    if found:
        return found
    raise FileNotFoundError(f"no Python {version}: install it (pyenv install {version}) to stand "
                            f"for the board image's python3")


def _host_site_entries(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"{name} is not installed in {sys.executable}")
    site = Path(spec.origin).resolve().parent
    site = site.parent if spec.submodule_search_locations else site
    entries = []
    for entry in SITE_ENTRIES[name]:
        entries += [p for p in site.glob(entry + "*") if p.name == entry  # a package
                    or p.name.startswith(entry + ".") and p.suffix in (".so", ".py")]  # a module
    return sorted(set(entries))


def board_python(image: str | None, python: str | None = None,
                 packages: tuple | None = None) -> Path:
    """A python3 standing for `image`'s: stdlib + exactly its packages (or `packages`, import
    names, instead of an image's); returns bin/python."""
    packages = tuple(packages if packages is not None else IMAGES[image].packages)
    image = image or "custom"
    python = python or sys.executable
    version = _python_version(python)
    base = subprocess.run([python, "-c", "import sys; print(getattr(sys, '_base_executable', "
                           "sys.executable))"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    key = hashlib.sha256(f"{base} {version} {packages} format-1".encode()).hexdigest()[:12]
    env_dir = CACHE / "board-pythons" / f"{image}-py{version}-{key}"
    executable = env_dir / "bin" / "python"
    if (env_dir / ".edgetype-ready").is_file():
        return executable
    tmp = env_dir.with_name(env_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp)], check=True, timeout=300,
                   capture_output=True)
    site = Path(subprocess.run([str(tmp / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    if version == "%d.%d" % sys.version_info[:2]:
        for name in packages:
            for entry in _host_site_entries(name):
                (site / entry.name).symlink_to(entry)
    elif packages:  # another Python: from PyPI with its own pip (wheels; python-evdev has none:
        # built from its sdist against this machine's linux/input.h)
        wanted = [PYPI_NAMES[name] for name in packages]
        result = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-compile",
                                 "--disable-pip-version-check", "--prefer-binary",
                                 "--target", str(site), *wanted],
                                capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"pip install {' '.join(wanted)} for Python {version} failed: "
                               + result.stderr.strip()[-500:])
        for extra in site.glob("bin"):  # console scripts: not part of a board's site-packages
            shutil.rmtree(extra)
    (tmp / ".edgetype-ready").write_text(json.dumps({"image": image, "packages": packages}))
    if env_dir.exists():  # a concurrent build won: use it
        shutil.rmtree(tmp, ignore_errors=True)
        return executable
    tmp.rename(env_dir)
    return executable


def site_packages_of(executable: Path) -> list[str]:
    """The top-level names in a board python's site-packages (what the image has)."""
    site = subprocess.run([str(executable), "-I", "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return sorted(p.name for p in Path(site).iterdir() if not p.name.startswith("_")
                  or p.name.startswith("_cffi"))


# ----------------------------------------------------------------------------- running
def board_environ(root: OverlayRoot, extra: dict | None = None) -> dict:
    """The environment of a process on the board: nothing of the host's Python settings."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(root.root / "root"),
           "LANG": "C.UTF-8", "TMPDIR": str(root.root / "tmp"), "OPENBLAS_NUM_THREADS": "1",
           "EDGETYPE_BUNDLE": str(root.root / "opt/edgetype/bundle")}
    (root.root / "root").mkdir(exist_ok=True)
    (root.root / "tmp").mkdir(exist_ok=True)
    env.update(extra or {})
    return env


def run_module(root: OverlayRoot, python: Path, module: str, args: list[str], *,
               env: dict | None = None, timeout_s: float = 120.0,
               cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """`python -I` running `module` from the overlay's lib (like `python3 -m module args`)."""
    command = [str(python), "-I", "-c", BOOTSTRAP, str(root.lib), module, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                          env=board_environ(root, env), cwd=str(cwd or root.root / "root"))
