"""Every on-board entry point starts from the overlay's own file tree, in an interpreter that sees
nothing else (board_tests/overlay_root.py): `python -I`, only opt/edgetype/lib on sys.path, and
exactly the third-party packages of the image (firmware/images.py).

This is what a board owner gets from `edgetype firmware overlay`: a module the overlay does not
ship, or a host-only import on the start-up path, fails here as it fails on the board.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from board_tests.overlay_root import board_python, build_root, link_bundle, run_module
from keyboard_ui import keymap as K

REPO = Path(__file__).resolve().parent.parent
RECORDING = REPO / "tests/data/recordings/shift_caps_repeat_backspace.jsonl"
RECORDED_TEXT = "Hi NASA oko!\nBye"  # the recording's header says so


def typing_recording(path: Path, keys: list[int]) -> Path:
    """A recording of single key presses (press, SYN, release, SYN), 50 ms apart."""
    lines = ["# edgetype demo recording, made by tests/test_overlay_startup.py"]
    for i, code in enumerate(keys):
        for value in (K.KEY_PRESS, K.KEY_RELEASE):
            sec = round(0.05 * i + (0.02 if value == K.KEY_RELEASE else 0.0), 3)
            lines.append(json.dumps({"sec": sec, "type": K.EV_KEY, "code": code, "value": value}))
            lines.append(json.dumps({"sec": sec, "type": K.EV_SYN, "code": 0, "value": 0}))
    path.write_text("\n".join(lines) + "\n")
    return path


def keys_for(text: str) -> list[int]:
    """Key codes typing `text` (lower case, space, Tab = accept the first suggestion)."""
    codes = {}
    for code in range(1, 128):
        char = K.char_for_key(code, False, False)
        if char and char not in codes:
            codes[char] = code
    return [K.KEY_TAB if ch == "\t" else codes[ch] for ch in text]


ACCEPTING_TEXT = "the \tof th\t \t \t "  # accepts: the text depends on the suggestions


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    sys.path.insert(0, str(REPO / "tests"))
    from test_board_riscv64 import make_bundle_with_golden

    return make_bundle_with_golden(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_bundle):
    overlay = build_root(tmp_path_factory.mktemp("board") / "root", board="duo256m",
                         image="debian")
    link_bundle(overlay, tiny_bundle)
    return overlay


def host_replay(recording: Path, bundle: Path) -> dict:
    """The same replay from the checkout in this process (x86, the host's venv)."""
    import contextlib
    import io

    from runtime import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["demo", "--replay", str(recording), "--bundle", str(bundle),
                         "--backend", "numpy", "--json", "--no-journal"])
    assert code == 0
    return json.loads(out.getvalue())


def test_the_overlay_interpreter_sees_only_the_overlay_and_the_image_packages(root):
    probe = root.lib / "probe_sys_path.py"  # a module in the lib dir, run the way the CLI is
    probe.write_text(
        "import importlib.util, sys\n"
        "print(sys.path[0])\n"
        "names = ('numpy', 'cffi', 'evdev', 'serial', 'pytest', 'onnxruntime', 'model_export',\n"
        "         'board_tests.cli', 'runtime')\n"
        "print(' '.join(n for n in names if importlib.util.find_spec(n)))\n")
    try:
        result = run_module(root, board_python("debian"), "probe_sys_path", [])
    finally:
        probe.unlink()
    assert result.returncode == 0, result.stderr
    first, found = result.stdout.splitlines()
    assert first == str(root.lib)
    assert found.split() == ["numpy", "cffi", "evdev", "serial", "runtime"]  # no pytest, no host


def test_info_starts_from_the_overlay(root):
    result = run_module(root, board_python("debian"), "runtime.cli", ["info", "--json"])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["backends"]["numpy"]["available"], report["backends"]["numpy"]
    assert "Traceback" not in result.stderr


def test_demo_replay_starts_from_the_overlay_and_types_what_the_host_types(root, tiny_bundle,
                                                                          tmp_path):
    recordings = [RECORDING, typing_recording(tmp_path / "accepts.jsonl", keys_for(ACCEPTING_TEXT))]
    for recording in recordings:
        result = run_module(root, board_python("debian"), "runtime.cli",
                            ["demo", "--replay", str(recording), "--bundle",
                             str(root.root / "opt/edgetype/bundle"), "--backend", "numpy",
                             "--json", "--no-journal"])
        assert result.returncode == 0, result.stderr[-2000:]
        board = json.loads(result.stdout)
        host = host_replay(recording, tiny_bundle)
        assert (board["text"], board["suggestions"]) == (host["text"], host["suggestions"])
        assert board["suggestions"] or recording == RECORDING  # the accepts run ends on a space
        assert board["backend"] == "numpy" and board["keystrokes"] == host["keystrokes"]
    assert json.loads(run_module(root, board_python("debian"), "runtime.cli",
                                 ["demo", "--replay", str(RECORDING), "--bundle", str(tiny_bundle),
                                  "--backend", "numpy", "--json", "--no-journal"]
                                 ).stdout)["text"] == RECORDED_TEXT


def onboard_environ(tmp_path: Path) -> dict:
    """The on-board suite's settings as the simulated board gives them (numpy backend)."""
    from board_tests.simboard import SIM_KEYBOARD

    (tmp_path / "devices").write_text(SIM_KEYBOARD)
    (tmp_path / "dev/input").mkdir(parents=True)
    (tmp_path / "dev/input/event0").touch()
    return {"EDGETYPE_BOARD": "sim", "EDGETYPE_BACKEND": "numpy",
            "EDGETYPE_INPUT_DEVICES": str(tmp_path / "devices"),
            "EDGETYPE_DEV_DIR": str(tmp_path / "dev"), "EDGETYPE_ION_LOADS": "3",
            "EDGETYPE_LATENCY_STEPS": "5"}


def test_the_onboard_suite_runner_starts_from_the_overlay_and_passes(root, tmp_path):
    result = run_module(root, board_python("debian"), "board_tests.onboard.runner", [],
                        env=onboard_environ(tmp_path), timeout_s=300)
    summary = [json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines()
               if line.startswith("ET-SUMMARY ")]
    results = [json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines()
               if line.startswith("ET-RESULT ")]
    bad = [(r["nodeid"], r["message"]) for r in results if r["outcome"] in ("failed", "error")]
    assert summary and not bad, bad or result.stdout[-2000:]
    assert result.returncode == 0
    assert summary[0]["passed"] >= 5
    info = json.loads(next(line for line in result.stdout.splitlines()
                           if line.startswith("ET-INFO ")).split(" ", 1)[1])
    assert info["pytest"] is False  # the image has no pytest: the runner ran, not pytest


@pytest.mark.parametrize("image", ["milkv-v2", "milkv-v1"])
def test_every_image_profile_starts_or_says_in_one_line_what_is_missing(image, tiny_bundle,
                                                                       tmp_path):
    """milkv-v2 has numpy and no cffi: the numpy demo runs; milkv-v1 has no numpy: one line."""
    overlay = build_root(tmp_path / "root", board="duo" if image == "milkv-v1" else "duo256m",
                         image=image)
    link_bundle(overlay, tiny_bundle)
    python = board_python(image)
    info = run_module(overlay, python, "runtime.cli", ["info", "--json"])
    demo = run_module(overlay, python, "runtime.cli",
                      ["demo", "--replay", str(RECORDING), "--bundle",
                       str(overlay.root / "opt/edgetype/bundle"), "--backend", "numpy", "--json",
                       "--no-journal"])
    for result in (info, demo):
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
    if image == "milkv-v2":
        assert info.returncode == 0 and demo.returncode == 0, demo.stderr
        assert json.loads(demo.stdout)["text"] == RECORDED_TEXT
        tpu = json.loads(info.stdout)["backends"]["tpu"]
        assert not tpu["available"] and "cffi" in tpu["reason"]
    else:
        assert demo.returncode == 2
        lines = demo.stderr.strip().splitlines()
        assert len(lines) == 1 and "numpy" in lines[0], demo.stderr
