"""evdev keyboards: discovery by capability, exclusive grab, hotplug, Caps Lock LED.

The board has no udev (no `/dev/input/by-id`), so a keyboard is any `/dev/input/event*` whose
EV_KEY capability has all of KEY_A..KEY_Z (mice, power buttons and IR receivers do not). While the
demo runs the keyboards are grabbed (EVIOCGRAB) so keys do not also reach a console login;
`release()` ungrabs and closes them and is called from `finally` (the demo turns SIGTERM/SIGHUP
into an exception, so that runs on signals too).

Hotplug without udev: the event directory is rescanned every `rescan_interval_s`; a device that
fails a read with ENODEV (unplugged) is dropped, its held keys forgotten, and the text stays in the
session. A keyboard plugged back in shows up on the next rescan (with the same or a new eventN).
`select.select` is used, not epoll: the Duo V1 kernel is built with EPOLL=n.

Two readers: python-evdev when it imports, else keyboard_ui/evdev_stdlib.py (standard library
only: the Milk-V V2 image has no python-evdev); `EDGETYPE_EVDEV_READER=stdlib` or `python-evdev`
chooses one (a chosen python-evdev that does not import is an error, not a fallback).
`evdev_reader()` says which one runs; the demo prints it. `open_device` and `list_event_paths` can
be replaced, which is how the tests drive this loop with fake devices.
"""
from __future__ import annotations

import errno
import glob
import os
import select
import sys
import time
from typing import Callable, Iterable, Protocol

from keyboard_ui import keymap as K
from keyboard_ui.recording import InputEvent
from runtime.errors import UserError

EVENT_GLOB = "/dev/input/event*"


class InputDeviceLike(Protocol):
    """The part of `evdev.InputDevice` we use."""

    path: str
    name: str

    def fileno(self) -> int: ...
    def capabilities(self) -> dict: ...
    def grab(self) -> None: ...
    def ungrab(self) -> None: ...
    def read(self) -> Iterable: ...  # events with .sec .usec .type .code .value
    def set_led(self, led_num: int, value: int) -> None: ...
    def close(self) -> None: ...


READERS = ("python-evdev", "stdlib")


def evdev_reader() -> str:
    """'python-evdev' when it is importable (or EDGETYPE_EVDEV_READER says so), else 'stdlib'."""
    wanted = os.environ.get("EDGETYPE_EVDEV_READER", "")
    if wanted and wanted not in READERS:
        raise UserError(f"EDGETYPE_EVDEV_READER={wanted}: use one of {', '.join(READERS)}")
    if wanted == "stdlib":
        return "stdlib"
    try:
        import evdev  # noqa: F401
    except ImportError as error:
        if wanted == "python-evdev":
            raise UserError("EDGETYPE_EVDEV_READER=python-evdev but python-evdev does not import "
                            f"({error}): install it or unset the variable") from error
        return "stdlib"
    return "python-evdev"


def _open_evdev_device(path: str) -> InputDeviceLike:
    if evdev_reader() == "python-evdev":
        import evdev

        return evdev.InputDevice(path)
    from keyboard_ui.evdev_stdlib import StdlibInputDevice

    return StdlibInputDevice(path)


def _list_event_paths() -> list[str]:
    return sorted(glob.glob(EVENT_GLOB), key=lambda p: (len(p), p))


def is_keyboard(capabilities: dict) -> bool:
    """A device with EV_KEY and every letter key A..Z."""
    return K.LETTER_CODES.issubset(set(capabilities.get(K.EV_KEY, ())))


class KeyboardSet:
    """The grabbed keyboards: one (`wanted_path`) or every keyboard found, with hotplug.

    `poll(timeout_s)` returns `(source_path, InputEvent)` pairs and `gone` lists paths unplugged
    since the last poll (the caller tells the key decoder to forget their held keys).
    """

    def __init__(
        self,
        wanted_path: str | None = None,
        open_device: Callable[[str], InputDeviceLike] | None = None,
        list_event_paths: Callable[[], list[str]] | None = None,
        rescan_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        log: Callable[[str], object] = lambda message: print(message, file=sys.stderr),
    ) -> None:
        self.wanted_path = wanted_path
        # resolved now, not at definition time, so tests can substitute the module functions
        self._open_device = open_device or _open_evdev_device
        self.reader = "custom" if open_device else evdev_reader()  # which evdev reader runs
        self._list_event_paths = list_event_paths or _list_event_paths
        self.rescan_interval_s = rescan_interval_s
        self._clock = clock
        self._log = log
        self.devices: dict[str, InputDeviceLike] = {}  # path -> grabbed keyboard
        self._not_keyboards: set[str] = set()  # paths checked and rejected (mice etc.)
        self._failed: set[str] = set()  # paths that could not be opened (logged once)
        self._next_rescan = 0.0
        self.caps_lock_on = False
        self.started_wall_s = wall_clock()  # events' `sec` is relative to this (CLOCK_REALTIME)
        self.gone: list[str] = []
        self._quiet_failures: list[str] | None = None  # collects open errors during the first scan

    # -- discovery ------------------------------------------------------------------------------
    def _try_add(self, path: str, strict: bool) -> bool:
        try:
            device = self._open_device(path)
        except OSError as error:
            if strict:
                raise UserError(f"--keyboard {path}: cannot open ({error.strerror}); run as root or check the path") from error
            self._note_failure(path, error)
            return False
        try:
            if not is_keyboard(device.capabilities()):
                device.close()
                if strict:
                    raise UserError(f"--keyboard {path}: {device.name!r} is not a keyboard (no KEY_A..KEY_Z)")
                self._not_keyboards.add(path)
                return False
            device.grab()
        except OSError as error:
            device.close()
            if strict and error.errno != errno.ENODEV:
                raise UserError(
                    f"--keyboard {path}: cannot grab ({error.strerror}); is another program holding it?"
                ) from error
            self._note_failure(path, error)
            return False
        self._failed.discard(path)
        self.devices[path] = device
        self._set_led(device)
        self._log(f"edgetype: keyboard {path} ({device.name}; reader {self.reader})")
        return True

    def _note_failure(self, path: str, error: OSError) -> None:
        if path in self._failed:
            return  # logged once per appearance of the path
        self._failed.add(path)
        if self._quiet_failures is not None:
            self._quiet_failures.append(error.strerror or str(error))
        else:
            self._log(f"edgetype: skipping {path}: {error.strerror}")

    def open(self) -> list[str]:
        """Open and grab the keyboard(s); UserError when `wanted_path` is not a usable keyboard."""
        if self.wanted_path:
            self._try_add(self.wanted_path, strict=True)
        else:
            self._quiet_failures = []
            try:
                self.rescan()
            finally:
                failures, self._quiet_failures = self._quiet_failures, None
            if failures:  # e.g. a desktop host without read access: one line, not one per device
                reasons = ", ".join(sorted(set(failures)))
                self._log(f"edgetype: {len(failures)} input device(s) not usable ({reasons}); "
                          "keyboards need read access (root, or the `input` group)")
        self._next_rescan = self._clock() + self.rescan_interval_s
        return list(self.devices)

    def rescan(self) -> None:
        """Pick up keyboards plugged in since the last scan."""
        present = set(self._list_event_paths())
        # a path that vanished may come back as a different device: forget what we knew of it
        self._not_keyboards &= present
        self._failed &= present
        candidates = [self.wanted_path] if self.wanted_path else sorted(present)
        for path in candidates:
            if path in present and path not in self.devices and path not in self._not_keyboards:
                self._try_add(path, strict=False)

    # -- reading --------------------------------------------------------------------------------
    def _drop(self, path: str, reason: str) -> None:
        device = self.devices.pop(path, None)
        if device is None:
            return
        try:
            device.close()
        except OSError:
            pass
        self.gone.append(path)
        self._log(f"edgetype: keyboard {path} {reason}; waiting for a keyboard (text kept)")

    def poll(self, timeout_s: float) -> list[tuple[str, InputEvent]]:
        self.gone = []
        now = self._clock()
        if now >= self._next_rescan:
            self.rescan()
            self._next_rescan = now + self.rescan_interval_s
        timeout_s = max(0.0, min(timeout_s, self._next_rescan - now))
        by_fd = {device.fileno(): path for path, device in self.devices.items()}
        if not by_fd:
            time.sleep(timeout_s)
            return []
        try:
            readable, _, _ = select.select(list(by_fd), [], [], timeout_s)
        except (OSError, ValueError):
            readable = list(by_fd)  # a closed fd: let the read below find which
        events: list[tuple[str, InputEvent]] = []
        for fd in readable:
            path = by_fd[fd]
            device = self.devices[path]
            try:
                for raw in device.read():
                    sec = raw.sec + raw.usec / 1e6 - self.started_wall_s
                    events.append((path, InputEvent(max(sec, 0.0), raw.type, raw.code, raw.value)))
            except BlockingIOError:
                pass
            except OSError as error:
                if error.errno in (errno.ENODEV, errno.EIO, errno.EBADF):
                    self._drop(path, "unplugged")
                else:
                    raise
        return events

    # -- LEDs and release -----------------------------------------------------------------------
    def _set_led(self, device: InputDeviceLike) -> None:
        try:
            if K.LED_CAPSL in device.capabilities().get(K.EV_LED, ()):
                device.set_led(K.LED_CAPSL, 1 if self.caps_lock_on else 0)
        except OSError:
            pass  # unplugged between events: the next poll drops it

    def set_caps_lock(self, on: bool) -> None:
        self.caps_lock_on = on
        for device in list(self.devices.values()):
            self._set_led(device)

    def release(self) -> None:
        """Caps Lock LED off, ungrab and close every keyboard; idempotent, never raises OSError."""
        for path in list(self.devices):
            device = self.devices.pop(path)
            for step in (lambda: device.set_led(K.LED_CAPSL, 0), device.ungrab, device.close):
                try:
                    step()
                except (OSError, AttributeError):
                    pass


def describe_keyboards(list_event_paths: Callable[[], list[str]] | None = None,
                       open_device: Callable[[str], InputDeviceLike] | None = None) -> list[dict]:
    """For `--list-keyboards`: every event device, whether it is a keyboard, without grabbing."""
    list_event_paths = list_event_paths or _list_event_paths
    open_device = open_device or _open_evdev_device
    found = []
    for path in list_event_paths():
        try:
            device = open_device(path)
        except OSError as error:
            found.append({"path": path, "name": None, "keyboard": False, "error": error.strerror})
            continue
        try:
            found.append({"path": path, "name": device.name, "keyboard": is_keyboard(device.capabilities()),
                          "reader": "custom" if open_device is not _open_evdev_device else evdev_reader()})
        finally:
            device.close()
    return found
