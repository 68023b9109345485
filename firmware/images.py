"""The board images edgetype ships to, and what their Python has (../shared/PLATFORM.md "Stock images").

One table, read by the overlay builder (overlay.json, etc/default/edgetype: the init script's
"how to add it" lines come from here), by the host-side isolated roots that stand for an image
(board_tests/overlay_root.py: the third-party packages a test interpreter may see) and by
firmware/README.md's per-image sections.

`packages` are the import names the image's python3 has (pyserial, "serial", is listed because a
host-side root standing for the image must see exactly that set; the board code never imports it); `add` says, per import name, how a board
owner adds it on that image (the buildroot config symbol, the Debian package).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from runtime.errors import UserError

MIN_PYTHON = (3, 9)  # the oldest image (Milk-V Duo V1 SDK) has 3.9.5
# what the on-board packages import from outside the standard library, and what for
BOARD_PACKAGES = {
    "numpy": "the model, the KV window and the suggestions (required)",
    "cffi": "the TPU driver (backend tpu; not needed with EDGETYPE_BACKEND=numpy)",
    "evdev": "python-evdev keyboard reader (optional: the standard-library reader is used without it)",
}


@dataclass(frozen=True)
class Image:
    name: str
    description: str
    python: str  # the image's python3 version (major.minor); python_checked: from the SDK's config
    python_checked: bool
    libc: str
    init: str  # "busybox" (/etc/init.d/S99edgetype) or "systemd" (edgetype.service)
    packages: tuple = ()  # import names its python3 has
    add: dict = field(default_factory=dict)  # import name -> how to add it on this image


def _buildroot(symbols: dict) -> dict:
    return {name: f"rebuild the image with {symbol}=y in the buildroot defconfig"
            for name, symbol in symbols.items()}


_BUILDROOT_SYMBOLS = {"numpy": "BR2_PACKAGE_PYTHON_NUMPY", "cffi": "BR2_PACKAGE_PYTHON_CFFI",
                      "evdev": "BR2_PACKAGE_PYTHON_EVDEV", "serial": "BR2_PACKAGE_PYTHON_SERIAL"}

IMAGES = {
    "milkv-v1": Image(
        "milkv-v1", "Milk-V Duo V1 SDK (duo-buildroot-sdk, buildroot 2021.05, musl)",
        python="3.9", python_checked=True, libc="musl", init="busybox", packages=("cffi", "evdev", "serial"),
        add=dict(_buildroot(_BUILDROOT_SYMBOLS), numpy=(
            "rebuild the image with BR2_PACKAGE_PYTHON_NUMPY=y in the buildroot defconfig, or use "
            "the milkv-v2 or debian image (edgetype has no numpy-free runtime yet)"))),
    "milkv-v2": Image(
        "milkv-v2", "Milk-V Duo / Duo 256M V2 SDK (duo-buildroot-sdk-v2, buildroot 2025.02, musl)",
        python="3.12", python_checked=False, libc="musl", init="busybox", packages=("numpy",),
        add=_buildroot(_BUILDROOT_SYMBOLS)),
    "debian": Image(
        "debian", "Debian trixie riscv64 (community SG200x images, glibc)",
        python="3.13", python_checked=True, libc="glibc", init="systemd", packages=("numpy", "cffi", "evdev", "serial"),
        add={"numpy": "apt-get install python3-numpy", "cffi": "apt-get install python3-cffi",
             "evdev": "apt-get install python3-evdev", "serial": "apt-get install python3-serial"}),
}
# --board without --image: the image Milk-V recommends for that board (PLATFORM.md: V1 for the
# 64 MB Duo, whose V2 AI applications "cannot currently run normally"; V2 for the SG2002 boards)
DEFAULT_IMAGE = {"duo": "milkv-v1", "duo256m": "milkv-v2", "licheerv-nano": "milkv-v2"}


def image_for(name: str | None, board: str) -> Image:
    if name is None:
        name = DEFAULT_IMAGE.get(board, "milkv-v2")
    if name not in IMAGES:
        raise UserError(f"unknown image {name!r}: use one of {', '.join(IMAGES)}")
    return IMAGES[name]
