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

import bisect
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

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


def status_line(backend: str, input_name: str, latency_ms: float | None) -> str:
    latency = "-" if latency_ms is None else f"{latency_ms:.1f} ms"
    # the backend first (a narrow terminal cuts the end), the latency last (it changes per key)
    return f"backend {backend} | input {input_name} | {latency}"


def suggestion_line(suggestions: Sequence[str]) -> str:
    return "   ".join(f"{i + 1} {_printable(word)}" for i, word in enumerate(suggestions))


def _too_small(columns: int, rows: int) -> list[str]:
    message = f"edgetype: terminal too small, need {MIN_COLUMNS}x{MIN_ROWS}"
    lines = [message[i : i + columns] for i in range(0, len(message), max(columns, 1))][:rows]
    return lines + [""] * (rows - len(lines))


def compose(frame: Frame, columns: int, rows: int) -> tuple[list[str], tuple[int, int]]:
    """The screen lines (each at most `columns` wide) and the cursor (row, column).

    The reference: wraps the whole text (O(text)); `TailView` + `TerminalScreen.update` give the same
    screen from edits at a cost bounded by what changed (tests/test_keyboard_render.py)."""
    if columns < MIN_COLUMNS or rows < MIN_ROWS:
        return _too_small(columns, rows), (0, 0)
    status = status_line(frame.backend, frame.input_name, frame.latency_ms)
    text_rows = rows - 3
    text_lines, cursor_line, cursor_column = wrap_text(frame.text, columns)
    first_shown = max(0, len(text_lines) - text_rows)
    shown = text_lines[first_shown:] + [""] * (text_rows - (len(text_lines) - first_shown))
    lines = [status[:columns], *shown, suggestion_line(frame.suggestions)[:columns], HELP_LINE[:columns]]
    return lines, (1 + cursor_line - first_shown, cursor_column)


class TextSource(Protocol):
    """What `TailView` reads of the text (runtime/session_text.py SessionText has it)."""

    def __len__(self) -> int: ...
    def slice(self, start: int, end: int) -> str: ...
    def line_start(self, pos: int) -> int: ...


class TailView:
    """The last lines of `wrap_text(text, columns)`, kept current from edits at the end of the text.

    Holds between `want` and 2 `want` + 8 wrapped lines of the text's tail with their start offsets.
    `edit(keep, add)` (the first `keep` characters stayed, `add` follows) truncates the line that
    holds offset `keep` and wraps `add` after it: O(columns + len(add)) per key, whatever the
    text's length. Lines the cache lacks (a delete reaching above it, a resize) are read back from
    the source one line at a time (`line_start` finds a paragraph's start in O(log lines)).
    Line indices (`base` + cache index) are relative: only differences between two states are used.
    `dirty`: the smallest line index changed since `clean()` (None: none; `full`: all of them).
    """

    def __init__(self, source: TextSource, columns: int, want: int) -> None:
        self.source, self.columns, self.want = source, columns, max(1, want)
        self.starts: list[int] = []  # (n,) text offset where each cached line starts
        self.lines: list[str] = []  # (n,) the cached lines, printable, each < columns except full ones
        self.base = 0  # line index of lines[0]
        self.dirty: int | None = None
        self.full = True
        self.rebuild()

    @property
    def last_index(self) -> int:
        return self.base + len(self.lines) - 1

    def shown(self, rows: int) -> tuple[int, list[str]]:
        """(line index of the first shown line, the last `rows` lines padded with "" below)."""
        first = max(0, len(self.lines) - rows)
        shown = self.lines[first:]
        return self.base + first, shown + [""] * (rows - len(shown))

    def clean(self) -> None:
        self.dirty, self.full = None, False

    def rebuild(self) -> None:
        """Re-read the last lines from the source (start, resize, a delete above the cache)."""
        end = len(self.source)
        start = self._last_line_start(end)
        self.starts, self.lines = [start], [_printable(self.source.slice(start, end))]
        self.full = True  # the indices before and after are unrelated: the screen compares every row
        self._fill_back()

    def edit(self, keep: int, add: str) -> None:
        starts, lines, columns = self.starts, self.lines, self.columns
        if keep < starts[0] or keep > starts[-1] + len(lines[-1]):
            self.rebuild()  # reads the text as it is now, `add` included
            return
        i = bisect.bisect_right(starts, keep) - 1  # the line holding offset keep
        del starts[i + 1 :], lines[i + 1 :]
        lines[i] = lines[i][: keep - starts[i]]
        self.dirty = self.base + i if self.dirty is None else min(self.dirty, self.base + i)
        if add:
            line, position = lines.pop(), keep
            for char in add:
                position += 1
                if char == "\n":
                    lines.append(line)
                    starts.append(position)
                    line = ""
                    continue
                line += char if char.isprintable() else "?"
                if len(line) == columns:  # a full line puts the cursor on the next one
                    lines.append(line)
                    starts.append(position)
                    line = ""
            lines.append(line)
            if len(lines) > 2 * self.want + 8:
                drop = len(lines) - self.want
                del lines[:drop], starts[:drop]
                self.base += drop
        if len(lines) < self.want:
            self._fill_back()

    # -- reading back from the source ----------------------------------------------------------------
    def _last_line_start(self, end: int) -> int:
        """Start of the last wrapped line of the text ending at `end` (its paragraph's last chunk;
        an empty line after a full one)."""
        paragraph = self.source.line_start(end)
        length = end - paragraph
        return paragraph + (length // self.columns) * self.columns

    def _fill_back(self) -> None:
        starts, lines, columns, source = self.starts, self.lines, self.columns, self.source
        prepend_starts, prepend_lines = [], []
        start = starts[0]
        while len(lines) + len(prepend_lines) < self.want and start > 0:
            if source.slice(start - 1, start) == "\n":
                end = start - 1
                start = self._last_line_start(end)
            else:  # a wrapped line: the previous one is full
                end, start = start, start - columns
            prepend_starts.append(start)
            prepend_lines.append(_printable(source.slice(start, end)))
        if prepend_lines:
            starts[:0] = prepend_starts[::-1]
            lines[:0] = prepend_lines[::-1]
            self.base -= len(prepend_lines)


def _move(row: int, column: int) -> str:
    return f"{CSI}{row + 1};{column + 1}H"


def _full_redraw(lines: list[str]) -> str:
    """Bytes that clear the screen and write every non-empty row."""
    return CLEAR_SCREEN + "".join(_move(row, 0) + line for row, line in enumerate(lines) if line)


def _row_update(row: int, old: str, new: str) -> str:
    """Bytes that turn screen row `row` from `old` into `new`: skip the common prefix, write the
    rest, erase what is left of a longer old line."""
    same, limit = 0, min(len(old), len(new))
    while same < limit and old[same] == new[same]:
        same += 1
    return _move(row, same) + new[same:] + (ERASE_TO_END_OF_LINE if len(new) < len(old) else "")


class TerminalScreen:
    """Draws frames on a terminal through `write(str)`; only changed parts are sent."""

    def __init__(self, write: Callable[[str], object], columns: int, rows: int) -> None:
        self._write = write
        self.columns = columns
        self.rows = rows
        self._lines: list[str] | None = None  # what the terminal shows now; None = unknown
        self._cursor: tuple[int, int] | None = None
        self.bytes_written = 0
        self.view: TailView | None = None  # the text's tail, kept from edits (attach/text_edited/update)
        self._shown_first: int | None = None  # view line index on the first text row; None = unknown

    # -- incremental path: edits in, changed cells out ----------------------------------------------
    def attach(self, source: TextSource) -> None:
        """Show `source`'s text from now on through `text_edited` + `update` (the demo's per-key path)."""
        self.view = TailView(source, self.columns, self.rows - 3)
        self._shown_first = None

    def text_edited(self, keep: int, add: str) -> None:
        """The text changed: its first `keep` characters stayed and `add` follows them."""
        self.view.edit(keep, add)

    def update(self, suggestions: Sequence[str], backend: str, input_name: str, latency_ms: float | None) -> int:
        """Bring the terminal to the attached text and these lines; returns the bytes sent.

        Work is bounded by what changed: the status and suggestion rows, the text rows from the
        first changed line down (usually one), and a scroll when the text moved by a few lines."""
        view, columns, rows = self.view, self.columns, self.rows
        if columns < MIN_COLUMNS or rows < MIN_ROWS:
            return self._draw_lines(_too_small(columns, rows), (0, 0), range(rows))
        text_rows = rows - 3
        first, shown = view.shown(text_rows)
        lines = [status_line(backend, input_name, latency_ms)[:columns], *shown,
                 suggestion_line(suggestions)[:columns], HELP_LINE[:columns]]
        cursor = (1 + view.last_index - first, len(view.lines[-1]))
        if self._lines is None or self._shown_first is None or view.full:
            check = range(rows)
            scroll = ""
        else:
            delta = first - self._shown_first
            dirty = text_rows if view.dirty is None else max(0, view.dirty - first)
            check = [0, rows - 2]
            scroll = ""
            if delta and abs(delta) <= MAX_SCROLL_ROWS and abs(delta) < text_rows:
                scroll = self._scroll_by(delta)
                revealed = range(text_rows - delta, text_rows) if delta > 0 else range(0, -delta)
                check += [1 + r for r in revealed]
            elif delta:
                dirty = 0
            check += [1 + r for r in range(dirty, text_rows)]
        self._shown_first = first
        view.clean()
        return self._draw_lines(lines, cursor, check, scroll)

    def _scroll_by(self, k: int) -> str:
        """Scroll the text rows by k (> 0: up) inside a scroll region; `self._lines` follows."""
        top, bottom = 1, self.rows - 3
        old = self._lines[top : bottom + 1]
        self._lines[top : bottom + 1] = old[k:] + [""] * k if k > 0 else [""] * -k + old[:k]
        if k > 0:
            motion = _move(bottom, 0) + "\n" * k  # LF at the bottom margin scrolls up
        else:
            motion = _move(top, 0) + REVERSE_INDEX * -k  # at the top margin: scrolls down
        return f"{CSI}{top + 1};{bottom + 1}r" + motion + RESET_SCROLL_REGION

    def _draw_lines(self, lines: list[str], cursor: tuple[int, int], check, prefix: str = "") -> int:
        """Rewrite the rows in `check` that differ from what the terminal shows (all of them when
        it is unknown), then place the cursor."""
        parts: list[str] = [prefix] if prefix else []
        if self._lines is None:
            parts.append(_full_redraw(lines))
        else:
            old_lines = self._lines
            for row in check:
                old, new = old_lines[row], lines[row]
                if old != new:
                    parts.append(_row_update(row, old, new))
                    old_lines[row] = new
        if parts or cursor != self._cursor:
            parts.append(_move(*cursor))
        if self._lines is None:
            self._lines = list(lines)
        self._cursor = cursor
        return self._send("".join(parts))

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
        if self.view is not None:
            self.view = TailView(self.view.source, columns, rows - 3)

    def draw(self, frame: Frame) -> int:
        """Bring the terminal to `frame`; returns the bytes sent."""
        lines, cursor = compose(frame, self.columns, self.rows)
        parts: list[str] = []
        if self._lines is None:
            parts.append(_full_redraw(lines))
        else:
            parts.append(self._scroll_text_area(lines))
            for row, (old, new) in enumerate(zip(self._lines, lines)):
                if old != new:
                    parts.append(_row_update(row, old, new))
        if parts or cursor != self._cursor:
            parts.append(_move(*cursor))
        self._lines, self._cursor = lines, cursor
        self._shown_first = None  # the next `update` compares every row
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
