"""keyboard_ui/evdev_stdlib.py: the standard-library evdev reader (images without python-evdev).

Event bytes go through a pipe, a pty and a socket pair (the LED is written back through it); the
kernel itself (/dev/uinput) when this machine allows it; the struct sizes and ioctl numbers under
qemu-riscv64 in the riscv64 rootfs ci/riscv64.sh builds.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from keyboard_ui import devices
from keyboard_ui import evdev_stdlib as S
from keyboard_ui import keymap as K

REPO = Path(__file__).resolve().parent.parent
# linux/input.h and asm-generic/ioctl.h, computed by hand: _IOC(dir, 'E', nr, size)
KNOWN_IOCTLS = {"EVIOCGRAB": 0x40044590, "EVIOCGNAME_256": 0x81004506,
                "EVIOCGBIT_EV_KEY_96": 0x80604521, "EVIOCGBIT_0_4": 0x80044520}


def key_events(codes: list[int], sec: int = 100) -> bytes:
    data = b""
    for i, code in enumerate(codes):
        for value in (1, 0):
            data += S.pack_event(K.EV_KEY, code, value, sec, 1000 * i)
            data += S.pack_event(K.EV_SYN, 0, 0, sec, 1000 * i)
    return data


def test_struct_and_ioctl_numbers_match_the_kernel_headers_on_this_machine():
    layout = S.layout()
    assert layout["event_size"] == (24 if struct.calcsize("l") == 8 else 16)
    for name, value in KNOWN_IOCTLS.items():
        assert layout[name] == value, name
    assert S.bits_to_codes(bytes([0b101, 0, 0x80])) == [0, 2, 23]


def test_events_through_a_pipe_including_a_record_split_across_writes():
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    device = S.StdlibInputDevice("pipe", fd=read_fd, name="pipe keyboard")
    try:
        with pytest.raises(BlockingIOError):
            device.read()  # nothing written yet: python-evdev's contract
        data = key_events([K.KEY_SPACE, 30])
        os.write(write_fd, data[:S.EVENT_SIZE + 5])  # one record and a piece of the next
        first = device.read()
        assert [(e.type, e.code, e.value) for e in first] == [(K.EV_KEY, K.KEY_SPACE, 1)]
        assert (first[0].sec, first[0].usec) == (100, 0)
        os.write(write_fd, data[S.EVENT_SIZE + 5:])
        rest = device.read()
        assert [(e.type, e.code, e.value) for e in rest] == [
            (0, 0, 0), (K.EV_KEY, K.KEY_SPACE, 0), (0, 0, 0), (K.EV_KEY, 30, 1), (0, 0, 0),
            (K.EV_KEY, 30, 0), (0, 0, 0)]
        os.close(write_fd)
        with pytest.raises(OSError) as gone:
            device.read()
        assert gone.value.errno == errno.ENODEV  # KeyboardSet drops it as unplugged
    finally:
        device.close()


def test_events_through_a_pty():
    master, slave = os.openpty()
    tty.setraw(slave)  # no line discipline between the bytes and the reader
    os.set_blocking(slave, False)
    device = S.StdlibInputDevice("pty", fd=slave, name="pty keyboard")
    try:
        os.write(master, key_events([35, 23]))  # h i
        deadline, got = time.monotonic() + 5, []
        while len(got) < 8 and time.monotonic() < deadline:
            try:
                got += device.read()
            except BlockingIOError:
                time.sleep(0.01)
        assert [(e.code, e.value) for e in got if e.type == K.EV_KEY] == [
            (35, 1), (35, 0), (23, 1), (23, 0)]
    finally:
        device.close()
        os.close(master)


class SocketKeyboard(S.StdlibInputDevice):
    """The stdlib reader on one end of a socket pair, with a keyboard's capabilities (a socket
    has no evdev ioctls); the test holds the other end, as the kernel would."""

    def capabilities(self):
        return {K.EV_KEY: sorted(K.LETTER_CODES | {K.KEY_SPACE}), K.EV_LED: [K.LED_CAPSL]}

    def grab(self):
        self.grabbed = True

    def ungrab(self):
        self.grabbed = False


def test_the_keyboard_loop_reads_the_stdlib_device_and_writes_the_caps_lock_led():
    ours, kernel = socket.socketpair()
    ours.setblocking(False)
    kernel.settimeout(5)
    device = SocketKeyboard("/dev/input/event7", fd=os.dup(ours.fileno()), name="socket keyboard")
    ours.close()
    messages = []
    keyboards = devices.KeyboardSet(open_device=lambda path: device,
                                    list_event_paths=lambda: ["/dev/input/event7"],
                                    log=messages.append)
    assert keyboards.open() == ["/dev/input/event7"] and device.grabbed
    kernel.sendall(key_events([30]))
    events = []
    deadline = time.monotonic() + 5
    while len(events) < 4 and time.monotonic() < deadline:
        events += keyboards.poll(0.1)
    assert [(e.type, e.code, e.value) for _, e in events] == [
        (K.EV_KEY, 30, 1), (0, 0, 0), (K.EV_KEY, 30, 0), (0, 0, 0)]
    kernel.recv(2 * S.EVENT_SIZE)  # the LED state written at open (off)
    keyboards.set_caps_lock(True)
    led = kernel.recv(2 * S.EVENT_SIZE)
    written = [S.RawEvent(*f) for f in S.EVENT_STRUCT.iter_unpack(led)]
    assert [(e.type, e.code, e.value) for e in written] == [(K.EV_LED, K.LED_CAPSL, 1),
                                                             (K.EV_SYN, 0, 0)]
    keyboards.release()
    assert not device.grabbed and device.fd == -1
    kernel.close()


def test_the_reader_is_python_evdev_when_it_imports_and_stdlib_otherwise(monkeypatch):
    import builtins

    monkeypatch.setenv("EDGETYPE_EVDEV_READER", "stdlib")
    assert devices.evdev_reader() == "stdlib"
    assert devices.KeyboardSet().reader == "stdlib"
    monkeypatch.delenv("EDGETYPE_EVDEV_READER")
    real_import = builtins.__import__

    def no_evdev(name, *args, **kwargs):
        if name == "evdev" or name.startswith("evdev."):
            raise ImportError("No module named 'evdev'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_evdev)
    assert devices.evdev_reader() == "stdlib"  # the V2 image: no python-evdev
    monkeypatch.setenv("EDGETYPE_EVDEV_READER", "python-evdev")
    with pytest.raises(devices.UserError, match="python-evdev does not import"):
        devices.evdev_reader()  # asked for explicitly: an error, never a silent fallback


def _uinput_keyboard():
    """A virtual keyboard through /dev/uinput (legacy uinput_user_dev setup, any kernel)."""
    import fcntl

    fd = os.open("/dev/uinput", os.O_RDWR | os.O_NONBLOCK)
    ui_set_evbit = S._ioc(1, "U", 100, 4)
    ui_set_keybit = S._ioc(1, "U", 101, 4)
    ui_set_ledbit = S._ioc(1, "U", 105, 4)
    for ev in (K.EV_KEY, K.EV_LED, K.EV_SYN):
        fcntl.ioctl(fd, ui_set_evbit, ev)
    for code in sorted(K.LETTER_CODES | {K.KEY_SPACE}):
        fcntl.ioctl(fd, ui_set_keybit, code)
    fcntl.ioctl(fd, ui_set_ledbit, K.LED_CAPSL)
    name = b"edgetype uinput test keyboard"
    # struct uinput_user_dev: name[80], input_id (4 x u16), ff_effects_max, abs arrays 4 x 64 x s32
    os.write(fd, name.ljust(80, b"\0") + struct.pack("HHHHi", 3, 1, 1, 1, 0) + bytes(4 * 64 * 4))
    fcntl.ioctl(fd, S._ioc(0, "U", 1, 0))  # UI_DEV_CREATE
    return fd, name.decode()


def test_a_real_kernel_keyboard_through_uinput():
    if not os.path.exists("/dev/uinput"):
        pytest.skip("no /dev/uinput on this machine (uinput module not loaded, or the container "
                    "does not expose it): the pipe, pty and socket tests cover the byte protocol")
    if not os.access("/dev/uinput", os.W_OK):
        pytest.skip("/dev/uinput is not writable here (needs root or the uinput group)")
    import glob

    before = set(glob.glob("/dev/input/event*"))
    try:
        uinput, name = _uinput_keyboard()
    except OSError as error:
        pytest.skip(f"the kernel refused a uinput device: {error}")
    try:
        deadline, path = time.monotonic() + 5, None
        while path is None and time.monotonic() < deadline:
            for candidate in sorted(set(glob.glob("/dev/input/event*")) - before):
                try:
                    probe = S.StdlibInputDevice(candidate)
                except OSError:
                    continue
                if probe.name == name:
                    path = candidate
                probe.close()
            time.sleep(0.05)
        assert path, "the uinput keyboard's event node did not appear"
        device = S.StdlibInputDevice(path)
        try:
            assert devices.is_keyboard(device.capabilities())
            assert K.LED_CAPSL in device.capabilities()[K.EV_LED]
            device.grab()
            os.write(uinput, S.pack_event(K.EV_KEY, 30, 1) + S.pack_event(0, 0, 0))
            deadline, got = time.monotonic() + 5, []
            while not got and time.monotonic() < deadline:
                try:
                    got = [e for e in device.read() if e.type == K.EV_KEY]
                except BlockingIOError:
                    time.sleep(0.01)
            assert [(e.code, e.value) for e in got] == [(30, 1)]
            device.set_led(K.LED_CAPSL, 1)  # comes back on the uinput fd as an EV_LED event
            device.ungrab()
        finally:
            device.close()
    finally:
        import fcntl

        fcntl.ioctl(uinput, S._ioc(0, "U", 2, 0))  # UI_DEV_DESTROY
        os.close(uinput)


@pytest.mark.slow
def test_struct_sizes_and_ioctl_numbers_under_qemu_riscv64(capsys):
    """The overlay's evdev_stdlib.py under the riscv64 rootfs's python3 (ci/riscv64.sh --layout;
    builds the rootfs the first time)."""
    result = subprocess.run(["bash", str(REPO / "ci/riscv64.sh"), "--layout"], capture_output=True,
                            text=True, timeout=1500, cwd=REPO,
                            env=dict(os.environ, EDGETYPE_HOST_PYTHON=sys.executable))
    assert result.returncode == 0, result.stderr[-2000:]
    layout = json.loads(result.stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print(f"\n[riscv64] evdev_stdlib layout under qemu-riscv64: {layout}")
    assert layout["machine"] == "riscv64"
    assert (layout["event_size"], layout["long_size"]) == (24, 8)  # timeval = two 64-bit longs
    for name, value in KNOWN_IOCTLS.items():
        assert layout[name] == value, name
