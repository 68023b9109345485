"""An evdev keyboard reader in the standard library only: for images without python-evdev.

The Milk-V V2 image has numpy but no python-evdev (firmware/images.py). A `/dev/input/eventN`
node speaks a fixed binary protocol, so the few calls the demo needs are written here with
`os`, `struct` and `fcntl.ioctl` (keyboard_ui/devices.py picks python-evdev when it imports and
this otherwise, and says which):

    struct input_event { struct timeval time; __u16 type; __u16 code; __s32 value; };
    struct timeval     { long tv_sec; long tv_usec; };   (linux/input.h, 64-bit time: two longs)

so the record is `struct` format "llHHi" in native size and alignment: 24 bytes on riscv64 and
x86_64 (16 on a 32-bit board; tests check the size under qemu-riscv64). ioctls, from the
asm-generic _IOC encoding riscv uses (dir << 30 | size << 16 | type << 8 | nr):
    EVIOCGNAME(len)      _IOC(READ, 'E', 0x06, len)        the device's name
    EVIOCGBIT(ev, len)   _IOC(READ, 'E', 0x20 + ev, len)   capability bits of event type ev
    EVIOCGRAB            _IOW('E', 0x90, int)              exclusive grab (1) / release (0)
The Caps Lock LED is set by writing an EV_LED event (code LED_CAPSL) and a SYN_REPORT to the node.

`StdlibInputDevice` has the part of `evdev.InputDevice` keyboard_ui/devices.py uses
(InputDeviceLike): path, name, fileno(), capabilities(), grab(), ungrab(), read(), set_led(),
close(). `read()` returns the whole events available and raises BlockingIOError when there are
none, like python-evdev's; bytes of a partial record (possible on a pipe, never on a real node)
wait in a fixed-size buffer for the rest.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import NamedTuple

EVENT_FORMAT = "llHHi"  # (tv_sec, tv_usec, type, code, value), native sizes and alignment
EVENT_SIZE = struct.calcsize(EVENT_FORMAT)
EVENT_STRUCT = struct.Struct(EVENT_FORMAT)
READ_EVENTS = 64  # events per read() call at most

EV_SYN, EV_KEY, EV_LED = 0x00, 0x01, 0x11
SYN_REPORT = 0
EV_MAX, KEY_MAX, LED_MAX = 0x1F, 0x2FF, 0x0F

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return ((direction << _IOC_DIRSHIFT) | (ord(kind) << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)
            | (size << _IOC_SIZESHIFT))


def eviocgname(length: int) -> int:
    return _ioc(_IOC_READ, "E", 0x06, length)


def eviocgbit(event_type: int, length: int) -> int:
    return _ioc(_IOC_READ, "E", 0x20 + event_type, length)


EVIOCGRAB = _ioc(_IOC_WRITE, "E", 0x90, struct.calcsize("i"))
NAME_BYTES = 256


class RawEvent(NamedTuple):
    """One input_event, with python-evdev's attribute names."""

    sec: int
    usec: int
    type: int
    code: int
    value: int


def pack_event(event_type: int, code: int, value: int, sec: int = 0, usec: int = 0) -> bytes:
    return EVENT_STRUCT.pack(sec, usec, event_type, code, value)


def bits_to_codes(data: bytes) -> list[int]:
    """The set bits of a kernel bitmap (little-endian bytes of longs = bytes in order)."""
    return [i * 8 + bit for i, byte in enumerate(data) for bit in range(8) if byte >> bit & 1]


class StdlibInputDevice:
    """`/dev/input/eventN` opened with os.open (read-write for the LED when allowed)."""

    reader = "stdlib"

    def __init__(self, path: str, *, fd: int | None = None, name: str | None = None) -> None:
        """Open `path`; or wrap an open `fd` (a pipe or pty in tests: no ioctls then)."""
        self.path = path
        if fd is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except PermissionError:  # read access is enough to type; the LED then stays as is
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.fd = fd
        self._pending = bytearray()  # (< EVENT_SIZE bytes) of a record split across reads
        self._caps: dict | None = None
        self.name = name if name is not None else self._read_name()

    def fileno(self) -> int:
        return self.fd

    def _read_name(self) -> str:
        buffer = bytearray(NAME_BYTES)
        try:
            fcntl.ioctl(self.fd, eviocgname(NAME_BYTES), buffer, True)
        except OSError:
            return ""
        return bytes(buffer).split(b"\0", 1)[0].decode("utf-8", "replace")

    def _bits(self, event_type: int, max_code: int) -> list[int]:
        buffer = bytearray(max_code // 8 + 1)
        fcntl.ioctl(self.fd, eviocgbit(event_type, len(buffer)), buffer, True)
        return bits_to_codes(bytes(buffer))

    def capabilities(self) -> dict:
        """{event type: [codes]} for EV_KEY and EV_LED (python-evdev's shape, the part we use)."""
        if self._caps is None:
            try:
                types = self._bits(0, EV_MAX)  # EVIOCGBIT(0): which event types exist
            except OSError as error:
                if error.errno in (errno.ENOTTY, errno.EINVAL):  # not an evdev node: no caps
                    types = []
                else:
                    raise
            caps = {}
            for event_type, max_code in ((EV_KEY, KEY_MAX), (EV_LED, LED_MAX)):
                if event_type in types:
                    caps[event_type] = self._bits(event_type, max_code)
            self._caps = caps
        return self._caps

    def grab(self) -> None:
        fcntl.ioctl(self.fd, EVIOCGRAB, 1)

    def ungrab(self) -> None:
        fcntl.ioctl(self.fd, EVIOCGRAB, 0)

    def read(self) -> list[RawEvent]:
        """The whole events available now; BlockingIOError when none (python-evdev's contract);
        OSError ENODEV when the keyboard was unplugged."""
        data = os.read(self.fd, EVENT_SIZE * READ_EVENTS)  # BlockingIOError: nothing to read
        if not data:  # end of file (a pipe's writer closed): gone, like an unplugged device
            raise OSError(errno.ENODEV, "end of input")
        if self._pending:
            data = bytes(self._pending) + data
            self._pending.clear()
        whole = len(data) - len(data) % EVENT_SIZE
        self._pending += data[whole:]
        if not whole:
            raise BlockingIOError(errno.EAGAIN, "partial event")
        return [RawEvent(*fields) for fields in EVENT_STRUCT.iter_unpack(data[:whole])]

    def set_led(self, led_num: int, value: int) -> None:
        os.write(self.fd, pack_event(EV_LED, led_num, value) + pack_event(EV_SYN, SYN_REPORT, 0))

    def close(self) -> None:
        if self.fd is not None and self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def layout() -> dict:
    """The sizes and ioctl numbers on this machine (tests compare them under qemu-riscv64)."""
    import platform

    return {"machine": platform.machine(), "event_size": EVENT_SIZE,
            "long_size": struct.calcsize("l"), "EVIOCGRAB": EVIOCGRAB,
            "EVIOCGNAME_256": eviocgname(NAME_BYTES), "EVIOCGBIT_EV_KEY_96": eviocgbit(EV_KEY, 96),
            "EVIOCGBIT_0_4": eviocgbit(0, 4)}
