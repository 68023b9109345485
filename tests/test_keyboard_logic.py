"""Pure-logic tests of keyboard_ui: keymap, the event state machine, terminal bytes, the demo loop.

Synthetic events only (no devices, no terminal, no model): see test_keyboard_fakes.py for the
fake session.
"""
from __future__ import annotations

from keyboard_ui import events as E
from keyboard_ui import keymap as K
from keyboard_ui.app import Demo
from keyboard_ui.events import Action, KeyEventDecoder
from keyboard_ui.recording import InputEvent
from keyboard_ui.terminal_input import TerminalKeyDecoder
from test_keyboard_fakes import FakeSession


def press(code, value=K.KEY_PRESS):
    return (K.EV_KEY, code, value)


def release(code):
    return (K.EV_KEY, code, K.KEY_RELEASE)


def key(char):
    return K.CHAR_TO_KEY[char][0]


def feed_all(decoder, events, source=""):
    return [a for a in (decoder.feed(*e, source=source) for e in events) if a is not None]


def typed(actions):
    return "".join(a.text for a in actions if a.kind == E.INSERT)


# -- keymap ---------------------------------------------------------------------------------------
def test_key_codes_match_the_kernel_numbers_in_python_evdev():
    from evdev import ecodes  # a declared dependency (pyproject.toml): fail, not skip, without it

    names = [n for n in dir(K) if n.startswith(("KEY_", "EV_", "SYN_", "LED_"))
             and n not in ("KEY_RELEASE", "KEY_PRESS", "KEY_REPEAT")]
    assert len(names) > 20
    for name in names:
        assert getattr(K, name) == getattr(ecodes, name), name
    # every mapped key is the key evdev names for its unshifted character
    for code, (plain, _) in K.US_LAYOUT.items():
        if plain.isalnum():
            assert ecodes.KEY[code] == f"KEY_{plain.upper()}"


def test_shift_and_caps_lock_on_letters_digits_and_symbols():
    assert K.char_for_key(key("a"), shift=False, caps_lock=False) == "a"
    assert K.char_for_key(key("a"), shift=True, caps_lock=False) == "A"
    assert K.char_for_key(key("a"), shift=False, caps_lock=True) == "A"
    assert K.char_for_key(key("a"), shift=True, caps_lock=True) == "a"
    assert K.char_for_key(key("1"), shift=False, caps_lock=True) == "1"  # caps only shifts letters
    assert K.char_for_key(key("1"), shift=True, caps_lock=False) == "!"
    assert K.char_for_key(key("'"), shift=True, caps_lock=False) == '"'
    assert K.char_for_key(59, shift=False, caps_lock=False) is None  # KEY_F1
    assert len(K.LETTER_CODES) == 26


# -- the state machine ------------------------------------------------------------------------------
def test_shift_held_across_keys_and_released():
    decoder = KeyEventDecoder()
    actions = feed_all(decoder, [press(K.KEY_LEFTSHIFT), press(key("h")), release(key("h")),
                                 press(K.KEY_LEFTSHIFT, K.KEY_REPEAT),  # a held Shift repeats too
                                 press(key("i")), release(K.KEY_LEFTSHIFT), press(key("!"))])
    assert typed(actions) == "HI1"


def test_caps_lock_toggles_on_press_only_and_reports_led_state():
    decoder = KeyEventDecoder()
    actions = feed_all(decoder, [press(K.KEY_CAPSLOCK), press(K.KEY_CAPSLOCK, K.KEY_REPEAT),
                                 release(K.KEY_CAPSLOCK), press(key("q")),
                                 press(K.KEY_CAPSLOCK), release(K.KEY_CAPSLOCK), press(key("q"))])
    assert [a for a in actions if a.kind == E.CAPS_LOCK] == [Action(E.CAPS_LOCK, on=True),
                                                             Action(E.CAPS_LOCK, on=False)]
    assert typed(actions) == "Qq" and decoder.caps_lock_on is False


def test_auto_repeat_repeats_characters_and_backspace_but_not_accept_or_quit():
    decoder = KeyEventDecoder()
    actions = feed_all(decoder, [press(key("o")), press(key("o"), 2), press(key("o"), 2), release(key("o")),
                                 press(K.KEY_BACKSPACE), press(K.KEY_BACKSPACE, 2), release(K.KEY_BACKSPACE),
                                 press(K.KEY_TAB), press(K.KEY_TAB, 2), press(K.KEY_TAB, 2),
                                 press(K.KEY_ESC, 2)])
    assert typed(actions) == "ooo"
    assert [a.kind for a in actions].count(E.BACKSPACE) == 2
    assert [a for a in actions if a.kind == E.ACCEPT] == [Action(E.ACCEPT, index=0)]
    assert not any(a.kind == E.QUIT for a in actions)


def test_accept_delete_word_and_quit_keys():
    decoder = KeyEventDecoder()
    assert decoder.feed(*press(K.KEY_TAB)) == Action(E.ACCEPT, index=0)
    feed_all(decoder, [press(K.KEY_LEFTALT)])
    assert [decoder.feed(*press(key(d))) for d in "123"] == [Action(E.ACCEPT, index=i) for i in range(3)]
    assert decoder.feed(*press(key("4"))) is None  # Alt+4 is nothing
    assert decoder.feed(*press(K.KEY_BACKSPACE)) == Action(E.DELETE_WORD)  # Alt+Backspace
    feed_all(decoder, [release(K.KEY_LEFTALT), press(K.KEY_RIGHTCTRL)])
    assert decoder.feed(*press(K.KEY_BACKSPACE)) == Action(E.DELETE_WORD)  # Ctrl+Backspace
    assert decoder.feed(*press(K.KEY_BACKSPACE, 2)) == Action(E.DELETE_WORD)
    assert decoder.feed(*press(key("w"))) == Action(E.DELETE_WORD)
    assert decoder.feed(*press(key("x"))) is None  # Ctrl+X is not ours, types nothing
    assert decoder.feed(*press(key("c"))) == Action(E.QUIT)
    feed_all(decoder, [release(K.KEY_RIGHTCTRL)])
    assert decoder.feed(*press(K.KEY_BACKSPACE)) == Action(E.BACKSPACE)
    assert decoder.feed(*press(K.KEY_ENTER)) == Action(E.INSERT, text="\n")
    assert decoder.feed(*press(K.KEY_ESC)) == Action(E.QUIT)


def test_unknown_codes_mouse_events_and_releases_do_nothing():
    decoder = KeyEventDecoder()
    noise = [(K.EV_KEY, 0x110, 1), (K.EV_KEY, 0x110, 0),  # BTN_LEFT of a mouse
             (K.EV_REL, 0, 5), (K.EV_REL, 1, -3),  # mouse motion
             (K.EV_MSC, 4, 0x70004), (K.EV_SYN, K.SYN_REPORT, 0), (K.EV_LED, K.LED_CAPSL, 1),
             press(59), press(103), press(0x2FF), press(key("a"), 7), release(key("a"))]
    assert feed_all(decoder, noise) == []
    assert decoder.feed(*press(key("a"))) == Action(E.INSERT, text="a")


def test_modifiers_of_a_second_keyboard_and_unplugging_it():
    decoder = KeyEventDecoder()
    decoder.feed(*press(K.KEY_LEFTSHIFT), source="kbd2")
    assert decoder.feed(*press(key("a")), source="kbd1") == Action(E.INSERT, text="A")
    decoder.forget_source("kbd2")  # unplugged while Shift was held: Shift must not stick
    assert decoder.feed(*press(key("a")), source="kbd1") == Action(E.INSERT, text="a")
    decoder.feed(*press(K.KEY_LEFTSHIFT), source="kbd1")
    decoder.feed(K.EV_SYN, K.SYN_DROPPED, 0, source="kbd1")  # overflow: forget stale modifiers
    assert decoder.feed(*press(key("a")), source="kbd1") == Action(E.INSERT, text="a")


def test_word_boundaries():
    assert E.is_word_boundary(Action(E.INSERT, text=" "))
    assert E.is_word_boundary(Action(E.INSERT, text="\n"))
    assert not E.is_word_boundary(Action(E.INSERT, text="a"))
    assert not E.is_word_boundary(Action(E.INSERT, text="'"))
    assert E.is_word_boundary(Action(E.ACCEPT)) and not E.is_word_boundary(Action(E.BACKSPACE))


# -- terminal bytes -> evdev key events -------------------------------------------------------------
def terminal_typed(data: bytes, flush=True):
    terminal = TerminalKeyDecoder()
    key_events = terminal.feed(data) + (terminal.flush_escape() if flush else [])
    return feed_all(KeyEventDecoder(), key_events)


def test_terminal_bytes_become_the_same_actions_as_a_keyboard():
    actions = terminal_typed(b'Hi, "you"!\t\x7f\x17\r')
    assert typed(actions) == 'Hi, "you"!\n'
    assert [a.kind for a in actions if a.kind != E.INSERT] == [E.ACCEPT, E.BACKSPACE, E.DELETE_WORD]
    assert terminal_typed(b"\x1b1\x1b3\x1b\x7f") == [Action(E.ACCEPT, index=0), Action(E.ACCEPT, index=2),
                                                     Action(E.DELETE_WORD)]
    assert terminal_typed(b"\x03") == [Action(E.QUIT)]  # ^C in raw mode
    assert terminal_typed(b"\x08") == [Action(E.BACKSPACE)]


def test_terminal_escape_sequences_split_across_reads_and_lone_esc():
    terminal = TerminalKeyDecoder()
    assert feed_all(KeyEventDecoder(), terminal.feed(b"a\x1b[")) == [Action(E.INSERT, text="a")]
    assert terminal.waiting_for_escape
    assert terminal.feed(b"A") == [] and not terminal.waiting_for_escape  # ESC [ A: Up arrow
    events = terminal.feed(b"\x1b[1") + terminal.feed(b";5A") + terminal.feed(b"\x1bOP")  # Ctrl+Up, F1
    assert feed_all(KeyEventDecoder(), events) == []
    assert terminal.feed(b"\x1b") == [] and terminal.waiting_for_escape
    assert feed_all(KeyEventDecoder(), terminal.flush_escape()) == [Action(E.QUIT)]
    assert terminal_typed("é".encode()) == []  # no US key types it


# -- the demo loop with a fake session ----------------------------------------------------------------
def run_events(demo, raw_events):
    for event_type, code, value in raw_events:
        demo.handle(InputEvent(0.0, event_type, code, value))


def taps(text):
    out = []
    for char in text:
        code, shift = K.CHAR_TO_KEY[char]
        out += ([press(K.KEY_LEFTSHIFT)] if shift else []) + [press(code), release(code)]
        out += [release(K.KEY_LEFTSHIFT)] if shift else []
    return out


def test_backspace_and_delete_word_at_the_start_are_no_ops():
    session = FakeSession()
    demo = Demo(session, input_name="test")
    demo.start()
    run_events(demo, [press(K.KEY_BACKSPACE), press(K.KEY_LEFTCTRL), press(K.KEY_BACKSPACE)])
    assert session.text == "" and session.calls == []  # the engine is not even asked
    assert demo.keystrokes == 2


def test_accepting_suggestions_with_tab_and_alt_digits():
    session = FakeSession()
    demo = Demo(session, input_name="test")
    demo.start()
    run_events(demo, taps("Hel"))
    assert demo.suggestions == ["Hello", "Help", "Held"]
    run_events(demo, [press(K.KEY_LEFTALT), press(key("2")), release(key("2")), release(K.KEY_LEFTALT)])
    assert session.text == "Help"
    run_events(demo, taps(" w") + [press(K.KEY_TAB)])
    assert session.text == "Help world" and demo.accepted == 2
    run_events(demo, taps(" zz") + [press(K.KEY_TAB)])  # no suggestion for "zz": Tab does nothing
    assert session.text == "Help world zz" and demo.accepted == 2
    run_events(demo, [press(K.KEY_LEFTCTRL), press(K.KEY_BACKSPACE)])
    assert session.text == "Help world "
    summary = demo.summary()
    assert summary["text"] == "Help world " and summary["accepted"] == 2
    assert summary["keystrokes"] == 3 + 1 + 2 + 1 + 3 + 1 + 1
    assert summary["backend"] == "fake-onnx" and summary["keystroke_latency_ms"]["p50"] >= 0


def test_quit_stops_and_caps_lock_reaches_the_led_callback():
    leds = []
    demo = Demo(FakeSession(), input_name="test", on_caps_lock=leds.append)
    run_events(demo, [press(K.KEY_CAPSLOCK), press(key("a")), press(K.KEY_CAPSLOCK), press(K.KEY_ESC)])
    assert leds == [True, False] and demo.quit and demo.session.text == "A"
