"""The harness end to end against the simulated board (a pty, a getty, a real /bin/sh)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from board_tests.console import BoardConsole, BoardError, BoardLineNoise, BoardRebooted, open_port
from board_tests.simboard import SimulatedBoard
from board_tests.upload import CHUNK_BYTES, upload_file
from runtime import cli
from runtime.errors import UserError

SYNTHETIC_SUITE = '''
import time
from board_tests.onboard import boardenv


def test_on_the_board():
    assert boardenv.require_board() == "sim"
    assert boardenv.backend_name() == "cmodel"


def test_fails():
    assert 1 + 1 == 3, "arithmetic is broken"


def test_skips():
    boardenv.skip("nothing to see")


def test_reports_a_number():
    boardenv.measure("answer_ms", 42.0, "ms")


def test_slow():
    time.sleep(float(__import__("os").environ.get("SLOW_S", "0")))
'''


@pytest.fixture
def board(tmp_path):
    with SimulatedBoard(sandbox=str(tmp_path / "board")) as simulated:
        console = BoardConsole(open_port(simulated.port_path), name="sim")
        console.login(timeout_s=10)
        yield simulated, console
        console.close()


@pytest.fixture
def suite_dir(tmp_path):
    path = tmp_path / "suite"
    path.mkdir()
    (path / "test_synthetic.py").write_text(SYNTHETIC_SUITE)
    return path


def test_shell_runs_in_the_sandbox_with_board_environment(board):
    simulated, console = board
    result = console.run("pwd; echo $EDGETYPE_BACKEND $EDGETYPE_BOARD; ls /nonexistent")
    lines = result.output.strip().splitlines()
    assert lines[0] == str(simulated.sandbox / "root")
    assert lines[1] == "cmodel sim"
    assert result.exit_code != 0
    assert console.run("exit_code() { return 7; }; exit_code").exit_code == 7


def test_wrong_password_is_refused(tmp_path):
    with SimulatedBoard(sandbox=str(tmp_path / "b"), password="secret") as simulated:
        console = BoardConsole(open_port(simulated.port_path), name="sim")
        with pytest.raises(BoardError, match="refused"):
            console.login(timeout_s=10)
        console.close()


def test_upload_checks_digests_and_resumes(board):
    simulated, console = board
    rng = __import__("random").Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(5 * CHUNK_BYTES + 123))
    local = simulated.sandbox / "host-file.bin"
    local.write_bytes(data)
    dest = str(simulated.sandbox / "root/up/file.bin")

    # an earlier upload that stopped after 2 good chunks
    Path(dest + ".partial").parent.mkdir(parents=True)
    Path(dest + ".partial").write_bytes(data[: 2 * CHUNK_BYTES])
    info = upload_file(console, local, dest)
    assert info["resumed_from"] == 2 and info["chunks_sent"] == 4
    assert hashlib.sha256(Path(dest).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not Path(dest + ".partial").exists()

    # a partial file that does not match ours is not resumed from
    os.remove(dest)
    Path(dest + ".partial").write_bytes(b"x" * CHUNK_BYTES)
    info = upload_file(console, local, dest)
    assert info["resumed_from"] == 0 and Path(dest).read_bytes() == data

    # the same file again: nothing sent
    assert upload_file(console, local, dest)["chunks_sent"] == 0


def test_reboot_mid_command_is_reported_not_hung(tmp_path):
    with SimulatedBoard(sandbox=str(tmp_path / "b"), reboot_after_s=1.0) as simulated:
        console = BoardConsole(open_port(simulated.port_path), name="sim")
        console.login(timeout_s=10)
        started = time.monotonic()
        with pytest.raises(BoardRebooted):
            console.run("sleep 20", timeout_s=30)
        assert time.monotonic() - started < 6
        assert simulated.reboots == 1
        console.login(timeout_s=10)  # the board came back: log in again
        assert console.run("echo back").output.strip() == "back"
        console.close()


def test_line_noise_is_reported(tmp_path):
    with SimulatedBoard(sandbox=str(tmp_path / "b"), noise=True) as simulated:
        console = BoardConsole(open_port(simulated.port_path), name="sim")
        with pytest.raises(BoardLineNoise):
            console.login(timeout_s=2)
        console.close()


def test_board_test_cli_json_against_the_simulated_board(suite_dir, capsys):
    code = cli.main(["board", "test", "--port", "sim://", "--suite", str(suite_dir),
                     "--no-packages", "--json"])
    out = capsys.readouterr().out
    report = json.loads(out)  # exactly one JSON object on stdout
    assert code == 1  # one test fails on purpose
    assert (report["passed"], report["failed"], report["skipped"]) == (3, 1, 1)
    assert report["port"] == "sim://" and report["finished"] and report["board_error"] is None
    assert report["info"]["backend"] == "cmodel"
    failed = [r for r in report["results"] if r["outcome"] == "failed"]
    assert failed[0]["message"] == "arithmetic is broken"
    measure = report["measures"][0]
    assert measure["value"] == 42.0 and "not a board number" in measure["note"]


def test_board_test_cli_reports_a_reboot_mid_suite(suite_dir, capsys, monkeypatch):
    # 5 s after login: time to upload and run the first tests even on a loaded CI machine
    port = "sim://?reboot_after_s=5"
    slow = suite_dir / "test_zz_slow.py"
    slow.write_text("import time\n\ndef test_sleeps():\n    time.sleep(40)\n")
    started = time.monotonic()
    code = cli.main(["board", "test", "--port", port, "--suite", str(suite_dir),
                     "--no-packages", "--json", "--timeout", "60"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert time.monotonic() - started < 30  # the reboot ends it, not the 60 s deadline
    assert "rebooted" in report["board_error"]
    assert not report["finished"]
    assert report["passed"] >= 1  # results printed before the reboot are kept


def test_board_test_cli_reports_no_board(capsys):
    code = cli.main(["board", "test", "--port", "loop://", "--login-timeout", "1", "--json",
                     "--no-packages"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["passed"] == 0
    assert "no login or shell prompt" in report["board_error"]


def test_board_deploy_installs_the_overlay_into_the_simulated_board(tmp_path, capsys):
    sandbox = tmp_path / "board"
    code = cli.main(["board", "deploy", "--port", f"sim://?sandbox={sandbox}", "--board", "duo",
                     "--no-bundle", "--no-start", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["init"] == "busybox init /etc/init.d/S99edgetype"
    init = sandbox / "etc/init.d/S99edgetype"
    assert init.is_file() and os.access(init, os.X_OK)
    assert (sandbox / "opt/edgetype/lib/runtime/errors.py").is_file()
    overlay = json.loads((sandbox / "opt/edgetype/overlay.json").read_text())
    assert overlay["board"] == "duo" and overlay["chip"] == "cv180x"


def test_board_test_through_busybox_ash_like_the_board(suite_dir, capsys):
    """The stock image's shell is busybox ash with line editing: the framing and the upload must
    work through it too (sim://?shell=busybox runs `busybox sh -i`)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_firmware_overlay import ensure_apt_tool

    assert ensure_apt_tool("busybox", "busybox"), "busybox missing: apt-get install busybox"
    code = cli.main(["board", "test", "--port", "sim://?shell=busybox", "--suite", str(suite_dir),
                     "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["board_error"] is None
    assert (report["passed"], report["failed"], report["skipped"]) == (3, 1, 1)
    assert report["upload"]["chunks_sent"] >= 10  # the packages went through ash's line editor


def _timed_command(board_kwargs: dict, tmp_path, command: str) -> tuple[float, str]:
    with SimulatedBoard(sandbox=str(tmp_path / "paced"), overlay=False, **board_kwargs) as board:
        console = BoardConsole(open_port(board.port_path), name="sim")
        try:
            console.login(timeout_s=30)
            started = time.monotonic()
            result = console.run(command, timeout_s=30, check=True)
            return time.monotonic() - started, result.output
        finally:
            console.close()


def test_sim_baud_paces_bytes_like_the_wire_in_both_directions(tmp_path):
    """sim://?baud=9600: 960 bytes/s (8N1, 10 bits a byte) each way."""
    out_command = "printf '%01200d' 0 | tr 0 a"  # 1200 bytes board -> host
    fast, text = _timed_command({}, tmp_path / "a", out_command)
    assert text.strip() == "a" * 1200
    paced, text = _timed_command({"baud": 9600}, tmp_path / "b", out_command)
    assert text.strip() == "a" * 1200
    assert paced >= 1200 / 960 * 0.9 and paced < 1200 / 960 + 3, paced
    assert fast < 0.6 * paced, (fast, paced)
    in_command = "echo " + "b" * 900 + " | wc -c"  # ~940 bytes host -> board
    paced_in, text = _timed_command({"baud": 9600}, tmp_path / "c", in_command)
    assert text.strip() == "901" and paced_in >= 900 / 960 * 0.9, paced_in
    with pytest.raises(UserError, match="baud"):
        SimulatedBoard.from_url("sim://?baud=fast")
