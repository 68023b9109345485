"""The key-event state machine: evdev-like `(type, code, value)` events in, edit actions out.

Pure logic (no devices, no terminal, no engine), so every rule here is tested with synthetic
events. Keys of the demo:

| keys | action |
|---|---|
| printable keys (US layout, Shift, Caps Lock) | `insert` the character |
| Enter, keypad Enter | `insert` "\\n" |
| Tab | `accept` suggestion 0 |
| Alt+1 / Alt+2 / Alt+3 | `accept` suggestion 0 / 1 / 2 |
| Backspace | `backspace` |
| Ctrl+Backspace, Alt+Backspace, Ctrl+W | `delete_word` |
| Esc, Ctrl+C, Ctrl+D | `quit` |
| Caps Lock | `caps_lock` (the device loop sets the keyboards' LED) |

Auto-repeat (value 2) repeats characters, Enter, Backspace and delete-word; it never repeats an
accept or a quit (holding Tab must not accept a chain of words). Modifiers are tracked per
source device, so a Shift held on one keyboard still shifts the other (as the kernel's console
does), and unplugging a keyboard releases whatever it held (`forget_source`). Unknown key codes,
non-key events (mouse motion, EV_MSC scan codes, LEDs) and key releases produce nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from keyboard_ui import keymap as K

INSERT = "insert"
BACKSPACE = "backspace"
DELETE_WORD = "delete_word"
ACCEPT = "accept"
QUIT = "quit"
CAPS_LOCK = "caps_lock"

_ALT_DIGIT_TO_SUGGESTION = {K.KEY_1: 0, K.KEY_2: 1, K.KEY_3: 2}


@dataclass(frozen=True)
class Action:
    """One edit the demo applies to the session: `kind` is one of the constants above."""

    kind: str
    text: str = ""  # INSERT: the characters typed
    index: int = 0  # ACCEPT: which suggestion (0-based)
    on: bool = False  # CAPS_LOCK: the new Caps Lock state


class KeyEventDecoder:
    """Turns a stream of `(type, code, value)` events into `Action`s (at most one per event)."""

    def __init__(self) -> None:
        self.caps_lock_on = False
        # source -> modifier key codes currently held on that source
        self._held_modifiers: dict[str, set[int]] = {}

    # -- modifier state -------------------------------------------------------------------------
    def _held(self, keys: frozenset[int]) -> bool:
        return any(held & keys for held in self._held_modifiers.values())

    @property
    def shift(self) -> bool:
        return self._held(K.SHIFT_KEYS)

    @property
    def ctrl(self) -> bool:
        return self._held(K.CTRL_KEYS)

    @property
    def alt(self) -> bool:
        return self._held(K.ALT_KEYS)

    @property
    def meta(self) -> bool:
        return self._held(K.META_KEYS)

    def forget_source(self, source: str) -> None:
        """A device went away (or dropped events): whatever it held is released."""
        self._held_modifiers.pop(source, None)

    # -- the state machine ----------------------------------------------------------------------
    def feed(self, event_type: int, code: int, value: int, source: str = "") -> Action | None:
        if event_type == K.EV_SYN and code == K.SYN_DROPPED:
            # the kernel's buffer overflowed: our idea of held keys may be stale
            self.forget_source(source)
            return None
        if event_type != K.EV_KEY:
            return None
        if code in K.MODIFIER_KEYS:
            held = self._held_modifiers.setdefault(source, set())
            if value == K.KEY_RELEASE:
                held.discard(code)
            else:
                held.add(code)
            return None
        if value not in (K.KEY_PRESS, K.KEY_REPEAT):
            return None  # releases (and out-of-range values) do nothing
        is_repeat = value == K.KEY_REPEAT
        return self._key_down(code, is_repeat)

    def _key_down(self, code: int, is_repeat: bool) -> Action | None:
        if code == K.KEY_CAPSLOCK:
            if is_repeat:
                return None
            self.caps_lock_on = not self.caps_lock_on
            return Action(CAPS_LOCK, on=self.caps_lock_on)
        if code == K.KEY_ESC:
            return None if is_repeat else Action(QUIT)
        if code == K.KEY_TAB:
            return None if is_repeat else Action(ACCEPT, index=0)
        if code == K.KEY_BACKSPACE:
            return Action(DELETE_WORD if (self.ctrl or self.alt) else BACKSPACE)
        if code in (K.KEY_ENTER, K.KEY_KPENTER):
            return Action(INSERT, text="\n")
        if self.ctrl:
            if code == K.KEY_W:
                return Action(DELETE_WORD)
            if code in (K.KEY_C, K.KEY_D) and not is_repeat:
                return Action(QUIT)
            return None  # other Ctrl+key chords are not ours
        if self.alt:
            if code in _ALT_DIGIT_TO_SUGGESTION and not is_repeat:
                return Action(ACCEPT, index=_ALT_DIGIT_TO_SUGGESTION[code])
            return None
        if self.meta:
            return None
        char = K.char_for_key(code, self.shift, self.caps_lock_on)
        if char is None:
            return None  # unknown or unmapped key (F-keys, arrows, keypad, media keys)
        return Action(INSERT, text=char)


def is_word_boundary(action: Action) -> bool:
    """After this action the current word is finished (the journal fsyncs here)."""
    if action.kind in (ACCEPT, DELETE_WORD, QUIT):
        return True
    if action.kind == INSERT:
        return any(not (c.isalnum() or c == "'") for c in action.text)
    return False
