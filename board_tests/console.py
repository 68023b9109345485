"""The board's serial console as a command runner: log in, find the prompt, run commands.

Works on any pyserial URL (`/dev/ttyUSB0`, `socket://`, `spy://`, `loop://`) or on an object with
pyserial's `read(n)` / `write(b)` / `in_waiting` / `close()`. Every read has a deadline: a silent
board, a board that reboots (U-Boot banner or login prompt in the middle of a command) and line
noise (wrong baud rate) all end in a `BoardError` naming what was seen, never in a hang.

Commands are framed by sentinels so that their output and exit code can be cut out of whatever
else the console prints (kernel messages, echo):
    echo __ET_<nonce>_''B__; <command>; echo __ET_<nonce>_$?__      (one line)
The echo of that line contains `''B` and `$?`, the output contains `B` and the exit code, so the
echo never matches the output patterns.
"""
from __future__ import annotations

import re
import secrets
import sys
import time
from dataclasses import dataclass

from runtime.errors import UserError

DEFAULT_BAUD = 115200
DEFAULT_USER = "root"
DEFAULT_PASSWORD = "milkv"

# A shell prompt at the end of what the board printed: `[root@milkv-duo]~# `, `root@duo:~# `, `# `.
SHELL_PROMPT_RE = re.compile(rb"(?:^|[\r\n])[^\r\n]{0,80}?[#$] ?$")
LOGIN_PROMPT_RE = re.compile(rb"login: ?$")
PASSWORD_PROMPT_RE = re.compile(rb"[Pp]assword: ?$")
LOGIN_FAILED_RE = re.compile(rb"Login incorrect")
# What a board prints when it restarts under us.
REBOOT_RE = re.compile(rb"U-Boot \d|U-Boot SPL|Starting kernel|Linux version \d|\blogin: ?$")
ANSI_RE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")

READ_SLICE_S = 0.05  # longest single blocking read; the deadline is checked between reads


class BoardError(UserError):
    """The board did not behave like a logged-in shell (one line: what was seen, what to do)."""


class BoardTimeout(BoardError):
    """Nothing we waited for arrived before the deadline."""


class BoardRebooted(BoardError):
    """A U-Boot banner or a login prompt appeared while a command was running."""


class BoardDisconnected(BoardError):
    """The serial line (or the socket behind a socket:// URL) went away under us."""


class BoardLineNoise(BoardTimeout):
    """Mostly non-text bytes arrived: wrong baud rate, loose ground, or a second talker."""


@dataclass
class CommandResult:
    command: str
    exit_code: int
    output: str  # stdout+stderr of the command, '\n' line ends
    seconds: float


WRITE_TIMEOUT_S = 10.0


def open_port(url: str, baudrate: int = DEFAULT_BAUD):
    """Open a pyserial URL or device path (8N1, no flow control) with explicit timeouts, without
    a DTR/RTS pulse.

    Many USB-serial adapters wire DTR/RTS to the board's reset or boot pins, and pyserial's
    `serial_for_url(url)` opens at once with both asserted (the most reported pyserial pitfall:
    the board resets when the harness connects). So the port is created unopened, DTR and RTS are
    set low (pyserial applies the stored levels in open()), then opened. Every read returns after
    READ_SLICE_S at most; writes give up after WRITE_TIMEOUT_S."""
    import serial  # pyserial; imported here so that the board-side code never needs it

    try:
        port = serial.serial_for_url(url, do_not_open=True)
        port.baudrate, port.bytesize, port.parity, port.stopbits = baudrate, 8, "N", 1
        port.xonxoff = port.rtscts = port.dsrdtr = False
        port.timeout, port.write_timeout = READ_SLICE_S, WRITE_TIMEOUT_S
        port.dtr = False
        port.rts = False
        port.open()
        return port
    except (serial.SerialException, ValueError, OSError) as error:
        raise UserError(f"cannot open serial port {url}: {error} (check --port and permissions)")


def text_ratio(data: bytes) -> float:
    """Fraction of bytes that look like console text (printable ASCII, CR, LF, TAB, ESC, UTF-8)."""
    if not data:
        return 1.0
    good = sum(1 for b in data if 32 <= b < 127 or b in (9, 10, 13, 27) or b >= 0xC2)
    return good / len(data)


class BoardConsole:
    """A logged-in shell on the other end of a serial line."""

    def __init__(self, port, *, name: str = "?", log=None, user: str = DEFAULT_USER,
                 password: str = DEFAULT_PASSWORD):
        self.port = port
        self.name = name
        self.user = user
        self.password = password
        self.log = log  # file-like: everything received is copied there (e.g. a console log)
        self.buffer = b""  # received bytes not yet consumed by a wait
        self.received_total = 0
        self.logged_in = False

    # ----------------------------------------------------------------- low level: bytes in/out
    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        try:
            self.port.write(data)
            if hasattr(self.port, "flush"):
                self.port.flush()
        except OSError as error:  # serial.SerialException is an OSError (IOError)
            raise BoardDisconnected(f"{self.name}: the serial peer dropped the connection while we wrote "
                                    f"({error}); check the cable / the port's other end and retry") from None

    def _read_some(self) -> bytes:
        try:
            waiting = getattr(self.port, "in_waiting", 0) or 1
            chunk = self.port.read(min(max(waiting, 1), 65536))
        except OSError as error:  # serial.SerialException ("socket disconnected", "device reports readiness...")
            raise BoardDisconnected(f"{self.name}: the serial peer dropped the connection ({error}); "
                                    "check the cable / the port's other end and retry") from None
        if chunk:
            chunk = ANSI_RE.sub(b"", chunk)
            self.received_total += len(chunk)
            if self.log is not None:
                self.log.write(chunk.decode("utf-8", "replace"))
                self.log.flush()
        return chunk

    def wait_for(self, patterns: dict[str, re.Pattern], timeout_s: float, *,
                 what: str, reboot_check: bool = False) -> tuple[str, bytes, re.Match]:
        """Read until one of `patterns` matches the buffer; return (its key, bytes before, match).

        The buffer is consumed up to the end of the match. Raises BoardTimeout (BoardLineNoise when
        what arrived was mostly not text) at the deadline, BoardRebooted when `reboot_check` and a
        reboot marker appears first.
        """
        deadline = time.monotonic() + timeout_s
        noise_window = b""
        scanned = 0  # reboot markers are looked for only in bytes not scanned yet
        while True:
            for key, pattern in patterns.items():
                match = pattern.search(self.buffer)
                if match:
                    before = self.buffer[: match.start()]
                    if reboot_check:
                        self._check_reboot(before[max(0, scanned - 200):], what)
                    self.buffer = self.buffer[match.end():]
                    return key, before, match
            if reboot_check:
                self._check_reboot(self.buffer[max(0, scanned - 200):], what)
                scanned = len(self.buffer)
            if time.monotonic() >= deadline:
                tail = self.buffer[-160:].decode("utf-8", "replace")
                if len(noise_window) >= 32 and text_ratio(noise_window) < 0.75:
                    raise BoardLineNoise(
                        f"{self.name}: garbage on the line while waiting for {what} "
                        f"({len(noise_window)} bytes, {100 * text_ratio(noise_window):.0f}% text): "
                        f"check the baud rate (115200 8N1), the wiring and that nothing else "
                        f"holds the port")
                raise BoardTimeout(
                    f"{self.name}: timed out after {timeout_s:.0f} s waiting for {what}; "
                    f"last output: {tail!r}")
            chunk = self._read_some()
            if chunk:
                self.buffer += chunk
                noise_window = (noise_window + chunk)[-4096:]
                if len(self.buffer) > 4 << 20:  # keep memory bounded on a chatty line
                    cut = len(self.buffer) - (1 << 20)
                    self.buffer = self.buffer[cut:]
                    scanned = max(0, scanned - cut)

    def _check_reboot(self, data: bytes, what: str) -> None:
        match = REBOOT_RE.search(data)
        if match:
            self.logged_in = False
            raise BoardRebooted(
                f"{self.name}: the board rebooted while waiting for {what} (saw "
                f"{match.group(0).decode('utf-8', 'replace').strip()!r}); check power and dmesg, "
                f"then run again")

    def drain(self, quiet_s: float = 0.2, max_s: float = 2.0) -> bytes:
        """Read until the line has been quiet for `quiet_s` (at most `max_s`); return it."""
        end = time.monotonic() + max_s
        last = time.monotonic()
        got = b""
        while time.monotonic() < end and time.monotonic() - last < quiet_s:
            chunk = self._read_some()
            if chunk:
                got += chunk
                last = time.monotonic()
        return got

    # ----------------------------------------------------------------- login and prompt
    def login(self, timeout_s: float = 30.0) -> None:
        """Get to a shell prompt: press enter, answer login/password prompts, then quiet the tty."""
        patterns = {  # order matters: a refusal is followed by a new login prompt
            "failed": LOGIN_FAILED_RE, "login": LOGIN_PROMPT_RE, "password": PASSWORD_PROMPT_RE,
            "shell": SHELL_PROMPT_RE,
        }
        deadline = time.monotonic() + timeout_s
        self.buffer = b""
        self.write(b"\r")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardTimeout(f"{self.name}: no login or shell prompt within {timeout_s:.0f} s")
            try:
                key, _, _ = self.wait_for(patterns, min(left, 3.0), what="a login or shell prompt")
            except BoardLineNoise:
                raise
            except BoardTimeout as error:
                if time.monotonic() >= deadline:
                    raise BoardTimeout(f"{self.name}: no login or shell prompt within "
                                       f"{timeout_s:.0f} s ({error}); is the board powered and "
                                       f"on this port?") from None
                self.write(b"\r")  # a board that was busy printing: ask again
                continue
            if key != "failed":
                # More may be queued behind this prompt (a second `login:` for the enter we
                # pressed, the `Password:` for a name already sent): act on the latest state only.
                later = self.drain(quiet_s=0.3, max_s=2.0)
                if later:
                    self.buffer += later
                    continue
            if key == "failed":
                raise BoardError(
                    f"{self.name}: login as {self.user!r} was refused; pass --user/--password")
            if key == "login":
                self.write(self.user.encode() + b"\r")
            elif key == "password":
                self.write(self.password.encode() + b"\r")
            elif key == "shell":
                break
        self.logged_in = True
        # Quiet the line: no echo (halves the traffic of uploads), no kernel chatter on the tty.
        self.run("stty -echo 2>/dev/null; dmesg -n 1 2>/dev/null; true", timeout_s=10)

    # ----------------------------------------------------------------- commands
    def run(self, command: str, timeout_s: float = 30.0, *, check: bool = False) -> CommandResult:
        """Run one shell command line; return its output and exit code.

        Raises BoardTimeout at the deadline (after sending Ctrl-C so the shell is usable again),
        BoardRebooted when the board restarts meanwhile, BoardError for a non-zero exit if `check`.
        """
        nonce = secrets.token_hex(4).encode()
        begin = re.compile(rb"__ET_" + nonce + rb"_B__\r?\n")
        end = re.compile(rb"__ET_" + nonce + rb"_(\d+)__")
        if "\n" in command or "\r" in command:
            raise ValueError("one command line at a time (join with ';')")
        line = (b"echo __ET_" + nonce + b"_''B__; " + command.encode() + b"; echo __ET_" + nonce
                + b"_$?__\r")
        short = command if len(command) <= 60 else command[:57] + "..."
        started = time.monotonic()
        self.write(line)
        try:
            self.wait_for({"begin": begin}, timeout_s, what=f"the start of `{short}`",
                          reboot_check=True)
            left = max(0.5, timeout_s - (time.monotonic() - started))
            _, raw_output, match = self.wait_for({"end": end}, left, what=f"the end of `{short}`",
                                                 reboot_check=True)
        except BoardRebooted as error:
            error.partial_output = self.buffer.decode("utf-8", "replace")
            self.buffer = b""
            raise
        except BoardTimeout as error:
            error.partial_output = self.buffer.decode("utf-8", "replace")
            self.write(b"\x03")  # Ctrl-C: leave a usable shell for the next command
            self.drain(0.3, 2.0)
            self.buffer = b""
            raise
        output = raw_output.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
        result = CommandResult(command, int(match.group(1)), output, time.monotonic() - started)
        if check and result.exit_code != 0:
            last = output.strip().splitlines()[-3:]
            raise BoardError(f"{self.name}: `{short}` exited {result.exit_code}: {' | '.join(last)}")
        return result

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:  # noqa: BLE001 - closing a dead port must not mask the real error
            pass


def progress(message: str) -> None:
    """Progress goes to stderr (stdout is kept for the --json object)."""
    print(message, file=sys.stderr, flush=True)
