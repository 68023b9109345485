"""US keyboard layout: Linux evdev key codes -> characters, with Shift and Caps Lock.

Pure data and functions, no evdev import: the numbers are those of the kernel's
`linux/input-event-codes.h` (a test checks them against python-evdev's `ecodes`), so this module
and `events.py` run anywhere, including the board before python-evdev is even opened.

Keypad keys other than Enter, function keys and non-US layouts are not mapped (they decode to
nothing and are ignored by `events.py`).
"""
from __future__ import annotations

# event types and codes we use (linux/input-event-codes.h)
EV_SYN = 0x00
EV_KEY = 0x01
EV_REL = 0x02
EV_MSC = 0x04
EV_LED = 0x11
SYN_REPORT = 0
SYN_DROPPED = 3
LED_CAPSL = 0x01

# key event values
KEY_RELEASE = 0
KEY_PRESS = 1
KEY_REPEAT = 2  # kernel auto-repeat while held

KEY_ESC = 1
KEY_BACKSPACE = 14
KEY_TAB = 15
KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_SPACE = 57
KEY_CAPSLOCK = 58
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97
KEY_RIGHTALT = 100
KEY_DELETE = 111
KEY_LEFTMETA = 125
KEY_RIGHTMETA = 126

KEY_1, KEY_2, KEY_3 = 2, 3, 4
KEY_A, KEY_C, KEY_D, KEY_W, KEY_Z = 30, 46, 32, 17, 44

SHIFT_KEYS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
CTRL_KEYS = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL})
ALT_KEYS = frozenset({KEY_LEFTALT, KEY_RIGHTALT})  # AltGr counts as Alt on a US layout
META_KEYS = frozenset({KEY_LEFTMETA, KEY_RIGHTMETA})
MODIFIER_KEYS = SHIFT_KEYS | CTRL_KEYS | ALT_KEYS | META_KEYS

# code -> (unshifted, shifted); the rows of a US keyboard as the kernel numbers them
_ROWS: list[tuple[int, str, str]] = [
    (2, "1234567890-=", "!@#$%^&*()_+"),  # KEY_1 .. KEY_EQUAL
    (16, "qwertyuiop[]", "QWERTYUIOP{}"),  # KEY_Q .. KEY_RIGHTBRACE
    (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),  # KEY_A .. KEY_GRAVE
    (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),  # KEY_BACKSLASH .. KEY_SLASH
]
US_LAYOUT: dict[int, tuple[str, str]] = {KEY_SPACE: (" ", " ")}
for _first_code, _plain, _shifted in _ROWS:
    for _offset, (_p, _s) in enumerate(zip(_plain, _shifted)):
        US_LAYOUT[_first_code + _offset] = (_p, _s)

# the 26 letter keys: Caps Lock only affects these, and a keyboard is a device that has all of them
LETTER_CODES = frozenset(code for code, (plain, _) in US_LAYOUT.items() if plain.isalpha())

# char -> (code, needs_shift): the inverse, used to turn terminal bytes into evdev key events
CHAR_TO_KEY: dict[str, tuple[int, bool]] = {}
for _code, (_p, _s) in sorted(US_LAYOUT.items()):
    CHAR_TO_KEY.setdefault(_p, (_code, False))
    CHAR_TO_KEY.setdefault(_s, (_code, True))


def char_for_key(code: int, shift: bool, caps_lock: bool) -> str | None:
    """The character a key types on a US layout, or None for a key that types nothing.

    Caps Lock inverts Shift for letters only (Caps Lock + Shift + a -> "a"; Caps Lock + 1 -> "1").
    """
    pair = US_LAYOUT.get(code)
    if pair is None:
        return None
    use_shifted = shift != caps_lock if code in LETTER_CODES else shift
    return pair[1] if use_shifted else pair[0]
