"""On the board: a USB keyboard is attached and visible as an evdev node.

No udev on the stock image (no /dev/input/by-id): the keyboard is found by capability in
/proc/bus/input/devices (an EV_KEY device with letter keys and a `kbd` handler). The parsing is
plain Python so that it is also unit-tested on the host (tests/test_board_onboard.py).
"""
from __future__ import annotations

import os

from board_tests.onboard import boardenv

EV_KEY = 0x01
KEY_A, KEY_Z, KEY_SPACE = 30, 44, 57


def parse_input_devices(text: str) -> list[dict]:
    """/proc/bus/input/devices -> [{'name', 'handlers': [..], 'ev': int, 'key': int}]."""
    devices, current = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                devices.append(current)
            current = {}
            continue
        tag, _, rest = line.partition(": ")
        if tag == "N":
            current["name"] = rest.split("=", 1)[1].strip('"')
        elif tag == "H":
            current["handlers"] = rest.split("=", 1)[1].split()
        elif tag == "B":
            field, _, value = rest.partition("=")
            # a bitmap is printed as space-separated hex words, most significant first
            bits = 0
            for word in value.split():
                bits = (bits << 64) | int(word, 16)
            current[field.lower()] = bits
    return devices


def keyboards(devices: list[dict]) -> list[dict]:
    """Devices that can type letters and space (a mouse or power button cannot)."""
    found = []
    for device in devices:
        keys = device.get("key", 0)
        has_letters = all(keys >> code & 1 for code in (KEY_A, KEY_Z, KEY_SPACE))
        if device.get("ev", 0) >> EV_KEY & 1 and has_letters:
            found.append(device)
    return found


def test_a_keyboard_is_attached():
    boardenv.require_board()
    path = boardenv.input_devices_path()
    assert os.path.exists(path), (f"{path} missing: the kernel has no input subsystem "
                                  "(Duo V1 images lack CONFIG_INPUT_EVDEV)")
    with open(path) as f:
        found = keyboards(parse_input_devices(f.read()))
    assert found, ("no keyboard in /proc/bus/input/devices: plug one into the USB port and switch "
                   "USB to host mode (ln -sf /mnt/system/usb-host.sh /mnt/system/usb.sh; reboot)")
    events = [h for h in found[0].get("handlers", []) if h.startswith("event")]
    assert events, f"keyboard {found[0].get('name')!r} has no evdev handler (CONFIG_INPUT_EVDEV)"
    node = os.path.join(boardenv.dev_dir(), "input", events[0])
    assert os.path.exists(node), f"{node} missing (no devtmpfs/mdev?)"
