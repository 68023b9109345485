"""The serial harness against fakes: pyserial's loop:// and a scripted port (no board, no pty)."""
from __future__ import annotations

import re
import threading
import time

import pytest

from board_tests.console import (BoardConsole, BoardError, BoardLineNoise, BoardRebooted,
                                 BoardTimeout, open_port, text_ratio)
from board_tests.suite import SuiteReport, parse_runner_output


class ScriptedPort:
    """A pyserial-like port whose 'board' is a function from each written line to a reply.

    `respond(line) -> bytes | None`; replies are queued and read back in small pieces, with
    `chatter` (kernel messages, noise) interleaved, as a real console would deliver them.
    """

    def __init__(self, respond, chatter: bytes = b""):
        self.respond = respond
        self.pending = bytearray(chatter)
        self.written = bytearray()
        self.lock = threading.Lock()

    @property
    def in_waiting(self):
        return len(self.pending)

    def write(self, data: bytes):
        self.written += data
        for line in re.findall(rb"([^\r\n]*)[\r\n]", bytes(data)):  # each terminated line
            reply = self.respond(line)
            if reply:
                with self.lock:
                    self.pending += reply
        return len(data)

    def read(self, n: int) -> bytes:
        with self.lock:
            piece = bytes(self.pending[: min(n, 7)])  # small pieces: patterns span reads
            del self.pending[: len(piece)]
        if not piece:
            time.sleep(0.01)
        return piece

    def close(self):
        pass


PROMPT = b"[root@milkv-duo]~# "


def shell_board(on_command=None):
    """A logged-in shell: answers the sentinel framing like busybox sh would."""

    def respond(line: bytes):
        if not line.strip():
            return b"\r\n" + PROMPT
        match = re.match(rb"echo (__ET_\w+_)''B__; (.*); echo (__ET_\w+_)\$\?__$", line)
        if not match:
            return None
        command = match.group(2).decode()
        output, code = (on_command or (lambda c: (b"", 0)))(command)
        if output is None:  # the board went away mid-command
            return match.group(1) + b"B__\r\n" + code
        return (match.group(1) + b"B__\r\n" + output + match.group(3) + str(code).encode()
                + b"__\r\n" + PROMPT)

    return respond


def test_text_ratio_tells_text_from_noise():
    assert text_ratio(b"[root@milkv-duo]~# ls\r\n") == 1.0
    assert text_ratio(bytes([0x80, 0x00, 0xFE, 0x1C] * 20)) < 0.3


def test_run_returns_output_and_exit_code_through_kernel_chatter():
    def on_command(command):
        if command == "uname -m":
            return b"[  12.3] random: crng init done\r\nriscv64\r\n", 0
        return b"sh: nosuch: not found\r\n", 127

    port = ScriptedPort(shell_board(on_command), chatter=b"\x00\r\n" + PROMPT)
    console = BoardConsole(port, name="fake")
    console.login(timeout_s=3)
    result = console.run("uname -m", timeout_s=3)
    assert result.exit_code == 0
    assert result.output.strip().splitlines()[-1] == "riscv64"
    failed = console.run("nosuch", timeout_s=3)
    assert failed.exit_code == 127 and "not found" in failed.output
    with pytest.raises(BoardError, match="exited 127"):
        console.run("nosuch", timeout_s=3, check=True)


def test_login_answers_login_and_password_prompts():
    state = {"stage": "login", "user": None}

    def respond(line):
        if state["stage"] == "login":
            if line == b"root":
                state["stage"] = "password"
                return b"\r\nPassword: "
            return b"\r\nmilkv-duo login: "
        if state["stage"] == "password":
            state["stage"] = "shell" if line == b"milkv" else "login"
            return b"\r\n" + PROMPT if line == b"milkv" else b"\r\nLogin incorrect\r\nmilkv-duo login: "
        return shell_board()(line)

    console = BoardConsole(ScriptedPort(respond), name="fake")
    console.login(timeout_s=3)
    assert console.logged_in and state["stage"] == "shell"
    assert b"root\r" in console.port.written and b"milkv\r" in console.port.written

    state["stage"] = "login"
    refused = BoardConsole(ScriptedPort(respond), name="fake", password="wrong")
    with pytest.raises(BoardError, match="refused"):
        refused.login(timeout_s=3)


def test_silent_loop_port_times_out_with_a_deadline():
    port = open_port("loop://")
    console = BoardConsole(port, name="loop://")
    started = time.monotonic()
    with pytest.raises(BoardTimeout, match="no login or shell prompt"):
        console.login(timeout_s=1.5)
    assert time.monotonic() - started < 4.0
    port.close()


def test_garbage_on_loop_port_is_reported_as_line_noise():
    port = open_port("loop://")
    port.write(bytes([0x80, 0xF0, 0x00, 0xFE, 0x1C, 0x78]) * 200)  # what 9600 baud looks like
    console = BoardConsole(port, name="loop://")
    started = time.monotonic()
    with pytest.raises(BoardLineNoise, match="garbage on the line"):
        console.login(timeout_s=1.5)
    assert time.monotonic() - started < 4.0
    port.close()


def test_reboot_in_the_middle_of_a_command_is_reported():
    def on_command(command):
        if command == "python3 -m board_tests.onboard.runner":
            return None, (b'ET-RESULT {"nodeid": "a::b", "outcome": "passed"}\r\n'
                          b"\r\nU-Boot 2021.10 (Mar 02 2024)\r\nDRAM: 256 MiB\r\n")
        return b"", 0

    console = BoardConsole(ScriptedPort(shell_board(on_command)), name="fake")
    console.login(timeout_s=3)
    started = time.monotonic()
    with pytest.raises(BoardRebooted, match="rebooted") as caught:
        console.run("python3 -m board_tests.onboard.runner", timeout_s=30)
    assert time.monotonic() - started < 5.0  # seen at once, not at the 30 s deadline
    assert "ET-RESULT" in caught.value.partial_output
    assert not console.logged_in


def test_command_timeout_sends_ctrl_c_and_keeps_partial_output():
    def on_command(command):
        if command == "sleep 100":
            return None, b"started\r\n"
        return b"", 0

    port = ScriptedPort(shell_board(on_command))
    console = BoardConsole(port, name="fake")
    console.login(timeout_s=3)
    with pytest.raises(BoardTimeout, match="timed out after 1 s") as caught:
        console.run("sleep 100", timeout_s=1.0)
    assert port.written.endswith(b"\x03")
    assert "started" in caught.value.partial_output


def test_multi_line_commands_are_refused():
    console = BoardConsole(ScriptedPort(shell_board()), name="fake")
    with pytest.raises(ValueError):
        console.run("echo a\necho b")


def test_runner_output_parsing_counts_and_detects_lost_lines():
    text = "\r\n".join([
        'ET-INFO {"board": "board", "backend": "tpu"}',
        'ET-RESULT {"nodeid": "t.py::a", "outcome": "passed", "seconds": 0.1}',
        "[ 99.1] usb 1-1: new full-speed USB device",
        'ET-RESULT {"nodeid": "t.py::b", "outcome": "failed", "message": "x"}',
        'ET-MEASURE {"name": "decode_step_ms_p50", "value": 12.5, "unit": "ms"}',
        'ET-RESULT {"nodeid": "t.py::c", "outc',  # mangled on the wire
        'ET-SUMMARY {"passed": 1, "failed": 1, "skipped": 1, "error": 0}',
    ])
    report = SuiteReport(port="fake")
    parse_runner_output(text, report)
    assert (report.count("passed"), report.count("failed")) == (1, 1)
    assert report.measures[0]["value"] == 12.5
    assert report.board_error and "lost on the wire" in report.board_error
    assert not report.ok
    assert report.to_json()["passed"] == 1


def test_a_clean_run_is_ok_and_summarised_like_pytest():
    report = SuiteReport(port="fake")
    parse_runner_output('ET-RESULT {"nodeid": "t.py::a", "outcome": "passed"}\n'
                        'ET-RESULT {"nodeid": "t.py::b", "outcome": "skipped", "message": "r"}\n'
                        'ET-SUMMARY {"passed": 1, "failed": 0, "skipped": 1, "error": 0}\n', report)
    assert report.ok
    assert report.summary_text().splitlines()[-1].startswith("==== 1 passed, 1 skipped in")


class RecordingSerial:
    """Stands for a pyserial port: records attribute writes and open() in order."""

    def __init__(self, url, **kwargs):
        self.events = [("created", url, tuple(sorted(kwargs)))]
        self.is_open = not kwargs.get("do_not_open", False)
        if self.is_open:
            self.events.append(("open",))

    def __setattr__(self, name, value):
        if name not in ("events", "is_open"):
            self.events.append(("set", name, value))
        object.__setattr__(self, name, value)

    def open(self):
        self.events.append(("open",))
        self.is_open = True


def test_the_port_opens_with_dtr_and_rts_low_and_explicit_timeouts(monkeypatch):
    """A DTR/RTS pulse on open resets many boards: both are set low before open()."""
    import serial

    from board_tests import console

    made = []
    monkeypatch.setattr(serial, "serial_for_url",
                        lambda url, **kw: made.append(RecordingSerial(url, **kw)) or made[-1])
    port = console.open_port("/dev/ttyUSB7")
    events = port.events
    opened = events.index(("open",))
    settings = {e[1]: e[2] for e in events[:opened] if e[0] == "set"}
    assert settings.get("dtr") is False and settings.get("rts") is False, events
    assert settings["timeout"] == console.READ_SLICE_S and settings["write_timeout"] > 0
    assert settings["baudrate"] == 115200 and not settings["rtscts"] and not settings["dsrdtr"]
    assert not any(e[0] == "set" and e[1] in ("dtr", "rts") and e[2] for e in events)


def test_a_real_pty_opens_with_dtr_low_and_reads_time_out():
    import os

    from board_tests.console import READ_SLICE_S, open_port

    master, slave = os.openpty()
    try:
        port = open_port(os.ttyname(slave))
        assert port.dtr is False and port.rts is False
        started = time.monotonic()
        assert port.read(10) == b""  # nothing sent: the read returns at its timeout
        assert time.monotonic() - started < READ_SLICE_S + 0.5
        port.close()
    finally:
        os.close(master)
        os.close(slave)
