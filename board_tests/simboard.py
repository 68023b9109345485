"""A simulated Milk-V board on a pseudo-terminal, so the serial harness runs end to end in CI.

`--port sim://[?option=value&...]` starts one. The harness talks to the pty's slave side exactly as
to /dev/ttyUSB0; on the master side this module plays the board's console:
  boot banner -> `milkv-duo login:` (getty: echo, password check, "Login incorrect")
  -> an interactive real `/bin/sh` on a second pty with prompt `[root@milkv-duo]~# `.
The shell runs in a sandbox directory that stands for the board's file system (HOME is
SANDBOX/root); the board paths the on-board suite reads come from environment variables pointing
into it (EDGETYPE_BUNDLE, EDGETYPE_ION_SUMMARY, EDGETYPE_INPUT_DEVICES, EDGETYPE_TPU_MODULE_DIR),
the backend is `cmodel` (EDGETYPE_BACKEND).

What ships is what runs: at start the firmware overlay is built from this checkout and extracted
into the sandbox (board_tests/overlay_root.py), as `tar -xzf -C /` does on a board, and `python3`
on the shell's PATH is a virtual environment standing for the image's python3: the standard
library plus exactly the image's third-party packages (firmware/images.py; `image=debian` by
default: numpy, cffi, evdev, pyserial), nothing of the host's. The cmodel backend finds the
simulator library through EDGETYPE_CVIRUNTIME (the board's /mnt/system/lib stands there).

What is simulated and what is not: the console, login, shell and file system behave like the
board's; the TPU is the tpu-mlir cmodel; there is no ION debugfs (the ION test skips, saying so);
`/proc/bus/input/devices` lists one *simulated* USB keyboard so the keyboard discovery code runs.

Options (URL query): password=milkv, hostname=milkv-duo, backend=cmodel, shell=/bin/sh|busybox
(busybox: `busybox sh`, the board's ash with line editing), bundle=DIR (appears as
/opt/edgetype/bundle), reboot_after_s=S (the board "reboots" S seconds after login: shell killed,
U-Boot banner, login prompt), noise=1 (the line only carries bytes at a wrong baud rate),
image=debian|milkv-v2|milkv-v1 and board=duo256m|duo|licheerv-nano (the overlay installed),
python=X.Y (the board python's version, e.g. 3.9 for the V1 image's; default this host's),
overlay=0 (an empty board: nothing installed, python3 still the image's), baud=115200 (bytes
cross the line in both directions no faster than a UART at that rate carries them, 8N1 = 10 bits
a byte, so upload and suite timings are those of the real wire; default: as fast as the pty).
"""
from __future__ import annotations

import fcntl
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from runtime.errors import UserError

BOOT_BANNER = (
    "\r\nU-Boot 2021.10 (simulated edgetype board)\r\n"
    "Starting kernel ...\r\n\r\n"
    "[    0.000000] Linux version 5.10.4-tag- (simulated) #1 PREEMPT\r\n"
    "[    1.234567] cvi-tpu 0c100000.tpu: simulated by the tpu-mlir cmodel\r\n"
    "\r\nWelcome to Milk-V Duo (edgetype simulated board)\r\n"
)
SIM_KEYBOARD = """I: Bus=0003 Vendor=046d Product=c31c Version=0110
N: Name="Simulated USB Keyboard (edgetype simboard)"
P: Phys=usb-4340000.usb-1/input0
S: Sysfs=/devices/platform/soc/4340000.usb/usb1/1-1/1-1:1.0/input/input0
U: Uniq=
H: Handlers=sysrq kbd event0 leds
B: PROP=0
B: EV=120013
B: KEY=1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe
B: MSC=10
B: LED=7

"""


def host_simulator_library() -> str | None:
    """The tpu-mlir wheel's x86 libcviruntime.so (linked to the cmodel), if the toolchain is
    installed; the uploaded packages have no model_export to look for it themselves."""
    try:
        from model_export.toolchain import simulator_library_path
        path = simulator_library_path()
    except Exception:  # noqa: BLE001 - no toolchain: the cmodel tests fail on the board, saying so
        return None
    return str(path) if path and Path(path).is_file() else None


def parse_sim_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme != "sim":
        raise UserError(f"not a sim:// URL: {url}")
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    known = {"password", "hostname", "backend", "bundle", "reboot_after_s", "noise", "sandbox",
             "shell", "image", "board", "python", "overlay", "baud"}
    unknown = set(options) - known
    if unknown:
        raise UserError(f"sim:// options {sorted(unknown)} unknown; known: {sorted(known)}")
    return options


class SimulatedBoard:
    """One simulated board; `start()` returns the pty path to open as a serial port."""

    def __init__(self, *, password: str = "milkv", hostname: str = "milkv-duo",
                 backend: str = "cmodel", bundle: str | None = None,
                 reboot_after_s: float | None = None, noise: bool = False,
                 sandbox: str | None = None, extra_env: dict | None = None,
                 shell: str = "/bin/sh", image: str = "debian", board: str = "duo256m",
                 python: str | None = None, overlay: bool = True, baud: int | None = None):
        self.password = password
        self.hostname = hostname
        self.backend = backend
        self.bundle = bundle
        self.reboot_after_s = reboot_after_s
        self.noise = noise
        self.extra_env = extra_env or {}
        self.shell = shell  # "busybox" runs `busybox sh` (ash with line editing, as on the board)
        self.image = image
        self.board = board
        self.python_version = python
        self.install_overlay = overlay
        self.overlay = None  # board_tests.overlay_root.OverlayRoot once installed
        self.board_python = None  # the image's python3 (bin/python of its virtual environment)
        self._own_sandbox = sandbox is None
        self.sandbox = Path(sandbox or tempfile.mkdtemp(prefix="edgetype-simboard-"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shell: subprocess.Popen | None = None
        self._shell_master: int | None = None
        self.reboots = 0
        self.logins = 0
        self.baud = baud
        self._tx = WirePacer(baud) if baud else None  # board -> host
        self._rx = WirePacer(baud) if baud else None  # host -> board
        self._rx_slice = self._rx.slice_bytes if self._rx else 4096

    @classmethod
    def from_url(cls, url: str) -> "SimulatedBoard":
        o = parse_sim_url(url)
        from firmware.images import IMAGES
        from firmware.overlay import BOARDS

        if o.get("image", "debian") not in IMAGES:
            raise UserError(f"sim://?image={o['image']}: use one of {', '.join(IMAGES)}")
        if o.get("board", "duo256m") not in BOARDS:
            raise UserError(f"sim://?board={o['board']}: use one of {', '.join(BOARDS)}")
        baud = None
        if "baud" in o:
            baud = int(o["baud"]) if o["baud"].isdigit() else 0
            if not 50 <= baud <= 4_000_000:
                raise UserError(f"sim://?baud={o['baud']}: give a baud rate, e.g. 115200")
        if "reboot_after_s" in o:
            try:
                reboot = float(o["reboot_after_s"])
            except ValueError:
                reboot = float("nan")
            if not 0 < reboot < 1e6:  # nan fails both
                raise UserError(f"sim://?reboot_after_s={o['reboot_after_s']}: give seconds > 0")
        return cls(password=o.get("password", "milkv"), hostname=o.get("hostname", "milkv-duo"),
                   backend=o.get("backend", "cmodel"), bundle=o.get("bundle"),
                   reboot_after_s=float(o["reboot_after_s"]) if "reboot_after_s" in o else None,
                   noise=o.get("noise", "0") not in ("0", ""), sandbox=o.get("sandbox"),
                   shell=o.get("shell", "/bin/sh"), image=o.get("image", "debian"),
                   board=o.get("board", "duo256m"), python=o.get("python"),
                   overlay=o.get("overlay", "1") not in ("0", ""), baud=baud)

    # ----------------------------------------------------------------- the board's file system
    def _make_sandbox(self) -> None:
        s = self.sandbox
        for d in ("root", "tmp", "opt/edgetype", "mnt/system/ko", "mnt/data", "proc/bus/input",
                  "dev/input", "etc/init.d"):
            (s / d).mkdir(parents=True, exist_ok=True)
        (s / "proc/bus/input/devices").write_text(SIM_KEYBOARD)
        (s / "dev/input/event0").touch()  # stands for the simulated keyboard's node
        (s / "mnt/system/ko/cv180x_tpu.ko").touch()  # never loaded: the cmodel needs no module
        from board_tests import overlay_root

        try:
            python = overlay_root.find_python(self.python_version) if self.python_version else None
            self.board_python = overlay_root.board_python(self.image, python)
        except (FileNotFoundError, RuntimeError) as error:
            raise UserError(f"sim://: cannot make the {self.image} image's python3: {error}") from None
        if self.install_overlay:  # what `edgetype board deploy` / `tar -xzf -C /` puts there
            self.overlay = overlay_root.build_root(s, board=self.board, image=self.image)
        if self.bundle:
            link = s / "opt/edgetype/bundle"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path(self.bundle).resolve())

    def shell_env(self) -> dict:
        s = self.sandbox
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        # The board has only what the overlay installed and what is uploaded onto it: no host
        # Python path; the simulator library stands where the board's libcviruntime.so would.
        for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
            env.pop(name, None)
        if "EDGETYPE_CVIRUNTIME" not in env:  # the board's /mnt/system/lib: here the cmodel's
            library = host_simulator_library()
            if library:
                env["EDGETYPE_CVIRUNTIME"] = library
        env.update({
            "HOME": str(s / "root"), "PS1": f"[root@{self.hostname}]~# ", "PS2": "> ",
            # python3 is the image's (stdlib + its packages only), not this host's venv
            "PATH": f"{Path(self.board_python).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "TERM": "vt100", "SHELL": "/bin/sh", "TMPDIR": str(s / "tmp"),
            "EDGETYPE_BOARD": "sim",
            "EDGETYPE_ROOT": str(s),  # `board deploy` extracts the overlay here, not into /
            "EDGETYPE_BACKEND": self.backend,
            "EDGETYPE_BUNDLE": str(s / "opt/edgetype/bundle"),
            "EDGETYPE_ION_SUMMARY": str(s / "sys/kernel/debug/ion/cvi_carveout_heap_dump/summary"),
            "EDGETYPE_INPUT_DEVICES": str(s / "proc/bus/input/devices"),
            "EDGETYPE_DEV_DIR": str(s / "dev"),
            "EDGETYPE_TPU_MODULE_DIR": str(s / "mnt/system/ko"),
            # the cmodel takes ~0.4 s per full-size step: time fewer of them than on a board
            "EDGETYPE_LATENCY_STEPS": os.environ.get("EDGETYPE_LATENCY_STEPS", "10"),
        })
        env.update(self.extra_env)
        return env

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> str:
        self._make_sandbox()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port_path = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._serve, name="simboard", daemon=True)
        self._thread.start()
        return self.port_path

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._kill_shell()
        for fd in (getattr(self, "_master", None), getattr(self, "_slave", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._own_sandbox:
            shutil.rmtree(self.sandbox, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ----------------------------------------------------------------- console
    def _out(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        if self._tx is not None:  # board -> host at the wire's rate, a slice at a time
            for start in range(0, len(data), self._tx.slice_bytes):
                piece = data[start:start + self._tx.slice_bytes]
                self._tx.wait(len(piece))
                self._write_master(piece)
            return
        self._write_master(data)

    def _write_master(self, data: bytes) -> None:
        while data and not self._stop.is_set():
            try:
                n = os.write(self._master, data)
                data = data[n:]
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                return

    def _serve(self) -> None:
        try:
            if self.noise:
                self._serve_noise()
            else:
                self._out(BOOT_BANNER)
                self._getty()
        except Exception as error:  # noqa: BLE001 - a dying simulator must say why
            print(f"simboard: {type(error).__name__}: {error}", file=sys.stderr)

    def _serve_noise(self) -> None:
        rng = random.Random(1234)
        while not self._stop.is_set():
            self._out(bytes(rng.choice((0x80, 0xF0, 0x00, 0xFE, 0x1C, 0x78)) for _ in range(64)))
            time.sleep(0.05)

    def _read_input(self, timeout_s: float = 0.05) -> bytes:
        ready, _, _ = select.select([self._master], [], [], timeout_s)
        if not ready:
            return b""
        try:
            return self._received(os.read(self._master, self._rx_slice))
        except OSError:
            return b""

    def _received(self, data: bytes) -> bytes:
        """Bytes from the host reach the board no faster than the wire carries them."""
        if self._rx is not None and data:
            self._rx.wait(len(data))
        return data

    def _read_line(self, echo: bool) -> str | None:
        line = b""
        while not self._stop.is_set():
            data = self._read_input()
            for byte in data:
                ch = bytes([byte])
                if ch in (b"\r", b"\n"):
                    self._out(b"\r\n")
                    return line.decode("utf-8", "replace")
                if ch in (b"\x7f", b"\x08"):
                    line = line[:-1]
                    continue
                if ch == b"\x03":
                    line = b""
                    continue
                line += ch
                if echo:
                    self._out(ch)
        return None

    def _getty(self) -> None:
        while not self._stop.is_set():
            self._out(f"{self.hostname} login: ")
            user = self._read_line(echo=True)
            if user is None:
                return
            if not user.strip():
                continue
            self._out("Password: ")
            password = self._read_line(echo=False)
            if password is None:
                return
            if user.strip() != "root" or password != self.password:
                time.sleep(0.2)
                self._out("\r\nLogin incorrect\r\n")
                continue
            self.logins += 1
            self._run_shell()

    def _run_shell(self) -> None:
        master, slave = os.openpty()

        def become_session_leader():  # the shell gets the pty as its controlling terminal (Ctrl-C)
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self._shell = subprocess.Popen(
            ["busybox", "sh", "-i"] if self.shell == "busybox" else [self.shell, "-i"], stdin=slave, stdout=slave, stderr=slave, cwd=self.sandbox / "root",
            env=self.shell_env(), preexec_fn=become_session_leader, close_fds=True)
        os.close(slave)
        self._shell_master = master
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.reboot_after_s is not None and time.monotonic() - started > self.reboot_after_s:
                    self._reboot()
                    return
                ready, _, _ = select.select([self._master, master], [], [], 0.05)
                if self._master in ready:
                    data = self._received(os.read(self._master, self._rx_slice))
                    if data:
                        os.write(master, data)
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # the shell exited: getty prints a new login prompt
                        data = b""
                    if not data:
                        self._out("\r\n")
                        return
                    self._out(data)
                if self._shell.poll() is not None and master not in ready:
                    self._out("\r\n")
                    return
        finally:
            self._kill_shell()

    def _reboot(self) -> None:
        self._kill_shell()
        self.reboots += 1
        self.reboot_after_s = None  # once per board; the next boot stays up
        self._out("\r\n[  42.000000] reboot: Restarting system\r\n")
        self._out(BOOT_BANNER)

    def _kill_shell(self) -> None:
        if self._shell is not None:
            # the shell is a session leader: everything it started (jobs run in their own process
            # groups) is in its session; a reboot ends them all, as on the board
            for pid in _session_members(self._shell.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if self._shell.poll() is None:
                self._shell.kill()
            self._shell.wait(timeout=5)
        self._shell = None
        if self._shell_master is not None:
            try:
                os.close(self._shell_master)
            except OSError:
                pass
            self._shell_master = None


class WirePacer:
    """One direction of a UART at `baud`, 8N1: 10 bits on the wire per byte."""

    BITS_PER_BYTE = 10

    def __init__(self, baud: int) -> None:
        self.bytes_per_s = baud / self.BITS_PER_BYTE
        self.slice_bytes = max(1, int(self.bytes_per_s // 50))  # ~20 ms of line time
        self._free_at = 0.0  # monotonic time the line finishes what was already sent

    def wait(self, n: int) -> None:
        """Block until `n` more bytes would have crossed the wire."""
        now = time.monotonic()
        self._free_at = max(now, self._free_at) + n / self.bytes_per_s
        delay = self._free_at - now
        if delay > 0:
            time.sleep(delay)


def _session_members(session_id: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id:  # fields after the name: state ppid pgrp session
            members.append(int(entry))
    return members


def main(argv: list[str] | None = None) -> int:
    """`python -m board_tests.simboard [URL]`: run a simulated board until Ctrl-C (for picocom)."""
    url = (argv or sys.argv[1:] or ["sim://"])[0]
    board = SimulatedBoard.from_url(url)
    path = board.start()
    print(f"simulated board on {path} (sandbox {board.sandbox}); Ctrl-C stops it", file=sys.stderr)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
