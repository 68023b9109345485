"""The demo loop: input events -> edit actions -> the engine session -> journal and screen.

`Demo.handle(event)` is the whole per-keystroke path and has no I/O of its own beyond the
injected screen/journal/recorder, so the same code runs for evdev keyboards, the terminal
fallback and `--replay`. The three `run_*` functions are the device loops around it.

Keystroke latency (EVALUATION.md "End-to-end keystroke cost") is measured from the moment the
event reaches `handle` until the bytes of the updated screen are written, journal append included,
with its parts: `engine` (session + suggestions), `journal`, `render`. Every part costs O(1) in the
text's length: the session reports its edit (`last_edit`: keep, add), the journal appends it and
the screen re-wraps only the tail it changed (keyboard_ui/render.py TailView); nothing joins the
whole text per key. The journal's fsync at a finished word runs after the screen bytes are out
(`journal_sync`, not part of the latency: the next key is read after it).
Counted keystrokes are edit actions (insert, Enter, Backspace, delete-word, accept); modifiers,
Caps Lock and quit keys are not.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time
from array import array
from typing import Callable, Iterable, Protocol, Sequence

from keyboard_ui import events as E
from keyboard_ui.events import Action, KeyEventDecoder, is_word_boundary
from keyboard_ui.journal import Journal
from keyboard_ui.recording import EventRecorder, InputEvent
from keyboard_ui.render import Frame, TerminalScreen
from runtime.percentiles import percentile as percentile_of

SUGGESTION_COUNT = 3


class SuggestionLike(Protocol):
    word: str
    prob: float


class SessionLike(Protocol):
    """The engine contract (`runtime.engine.open_session`), as this package uses it."""

    backend_name: str
    text: str  # the whole text (O(n); read once at the end, never per key)
    text_buffer: object  # keyboard_ui.render.TextSource: __len__, slice, line_start (runtime/session_text.py)
    last_edit: tuple[int, str]  # (keep, add) of the last insert/backspace/delete_word/accept

    def insert(self, text: str) -> object: ...
    def backspace(self) -> object: ...
    def delete_word(self) -> object: ...
    def accept(self, i: int) -> str: ...
    def suggestions(self, k: int = 3) -> Sequence[SuggestionLike]: ...
    def close(self) -> None: ...


TIMING_PARTS = ("engine", "journal", "render", "journal_sync")


class KeyTimings:
    """Per-keystroke timings in arrays allocated once: memory does not grow with the session.

    Columns (float32 ms unless said): `total` (event in -> screen bytes out), its parts `engine`,
    `journal`, `render`, then `journal_sync` (the word-boundary fsync after the bytes are out) and
    `position` (text length after the key). Holds the last `capacity` keystrokes (a ring)."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self.columns = {name: array("f", bytes(4 * capacity)) for name in ("total", *TIMING_PARTS)}
        self.columns["position"] = array("l", bytes(array("l").itemsize * capacity))
        self.count = 0  # keystrokes seen (may exceed capacity)

    def add(self, total, engine, journal, render, journal_sync, position) -> None:
        i = self.count % self.capacity
        columns = self.columns
        columns["total"][i] = total
        columns["engine"][i] = engine
        columns["journal"][i] = journal
        columns["render"][i] = render
        columns["journal_sync"][i] = journal_sync
        columns["position"][i] = position
        self.count += 1

    def values(self, name: str) -> list:
        """The kept values of a column, oldest first."""
        column, n = self.columns[name], min(self.count, self.capacity)
        if self.count <= self.capacity:
            return column[:n].tolist()
        start = self.count % self.capacity
        return column[start:].tolist() + column[:start].tolist()


class Shutdown(BaseException):
    """SIGTERM/SIGHUP arrived: unwind through every `finally` (release keyboards, terminal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def install_shutdown_signals() -> dict:
    """SIGTERM and SIGHUP raise `Shutdown` (SIGINT already raises KeyboardInterrupt)."""

    def _raise(signum, frame):
        raise Shutdown(signum)

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, _raise)
    return previous


def restore_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class Demo:
    """One typing session: feeds events to the engine and keeps the journal and screen current."""

    def __init__(
        self,
        session: SessionLike,
        input_name: str,
        screen: TerminalScreen | None = None,
        journal: Journal | None = None,
        recorder: EventRecorder | None = None,
        on_caps_lock: Callable[[bool], object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        timings: KeyTimings | None = None,
    ) -> None:
        self.session = session
        self.input_name = input_name
        self.screen = screen
        self.journal = journal
        self.recorder = recorder
        self.on_caps_lock = on_caps_lock
        self.clock = clock
        self.decoder = KeyEventDecoder()
        self.suggestions: list[str] = []  # words shown now; Tab/Alt+N index into this
        self.quit = False
        self.events = 0
        self.keystrokes = 0
        self.accepted = 0
        self.timings = timings if timings is not None else KeyTimings()  # per keystroke, preallocated
        self.render_bytes_total = 0  # bytes sent to the terminal by keystrokes
        self.render_bytes_max = 0
        self.last_latency_ms: float | None = None

    # -- screen ---------------------------------------------------------------------------------
    def frame(self) -> Frame:
        return Frame(self.session.text, self.suggestions, self.session.backend_name, self.input_name,
                     self.last_latency_ms)

    def redraw(self) -> int:
        if self.screen is None:
            return 0
        if self.screen.view is None:
            self.screen.attach(self.session.text_buffer)
        return self.screen.update(self.suggestions, self.session.backend_name, self.input_name,
                                  self.last_latency_ms)

    def start(self) -> None:
        """Suggestions for the text as it is (empty or restored) and the first full draw."""
        self.suggestions = [s.word for s in self.session.suggestions(SUGGESTION_COUNT)]
        if self.screen is not None:
            self.screen.attach(self.session.text_buffer)
        self.redraw()

    # -- the per-keystroke path -----------------------------------------------------------------
    def handle(self, event: InputEvent, source: str = "") -> Action | None:
        self.events += 1
        if self.recorder is not None:
            self.recorder.write(event)
        action = self.decoder.feed(event.type, event.code, event.value, source)
        if action is None:
            return None
        if action.kind == E.CAPS_LOCK:
            if self.on_caps_lock is not None:
                self.on_caps_lock(action.on)
            return action
        if action.kind == E.QUIT:
            self.quit = True
            return action
        clock = self.clock
        started = clock()
        edited = self._apply(action)
        self.suggestions = [s.word for s in self.session.suggestions(SUGGESTION_COUNT)]
        engine_done = clock()
        keep, add = self.session.last_edit if edited else (0, "")
        if self.journal is not None and edited:
            self.journal.record_edit(keep, add, False, self._whole_text)  # the append: one os.write
        journal_done = clock()
        if self.screen is not None:
            if edited:
                self.screen.text_edited(keep, add)
            sent = self.redraw()
            self.render_bytes_total += sent
            self.render_bytes_max = max(self.render_bytes_max, sent)
        done = clock()
        if self.journal is not None and is_word_boundary(action):
            # the fsync (or compaction) of a finished word runs once the screen is out, before the
            # next key is read: a power cut still loses at most that word; the user does not wait
            self.journal.word_boundary(self._whole_text)
        self.last_latency_ms = (done - started) * 1e3
        self.keystrokes += 1
        self.timings.add(self.last_latency_ms, (engine_done - started) * 1e3, (journal_done - engine_done) * 1e3,
                         (done - journal_done) * 1e3, (clock() - done) * 1e3, len(self.session.text_buffer))
        return action

    def _whole_text(self) -> str:
        return self.session.text  # O(n): only for a journal compaction (amortised) or a retry

    def _apply(self, action: Action) -> bool:
        """Apply one edit action to the session; False when it changed nothing."""
        session = self.session
        if action.kind == E.INSERT:
            session.insert(action.text)
            return bool(action.text)
        if action.kind in (E.BACKSPACE, E.DELETE_WORD):
            if not len(session.text_buffer):
                return False  # nothing to delete at the start of the text
            if action.kind == E.BACKSPACE:
                session.backspace()
            else:
                session.delete_word()
            return True
        if action.kind == E.ACCEPT and action.index < len(self.suggestions):
            session.accept(action.index)
            self.accepted += 1
            return True
        return False

    def summary(self) -> dict:
        latencies = sorted(self.timings.values("total"))

        def percentile(q: float, values=latencies) -> float | None:  # q in 0..1
            value = percentile_of(values, q * 100)
            return None if value is None else round(value, 3)

        result = {
            "text": self.session.text,
            "suggestions": list(self.suggestions),  # shown after the last keystroke
            "keystrokes": self.keystrokes,
            "accepted": self.accepted,
            "backend": self.session.backend_name,
            "input": self.input_name,
            "events": self.events,
            "keystroke_latency_ms": {"p50": percentile(0.50), "p95": percentile(0.95), "p99": percentile(0.99),
                                     "max": round(latencies[-1], 3) if latencies else None},
            "keystroke_latency_parts_ms": {
                name: {"p50": percentile(0.50, sorted(self.timings.values(name))),
                       "p99": percentile(0.99, sorted(self.timings.values(name)))}
                for name in TIMING_PARTS},
            "core": getattr(self.session, "core_name", None),
        }
        if self.screen is not None and self.keystrokes:
            result["render"] = {
                "columns": self.screen.columns,
                "rows": self.screen.rows,
                "bytes_per_keystroke_mean": round(self.render_bytes_total / self.keystrokes, 1),
                "bytes_per_keystroke_max": self.render_bytes_max,
                "full_redraw_bytes": self.screen.full_redraw_bytes(self.frame()),
            }
        return result


# -- device loops -------------------------------------------------------------------------------
def run_replay(demo: Demo, recorded: Iterable[InputEvent], realtime: bool = False) -> None:
    """Feed a recording; `realtime` sleeps to each event's `sec` (used to kill a run mid-session)."""
    started = time.monotonic()
    for event in recorded:
        if realtime:
            delay = event.sec - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
        demo.handle(event)
        if demo.quit:
            return


def run_terminal(demo: Demo, source, on_resize: Callable[[], object] | None = None) -> None:
    """Read the raw terminal until Esc/^C/^D or end of input."""
    started_wall_s = time.time()
    while not demo.quit and not source.closed:
        try:
            key_events = source.poll(0.5)
        except InterruptedError:
            key_events = []
        if on_resize is not None:
            on_resize()
        for event_type, code, value in key_events:
            demo.handle(InputEvent(time.time() - started_wall_s, event_type, code, value), source="terminal")
            if demo.quit:
                return


def run_evdev(demo: Demo, keyboards, on_resize: Callable[[], object] | None = None) -> None:
    """Read the grabbed keyboards (with hotplug) until Esc/Ctrl+C/Ctrl+D."""
    shown_devices: list[str] = []
    while not demo.quit:
        pairs = keyboards.poll(0.5)
        if on_resize is not None:
            on_resize()
        for path in keyboards.gone:
            demo.decoder.forget_source(path)
        current = sorted(keyboards.devices)
        if current != shown_devices:
            shown_devices = current
            demo.input_name = "evdev " + ",".join(current) if current else "no keyboard: plug one in"
            demo.redraw()
        for path, event in pairs:
            demo.handle(event, source=path)
            if demo.quit:
                return


class TerminalSizeWatcher:
    """Polls the terminal size on SIGWINCH (flag set in the handler, acted on in the loop)."""

    def __init__(self, fd: int, screen: TerminalScreen, redraw: Callable[[], object]) -> None:
        self.fd, self.screen, self._redraw = fd, screen, redraw
        self._changed = False
        self._previous_handler = signal.signal(signal.SIGWINCH, self._on_signal)

    def restore(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGWINCH, self._previous_handler)
            self._previous_handler = None

    def _on_signal(self, signum, frame) -> None:
        self._changed = True

    def __call__(self) -> None:
        if self._changed:
            self._changed = False
            columns, rows = terminal_size(self.fd)
            self.screen.resize(columns, rows)
            self._redraw()


def terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return size.columns, size.lines
    except OSError:
        return 80, 24


def ask_yes_no(question: str, in_fd: int, out=sys.stderr) -> bool:
    """One line of input in the terminal's normal mode; anything but y/yes is no."""
    out.write(question)
    out.flush()
    answer = b""
    while not answer.endswith(b"\n"):
        ready, _, _ = select.select([in_fd], [], [], None)
        chunk = os.read(in_fd, 64) if ready else b""
        if not chunk:
            break
        answer += chunk
    return answer.decode("utf-8", "replace").strip().lower() in ("y", "yes")
