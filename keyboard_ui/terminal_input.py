"""Host fallback input: the terminal in raw mode, its bytes turned into evdev key events.

Used when no evdev keyboard is usable (a host without /dev/input access, an ssh session, tmux).
Every byte sequence becomes the key events a US keyboard would have produced (Shift pressed around
an uppercase letter, Ctrl around a control character), so the rest of the demo (the state
machine in `events.py`, recordings, replay) sees one kind of input only.

| terminal sends | becomes |
|---|---|
| printable ASCII | the key, with Shift when the US layout needs it |
| DEL (0x7f), ^H (0x08) | Backspace (^H is plain Backspace: some serial terminals send it for Backspace) |
| ^W, ESC DEL (Alt+Backspace) | Ctrl+W / Alt+Backspace: delete word |
| TAB, CR/LF | Tab, Enter |
| ESC alone (nothing follows within `ESCAPE_TIMEOUT_S`) | Esc |
| ESC + printable | Alt+key (Alt+1..3 accept a suggestion) |
| ESC [ ... / ESC O x (arrows, function keys) | ignored |
| other control characters ^A..^Z | Ctrl+letter (^C, ^D quit) |
| non-ASCII (UTF-8) | ignored: no US key types it |
"""
from __future__ import annotations

import os
import select
import sys
import termios

from keyboard_ui import keymap as K

ESCAPE_TIMEOUT_S = 0.05  # a lone ESC: the terminal sends escape sequences in one write

KeyEvent = tuple[int, int, int]  # (type, code, value)

# letters in keyboard order: ^A is Ctrl + the key that types "a"
_CTRL_BYTE_TO_CODE = {i + 1: K.CHAR_TO_KEY[chr(ord("a") + i)][0] for i in range(26)}


def _tap(code: int, *modifiers: int) -> list[KeyEvent]:
    """Press and release `code` with `modifiers` held, each key event followed by SYN_REPORT."""
    events: list[KeyEvent] = []
    for key, value in [(m, K.KEY_PRESS) for m in modifiers] + [(code, K.KEY_PRESS), (code, K.KEY_RELEASE)] + [
        (m, K.KEY_RELEASE) for m in reversed(modifiers)
    ]:
        events.append((K.EV_KEY, key, value))
        events.append((K.EV_SYN, K.SYN_REPORT, 0))
    return events


def _char_events(char: str, *modifiers: int) -> list[KeyEvent]:
    code, needs_shift = K.CHAR_TO_KEY[char]
    return _tap(code, *modifiers, *((K.KEY_LEFTSHIFT,) if needs_shift else ()))


class TerminalKeyDecoder:
    """Stateful: an escape sequence may arrive split over reads. Pure (bytes in, events out)."""

    def __init__(self) -> None:
        self._pending = b""  # bytes of an unfinished escape sequence

    @property
    def waiting_for_escape(self) -> bool:
        return bool(self._pending)

    def feed(self, data: bytes) -> list[KeyEvent]:
        buffer = self._pending + data
        self._pending = b""
        events: list[KeyEvent] = []
        i = 0
        while i < len(buffer):
            byte = buffer[i]
            if byte == 0x1B:
                consumed, sequence_events = self._escape(buffer[i:])
                if consumed == 0:  # incomplete: wait for more bytes or the timeout
                    self._pending = buffer[i:]
                    break
                events += sequence_events
                i += consumed
                continue
            events += self._single(byte)
            i += 1
        return events

    def flush_escape(self) -> list[KeyEvent]:
        """The escape timeout passed: a pending lone ESC is the Esc key."""
        pending, self._pending = self._pending, b""
        if pending == b"\x1b":
            return _tap(K.KEY_ESC)
        return []  # an unfinished CSI sequence: drop it

    def _escape(self, buffer: bytes) -> tuple[int, list[KeyEvent]]:
        """(bytes consumed, events) for a buffer starting with ESC; consumed 0 = incomplete."""
        if len(buffer) == 1:
            return 0, []
        second = buffer[1]
        if second == ord("["):  # CSI: parameters then a final byte in 0x40..0x7e
            for j in range(2, len(buffer)):
                if 0x40 <= buffer[j] <= 0x7E:
                    return j + 1, []
            return 0, []
        if second == ord("O"):  # SS3: one more byte (F1-F4, arrows in application mode)
            return (3, []) if len(buffer) >= 3 else (0, [])
        if second == 0x7F:
            return 2, _tap(K.KEY_BACKSPACE, K.KEY_LEFTALT)
        if second == 0x1B:
            return 1, _tap(K.KEY_ESC)  # ESC ESC: the first is a lone Esc
        char = chr(second)
        if char in K.CHAR_TO_KEY:
            return 2, _char_events(char, K.KEY_LEFTALT)
        return 2, []

    @staticmethod
    def _single(byte: int) -> list[KeyEvent]:
        if byte in (0x7F, 0x08):
            return _tap(K.KEY_BACKSPACE)
        if byte == 0x09:
            return _tap(K.KEY_TAB)
        if byte in (0x0A, 0x0D):
            return _tap(K.KEY_ENTER)
        if byte in _CTRL_BYTE_TO_CODE:
            return _tap(_CTRL_BYTE_TO_CODE[byte], K.KEY_LEFTCTRL)
        if byte < 0x80 and chr(byte) in K.CHAR_TO_KEY:
            return _char_events(chr(byte))
        return []  # other control bytes, UTF-8 bytes of non-ASCII characters


class RawTerminal:
    """The terminal on `fd` in raw-ish mode (no echo, no line editing, no signals from ^C).

    Output post-processing stays on. Restores the saved mode on `restore()`/exit, idempotently.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list | None = None

    def __enter__(self) -> "RawTerminal":
        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[0] &= ~(termios.ICRNL | termios.IXON | termios.INLCR | termios.IGNCR)  # iflag
        mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)  # lflag
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        return self

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None

    def __exit__(self, *exc_info) -> None:
        self.restore()


class TerminalKeySource:
    """Reads key events from a terminal fd; `poll(timeout_s)` returns the events available."""

    name = "terminal"

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.decoder = TerminalKeyDecoder()
        self.closed = False  # the terminal went away (EOF)

    def poll(self, timeout_s: float) -> list[KeyEvent]:
        if self.decoder.waiting_for_escape:
            timeout_s = min(timeout_s, ESCAPE_TIMEOUT_S)
        readable, _, _ = select.select([self.fd], [], [], timeout_s)
        if not readable:
            return self.decoder.flush_escape()
        data = os.read(self.fd, 256)
        if not data:
            self.closed = True
            return self.decoder.flush_escape()
        return self.decoder.feed(data)
