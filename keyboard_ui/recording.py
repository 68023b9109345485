"""Recorded input sessions: JSON Lines, one input event per line.

    {"sec": 0.512, "type": 1, "code": 30, "value": 1}

`sec` is seconds since the recording started; `type`/`code`/`value` are evdev numbers. Terminal
input is converted to the equivalent evdev key events before it is recorded, so a recording from
a USB keyboard on the board and one from a host terminal replay the same way. Blank lines and
lines starting with `#` are ignored (comments in hand-written test recordings).
"""
from __future__ import annotations

import json
import os
import stat
from typing import IO, NamedTuple

from runtime.errors import UserError


class InputEvent(NamedTuple):
    """One evdev-like event; `sec` is seconds since the session started."""

    sec: float
    type: int
    code: int
    value: int


MAX_RECORDING_BYTES = 64 << 20  # ~1M events; a replay file larger than this is refused (reads are capped)
MAX_EVENT_SEC = 7 * 24 * 3600.0  # a session longer than a week is not a recording (--realtime sleeps to it)


class RecordingError(UserError):
    """A replay file that cannot be read."""


def check_record_target(record: str, replay: str | None = None, journal: str | None = None) -> None:
    """`--record FILE` must not be the replay being read nor the journal (it would truncate them)."""
    for option, other in (("--replay", replay), ("--journal", journal)):
        if other is None:
            continue
        same = os.path.abspath(record) == os.path.abspath(other)
        try:
            same = same or os.path.samefile(record, other)
        except OSError:
            pass  # one of them does not exist yet: not the same file
        if same:
            raise UserError(f"--record {record} is the {option} file: recording would truncate it; "
                            "pick another path")


class EventRecorder:
    """Appends events to a JSON Lines file, flushed per line so a crash keeps what was typed."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: IO[str] = open(path, "w", encoding="utf-8", buffering=1)
        except OSError as error:
            raise UserError(f"--record {path}: cannot write ({error.strerror}); pick a writable path") from error

    def write(self, event: InputEvent) -> None:
        self._file.write(
            json.dumps({"sec": round(event.sec, 6), "type": event.type, "code": event.code, "value": event.value})
            + "\n"
        )

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _int_field(record: dict, name: str, path: str, line_number: int, low: int, high: int) -> int:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RecordingError(
            f"{path}:{line_number}: field {name!r} must be an integer in [{low}, {high}], got {str(value)[:40]}; "
            'expected {"sec": float, "type": int, "code": int, "value": int}'
        )
    return value


def read_recording(path: str) -> list[InputEvent]:
    """All events of a recording; a malformed line raises `RecordingError` naming its number."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
                raise RecordingError(f"--replay {path}: not a regular file (a device or directory); "
                                     "pass a recording written by --record")
            raw = file.read(MAX_RECORDING_BYTES + 1)  # capped: a pipe or a huge file cannot exhaust memory
        if len(raw) > MAX_RECORDING_BYTES:
            raise RecordingError(f"--replay {path}: larger than {MAX_RECORDING_BYTES >> 20} MiB; "
                                 "split the recording")
        lines = raw.decode("utf-8").splitlines()
    except IsADirectoryError:
        raise RecordingError(f"--replay {path}: is a directory; pass a recording written by --record") from None
    except OSError as error:
        raise RecordingError(f"--replay {path}: cannot read ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise RecordingError(f"--replay {path}: not UTF-8 text ({error.reason})") from error
    events: list[InputEvent] = []
    previous_sec = 0.0
    for line_number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise RecordingError(f"{path}:{line_number}: not a JSON object ({error.msg})") from error
        except (ValueError, RecursionError) as error:  # a 5,000-digit number, 100,000 nested arrays
            raise RecordingError(f"{path}:{line_number}: not a JSON object ({str(error)[:80]})") from None
        if not isinstance(record, dict):
            raise RecordingError(f"{path}:{line_number}: not a JSON object")
        sec = record.get("sec")
        if (isinstance(sec, bool) or not isinstance(sec, (int, float))
                or not 0 <= sec <= MAX_EVENT_SEC):
            raise RecordingError(f"{path}:{line_number}: field 'sec' must be a number in [0, {MAX_EVENT_SEC:.0f}] "
                                 f"(seconds since the recording started), got {str(sec)[:40]}")
        if sec < previous_sec:
            raise RecordingError(f"{path}:{line_number}: 'sec' goes backwards ({sec} < {previous_sec})")
        previous_sec = float(sec)
        events.append(
            InputEvent(
                float(sec),
                _int_field(record, "type", path, line_number, 0, 0xFFFF),  # __u16 in struct input_event
                _int_field(record, "code", path, line_number, 0, 0xFFFF),
                _int_field(record, "value", path, line_number, -(2**31), 2**31 - 1),  # __s32
            )
        )
    return events
