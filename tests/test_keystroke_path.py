"""The demo's per-key path never touches the whole text (keyboard_ui/app.py, runtime/engine.py):
no `Session.text` join, no whole-text journal diff, no whole-text wrap, whatever the text's length."""
from __future__ import annotations

import pytest
from test_bundle import make_tiny_bundle

from keyboard_ui import render
from keyboard_ui.app import Demo
from keyboard_ui.journal import Journal
from keyboard_ui.recording import InputEvent
from keyboard_ui.render import TerminalScreen
from runtime.bundle import load_bundle
from runtime.engine import Session, open_session


def _key_events(text):
    from keyboard_ui import keymap as K

    events = []
    for char in text:
        if char == "\n":
            code, shift = K.KEY_ENTER, False
        else:
            code, shift = K.CHAR_TO_KEY[char]
        if shift:
            events.append(InputEvent(0.0, K.EV_KEY, K.KEY_LEFTSHIFT, 1))
        events += [InputEvent(0.0, K.EV_KEY, code, 1), InputEvent(0.0, K.EV_KEY, code, 0)]
        if shift:
            events.append(InputEvent(0.0, K.EV_KEY, K.KEY_LEFTSHIFT, 0))
    return events


def test_no_whole_text_work_per_key(tmp_path, monkeypatch):
    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", window=32))
    session = open_session(bundle, backend="numpy")
    session.insert("A long text typed before. " * 400 + "\n")  # 10,000 characters already there
    journal = Journal(str(tmp_path / "journal.txt"), base_text=session.text)
    screen = TerminalScreen(lambda data: None, 80, 24)
    demo = Demo(session, input_name="test", screen=screen, journal=journal)
    demo.start()
    whole_text_reads = []
    original = Session.text

    def counting_text(self):
        whole_text_reads.append(1)
        return original.fget(self)

    monkeypatch.setattr(Session, "text", property(counting_text))
    monkeypatch.setattr(render, "wrap_text", lambda *a: pytest.fail("whole-text wrap on the per-key path"))
    for event in _key_events("Then the cat sat. It was\nlate, and "):
        demo.handle(event)
    demo.handle(InputEvent(0.0, 1, 14, 1))  # Backspace
    journal.close()
    assert demo.keystrokes > 30
    # the journal may read the whole text only to compact (amortised), never per key
    assert len(whole_text_reads) <= journal.compactions, len(whole_text_reads)
    monkeypatch.setattr(Session, "text", original)
    from keyboard_ui.journal import read_journal_text

    assert session.text.endswith("It was\nlate, and")
    assert read_journal_text(str(tmp_path / "journal.txt")) == session.text
