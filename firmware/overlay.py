"""Build the rootfs overlay tarball for a board (firmware/README.md describes its layout).

Deterministic: members sorted, mtime 0, owner root, so the same tree and bundle give the same
bytes (its sha256 can be pinned in a release note).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from firmware.images import BOARD_PACKAGES, MIN_PYTHON, Image, image_for
from runtime.errors import UserError

REPO = Path(__file__).resolve().parent.parent
FILES = Path(__file__).resolve().parent  # S99edgetype.sh, edgetype.service, README.md (package data)
PACKAGES = ("runtime", "tpu_driver", "kv_window", "keyboard_ui")
# board -> (tpu-mlir chip name, quantisation of its bundle)
BOARDS = {
    "duo": ("cv180x", "int8"),
    "duo256m": ("cv181x", "int8"),
    "licheerv-nano": ("cv181x", "int8"),
}
OVERLAY_FORMAT = 1


def board_chip(board: str) -> tuple[str, str]:
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}: use one of {', '.join(BOARDS)}")
    return BOARDS[board]


def default_bundle_dir(board: str, repo: Path = REPO) -> Path:
    chip, quant = board_chip(board)
    return repo / "models" / "bundles" / f"{chip}-{quant}-w128"


def default_settings(board: str, image: Image | None = None) -> str:
    chip, quant = board_chip(board)
    image = image or image_for(None, board)
    hints = "".join(f"EDGETYPE_ADD_{name.upper()}=\"{image.add[name]}\"\n"
                    for name in BOARD_PACKAGES if name in image.add)
    return (
        "# edgetype settings, read by /etc/init.d/S99edgetype and edgetype.service\n"
        f"EDGETYPE_BOARD_NAME={board}\n"
        f"EDGETYPE_CHIP={chip}\n"
        f"# the image this overlay was built for ({image.description})\n"
        f"EDGETYPE_IMAGE={image.name}\n"
        f"EDGETYPE_MIN_PYTHON={MIN_PYTHON[0]}.{MIN_PYTHON[1]}\n"
        "# what the init script says when a package is missing (firmware/images.py)\n"
        + hints +
        "EDGETYPE_HOME=/opt/edgetype\n"
        "EDGETYPE_BUNDLE=/opt/edgetype/bundle\n"
        "EDGETYPE_BACKEND=tpu\n"
        "# the demo's command line (the init script restarts it when it exits)\n"
        "#EDGETYPE_DEMO_CMD=\"python3 -m runtime.cli demo --bundle /opt/edgetype/bundle --backend tpu\"\n"
        "# 1: switch the USB OTG port to host mode for a keyboard (0 keeps device mode)\n"
        "EDGETYPE_USB_HOST=1\n"
        "EDGETYPE_BACKOFF_MAX_S=60\n"
        "EDGETYPE_STOP_TIMEOUT_S=10\n"
    )


def _ships_to_board(relative: Path) -> bool:
    """Native builds: only the board's own architecture (riscv64) ships; the host's x86-64 and
    instruction-counting builds under runtime/native/build/ stay on the host."""
    parts = relative.parts
    if len(parts) >= 2 and parts[0] == "native" and parts[1] == "build":
        return len(parts) >= 3 and parts[2] == "riscv64"
    return True


def _package_files(repo: Path) -> list[tuple[str, Path]]:
    files = []
    for package in PACKAGES:
        root = repo / package
        if not root.is_dir():
            raise UserError(f"package {root} missing: the overlay needs {', '.join(PACKAGES)}")
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" \
                    and _ships_to_board(path.relative_to(root)):
                files.append((f"opt/edgetype/lib/{package}/{path.relative_to(root)}", path))
    files.append(("opt/edgetype/lib/board_tests/__init__.py", repo / "board_tests/__init__.py"))
    onboard = repo / "board_tests" / "onboard"
    for path in sorted(onboard.glob("*.py")):
        files.append((f"opt/edgetype/lib/board_tests/onboard/{path.name}", path))
    return files


def _bundle_files(bundle: Path, board: str) -> tuple[list[tuple[str, bytes]], dict]:
    """Exactly the bundle's manifest.json and the files its manifest lists, after the runtime's own
    bundle check (`runtime.bundle.load_bundle`: bundle_id, sha256, types, the cvimodel header);
    each file's bytes are re-hashed as read, so what is packed is what was checked. Nothing else in
    the directory (an id_rsa, a .git/) is packed; a link leaving the bundle is refused."""
    from runtime.bundle import bundle_file, load_bundle

    if not os.path.lexists(bundle / "manifest.json"):
        raise UserError(f"no bundle at {bundle} (manifest.json missing): export one, pass "
                        "--bundle DIR, or --no-bundle and copy it on the SD card")
    checked = load_bundle(bundle)
    manifest = checked.manifest
    chip, _ = board_chip(board)
    if manifest.get("chip") != chip:
        raise UserError(f"{bundle / 'manifest.json'}: chip {manifest.get('chip')!r} but board {board} has "
                        f"{chip}: pass the {chip} bundle")
    files = [("opt/edgetype/bundle/manifest.json",
              bundle_file(bundle, "manifest.json", "bundle manifest").read_bytes())]
    for name, want in sorted(manifest["files"].items()):
        data = bundle_file(bundle, name, "listed in manifest.json").read_bytes()
        if hashlib.sha256(data).hexdigest() != want:
            raise UserError(f"{bundle / name}: changed while the overlay was built (sha256 mismatch); retry")
        files.append((f"opt/edgetype/bundle/{name}", data))
    if json.loads(files[0][1]) != manifest:
        raise UserError(f"{bundle / 'manifest.json'}: changed while the overlay was built; retry")
    return files, manifest


def check_output_writable(output: Path) -> None:
    """Fail before any work when `-o` cannot be written (a clear line, not a traceback at the end)."""
    output = Path(output)
    if output.is_dir():
        raise UserError(f"-o {output}: is a directory; pass a file name like overlay.tar.gz")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}.", delete=True)
        probe.close()
    except OSError as error:
        raise UserError(f"-o {output}: cannot write there ({error.strerror}); pick a writable path") from None


def build_overlay(board: str, output: str | Path, *, bundle: str | Path | None = None,
                  with_bundle: bool = True, repo: Path = REPO, image: str | None = None) -> dict:
    """Write the overlay .tar.gz; return what went in (also stored as opt/edgetype/overlay.json).

    `image` (firmware/images.py) defaults to the one recommended for `board`."""
    chip, quant = board_chip(board)
    profile = image_for(image, board)
    check_output_writable(Path(output))
    members: list[tuple[str, bytes, int]] = []  # (path in rootfs, content, mode)

    def add_file(name: str, path: Path, mode: int = 0o644):
        members.append((name, path.read_bytes(), mode))

    add_file("etc/init.d/S99edgetype", FILES / "S99edgetype.sh", 0o755)
    members.append(("etc/default/edgetype", default_settings(board, profile).encode(), 0o644))
    add_file("opt/edgetype/share/edgetype.service", FILES / "edgetype.service")
    add_file("opt/edgetype/README.md", FILES / "README.md")
    for name, path in _package_files(repo):
        add_file(name, path)
    manifest = None
    if with_bundle:
        bundle_dir = Path(bundle) if bundle else default_bundle_dir(board, repo)
        bundle_files, manifest = _bundle_files(bundle_dir, board)
        for name, data in bundle_files:
            members.append((name, data, 0o644))
    record = {
        "overlay_format": OVERLAY_FORMAT, "board": board, "chip": chip, "quant": quant,
        "image": profile.name,
        "bundle": None if manifest is None else {
            "model_id": manifest.get("model_id"), "chip": manifest.get("chip"),
            "quant": manifest.get("quant"), "window": manifest.get("window")},
        "files": {name: hashlib.sha256(data).hexdigest() for name, data, _ in members},
    }
    members.append(("opt/edgetype/overlay.json",
                    (json.dumps(record, indent=1, sort_keys=True) + "\n").encode(), 0o644))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        # directory entries only for our own tree: extracting onto / must not touch the mode or
        # time of /etc or /opt (tar creates missing parents by itself)
        directories = sorted({str(Path(n).parents[i]) for n, _, _ in members
                              for i in range(len(Path(n).parts) - 1)
                              if str(Path(n).parents[i]).startswith("opt/edgetype")})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data, mode in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    # mtime=0 and no file name in the gzip header: the same inputs give the same bytes
    try:
        output.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))
    except OSError as error:
        raise UserError(f"-o {output}: cannot write ({error.strerror}); pick a writable path") from None
    record["output"] = str(output)
    record["bytes"] = output.stat().st_size
    record["sha256"] = hashlib.sha256(output.read_bytes()).hexdigest()
    return record

