"""`edgetype demo --replay`: a recorded keyboard session reproduces its text exactly; bad replay
files, a missing engine, and the journal surviving a killed process.

The engine is the fake of test_keyboard_fakes.py (installed into sys.modules for the in-process
runs; the subprocess runs start tests/test_keyboard_fakes.py, which installs it when
EDGETYPE_TEST_FAKE_ENGINE=1).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyboard_ui import keymap as K
from keyboard_ui.journal import read_journal_text
from runtime.cli import main
from test_keyboard_fakes import install_fake_engine

REPO = Path(__file__).resolve().parent.parent
RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"
SHIFT_CAPS_REPEAT = RECORDINGS / "shift_caps_repeat_backspace.jsonl"
LAUNCHER = Path(__file__).resolve().parent / "test_keyboard_fakes.py"


@pytest.fixture
def fake_engine(monkeypatch):
    install_fake_engine(monkeypatch)


def replay_json(capsys, *extra):
    exit_code = main(["demo", "--json", *extra])
    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    return json.loads(captured.out)


def test_recorded_session_with_shift_caps_repeat_and_backspace_reproduces_the_text(fake_engine, capsys):
    result = replay_json(capsys, "--replay", str(SHIFT_CAPS_REPEAT), "--no-journal")
    assert result["text"] == "Hi NASA oko!\nBye"
    assert result["keystrokes"] == 24 and result["accepted"] == 0
    assert result["backend"] == "fake-onnx"
    render = result["render"]
    assert render["bytes_per_keystroke_mean"] < render["full_redraw_bytes"]


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from test_bundle import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("kbd") / "bundle", window=64)


def test_the_recorded_session_on_the_real_engine(tiny_bundle, capsys):
    """Same recording, runtime/engine.py on the numpy backend (tiny random-weight bundle)."""
    result = replay_json(capsys, "--replay", str(SHIFT_CAPS_REPEAT), "--no-journal",
                         "--backend", "numpy", "--bundle", str(tiny_bundle))
    assert result["text"] == "Hi NASA oko!\nBye" and result["keystrokes"] == 24
    assert result["backend"] == "numpy"
    assert result["keystroke_latency_ms"]["p50"] > 0


def test_record_then_replay_round_trip_and_replay_journal(fake_engine, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    recorded = tmp_path / "again.jsonl"
    first = replay_json(capsys, "--replay", str(SHIFT_CAPS_REPEAT), "--record", str(recorded))
    # the replay kept its own journal, never the interactive one
    assert first["journal"] == str(tmp_path / "state" / "edgetype" / "replay-journal.txt")
    assert read_journal_text(first["journal"]) == "Hi NASA oko!\nBye"
    assert not (tmp_path / "state" / "edgetype" / "journal.txt").exists()
    lines = recorded.read_text().splitlines()
    assert set(json.loads(lines[0])) == {"sec", "type", "code", "value"}
    assert len(lines) == first["events"] == 187  # of 197: the events after Esc were never fed
    second = replay_json(capsys, "--replay", str(recorded), "--journal", str(tmp_path / "j2.txt"))
    assert second["text"] == first["text"] and second["keystrokes"] == first["keystrokes"]


@pytest.mark.parametrize("bad_line,message", [
    ("not json", r":3: not a JSON object"),
    ('["a", 1]', r":3: not a JSON object"),
    ('{"sec": 1.0, "type": 1, "code": 30}', r":3: field 'value'"),
    ('{"sec": 1.0, "type": "1", "code": 30, "value": 1}', r":3: field 'type'"),
    ('{"sec": -1, "type": 1, "code": 30, "value": 1}', r":3: field 'sec'"),
    ('{"sec": 0.1, "type": 1, "code": 30, "value": 1}', r":3: 'sec' goes backwards"),
])
def test_a_malformed_replay_line_is_an_error_naming_its_line(fake_engine, capsys, tmp_path, bad_line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"sec": 0.5, "type": 1, "code": 30, "value": 1}\n\n' + bad_line + "\n")
    assert main(["demo", "--replay", str(path), "--json", "--no-journal"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    import re

    assert re.search(message, captured.err) and "bad.jsonl" in captured.err
    assert captured.err.count("\n") == 1  # one line, no traceback


def test_without_the_engine_the_demo_fails_with_a_clear_error(monkeypatch, capsys):
    import runtime

    monkeypatch.setitem(sys.modules, "runtime.engine", None)  # as if runtime/engine.py did not exist
    monkeypatch.delattr(runtime, "engine", raising=False)
    assert main(["demo", "--replay", str(SHIFT_CAPS_REPEAT), "--no-journal"]) == 2
    err = capsys.readouterr().err
    assert "runtime/engine.py is not in this installation" in err and err.count("\n") == 1


def test_option_misuse_is_a_user_error(capsys):
    assert main(["demo", "--json"]) == 2
    assert "--json needs --replay" in capsys.readouterr().err
    assert main(["demo", "--replay", str(SHIFT_CAPS_REPEAT), "--keyboard", "/dev/input/event0"]) == 2
    assert "replaces the keyboard" in capsys.readouterr().err


def write_recording(path: Path, keys: list[tuple[float, int, int]]) -> None:
    """keys: (sec, code, value) key events, each followed by SYN_REPORT like the kernel sends."""
    with open(path, "w") as file:
        for sec, code, value in keys:
            file.write(json.dumps({"sec": sec, "type": K.EV_KEY, "code": code, "value": value}) + "\n")
            file.write(json.dumps({"sec": sec, "type": K.EV_SYN, "code": 0, "value": 0}) + "\n")


def test_the_journal_survives_a_killed_demo_mid_word(tmp_path):
    """SIGKILL in the middle of a word: the journal holds everything typed, Backspace included."""
    keys, sec = [], 0.0
    for action in list("hello there") + ["ctrl+bksp"] + list("worx") + ["bksp"] + ["pause"] + list("ld"):
        if action == "pause":
            sec += 60.0  # the process is killed while waiting here
            continue
        sec += 0.01
        if action == "ctrl+bksp":
            keys += [(sec, K.KEY_LEFTCTRL, 1), (sec, K.KEY_BACKSPACE, 1), (sec, K.KEY_BACKSPACE, 0),
                     (sec, K.KEY_LEFTCTRL, 0)]
        elif action == "bksp":
            keys += [(sec, K.KEY_BACKSPACE, 1), (sec, K.KEY_BACKSPACE, 0)]
        else:
            code = K.CHAR_TO_KEY[action][0]
            keys += [(sec, code, 1), (sec, code, 0)]
    recording, journal = tmp_path / "crash.jsonl", tmp_path / "journal.txt"
    write_recording(recording, keys)
    env = dict(os.environ, EDGETYPE_TEST_FAKE_ENGINE="1")
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "demo", "--replay", str(recording), "--realtime",
         "--journal", str(journal)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        # 11 + 1 + 4 + 1 edits after the header: the Backspace itself is on disk, not a prefix
        # of "hello worx" seen in passing
        while not (journal.exists() and journal.read_text().count("\n") == 1 + 17):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"journal holds {read_journal_text(str(journal))!r}"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # no cleanup, no fsync on exit: a crash
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert read_journal_text(str(journal)) == "hello wor"
    assert json.loads(journal.read_text().splitlines()[-1]) == {"keep": 9, "add": ""}
