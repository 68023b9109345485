"""Test doubles for the keyboard_ui tests (test-only; never imported by the product).

- `FakeSession`: a small deterministic stand-in for `runtime.engine`'s Session (fixed vocabulary,
  prefix-filtered suggestions), so keyboard_ui can be tested before/without a model.
- `FakeInputDevice`: an `evdev.InputDevice` look-alike backed by a pipe (so `select` works) that
  can be unplugged (reads raise OSError(ENODEV)) to test hotplug.
- Run as a script, this file is `edgetype` with `runtime.engine` replaced by the fake engine when
  EDGETYPE_TEST_FAKE_ENGINE=1: the tmux end-to-end test and the crash test start it that way.
  TODO(lead): once runtime/engine.py has a test bundle, point those tests at the real engine
  (`edgetype demo --backend numpy --bundle ...`, see E2E_USE_REAL_ENGINE in test_keyboard_e2e.py).

The two tests at the bottom pin the fake to the engine contract the demo codes against.
"""
from __future__ import annotations

import errno
import os
import re
import sys
import types
from dataclasses import dataclass

_WORD_AT_END = re.compile(r"[A-Za-z0-9']*$")

# (word, probability): fixed, so suggestions are deterministic
FAKE_VOCABULARY = [
    ("the", 0.20), ("hello", 0.10), ("help", 0.08), ("world", 0.07), ("quick", 0.05), ("brown", 0.05),
    ("fox", 0.04), ("held", 0.03), ("helmet", 0.02), ("quiet", 0.02), ("wonder", 0.01), ("work", 0.01),
]


@dataclass(frozen=True)
class FakeSuggestion:
    word: str
    prob: float


class _FakeText:
    """The engine's `text_buffer` view (runtime/session_text.py) over the fake's plain string."""

    def __init__(self, owner: "FakeSession") -> None:
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner.text)

    def slice(self, start: int, end: int) -> str:
        return self.owner.text[start:end]

    def line_start(self, pos: int) -> int:
        return self.owner.text.rfind("\n", 0, pos) + 1


class FakeSession:
    """Deterministic Session double: suggestions are vocabulary words extending the partial word."""

    def __init__(self, backend: str = "onnx") -> None:
        self.backend_name = f"fake-{backend}"
        self.text = ""
        self.text_buffer = _FakeText(self)
        self._last: list[FakeSuggestion] = []
        self.calls: list[tuple] = []
        self.closed = False

    def _partial(self) -> str:
        return _WORD_AT_END.search(self.text).group(0)

    def insert(self, text: str) -> None:
        self.calls.append(("insert", text))
        self.last_edit = (len(self.text), text)
        self.text += text

    def backspace(self) -> None:
        self.calls.append(("backspace",))
        self.text = self.text[:-1]
        self.last_edit = (len(self.text), "")

    def delete_word(self) -> None:
        """Trailing separators, then the word before them (as Ctrl+Backspace in editors)."""
        self.calls.append(("delete_word",))
        stripped = self.text.rstrip(" \n")
        self.text = stripped[: len(stripped) - len(_WORD_AT_END.search(stripped).group(0))]
        self.last_edit = (len(self.text), "")

    def suggestions(self, k: int = 3) -> list[FakeSuggestion]:
        prefix = self._partial()
        words = [(w, p) for w, p in FAKE_VOCABULARY if w.startswith(prefix.lower())]
        words.sort(key=lambda wp: -wp[1])
        cased = [w.capitalize() if prefix[:1].isupper() else w for w, _ in words]
        self._last = [FakeSuggestion(w, p) for w, (_, p) in zip(cased, words)][:k]
        return list(self._last)

    def accept(self, i: int) -> str:
        self.calls.append(("accept", i))
        word = self._last[i].word
        partial = self._partial()
        self.last_edit = (len(self.text) - len(partial), word)
        self.text = self.text[: len(self.text) - len(partial)] + word
        return word[len(partial):]

    def reset(self) -> None:
        self.text = ""

    def close(self) -> None:
        self.closed = True


def open_session(bundle=None, backend="onnx") -> FakeSession:
    return FakeSession(backend)


def fake_engine_module() -> types.ModuleType:
    """A stand-in `runtime.engine` module whose `open_session` returns a FakeSession."""
    module = types.ModuleType("runtime.engine")
    module.open_session = open_session
    module.__file__ = __file__
    return module


def install_fake_engine(monkeypatch=None) -> None:
    """Make `from runtime import engine` give the fake; with a monkeypatch, undone at teardown."""
    import runtime

    module = fake_engine_module()
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, "runtime.engine", module)
        monkeypatch.setattr(runtime, "engine", module, raising=False)
    else:  # the script entry point below: for the whole process
        sys.modules["runtime.engine"] = module
        runtime.engine = module


class _RawEvent:
    def __init__(self, sec: int, usec: int, event_type: int, code: int, value: int) -> None:
        self.sec, self.usec, self.type, self.code, self.value = sec, usec, event_type, code, value


class FakeInputDevice:
    """An evdev.InputDevice look-alike: `push()` queues events, `unplug()` makes reads fail."""

    def __init__(self, path: str, name: str, capabilities: dict, grab_error: int | None = None) -> None:
        self.path, self.name = path, name
        self._capabilities = capabilities
        self._read_fd, self._write_fd = os.pipe()
        self._queue: list[_RawEvent] = []
        self.grabbed = False
        self.closed = False
        self.unplugged = False
        self.leds: dict[int, int] = {}
        self._grab_error = grab_error

    def fileno(self) -> int:
        return self._read_fd

    def capabilities(self) -> dict:
        return self._capabilities

    def grab(self) -> None:
        if self._grab_error:
            raise OSError(self._grab_error, os.strerror(self._grab_error))
        self.grabbed = True

    def ungrab(self) -> None:
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        self.grabbed = False

    def set_led(self, led: int, value: int) -> None:
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        self.leds[led] = value

    def push(self, events: list[tuple[int, int, int]], wall_s: float = 1000.0) -> None:
        for event_type, code, value in events:
            self._queue.append(_RawEvent(int(wall_s), int((wall_s % 1) * 1e6), event_type, code, value))
        os.write(self._write_fd, b"x")

    def unplug(self) -> None:
        self.unplugged = True
        os.write(self._write_fd, b"x")  # the kernel wakes readers of a vanished device

    def read(self):
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        os.read(self._read_fd, 4096)
        queue, self._queue = self._queue, []
        return iter(queue)

    def close(self) -> None:
        # the pipe stays open: a FakeBus hands the same object out again when it is re-opened
        self.closed = True


# -- the fake pinned to the contract the demo codes against ------------------------------------
def test_fake_session_follows_the_engine_contract():
    session = open_session(backend="numpy")
    session.insert("Hel")
    words = [s.word for s in session.suggestions(3)]
    assert words == ["Hello", "Help", "Held"]
    assert session.accept(1) == "p" and session.text == "Help"
    session.insert(" wo")
    session.delete_word()
    assert session.text == "Help "
    session.backspace()
    assert session.text == "Help" and session.backend_name == "fake-numpy"


def test_fake_device_unplug_raises_enodev():
    device = FakeInputDevice("/dev/input/event9", "kbd", {1: [30]})
    device.unplug()
    try:
        device.read()
    except OSError as error:
        assert error.errno == errno.ENODEV
    else:
        raise AssertionError("read after unplug must raise ENODEV")
    finally:
        device.close()


if __name__ == "__main__":
    if os.environ.get("EDGETYPE_TEST_FAKE_ENGINE") == "1":
        install_fake_engine()
    from runtime.cli import main

    sys.exit(main(sys.argv[1:]))
