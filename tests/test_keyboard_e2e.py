"""End to end: `edgetype demo` in a real terminal (tmux), typed into with send-keys, read back
with capture-pane. Needs the `tmux` binary (Debian package `tmux`); fails, not skips, without it.

The assertions read the suggestions off the screen and check that accepting one puts that word in
the text, so they hold for any engine. The engine is the real one (runtime/engine.py, numpy
backend) on the tiny random-weight bundle of tests/test_bundle.py. Setting E2E_USE_REAL_ENGINE =
False runs the same test on the fake engine of tests/test_keyboard_fakes.py instead
(EDGETYPE_TEST_FAKE_ENGINE=1, test-only; the product itself has no fake) to tell a demo bug from
an engine bug.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyboard_ui.journal import read_journal_text

E2E_USE_REAL_ENGINE = True

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = Path(__file__).resolve().parent / "test_keyboard_fakes.py"


@pytest.fixture(scope="module")
def demo_command(tmp_path_factory):
    """The `edgetype demo` command line, engine included."""
    if E2E_USE_REAL_ENGINE:
        from test_bundle import make_tiny_bundle

        bundle = make_tiny_bundle(tmp_path_factory.mktemp("e2e") / "bundle", window=64)
        return lambda *args: [sys.executable, "-m", "runtime.cli", "demo", "--backend", "numpy",
                              "--bundle", str(bundle), *args]
    return lambda *args: ["env", "EDGETYPE_TEST_FAKE_ENGINE=1", sys.executable, str(LAUNCHER), "demo", *args]


class Tmux:
    """A private tmux server (own socket) with one 80x24 window."""

    def __init__(self, tmp_path: Path) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed: `apt-get install tmux` (needed by the demo's end-to-end test)")
        self.socket = str(tmp_path / "tmux.sock")

    def run(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, f"tmux {args}: {result.stderr}"
        return result.stdout

    def start(self, command: list[str], name: str) -> None:
        shell = " ".join(_quote(part) for part in command) + '; echo "demo exit=$?"; sleep 60'
        self.run("new-session", "-d", "-s", name, "-x", "80", "-y", "24", "-c", str(REPO), shell)

    def send(self, name: str, *keys: str) -> None:
        self.run("send-keys", "-t", name, *keys)

    def type(self, name: str, text: str) -> None:
        self.run("send-keys", "-t", name, "-l", text)  # literally, no key-name lookup

    def screen(self, name: str, join_wrapped: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-J"] if join_wrapped else []), "-t", name)

    def wait_for(self, name: str, pattern: str, timeout_s: float = 15.0, join_wrapped: bool = False) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self.screen(name, join_wrapped)
            if re.search(pattern, screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched {pattern!r}; it shows:\n{screen}")
            time.sleep(0.05)

    def cursor(self, name: str) -> tuple[int, int]:
        column, row = self.run("display-message", "-p", "-t", name, "#{cursor_x} #{cursor_y}").split()
        return int(row), int(column)

    def wait_for_cursor(self, name: str, row: int, column: int, timeout_s: float = 15.0) -> str:
        """The renderer places the cursor last: once it is there, the whole frame has arrived."""
        wait_until(lambda: self.cursor(name) == (row, column), f"cursor at {(row, column)}", timeout_s)
        return self.screen(name)

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=10)


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\"'\"'") + "'"


def wait_until(condition, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def suggestions_on(screen: str) -> list[str]:
    """The words of the numbered suggestion line (row 22 of 24)."""
    line = screen.splitlines()[22] if len(screen.splitlines()) > 22 else ""
    return re.findall(r"(?:^|\s)[123] (\S+)", line)


def text_rows(screen: str) -> str:
    return "\n".join(screen.splitlines()[1:22]).rstrip()


@pytest.fixture
def tmux(tmp_path):
    server = Tmux(tmp_path)
    yield server
    server.kill()


def test_demo_in_a_terminal_types_accepts_and_restores_from_the_journal(tmux, tmp_path, demo_command):
    journal, recording = str(tmp_path / "journal.txt"), str(tmp_path / "typed.jsonl")
    tmux.start(demo_command("--input", "terminal", "--journal", journal, "--record", recording), "one")
    screen = tmux.wait_for("one", r"backend \S+ \| input terminal")
    assert "Esc quit" in screen

    tmux.type("one", "Th")  # "the" is in every vocabulary
    screen = tmux.wait_for_cursor("one", 1, 2)
    first = suggestions_on(screen)[0]
    assert first.startswith("Th"), screen
    tmux.send("one", "Tab")  # accept suggestion 1
    screen = tmux.wait_for_cursor("one", 1, len(first))
    assert text_rows(screen).strip() == first

    tmux.type("one", " ")
    screen = tmux.wait_for_cursor("one", 1, len(first) + 1)
    shown = suggestions_on(screen)  # next-word predictions
    assert shown, screen
    tmux.send("one", f"M-{len(shown)}")  # Alt+N accepts the last one shown
    expected = f"{first} {shown[-1]}"
    screen = tmux.wait_for("one", re.escape(expected))
    assert re.search(r"\| \d+\.\d ms", screen.splitlines()[0]), screen.splitlines()[0]

    tmux.type("one", " x")
    tmux.wait_for("one", re.escape(expected + " x"))
    tmux.send("one", "BSpace")
    wait_until(lambda: read_journal_text(journal) == expected + " ", "Backspace removed the x")
    tmux.send("one", "C-w")  # delete word (a terminal's Ctrl+Backspace)
    wait_until(lambda: shown[-1] not in read_journal_text(journal), "Ctrl+W deleted the word")
    typed_so_far = read_journal_text(journal)  # the journal follows every edit
    assert typed_so_far.startswith(first)
    screen = tmux.wait_for("one", r"\n" + re.escape(typed_so_far.rstrip()) + r"\n")
    assert text_rows(screen).strip() == typed_so_far.strip()

    tmux.run("resize-window", "-t", "one", "-x", "12", "-y", "24")  # too narrow
    tmux.wait_for("one", r"edgetype: te")
    tmux.run("resize-window", "-t", "one", "-x", "80", "-y", "24")
    tmux.wait_for("one", r"backend \S+ \| input terminal")

    tmux.send("one", "Escape")
    screen = tmux.wait_for("one", r"demo exit=0")
    assert first in screen  # the final text is printed after leaving the full-screen UI
    assert read_journal_text(journal) == typed_so_far

    # the terminal keys were recorded as evdev key events; replaying them types the same text
    replayed = subprocess.run(demo_command("--replay", recording, "--json", "--no-journal"), cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads(replayed.stdout)
    assert result["text"] == typed_so_far and result["accepted"] == 2

    # next start offers to restore the journal
    tmux.start(demo_command("--input", "terminal", "--journal", journal), "two")
    tmux.wait_for("two", rf"restore {len(typed_so_far)} characters from .*journal\.txt\? \[y/N\]",
                  join_wrapped=True)
    tmux.type("two", "y")
    tmux.send("two", "Enter")
    screen = tmux.wait_for_cursor("two", 1, len(typed_so_far))
    assert text_rows(screen).strip() == typed_so_far.strip() and "input terminal" in screen
    tmux.type("two", "!")
    tmux.wait_for_cursor("two", 1, len(typed_so_far) + 1)
    tmux.send("two", "C-c")  # ^C in raw mode quits cleanly too
    tmux.wait_for("two", r"demo exit=0")
    assert read_journal_text(journal) == typed_so_far + "!"
