"""Subcommands of this package for the `edgetype` CLI (see runtime/cli.py): `edgetype demo`."""
from __future__ import annotations

import json
import os
import sys

from runtime.errors import UserError

BACKENDS = ("onnx", "cmodel", "tpu", "numpy")
REPLAY_SCREEN_COLUMNS, REPLAY_SCREEN_ROWS = 80, 24  # the virtual screen a replay renders to


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    demo = subparsers.add_parser(
        "demo",
        help="type with live suggestions (evdev keyboard, or the terminal as a fallback)",
        description="Type with live suggestions. Keys: Tab or Alt+1..3 accept a suggestion, Backspace, "
        "Ctrl+Backspace (or Ctrl+W) deletes a word, Enter, Esc quits. See docs/demo.md.",
    )
    demo.add_argument("--backend", choices=BACKENDS, default="onnx", help="model backend (default: onnx)")
    demo.add_argument("--bundle", metavar="DIR", default=None, help="model bundle directory")
    demo.add_argument("--core", choices=("auto", "native", "python"), default="auto",
                      help="keystroke core (default auto: native, else the numpy twin, said on stderr)")
    demo.add_argument("--input", choices=("auto", "evdev", "terminal"), default="auto",
                      help="auto: evdev keyboards when usable, else the terminal (default)")
    demo.add_argument("--keyboard", metavar="DEVICE", default=None,
                      help="use only this evdev device (/dev/input/eventN); default: every keyboard found")
    demo.add_argument("--list-keyboards", action="store_true", help="list evdev input devices and exit")
    demo.add_argument("--record", metavar="FILE", help="write every input event to FILE (JSON Lines)")
    demo.add_argument("--replay", metavar="FILE", help="feed a recorded session instead of a keyboard")
    demo.add_argument("--realtime", action="store_true", help="with --replay: keep the recorded timing")
    demo.add_argument("--json", action="store_true",
                      help="with --replay or --list-keyboards: print one JSON object on stdout")
    demo.add_argument("--journal", metavar="FILE", default=None,
                      help="journal of typed text (default: $XDG_STATE_HOME/edgetype/journal.txt; "
                      "replays: replay-journal.txt there)")
    demo.add_argument("--no-journal", action="store_true", help="keep no journal")
    demo.add_argument("--restore", choices=("ask", "yes", "no"), default="ask",
                      help="restore text left in the journal (interactive runs only; default: ask)")
    demo.set_defaults(func=run_demo)


def open_engine_session(bundle: str | None, backend: str, core: str = "auto"):
    """`runtime.engine.open_session`, imported only now (the demo is the engine's only caller here)."""
    try:
        from runtime import engine
    except ModuleNotFoundError as error:
        if error.name in ("runtime.engine",):
            raise UserError(
                "the suggestion engine runtime/engine.py is not in this installation; "
                "update edgetype (the demo needs runtime.engine.open_session)"
            ) from error
        raise
    if core == "auto":
        return engine.open_session(bundle=bundle, backend=backend)
    return engine.open_session(bundle=bundle, backend=backend, core=core)


def _journal_path(args, replay: bool) -> str | None:
    from keyboard_ui.journal import default_journal_path

    if args.no_journal:
        return None
    if args.journal:
        return args.journal
    return default_journal_path("replay-journal.txt" if replay else "journal.txt")


def run_demo(args) -> int:
    if args.list_keyboards:
        return _list_keyboards(args)
    if args.json and not args.replay:
        raise UserError("--json needs --replay FILE (an interactive demo draws on stdout)")
    if args.replay and (args.keyboard or args.input != "auto"):
        raise UserError("--replay FILE replaces the keyboard: drop --keyboard/--input")
    if args.realtime and not args.replay:
        raise UserError("--realtime only applies to --replay FILE")
    from keyboard_ui.app import Shutdown

    try:
        if args.replay:
            return _run_replay(args)
        return _run_interactive(args)
    except Shutdown as shutdown:
        print(f"edgetype: stopped by signal {shutdown.signum}", file=sys.stderr)
        return 128 + shutdown.signum


def _list_keyboards(args) -> int:
    from keyboard_ui.devices import describe_keyboards

    found = describe_keyboards()
    if args.json:
        print(json.dumps({"devices": found}))
    else:
        for device in found:
            kind = "keyboard" if device["keyboard"] else "not a keyboard"
            print(f"{device['path']}\t{kind}\t{device.get('name') or device.get('error')}")
        if not found:
            print("no /dev/input/event* devices", file=sys.stderr)
    return 0


def _quietly(cleanup) -> None:
    """Run a cleanup step; a terminal or device that is already gone is not an error any more."""
    import termios

    try:
        cleanup()
    except (OSError, termios.error) as error:
        print(f"edgetype: cleanup: {error}", file=sys.stderr)


def _run_replay(args) -> int:
    from keyboard_ui.app import Demo, install_shutdown_signals, restore_signals, run_replay
    from keyboard_ui.journal import Journal, JournalLock, read_journal_text, set_aside
    from keyboard_ui.recording import EventRecorder, check_record_target, read_recording
    from keyboard_ui.render import TerminalScreen

    recorded = read_recording(args.replay)  # malformed lines fail before the model loads
    journal_path = _journal_path(args, replay=True)
    if args.record:
        check_record_target(args.record, replay=args.replay, journal=journal_path)
    journal = recorder = None
    lock = JournalLock(journal_path) if journal_path else None  # one owner, before anything is read
    try:
        kept = (set_aside(journal_path) if journal_path and lock.held and read_journal_text(journal_path)
                else None)
        if kept:  # replays start a fresh journal; the text of the last one is kept, never lost
            print(f"edgetype: previous replay journal kept as {kept}", file=sys.stderr)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    previous_signals = install_shutdown_signals()
    try:
        session = None
        session = open_engine_session(args.bundle, args.backend, args.core)
        journal = Journal(journal_path, lock=lock) if journal_path else None
        recorder = EventRecorder(args.record) if args.record else None
        screen = TerminalScreen(lambda data: None, REPLAY_SCREEN_COLUMNS, REPLAY_SCREEN_ROWS)
        demo = Demo(session, input_name=f"replay {os.path.basename(args.replay)}", screen=screen,
                    journal=journal, recorder=recorder)
        print(f"edgetype: replaying {len(recorded)} events from {args.replay} "
              f"(backend {session.backend_name}, core {getattr(session, 'core_name', '?')})", file=sys.stderr)
        demo.start()
        run_replay(demo, recorded, realtime=args.realtime)
        result = demo.summary()
        result["journal"] = journal_path
    finally:
        for closeable in (journal, recorder, session):
            if closeable is not None:
                closeable.close()
        if lock is not None:
            lock.release()  # idempotent: the journal's close released it already
        restore_signals(previous_signals)
    if args.json:
        print(json.dumps(result))
    else:
        print(result["text"])
        print(f"edgetype: backend {result['backend']}, core {result.get('core')}, {result['keystrokes']} keystrokes, "
              f"{result['accepted']} accepted", file=sys.stderr)
    return 0


def _open_keyboards(args):
    """The KeyboardSet to read, or None to fall back to the terminal (auto mode only)."""
    from keyboard_ui.devices import KeyboardSet

    wants_evdev = args.input == "evdev" or args.keyboard is not None
    if args.input == "terminal":
        if args.keyboard:
            raise UserError("--keyboard needs --input evdev or auto")
        return None
    keyboards = KeyboardSet(wanted_path=args.keyboard)
    try:
        found = keyboards.open()
    except UserError:
        if wants_evdev:
            raise
        found = []
    if found:
        return keyboards
    keyboards.release()
    if wants_evdev:
        raise UserError("no evdev keyboard found in /dev/input (need read access, e.g. root); "
                        "use --input terminal")
    return None


def _run_interactive(args) -> int:
    from keyboard_ui.app import (Demo, TerminalSizeWatcher, ask_yes_no, install_shutdown_signals,
                                 restore_signals, run_evdev, run_terminal, terminal_size)
    from keyboard_ui.journal import Journal, JournalLock, read_journal_text, set_aside
    from keyboard_ui.recording import EventRecorder, check_record_target
    from keyboard_ui.render import ENTER_ALTERNATE_SCREEN, LEAVE_ALTERNATE_SCREEN, TerminalScreen
    from keyboard_ui.terminal_input import RawTerminal, TerminalKeySource

    stdin_fd, stdout = 0, sys.stdout  # fd 0 even when sys.stdin was replaced
    journal_path = _journal_path(args, replay=False)
    if args.record:
        check_record_target(args.record, journal=journal_path)
    lock = JournalLock(journal_path) if journal_path else None  # one owner, taken before reading
    try:
        restored_text = read_journal_text(journal_path) if journal_path else ""
        if restored_text:
            restore = args.restore == "yes"
            if args.restore == "ask":
                # no terminal to ask on (a service): restoring never loses text, declining might
                restore = not os.isatty(stdin_fd) or ask_yes_no(
                    f"edgetype: restore {len(restored_text)} characters from {journal_path}? [y/N] ", stdin_fd)
            if not restore:
                if lock.held:  # a read-only journal is never written: it stays as it is
                    kept = set_aside(journal_path)
                    print(f"edgetype: previous journal kept as {kept}", file=sys.stderr)
                restored_text = ""
    except BaseException:
        if lock is not None:
            lock.release()
        raise

    previous_signals = install_shutdown_signals()
    keyboards = raw_terminal = journal = recorder = session = watcher = None
    entered_alternate_screen = False
    demo = None
    try:
        keyboards = _open_keyboards(args)
        if keyboards is None:
            if not os.isatty(stdin_fd):
                raise UserError("no evdev keyboard and stdin is not a terminal: run in a terminal, "
                                "or use --replay FILE")
            print("edgetype: input: terminal (raw mode; no usable evdev keyboard)" if args.input == "auto"
                  else "edgetype: input: terminal (raw mode)", file=sys.stderr)
            input_name = "terminal"
        else:
            input_name = "evdev " + ",".join(sorted(keyboards.devices))
            print(f"edgetype: input: {input_name} (reader {keyboards.reader}; grabbed until exit)",
                  file=sys.stderr)
        print(f"edgetype: loading backend {args.backend}...", file=sys.stderr)
        session = open_engine_session(args.bundle, args.backend, args.core)
        print(f"edgetype: backend {args.backend}, keystroke core {getattr(session, 'core_name', None)}",
              file=sys.stderr)
        if restored_text:
            session.insert(restored_text)
        journal = Journal(journal_path, base_text=session.text, lock=lock) if journal_path else None
        recorder = EventRecorder(args.record) if args.record else None

        def write(data: str) -> None:
            stdout.write(data)
            stdout.flush()

        columns, rows = terminal_size(stdout.fileno())
        screen = TerminalScreen(write, columns, rows)
        demo = Demo(session, input_name=input_name, screen=screen, journal=journal, recorder=recorder,
                    on_caps_lock=keyboards.set_caps_lock if keyboards else None)
        if os.isatty(stdin_fd) and keyboards is None:
            raw_terminal = RawTerminal(stdin_fd).__enter__()
        write(ENTER_ALTERNATE_SCREEN)
        entered_alternate_screen = True
        watcher = TerminalSizeWatcher(stdout.fileno(), screen, demo.redraw)
        demo.start()
        if keyboards is not None:
            run_evdev(demo, keyboards, on_resize=watcher)
        else:
            run_terminal(demo, TerminalKeySource(stdin_fd), on_resize=watcher)
    finally:
        # each step on its own: a hung-up terminal (SIGHUP) must not stop the keyboards' release
        # or the journal's final fsync
        if keyboards is not None:
            _quietly(keyboards.release)
        for closeable in (journal, recorder, session):
            if closeable is not None:
                _quietly(closeable.close)
        if lock is not None:
            lock.release()  # idempotent: the journal's close released it already
        if raw_terminal is not None:
            _quietly(raw_terminal.restore)
        if entered_alternate_screen:
            _quietly(lambda: (stdout.write(LEAVE_ALTERNATE_SCREEN), stdout.flush()))
        if watcher is not None:
            watcher.restore()
        restore_signals(previous_signals)
    result = demo.summary()
    print(result["text"])
    print(f"edgetype: backend {result['backend']}, core {result.get('core')}, {result['keystrokes']} keystrokes, "
          f"{result['accepted']} accepted, p50 {result['keystroke_latency_ms']['p50']} ms"
          + (f"; journal {journal_path}" if journal_path else ""), file=sys.stderr)
    return 0
