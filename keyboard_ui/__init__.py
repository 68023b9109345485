"""keyboard_ui: the `edgetype demo` front end (docs/demo.md).

keymap (US layout, pure) -> events (key events -> edit actions, pure) -> app (the demo loop:
session, journal, screen) with devices (evdev keyboards, grab, hotplug) or terminal_input (raw
terminal fallback) or recording (JSON Lines record/replay) as input, render (ANSI diff redraw) as
output, journal (crash-safe typed text) alongside, cli (`edgetype demo`).
"""
