"""The on-board packages on the oldest board Python: 3.9 (the Milk-V Duo V1 image has 3.9.5).

The overlay's tree (board_tests/overlay_root.py) under `python3.9 -I` with numpy and cffi and
nothing else (wheels for 3.9 from PyPI, installed once with 3.9's own pip into
~/.cache/edgetype/board-pythons): the on-board suite runner and a demo replay. This machine has
3.9 under pyenv (`$PYENV_ROOT/versions/3.9*` or `~/.pyenv/versions/3.9*`); its absence is a failure, not a skip.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from board_tests.overlay_root import board_python, build_root, find_python, link_bundle, run_module

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from test_overlay_startup import (ACCEPTING_TEXT, RECORDING, host_replay,  # noqa: E402
                                  keys_for, onboard_environ, typing_recording)


@pytest.fixture(scope="module")
def python39():
    try:
        python = find_python("3.9")
    except FileNotFoundError as error:
        pytest.fail(f"{error}: CI must test the board's Python 3.9 (the Milk-V V1 image's)")
    return board_python(None, python, packages=("numpy", "cffi"))


@pytest.fixture(scope="module")
def root39(tmp_path_factory):
    from test_board_riscv64 import make_bundle_with_golden

    bundle = make_bundle_with_golden(tmp_path_factory.mktemp("bundle39") / "bundle")
    overlay = build_root(tmp_path_factory.mktemp("board39") / "root", board="duo256m",
                         image="milkv-v2")
    link_bundle(overlay, bundle)
    return overlay, bundle


def test_the_interpreter_is_python39_with_numpy_and_cffi_only(python39, root39):
    root, _ = root39
    probe = root.lib / "probe_py39.py"
    probe.write_text("import importlib.util, sys\nprint('%d.%d' % sys.version_info[:2])\n"
                     "print(' '.join(n for n in ('numpy', 'cffi', 'evdev', 'serial', 'pytest') "
                     "if importlib.util.find_spec(n)))\n")
    try:
        result = run_module(root, python39, "probe_py39", [])
    finally:
        probe.unlink()
    assert result.stdout.split("\n")[:2] == ["3.9", "numpy cffi"], result.stderr


def test_onboard_suite_passes_under_python39(python39, root39, tmp_path, capsys):
    root, _ = root39
    result = run_module(root, python39, "board_tests.onboard.runner", [],
                        env=onboard_environ(tmp_path), timeout_s=300)
    lines = result.stdout.splitlines()
    results = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("ET-RESULT ")]
    info = json.loads(next(line for line in lines if line.startswith("ET-INFO ")).split(" ", 1)[1])
    with capsys.disabled():  # into the CI log
        print(f"\n[python3.9] on-board suite under {info['python']} (numpy {info['numpy']}) "
              f"from {info['lib']}:")
        for r in results:
            print(f"[python3.9]   {r['nodeid']} {r['outcome']} {r['message'][:100]}")
    bad = [(r["nodeid"], r["message"]) for r in results if r["outcome"] in ("failed", "error")]
    assert info["python"].startswith("3.9.") and not bad, bad or result.stdout[-3000:]
    assert result.returncode == 0 and sum(r["outcome"] == "passed" for r in results) >= 5


def test_demo_replay_under_python39_types_what_the_host_types(python39, root39, tmp_path,
                                                              capsys):
    root, bundle = root39
    for recording in (RECORDING, typing_recording(tmp_path / "a.jsonl", keys_for(ACCEPTING_TEXT))):
        result = run_module(root, python39, "runtime.cli",
                            ["demo", "--replay", str(recording), "--bundle",
                             str(root.root / "opt/edgetype/bundle"), "--backend", "numpy",
                             "--json", "--no-journal"])
        assert result.returncode == 0, result.stderr[-3000:]
        board, host = json.loads(result.stdout), host_replay(recording, bundle)
        with capsys.disabled():
            print(f"\n[python3.9] replay {recording.name}: text {board['text']!r} suggestions "
                  f"{board['suggestions']} (host {sys.version.split()[0]}: {host['text']!r} "
                  f"{host['suggestions']})")
        assert (board["text"], board["suggestions"]) == (host["text"], host["suggestions"])
        assert board["suggestions"] or recording == RECORDING  # the accepts run ends on a space


def test_every_board_module_imports_under_python39(python39, root39):
    """Syntax and import-time code (a `X | None` evaluated at runtime, dataclass(slots=...)):
    every module the overlay ships, imported by 3.9. A module may need a package the image does
    not have only if it is a host-side measurement module that says so by that import."""
    root, _ = root39
    walker = root.lib / "walk_imports_py39.py"
    walker.write_text(
        "import importlib, json, os, sys\n"
        "lib = os.path.dirname(os.path.abspath(__file__))\n"
        "bad = {}\n"
        "for folder, _, files in sorted(os.walk(lib)):\n"
        "    for name in sorted(files):\n"
        "        if not name.endswith('.py') or name == 'walk_imports_py39.py':\n"
        "            continue\n"
        "        rel = os.path.relpath(os.path.join(folder, name), lib)[:-3].replace(os.sep, '.')\n"
        "        module = rel[:-len('.__init__')] if rel.endswith('.__init__') else rel\n"
        "        try:\n"
        "            importlib.import_module(module)\n"
        "        except BaseException as error:\n"
        "            bad[module] = '%s: %s' % (type(error).__name__, error)\n"
        "print(json.dumps(bad))\n")
    try:
        result = run_module(root, python39, "walk_imports_py39", [])
    finally:
        walker.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    bad = json.loads(result.stdout.strip().splitlines()[-1])
    assert not bad, bad


def test_board_test_on_a_simulated_board_whose_python_is_39(python39, root39, capsys):
    """`board test --port sim://?python=3.9`: the harness end to end, the installed overlay run by
    a 3.9 python3 with the debian image's packages (python-evdev built from its sdist, once)."""
    from runtime import cli

    _, bundle = root39
    code = cli.main(["board", "test", "--port", "sim://?python=3.9", "--bundle", str(bundle),
                     "--backend", "numpy", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"], report["board_error"] or report["results"]
    assert report["info"]["python"].startswith("3.9.") and report["tree"]["kind"] == "overlay"
    assert report["passed"] >= 5
