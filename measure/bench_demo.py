"""`edgetype bench demo`: what a user waits for per key, over a long session (EVALUATION.md
"End-to-end keystroke cost").

Drives the real demo (keyboard_ui.app.Demo: key-event decoder, Session, journal, renderer) with a
text typed as evdev key events (Shift for capitals and symbols, Enter for line breaks; characters
a US keyboard cannot type are skipped and counted). The ideal user of KSR accepts a suggestion
with Alt+N when it is the word being typed (`--no-accept`: types every character). The renderer
draws to an in-memory 80x24 terminal (bytes counted, not interpreted); the journal is a real file
in a temporary directory (fsync at word boundaries, as in the demo).

Per keystroke (an edit action): `key_ms` = event in -> screen bytes out, and its parts `engine`,
`journal`, `render` (keyboard_ui/app.py). Flatness: `key_ms_last_1000` vs `key_ms_first_1000`
of the same run; memory: resident set size after start-up and at the end. `--clock cpu` times with
the process's CPU time instead of the wall clock (a loaded shared host inflates wall-clock tails).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from runtime.percentiles import percentile, percentiles

DEFAULT_TEXT = Path(__file__).resolve().parents[1] / "models" / "corpus" / "test.txt.gz"
SCREEN_COLUMNS, SCREEN_ROWS = 80, 24


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise UserError("no VmRSS in /proc/self/status: bench demo needs Linux")


class KeyTyper:
    """Turns characters and accepts into the evdev events a US keyboard would send."""

    def __init__(self):
        from keyboard_ui import keymap as K
        from keyboard_ui.recording import InputEvent

        self.K, self.InputEvent = K, InputEvent
        self.t = 0.0
        self.skipped = 0

    def _key(self, code: int, value: int):
        self.t += 0.001
        return self.InputEvent(self.t, self.K.EV_KEY, code, value)

    def _tap(self, code: int, modifier: int | None = None) -> list:
        events = [self._key(modifier, 1)] if modifier is not None else []
        events += [self._key(code, 1), self._key(code, 0)]
        if modifier is not None:
            events.append(self._key(modifier, 0))
        return events

    def char(self, char: str) -> list:
        K = self.K
        if char == "\n":
            return self._tap(K.KEY_ENTER)
        key = K.CHAR_TO_KEY.get(char)
        if key is None:
            self.skipped += 1
            return []
        code, shift = key
        return self._tap(code, K.KEY_LEFTSHIFT if shift else None)

    def accept(self, index: int) -> list:
        return self._tap(self.K.KEY_1 + index, self.K.KEY_LEFTALT)


def drive(demo, text: str, chars: int, accept: bool = True) -> dict:
    """Type text[:chars] through `demo` (its KeyTimings record every keystroke)."""
    from runtime.tokenizer import WORD

    typer = KeyTyper()

    def press(events) -> None:
        for event in events:
            demo.handle(event)

    position = 0
    text = text[:chars]
    for match in WORD.finditer(text):
        for char in text[position:match.start()]:
            press(typer.char(char))
        word = match.group()
        for char in word:  # before each character (the first included) the ideal user looks
            if accept and word in demo.suggestions:
                press(typer.accept(demo.suggestions.index(word)))
                break
            press(typer.char(char))
        position = match.end()
    for char in text[position:]:
        press(typer.char(char))
    return {"skipped_chars": typer.skipped}


def run_demo_bench(args) -> dict:
    from keyboard_ui.app import TIMING_PARTS, Demo, KeyTimings
    from keyboard_ui.journal import Journal
    from keyboard_ui.render import TerminalScreen
    from runtime.bundle import default_bundle_dir, load_bundle
    from runtime.engine import open_session
    from measure.evaluate import read_eval_text

    if args.chars < 2000:
        raise UserError(f"--chars {args.chars}: use at least 2000 (first and last 1000 keystrokes are compared)")
    text_path = Path(args.text) if args.text else DEFAULT_TEXT
    text, _ = read_eval_text(text_path)
    if len(text) < args.chars:
        raise UserError(f"{text_path}: {len(text)} characters, fewer than --chars {args.chars}")
    bundle = load_bundle(args.bundle or default_bundle_dir())
    session = open_session(bundle, backend=args.backend, core=args.core)
    sent_bytes = [0]

    def write(data: str) -> None:  # the virtual terminal: bytes counted
        sent_bytes[0] += len(data)

    with session, tempfile.TemporaryDirectory(prefix="edgetype-bench-demo-") as directory:
        journal = Journal(os.path.join(directory, "journal.txt"))
        try:
            screen = TerminalScreen(write, SCREEN_COLUMNS, SCREEN_ROWS)
            # every keystroke kept (at most one per character typed, plus accepts), allocated up front
            timings = KeyTimings(capacity=args.chars + 16)
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            demo = Demo(session, input_name="bench", screen=screen, journal=journal, timings=timings, clock=clock)
            demo.start()
            rss_start = rss_mib()
            print(f"bench demo: typing {args.chars} characters on {session.backend_name} "
                  f"(core {session.core_name}) ...", file=sys.stderr)
            started = time.perf_counter()
            driven = drive(demo, text, args.chars, accept=not args.no_accept)
            wall_s = time.perf_counter() - started
            rss_end = rss_mib()
            journal_bytes = os.path.getsize(journal.path)
        finally:
            journal.close()
    n = timings.count
    assert n <= timings.capacity, "more keystrokes than characters typed"
    column = {name: np.frombuffer(values, dtype=np.float32)[:n] if name != "position" else np.asarray(values[:n])
              for name, values in timings.columns.items()}
    key = column["total"]
    report = {
        "backend": session.backend_name,
        "core": session.core_name,
        "text": str(text_path),
        "chars": args.chars,
        "chars_typed_end": len(session.text_buffer),
        "skipped_chars": driven["skipped_chars"],
        "keystrokes": n,
        "accepted": demo.accepted,
        "key_ms": {**percentiles(key), "max": round(float(key.max()), 4)},
        "key_ms_first_1000": percentiles(key[:1000], (50, 99)),
        "key_ms_last_1000": percentiles(key[-1000:], (50, 99)),
        "parts_ms": {name: percentiles(column[name], (50, 99)) for name in TIMING_PARTS},
        "parts_ms_last_1000": {name: percentiles(column[name][-1000:], (50, 99)) for name in TIMING_PARTS},
        "journal_sync_note": "the fsync of a finished word runs after the screen bytes are out (not in key_ms)",
        "rss_mib_start": round(rss_start, 2),
        "rss_mib_end": round(rss_end, 2),
        "render_bytes_per_key_mean": round(sent_bytes[0] / max(n, 1), 1),
        "render_bytes_per_key_max": demo.render_bytes_max,
        "journal_bytes": journal_bytes,
        "journal_compactions": journal.compactions,
        "wall_s": round(wall_s, 2),
        "screen": f"{SCREEN_COLUMNS}x{SCREEN_ROWS} in memory",
        "clock": "process CPU time (all threads; not wall: descheduling by other load not counted)"
                 if args.clock == "cpu" else "wall (perf_counter)",
        "machine_load_average": [round(x, 2) for x in os.getloadavg()],
        "label": "host measurement (this machine, Python; not a board timing)",
    }
    first, last = report["key_ms_first_1000"]["p99"], report["key_ms_last_1000"]["p99"]
    report["last_over_first_p99"] = round(last / first, 3) if first else None
    if args.outside:
        lengths = sorted(int(n) for n in args.outside.split(","))
        if not lengths or lengths[0] < 100 or lengths[-1] > len(text):
            raise UserError(f"--outside {args.outside}: comma-separated lengths >= 100 and <= the text's {len(text)}")
        print(f"bench demo: outside replays of {lengths} characters ...", file=sys.stderr)
        report["outside"] = outside_replays(text, lengths, args.backend, args.bundle)
    if args.plot:
        plot_demo(report, column["position"], key, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return report


def outside_replays(text: str, lengths: list[int], backend: str, bundle: str | None) -> dict:
    """Whole-process `edgetype demo --replay` runs (journal on, in a temporary directory) of texts of
    different lengths typed without accepts: (wall time - start-up) / keystrokes per length, where
    start-up is the wall time of a replay with no keystroke. Measured from outside the process."""
    import json
    import subprocess

    from keyboard_ui.recording import EventRecorder

    results = {}
    with tempfile.TemporaryDirectory(prefix="edgetype-bench-outside-") as directory:
        def replay(events, name) -> tuple[float, int]:
            path = os.path.join(directory, f"{name}.jsonl")
            recorder = EventRecorder(path)
            for event in events:
                recorder.write(event)
            recorder.close()
            command = [sys.executable, "-m", "runtime.cli", "demo", "--replay", path, "--json",
                       "--journal", os.path.join(directory, f"{name}-journal.txt"), "--backend", backend]
            if bundle:
                command += ["--bundle", bundle]
            started = time.perf_counter()
            run = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if run.returncode != 0:
                raise UserError(f"demo --replay failed: {run.stderr.strip()[-500:]}")
            return wall, json.loads(run.stdout)["keystrokes"]

        typer = KeyTyper()
        startup, _ = replay(typer._tap(typer.K.KEY_LEFTSHIFT), "startup")  # a modifier tap: no keystroke
        for length in lengths:
            typer = KeyTyper()
            events = [event for char in text[:length] for event in typer.char(char)]
            wall, keys = replay(events, f"chars{length}")
            results[str(length)] = {"keystrokes": keys, "wall_s": round(wall, 2),
                                    "ms_per_key": round((wall - startup) * 1e3 / max(keys, 1), 4)}
    per_key = [r["ms_per_key"] for r in results.values()]
    return {"startup_s": round(startup, 2), "by_chars": results,
            "longest_over_shortest": round(per_key[-1] / per_key[0], 3) if per_key and per_key[0] > 0 else None}


def plot_demo(report: dict, positions, key_ms, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(positions, key_ms, ",", alpha=0.5, label="per key")
    window = 501
    if len(key_ms) > window:
        padded = np.pad(key_ms, window // 2, mode="edge")
        running = np.array([percentile(padded[i:i + window], 99) for i in range(0, len(key_ms), 50)])
        ax.plot(positions[::50][:len(running)], running, linewidth=1.2, label="running p99 (501 keys)")
    ax.set(yscale="log", xlabel="position in the text (characters)", ylabel="ms, event in -> screen bytes out",
           title=f"bench demo: {report['keystrokes']} keys, {report['backend']}, core {report['core']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
