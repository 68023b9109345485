"""The evdev device loop with fake input devices: discovery, grab, hotplug, LEDs, release on signals.

No /dev/input is needed: `FakeInputDevice` (test_keyboard_fakes.py) stands in for
evdev.InputDevice, backed by a pipe so `select` really waits on it.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import threading

import pytest

from keyboard_ui import devices
from keyboard_ui import keymap as K
from keyboard_ui.app import Demo, run_evdev
from keyboard_ui.devices import KeyboardSet, is_keyboard
from runtime.errors import UserError
from test_keyboard_fakes import FakeInputDevice, FakeSession, install_fake_engine

KEYBOARD_CAPS = {K.EV_KEY: sorted(K.US_LAYOUT) + [K.KEY_ESC, K.KEY_LEFTSHIFT, K.KEY_CAPSLOCK],
                 K.EV_LED: [0, K.LED_CAPSL, 2]}
MOUSE_CAPS = {K.EV_KEY: [0x110, 0x111], K.EV_REL: [0, 1, 8]}
POWER_BUTTON_CAPS = {K.EV_KEY: [116]}


def tap(char):
    code, shift = K.CHAR_TO_KEY[char]
    events = [(K.EV_KEY, code, 1), (K.EV_SYN, 0, 0), (K.EV_KEY, code, 0), (K.EV_SYN, 0, 0)]
    if shift:
        events = [(K.EV_KEY, K.KEY_LEFTSHIFT, 1)] + events + [(K.EV_KEY, K.KEY_LEFTSHIFT, 0)]
    return events


def taps(text):
    return [e for char in text for e in tap(char)]


class FakeBus:
    """/dev/input as a dict of path -> device; plug/unplug like a USB hub."""

    def __init__(self):
        self.present: dict[str, FakeInputDevice] = {}
        self.opened: list[FakeInputDevice] = []

    def plug(self, path, caps, name="kbd", grab_error=None):
        self.present[path] = FakeInputDevice(path, name, caps, grab_error=grab_error)
        return self.present[path]

    def unplug(self, path):
        self.present.pop(path).unplug()

    def open(self, path):
        if path not in self.present:
            raise OSError(errno.ENOENT, "No such file or directory")
        device = self.present[path]
        device.closed = False
        self.opened.append(device)
        return device

    def list(self):
        return sorted(self.present)

    def keyboard_set(self, wanted_path=None, **kwargs):
        return KeyboardSet(wanted_path, open_device=self.open, list_event_paths=self.list,
                           rescan_interval_s=0.0, log=lambda message: None, **kwargs)


def test_a_keyboard_is_found_by_capability():
    assert is_keyboard(KEYBOARD_CAPS)
    assert not is_keyboard(MOUSE_CAPS) and not is_keyboard(POWER_BUTTON_CAPS) and not is_keyboard({})
    bus = FakeBus()
    bus.plug("/dev/input/event0", POWER_BUTTON_CAPS)
    bus.plug("/dev/input/event1", MOUSE_CAPS)
    keyboard = bus.plug("/dev/input/event2", KEYBOARD_CAPS)
    keyboards = bus.keyboard_set()
    assert keyboards.open() == ["/dev/input/event2"]
    assert keyboard.grabbed and keyboard.leds == {K.LED_CAPSL: 0}
    keyboards.release()
    assert not keyboard.grabbed and keyboard.closed and keyboards.devices == {}
    keyboards.release()  # idempotent


def test_an_explicit_device_that_is_not_a_keyboard_or_is_busy_is_a_user_error():
    bus = FakeBus()
    bus.plug("/dev/input/event1", MOUSE_CAPS, name="USB Mouse")
    bus.plug("/dev/input/event3", KEYBOARD_CAPS, grab_error=errno.EBUSY)
    with pytest.raises(UserError, match=r"event1: 'USB Mouse' is not a keyboard"):
        bus.keyboard_set("/dev/input/event1").open()
    with pytest.raises(UserError, match=r"event3: cannot grab"):
        bus.keyboard_set("/dev/input/event3").open()
    with pytest.raises(UserError, match=r"event7: cannot open"):
        bus.keyboard_set("/dev/input/event7").open()
    assert bus.keyboard_set().open() == []  # "all" mode skips the busy one


def test_unplug_mid_read_keeps_the_text_and_a_replugged_keyboard_is_picked_up():
    bus = FakeBus()
    first = bus.plug("/dev/input/event2", KEYBOARD_CAPS)
    keyboards = bus.keyboard_set()
    keyboards.open()
    session = FakeSession()
    demo = Demo(session, input_name="evdev", on_caps_lock=keyboards.set_caps_lock)
    seen = {}

    def replug():
        seen["second"] = bus.plug("/dev/input/event5", KEYBOARD_CAPS)  # back in, as a new eventN

    script = [  # one step before each poll of the device loop
        lambda: first.push([(K.EV_KEY, K.KEY_CAPSLOCK, 1), (K.EV_KEY, K.KEY_CAPSLOCK, 0)] + taps("hi")
                           + [(K.EV_KEY, K.KEY_LEFTSHIFT, 1)]),  # Shift held when the cable is pulled
        lambda: seen.update(leds=dict(first.leds)),
        lambda: bus.unplug("/dev/input/event2"),
        lambda: seen.update(text=session.text, devices=list(keyboards.devices), name=demo.input_name),
        replug,
        lambda: seen.update(leds2=dict(seen["second"].leds), grabbed2=seen["second"].grabbed),
        lambda: seen["second"].push([(K.EV_KEY, K.KEY_CAPSLOCK, 1)] + taps(" there")
                                    + [(K.EV_KEY, K.KEY_ESC, 1)]),
    ]
    real_poll = keyboards.poll

    def scripted_poll(timeout_s):
        assert script, "the demo did not quit at Esc"
        script.pop(0)()
        return real_poll(0.01)

    keyboards.poll = scripted_poll
    run_evdev(demo, keyboards)
    assert seen["leds"] == {K.LED_CAPSL: 1}
    assert seen["text"] == "HI" and seen["devices"] == [] and "no keyboard" in seen["name"]
    assert seen["grabbed2"] and seen["leds2"] == {K.LED_CAPSL: 1}  # Caps Lock carried over
    assert session.text == "HI there"  # the held Shift of the unplugged keyboard did not stick
    assert demo.input_name == "evdev /dev/input/event5" and demo.quit and not script
    keyboards.release()
    assert not seen["second"].grabbed


def test_a_mouse_and_a_second_keyboard_at_the_same_time():
    bus = FakeBus()
    bus.plug("/dev/input/event1", MOUSE_CAPS)
    one = bus.plug("/dev/input/event2", KEYBOARD_CAPS)
    two = bus.plug("/dev/input/event3", KEYBOARD_CAPS)
    keyboards = bus.keyboard_set()
    assert keyboards.open() == ["/dev/input/event2", "/dev/input/event3"]
    session = FakeSession()
    demo = Demo(session, input_name="evdev")
    one.push([(K.EV_KEY, K.KEY_LEFTSHIFT, 1)])
    two.push(taps("ab") + [(K.EV_REL, 0, 4)])
    for _ in range(3):
        for path, event in keyboards.poll(0.01):
            demo.handle(event, source=path)
    assert session.text == "AB"
    keyboards.release()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_the_demo_releases_the_keyboard(monkeypatch, tmp_path, capfd, signum):
    """`edgetype demo` (in-process, fake engine) on a fake keyboard, stopped by a signal mid-run."""
    from keyboard_ui.cli import register
    from keyboard_ui.journal import read_journal_text

    bus = FakeBus()
    keyboard = bus.plug("/dev/input/event2", KEYBOARD_CAPS)
    monkeypatch.setattr(devices, "_open_evdev_device", bus.open)
    monkeypatch.setattr(devices, "_list_event_paths", bus.list)
    install_fake_engine(monkeypatch)
    handlers_before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    keyboard.push([(K.EV_KEY, K.KEY_CAPSLOCK, 1), (K.EV_KEY, K.KEY_CAPSLOCK, 0)] + taps("hello w"))
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signum))  # `kill PID`, service stop, ^C
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(), {})
    args = parser.parse_args(["demo", "--journal", str(tmp_path / "j.txt"), "--restore", "no"])
    timer.start()
    try:
        if signum == signal.SIGINT:  # Python's own KeyboardInterrupt; runtime/cli.py maps it to 130
            with pytest.raises(KeyboardInterrupt):
                args.func(args)
        else:
            assert args.func(args) == 128 + signum
    finally:
        timer.cancel()
    assert not keyboard.grabbed and keyboard.closed and keyboard.leds[K.LED_CAPSL] == 0
    assert {s: signal.getsignal(s) for s in handlers_before} == handlers_before
    assert read_journal_text(str(tmp_path / "j.txt")) == "HELLO W"
    captured = capfd.readouterr()
    assert "input: evdev /dev/input/event2" in captured.err
    assert (f"stopped by signal {signum}" in captured.err) == (signum != signal.SIGINT)
