"""The ANSI renderer (diff redraw, bytes per keystroke, wrapping, tiny terminals) and the journal."""
from __future__ import annotations

import json
import random
import re

import pytest

from keyboard_ui.journal import Journal, JournalError, read_journal_text, set_aside
from keyboard_ui.render import MIN_COLUMNS, MIN_ROWS, Frame, TerminalScreen, compose, wrap_text

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class VirtualTerminal:
    """Just enough of a VT100 to check what the renderer sends: CUP, ED 2, EL, printing."""

    def __init__(self, columns, rows):
        self.columns, self.rows = columns, rows
        self.cells = [[" "] * columns for _ in range(rows)]
        self.row = self.column = 0
        self.top, self.bottom = 0, rows - 1  # scroll region (DECSTBM)

    def _scroll(self, up: bool) -> None:
        region = self.cells[self.top : self.bottom + 1]
        blank = [" "] * self.columns
        region = region[1:] + [blank] if up else [blank] + region[:-1]
        self.cells[self.top : self.bottom + 1] = region

    def feed(self, data: str) -> None:
        i = 0
        while i < len(data):
            if data[i] == "\n":  # LF: down a row, scrolling the region at its bottom margin
                if self.row == self.bottom:
                    self._scroll(up=True)
                else:
                    self.row = min(self.row + 1, self.rows - 1)
                i += 1
                continue
            if data.startswith("\x1bM", i):  # reverse index
                if self.row == self.top:
                    self._scroll(up=False)
                else:
                    self.row = max(self.row - 1, 0)
                i += 2
                continue
            match = _CSI.match(data, i)
            if match:
                params, final = match.groups()
                if final == "r":
                    parts = [int(p) for p in params.split(";")] if params else [1, self.rows]
                    self.top, self.bottom = parts[0] - 1, parts[1] - 1
                    self.row = self.column = 0  # DECSTBM homes the cursor
                elif final == "H":
                    parts = [int(p) for p in params.split(";")] if params else [1, 1]
                    self.row, self.column = parts[0] - 1, parts[1] - 1
                elif final == "J" and params == "2":
                    self.cells = [[" "] * self.columns for _ in range(self.rows)]
                elif final == "K":
                    self.cells[self.row][self.column:] = [" "] * (self.columns - self.column)
                else:
                    raise AssertionError(f"unexpected escape {match.group(0)!r}")
                i = match.end()
                continue
            assert data[i].isprintable(), repr(data[i])
            assert self.column < self.columns, "renderer wrote past the right edge"
            self.cells[self.row][self.column] = data[i]
            self.column += 1
            i += 1

    def lines(self):
        return ["".join(row).rstrip() for row in self.cells]


def frame(text, suggestions=("hello", "help", "held"), latency_ms=1.5):
    return Frame(text, list(suggestions), "onnx", "terminal", latency_ms)


def test_diff_redraw_reproduces_every_frame_exactly():
    rng = random.Random(7)
    columns, rows = 30, 8
    terminal = VirtualTerminal(columns, rows)
    screen = TerminalScreen(terminal.feed, columns, rows)
    text = ""
    for step in range(300):
        choice = rng.random()
        if choice < 0.7:
            text += rng.choice("abcde fgh\n")
        elif choice < 0.9:
            text = text[:-1]
        else:
            text = text[: rng.randrange(len(text) + 1)]
        words = rng.sample(["a", "bb", "ccc", "dddd", "eeeee"], rng.randrange(4))
        current = frame(text, words, latency_ms=rng.random() * 50)
        screen.draw(current)
        expected_lines, cursor = compose(current, columns, rows)
        assert terminal.lines() == [line.rstrip() for line in expected_lines], step
        assert (terminal.row, terminal.column) == cursor, step


def test_a_typical_keystroke_writes_far_less_than_a_full_redraw():
    terminal = VirtualTerminal(80, 24)
    screen = TerminalScreen(terminal.feed, 80, 24)
    text = "The quick brown fox jumps over the lazy dog. " * 40  # more than the 21 text rows hold
    screen.draw(frame(text))
    per_keystroke = []
    typing = "Hello world, this line fills up and the text scrolls by one row. " * 3
    for char in typing + "\b" * 90:  # then Backspace back over line starts (scrolls down)
        text = text[:-1] if char == "\b" else text + char
        current = frame(text, ("world", "work", "wonder"), latency_ms=12.3 + len(text) % 50)
        per_keystroke.append(screen.draw(current))
        lines, cursor = compose(current, 80, 24)
        assert terminal.lines() == [line.rstrip() for line in lines]
    full = screen.full_redraw_bytes(frame(text))
    mean = sum(per_keystroke) / len(per_keystroke)
    print(f"80x24: mean {mean:.1f} bytes/keystroke (max {max(per_keystroke)}), full redraw {full} bytes")
    assert full > 1500
    assert mean < full / 20 and max(per_keystroke) < full / 5  # scrolling included


def test_wrapping_shows_the_last_lines_and_puts_the_cursor_after_the_text():
    assert wrap_text("abcdef", 3) == (["abc", "def", ""], 2, 0)
    assert wrap_text("ab\ncd", 3) == (["ab", "cd"], 1, 2)
    lines, cursor = compose(frame("x" * 25 + "\nlast"), 20, 6)  # 3 text rows
    assert lines[1:4] == ["x" * 20, "xxxxx", "last"] and cursor == (3, 4)
    lines, cursor = compose(frame("line1\nline2\nline3\nline4"), 20, 6)
    assert lines[1:4] == ["line2", "line3", "line4"] and cursor == (3, 5)
    assert lines[4] == "1 hello   2 help   3"  # cut at the width
    assert all(len(line) <= 20 for line in lines)
    assert lines[0].startswith("backend onnx") and "1.5 ms" in compose(frame("x"), 60, 6)[0][0]


@pytest.mark.parametrize("columns,rows", [(MIN_COLUMNS - 1, 24), (5, 24), (1, 1), (80, 3)])
def test_a_too_small_terminal_gets_a_message_not_garbage(columns, rows):
    terminal = VirtualTerminal(columns, rows)
    screen = TerminalScreen(terminal.feed, columns, rows)
    screen.draw(frame("some text"))
    screen.draw(frame("some text more"))
    raw = "".join("".join(row) for row in terminal.cells)
    message = f"edgetype: terminal too small, need {MIN_COLUMNS}x{MIN_ROWS}"
    assert raw.startswith(message[: columns * rows]) and "some text" not in raw
    screen.resize(80, 24)
    terminal.__init__(80, 24)
    screen.draw(frame("some text"))
    assert "some text" in terminal.lines()[1]


# -- journal ------------------------------------------------------------------------------------------
def test_journal_records_typing_backspace_and_replacement(tmp_path):
    path = str(tmp_path / "journal.txt")
    journal = Journal(path)
    states = ["H", "He", "Hel", "He", "Help", "Help ", "Help w", "Help ", "Help world"]
    previous = ""
    for state in states:
        journal.record(previous, state, word_boundary=state.endswith(" "))
        previous = state
        assert read_journal_text(path) == state  # on disk after every keystroke, no buffering
    journal.record(previous, previous, word_boundary=True)  # no change: no line
    journal.close()
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == 1 + len(states)
    assert json.loads(lines[4]) == {"keep": 2, "add": ""}  # the Backspace


def test_journal_ignores_a_torn_last_line_and_names_a_corrupt_one(tmp_path):
    path = tmp_path / "journal.txt"
    path.write_text('{"edgetype_journal": 1}\n{"keep": 0, "add": "Hello "}\n{"keep": 6, "add": "wo')
    assert read_journal_text(str(path)) == "Hello "
    path.write_text('{"edgetype_journal": 1}\nnot json\n{"keep": 0, "add": "x"}\n')
    with pytest.raises(JournalError, match=r"journal\.txt:2"):
        read_journal_text(str(path))
    path.write_text('{"edgetype_journal": 1}\n{"keep": 9, "add": "x"}\n')
    with pytest.raises(JournalError, match=r":2: bad edit"):
        read_journal_text(str(path))
    assert read_journal_text(str(tmp_path / "missing.txt")) == ""


def test_journal_compacts_on_start_and_sets_aside_a_declined_one(tmp_path):
    path = str(tmp_path / "state" / "edgetype" / "journal.txt")
    journal = Journal(path)
    text = ""
    for char in "one two three":
        journal.record(text, text + char, word_boundary=char == " ")
        text += char
    journal.close()
    restored = read_journal_text(path)
    assert restored == "one two three"
    Journal(path, base_text=restored).close()
    assert open(path).read().count("\n") == 2 and read_journal_text(path) == restored
    assert not [p for p in (tmp_path / "state" / "edgetype").iterdir() if ".tmp" in p.name]
    kept = set_aside(path)
    assert kept == path + ".prev" and read_journal_text(kept) == restored and read_journal_text(path) == ""


# -- the incremental path: TailView + TerminalScreen.update against compose (the reference) -----------
class _CountingText:
    """runtime/session_text.py SessionText that counts the characters the renderer reads."""

    def __init__(self):
        from runtime.session_text import SessionText

        self.text = SessionText()
        self.read = 0

    def __len__(self):
        return len(self.text)

    def slice(self, start, end):
        self.read += max(0, end - start)
        return self.text.slice(start, end)

    def line_start(self, pos):
        return self.text.line_start(pos)


@pytest.mark.parametrize("columns,rows,seed", [(30, 8, 1), (20, 5, 2), (25, 4, 3), (40, 12, 4)])
def test_incremental_update_shows_exactly_what_compose_shows(columns, rows, seed):
    rng = random.Random(seed)
    terminal = VirtualTerminal(columns, rows)
    screen = TerminalScreen(terminal.feed, columns, rows)
    source = _CountingText()
    text = source.text
    screen.attach(source)
    for step in range(400):
        choice = rng.random()
        if choice < 0.6:
            keep, add = len(text), rng.choice(["a", "b", " ", "\n", "xyz", "\t", "é", "w" * columns])
            text.insert(add)
        elif choice < 0.8:
            text.backspace()
        elif choice < 0.9:
            text.delete_word()
        elif choice < 0.95:
            text.insert("".join(rng.choice("ab \n") for _ in range(rng.randrange(2 * columns * rows))))
        else:
            while len(text) and rng.random() < 0.97:  # a long delete, above the cached lines
                text.backspace()
        screen.text_edited(*text.last_edit)
        words = rng.sample(["a", "bb", "ccc", "dddd"], rng.randrange(4))
        latency = rng.random() * 50
        screen.update(words, "onnx", "terminal", latency)
        expected_lines, cursor = compose(frame(text.text, words, latency_ms=latency), columns, rows)
        assert terminal.lines() == [line.rstrip() for line in expected_lines], step
        assert (terminal.row, terminal.column) == cursor, step
        if step == 200:  # a resize in the middle: the view re-reads its tail
            columns, rows = columns + 3, rows + 1
            terminal.__init__(columns, rows)
            screen.resize(columns, rows)


def test_a_keystroke_reads_a_bounded_tail_whatever_the_text_length():
    """At 30,000 characters a typed key reads at most about one line of the text, as at 100."""
    columns, rows = 80, 24
    sent = []
    screen = TerminalScreen(sent.append, columns, rows)
    source = _CountingText()
    screen.attach(source)
    words = ["alpha", "beta", "gamma"]
    paragraph = ("The quick brown fox jumps over the lazy dog. " * 30 + "\n") * 4
    read_per_key = {}
    while len(source.text) < 30_000:
        for char in paragraph:
            before = source.read
            source.text.insert(char)
            screen.text_edited(*source.text.last_edit)
            screen.update(words, "onnx", "terminal", 1.0)
            read_per_key.setdefault(len(source.text) // 10_000, []).append(source.read - before)
            sent.clear()
        source.text.backspace()
        screen.text_edited(*source.text.last_edit)
        screen.update(words, "onnx", "terminal", 1.0)
    assert max(read_per_key[0]) <= columns + 1 and max(read_per_key[2]) <= columns + 1, (
        max(read_per_key[0]), max(read_per_key[2]))
    terminal = VirtualTerminal(columns, rows)  # the screen as a fresh terminal would get it now
    screen._write = terminal.feed
    screen.resize(columns, rows)
    screen.update(words, "onnx", "terminal", 1.0)
    lines, cursor = compose(frame(source.text.text, words, latency_ms=1.0), columns, rows)
    assert terminal.lines() == [line.rstrip() for line in lines] and (terminal.row, terminal.column) == cursor


@pytest.mark.parametrize("paragraph_length", [20, 40, 7, 0])
def test_lines_read_back_after_deletes_match_full_and_empty_paragraphs(paragraph_length):
    """Backspacing up through paragraphs of exactly the width (an empty line follows each) and empty ones."""
    columns, rows = 20, 6
    terminal = VirtualTerminal(columns, rows)
    screen = TerminalScreen(terminal.feed, columns, rows)
    source = _CountingText()
    screen.attach(source)
    source.text.insert(("x" * paragraph_length + "\n") * 12 + "tail")
    screen.text_edited(*source.text.last_edit)
    screen.update([], "onnx", "terminal", None)
    while len(source.text):
        source.text.backspace()
        screen.text_edited(*source.text.last_edit)
        screen.update([], "onnx", "terminal", None)
        lines, cursor = compose(frame(source.text.text, [], latency_ms=None), columns, rows)
        assert terminal.lines() == [line.rstrip() for line in lines], len(source.text)
        assert (terminal.row, terminal.column) == cursor, len(source.text)
