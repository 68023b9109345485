"""The demo's terminal UI: plain ANSI escapes (no curses), redrawing only what changed.

Layout of a `columns x rows` screen:

    row 0            status: backend, input, last keystroke latency
    rows 1..rows-3   the text, wrapped to the width; the last lines are shown; the terminal's
                     own cursor sits after the last character
    row rows-2       the three suggestions, numbered as Alt+1..3 accepts them
    row rows-1       key help

`TerminalScreen.draw(frame)` compares the new screen lines with the previous ones and, for each
changed line, moves the cursor to the first changed column and writes the rest of the line
(plus erase-to-end-of-line when it got shorter); when the text scrolled by a line or two (a line
filled up, or Backspace went back over a line start) the text rows are scrolled inside a scroll
region instead of rewritten. A keystroke usually changes the end of one text
line, the suggestions and the latency figure: tens of bytes, not a screen (a 115200-baud serial
console moves ~11 KB/s, so a 80x24 full redraw, ~2 KB, would cost ~0.2 s). `bytes_written` counts
everything sent. Below `MIN_COLUMNS`/`MIN_ROWS` the screen shows one line saying so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

MIN_COLUMNS = 20
MIN_ROWS = 4
HELP_LINE = "Tab/Alt+1-3 accept  Bksp  Ctrl+Bksp word  Enter  Esc quit"

CSI = "\x1b["
CLEAR_SCREEN = CSI + "H" + CSI + "2J"
ERASE_TO_END_OF_LINE = CSI + "K"
ENTER_ALTERNATE_SCREEN = CSI + "?1049h"
LEAVE_ALTERNATE_SCREEN = CSI + "?1049l"
RESET_SCROLL_REGION = CSI + "r"
REVERSE_INDEX = "\x1bM"
MAX_SCROLL_ROWS = 3


@dataclass(frozen=True)
class Frame:
    """What the demo wants shown; the screen turns it into lines."""

    text: str
    suggestions: Sequence[str]
    backend: str
    input_name: str
    latency_ms: float | None = None


def _printable(text: str) -> str:
    """One column per character: control characters would move the terminal's cursor."""
    return "".join(c if c.isprintable() else "?" for c in text)


def wrap_text(text: str, columns: int) -> tuple[list[str], int, int]:
    """Hard-wrap `text` at `columns`; returns (lines, cursor_line, cursor_column) for its end.

    "\\n" starts a new line; a full line puts the cursor at column 0 of the next one.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        paragraph = _printable(paragraph)
        if not paragraph:
            lines.append("")
            continue
        lines.extend(paragraph[i : i + columns] for i in range(0, len(paragraph), columns))
        if len(lines[-1]) == columns:
            lines.append("")
    return lines, len(lines) - 1, len(lines[-1])


def compose(frame: Frame, columns: int, rows: int) -> tuple[list[str], tuple[int, int]]:
    """The screen lines (each at most `columns` wide) and the cursor (row, column)."""
    if columns < MIN_COLUMNS or rows < MIN_ROWS:
        message = f"edgetype: terminal too small, need {MIN_COLUMNS}x{MIN_ROWS}"
        lines = [message[i : i + columns] for i in range(0, len(message), max(columns, 1))][:rows]
        lines += [""] * (rows - len(lines))
        return lines, (0, 0)
    latency = "-" if frame.latency_ms is None else f"{frame.latency_ms:.1f} ms"
    # the backend first (a narrow terminal cuts the end), the latency last (it changes per key)
    status = f"backend {frame.backend} | input {frame.input_name} | {latency}"
    suggestion_line = "   ".join(f"{i + 1} {_printable(word)}" for i, word in enumerate(frame.suggestions))
    text_rows = rows - 3
    text_lines, cursor_line, cursor_column = wrap_text(frame.text, columns)
    first_shown = max(0, len(text_lines) - text_rows)
    shown = text_lines[first_shown:] + [""] * (text_rows - (len(text_lines) - first_shown))
    lines = [status[:columns], *shown, suggestion_line[:columns], HELP_LINE[:columns]]
    return lines, (1 + cursor_line - first_shown, cursor_column)


def _move(row: int, column: int) -> str:
    return f"{CSI}{row + 1};{column + 1}H"


class TerminalScreen:
    """Draws frames on a terminal through `write(str)`; only changed parts are sent."""

    def __init__(self, write: Callable[[str], object], columns: int, rows: int) -> None:
        self._write = write
        self.columns = columns
        self.rows = rows
        self._lines: list[str] | None = None  # what the terminal shows now; None = unknown
        self._cursor: tuple[int, int] | None = None
        self.bytes_written = 0

    def _send(self, data: str) -> int:
        if data:
            self._write(data)
        size = len(data.encode("utf-8"))
        self.bytes_written += size
        return size

    def resize(self, columns: int, rows: int) -> None:
        """The terminal changed size: the next draw is a full redraw."""
        self.columns, self.rows = columns, rows
        self._lines = None

    def draw(self, frame: Frame) -> int:
        """Bring the terminal to `frame`; returns the bytes sent."""
        lines, cursor = compose(frame, self.columns, self.rows)
        parts: list[str] = []
        if self._lines is None:
            parts.append(CLEAR_SCREEN)
            for row, line in enumerate(lines):
                if line:
                    parts.append(_move(row, 0) + line)
        else:
            parts.append(self._scroll_text_area(lines))
            for row, (old, new) in enumerate(zip(self._lines, lines)):
                if old == new:
                    continue
                same = 0
                limit = min(len(old), len(new))
                while same < limit and old[same] == new[same]:
                    same += 1
                parts.append(_move(row, same) + new[same:])
                if len(new) < len(old):
                    parts.append(ERASE_TO_END_OF_LINE)
        if parts or cursor != self._cursor:
            parts.append(_move(*cursor))
        self._lines, self._cursor = lines, cursor
        return self._send("".join(parts))

    def _scroll_text_area(self, lines: list[str]) -> str:
        """The text moved up (a line filled) or down (Backspace over a line start) by a few rows:
        scroll the text rows inside a scroll region (DECSTBM + LF / reverse index) instead of
        rewriting all of them. Updates `self._lines` to what the terminal then shows."""
        if self.columns < MIN_COLUMNS or self.rows < MIN_ROWS:
            return ""
        top, bottom = 1, self.rows - 3  # the text rows, inclusive
        old, new = self._lines[top : bottom + 1], lines[top : bottom + 1]

        def shifted(k: int) -> list[str]:
            return old[k:] + [""] * k if k > 0 else [""] * -k + old[:k]

        def differing(shown: list[str]) -> int:
            return sum(a != b for a, b in zip(shown, new))

        best_k, best_cost = 0, differing(old)
        for k in range(-MAX_SCROLL_ROWS, MAX_SCROLL_ROWS + 1):
            if k and abs(k) < len(old):
                cost = differing(shifted(k))
                if cost + 2 < best_cost:  # scrolling costs about two rewritten short rows
                    best_k, best_cost = k, cost
        if not best_k:
            return ""
        if best_k > 0:
            motion = _move(bottom, 0) + "\n" * best_k  # LF at the bottom margin scrolls up
        else:
            motion = _move(top, 0) + REVERSE_INDEX * -best_k  # at the top margin: scrolls down
        self._lines[top : bottom + 1] = shifted(best_k)
        return f"{CSI}{top + 1};{bottom + 1}r" + motion + RESET_SCROLL_REGION

    def full_redraw_bytes(self, frame: Frame) -> int:
        """What a full redraw of `frame` costs (for comparison; sends nothing)."""
        lines, cursor = compose(frame, self.columns, self.rows)
        data = CLEAR_SCREEN + "".join(_move(r, 0) + line for r, line in enumerate(lines) if line) + _move(*cursor)
        return len(data.encode("utf-8"))
