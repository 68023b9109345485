"""firmware/: the overlay tarball's contents, and the init script checked and exercised with sh."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from firmware.overlay import build_overlay
from runtime import cli
from runtime.errors import UserError

REPO = Path(__file__).resolve().parent.parent
INIT_SCRIPT = REPO / "firmware/S99edgetype.sh"


def fake_bundle(path: Path, chip: str, quant: str) -> Path:
    """A tiny bundle that passes the runtime's bundle check (random weights, a synthetic cvimodel
    whose header says `chip`/`quant`; tests/test_bundle.py make_tiny_bundle)."""
    from test_bundle import make_tiny_bundle

    return make_tiny_bundle(path, chip=chip, quant=quant)


def test_overlay_for_duo_holds_script_packages_bundle_and_readme(tmp_path):
    bundle = fake_bundle(tmp_path / "cv180x-int8-w128", "cv180x", "int8")
    out = tmp_path / "duo.tar.gz"
    record = build_overlay("duo", out, bundle=bundle)
    assert (record["chip"], record["quant"]) == ("cv180x", "int8")
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = set(members)
        for required in ("etc/init.d/S99edgetype", "etc/default/edgetype",
                         "opt/edgetype/share/edgetype.service", "opt/edgetype/README.md",
                         "opt/edgetype/overlay.json", "opt/edgetype/bundle/manifest.json",
                         "opt/edgetype/bundle/model.cvimodel", "opt/edgetype/lib/runtime/errors.py",
                         "opt/edgetype/lib/tpu_driver/__init__.py",
                         "opt/edgetype/lib/kv_window/__init__.py",
                         "opt/edgetype/lib/keyboard_ui/__init__.py",
                         "opt/edgetype/lib/board_tests/onboard/runner.py"):
            assert required in names, required
        assert members["etc/init.d/S99edgetype"].mode == 0o755
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert "etc" not in names and "etc/init.d" not in names  # never re-mode /etc on the board
        overlay = json.loads(tar.extractfile("opt/edgetype/overlay.json").read())
        script = tar.extractfile("etc/init.d/S99edgetype").read()
        defaults = tar.extractfile("etc/default/edgetype").read().decode()
    assert overlay["files"]["etc/init.d/S99edgetype"] == hashlib.sha256(script).hexdigest()
    assert overlay["bundle"]["chip"] == "cv180x"
    assert "EDGETYPE_CHIP=cv180x" in defaults


def test_overlay_is_reproducible_and_board_chip_is_checked(tmp_path):
    bundle = fake_bundle(tmp_path / "b", "cv181x", "bf16")
    first = build_overlay("duo256m", tmp_path / "1.tar.gz", bundle=bundle)
    second = build_overlay("duo256m", tmp_path / "2.tar.gz", bundle=bundle)
    assert first["sha256"] == second["sha256"]
    with pytest.raises(UserError, match="chip 'cv181x' but board duo has cv180x"):
        build_overlay("duo", tmp_path / "3.tar.gz", bundle=bundle)
    with pytest.raises(UserError, match="no bundle"):
        build_overlay("licheerv-nano", tmp_path / "4.tar.gz", bundle=tmp_path / "missing")
    without = build_overlay("licheerv-nano", tmp_path / "5.tar.gz", with_bundle=False)
    assert without["bundle"] is None
    assert not any(n.startswith("opt/edgetype/bundle") for n in without["files"])


def test_firmware_overlay_cli_prints_one_json_object(tmp_path, capsys):
    code = cli.main(["firmware", "overlay", "--board", "duo", "-o", str(tmp_path / "o.tar.gz"),
                     "--no-bundle", "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["board"] == "duo" and record["file_count"] > 10


def test_init_script_parses_with_sh_and_busybox_dialect(board_sh):
    subprocess.run([*board_sh, "-n", str(INIT_SCRIPT)], check=True)


def ensure_apt_tool(command: str, package: str) -> str | None:
    """The path of `command`, installing its Debian package with apt-get when we are root (CI is):
    the project's own files install what its tests need."""
    if shutil.which(command) is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-qq", package]
        if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, capture_output=True, timeout=600)
    return shutil.which(command)


def test_init_script_passes_shellcheck():
    shellcheck = ensure_apt_tool("shellcheck", "shellcheck")
    assert shellcheck, "shellcheck missing: apt-get install shellcheck (Debian package)"
    result = subprocess.run([shellcheck, "-s", "sh", str(INIT_SCRIPT)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


@pytest.fixture(params=["dash", "busybox"])
def board_sh(request) -> list[str]:
    """The init script runs under busybox ash on the stock image and dash/bash on Debian."""
    if request.param == "busybox":
        assert ensure_apt_tool("busybox", "busybox"), "busybox missing: apt-get install busybox"
        return ["busybox", "sh"]
    return ["sh"]


FAKE_PYTHON = """#!/bin/sh
# stands for the board's python3 in the init script's checks (python_facts): counts its starts
echo start >> "$FAKE_PY_CALLS"
printf '%s\\n' "$FAKE_PY_VERSION" $FAKE_PY_MODULES
"""


def script_env(tmp_path: Path, demo: str, ready: bool = False, **extra) -> dict:
    """The init script's environment in tmp_path; `ready`: everything the preflight checks is
    there (a python3 3.11 with numpy cffi evdev, the bundle, TPU device, ION, a keyboard)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGETYPE_")}
    env.update({
        "EDGETYPE_DEFAULTS": str(tmp_path / "no-defaults"), "EDGETYPE_PREPARED": "1",
        "EDGETYPE_DEMO_CMD": demo, "EDGETYPE_PIDFILE": str(tmp_path / "pid"),
        "EDGETYPE_LOG": str(tmp_path / "log"), "EDGETYPE_HOME": str(tmp_path),
        "EDGETYPE_TPU_DEV": str(tmp_path / "cvi-tpu0"), "EDGETYPE_OTG_ROLE": str(tmp_path / "otg"),
        "EDGETYPE_TPU_MODULE_DIR": str(tmp_path / "ko"), "EDGETYPE_MNT_SYSTEM": str(tmp_path),
        "EDGETYPE_ION_DEV": str(tmp_path / "ion"), "EDGETYPE_BUNDLE": str(tmp_path / "bundle"),
        "EDGETYPE_KEYBOARD_CHECK": f"test -e {tmp_path / 'keyboard'}",
    })
    if ready:
        python = tmp_path / "python3"
        python.write_text(FAKE_PYTHON)
        python.chmod(0o755)
        (tmp_path / "bundle").mkdir(exist_ok=True)
        for name in ("bundle/manifest.json", "cvi-tpu0", "ion", "keyboard"):
            (tmp_path / name).write_text("")
        env.update({"EDGETYPE_PYTHON": str(python), "FAKE_PY_CALLS": str(tmp_path / "py-calls"),
                    "FAKE_PY_VERSION": "3.11", "FAKE_PY_MODULES": "numpy cffi evdev"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def test_supervisor_restarts_a_failing_demo_with_backoff(tmp_path, board_sh):
    runs = tmp_path / "runs"
    env = script_env(tmp_path, f"sh -c 'echo run >> {runs}; exit 3'", ready=True,
                     EDGETYPE_MAX_RESTARTS=2, EDGETYPE_BACKOFF_MAX_S=1)
    started = time.monotonic()
    result = subprocess.run([*board_sh, str(INIT_SCRIPT), "run"], env=env, capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 1
    assert runs.read_text().count("run") == 3  # first start + 2 restarts
    assert "restart 1 in 1 s" in result.stdout and "gave up after 2 restarts" in result.stdout
    assert time.monotonic() - started >= 2.0  # two backoff sleeps of 1 s


def test_supervisor_stops_the_demo_with_term_and_waits(tmp_path, board_sh):
    marker = tmp_path / "demo-got-term"
    demo = tmp_path / "demo.sh"
    demo.write_text(f"#!/bin/sh\ntrap 'echo term > {marker}; exit 0' TERM\n"
                    "while true; do sleep 0.1; done\n")
    demo.chmod(0o755)
    env = script_env(tmp_path, str(demo), ready=True)
    supervisor = subprocess.Popen([*board_sh, str(INIT_SCRIPT), "run"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.8)
        supervisor.send_signal(signal.SIGTERM)
        output, _ = supervisor.communicate(timeout=10)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    assert supervisor.returncode == 0
    assert marker.read_text().strip() == "term"  # the demo saw TERM (and could free its ION)
    assert "supervisor stopped" in output


def test_init_script_check_and_usb_host_switch(tmp_path, board_sh):
    (tmp_path / "otg").write_text("device\n")
    (tmp_path / "usb-host.sh").write_text("echo host > /proc/cviusb/otg_role\n")
    env = script_env(tmp_path, "true")
    env.pop("EDGETYPE_PREPARED")
    env["EDGETYPE_MAX_RESTARTS"] = "0"
    result = subprocess.run([*board_sh, str(INIT_SCRIPT), "check"], env=env, capture_output=True,
                            text=True, timeout=20)
    assert result.returncode != 0  # no TPU device, no bundle here
    assert f"missing: {tmp_path / 'cvi-tpu0'}" in result.stdout
    assert "missing: bundle" in result.stdout
    wrapper = tmp_path / "usb_only.sh"  # the script's functions without its command dispatch
    body = INIT_SCRIPT.read_text().split('case "${1:-}" in')[0]
    wrapper.write_text(body + "usb_host_mode\n")
    subprocess.run([*board_sh, str(wrapper)], env=env, check=True, timeout=20)
    assert (tmp_path / "otg").read_text().strip() == "host"
    assert os.readlink(tmp_path / "usb.sh") == str(tmp_path / "usb-host.sh")


def supervise_for(board_sh, env: dict, seconds: float, until: str | None = None,
                  script: Path = INIT_SCRIPT) -> tuple[int, str]:
    """Run the supervisor, TERM it after `seconds` (or, with `until`, that long after `until`
    appeared, 60 s at most); (exit code, everything it printed)."""
    import threading

    supervisor = subprocess.Popen([*board_sh, str(script), "run"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, seen = [], threading.Event()

    def collect():
        for line in supervisor.stdout:
            lines.append(line)
            if until and until in line:
                seen.set()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        if until:
            seen.wait(60)
        time.sleep(seconds)
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=15)
        reader.join(timeout=5)
        return supervisor.returncode, "".join(lines)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


@pytest.mark.parametrize("missing, change, expected", [
    ("numpy", {"FAKE_PY_MODULES": "cffi evdev",
               "EDGETYPE_ADD_NUMPY": "rebuild the image with BR2_PACKAGE_PYTHON_NUMPY=y"},
     "numpy missing for {py} (the model runs on it): rebuild the image with BR2_PACKAGE_PYTHON_NUMPY=y"),
    ("old python", {"FAKE_PY_VERSION": "3.8"}, "{py} is Python 3.8: edgetype needs >= 3.9"),
    ("cffi", {"FAKE_PY_MODULES": "numpy", "EDGETYPE_BACKEND": "tpu",
              "EDGETYPE_ADD_CFFI": "apt-get install python3-cffi"},
     "cffi missing for {py} (the TPU driver needs it): apt-get install python3-cffi"),
    ("tpu device", {"EDGETYPE_BACKEND": "tpu", "remove": "cvi-tpu0"}, "no {tmp}/cvi-tpu0 (TPU driver not loaded"),
    ("ion", {"EDGETYPE_BACKEND": "tpu", "remove": "ion"}, "no {tmp}/ion (ION allocator)"),
    ("bundle", {"remove": "bundle/manifest.json"}, "no model bundle at {tmp}/bundle"),
    ("keyboard", {"remove": "keyboard"}, "no keyboard"),
])
def test_a_missing_dependency_is_one_line_and_the_service_waits_without_a_restart_loop(
        tmp_path, board_sh, missing, change, expected):
    runs = tmp_path / "runs"
    change = dict(change)
    removed = change.pop("remove", None)
    env = script_env(tmp_path, f"sh -c 'echo run >> {runs}'", ready=True,
                     EDGETYPE_BACKOFF_MAX_S=60, **change)
    if removed:
        (tmp_path / removed).unlink()
    code, output = supervise_for(board_sh, env, 3.6)  # checks at 0, 1 and 3 s (backoff 1, 2)
    assert code == 0 and "supervisor stopped" in output
    assert not runs.exists(), "the demo was started although something it needs is missing"
    waiting = [line for line in output.splitlines() if "waiting:" in line]
    assert len(waiting) == 1, output  # one line, not one per check
    assert expected.format(py=env["EDGETYPE_PYTHON"], tmp=tmp_path) in waiting[0], waiting[0]
    assert "Traceback" not in output
    starts = len((tmp_path / "py-calls").read_text().split())  # python3 runs once per check
    assert 1 <= starts <= 3  # no tight loop: checks after backoffs of 1 s, 2 s, ...


def test_the_service_starts_the_demo_once_the_keyboard_is_plugged_in(tmp_path, board_sh):
    runs = tmp_path / "runs"
    demo = tmp_path / "demo.sh"
    demo.write_text(f"#!/bin/sh\necho run >> {runs}\nwhile true; do sleep 0.1; done\n")
    demo.chmod(0o755)
    env = script_env(tmp_path, str(demo), ready=True)
    (tmp_path / "keyboard").unlink()
    supervisor = subprocess.Popen([*board_sh, str(INIT_SCRIPT), "run"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)
        assert not runs.exists()
        (tmp_path / "keyboard").write_text("")  # plugged in: found at the next check (t = 3 s)
        deadline = time.monotonic() + 6
        while not runs.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        supervisor.send_signal(signal.SIGTERM)
        output, _ = supervisor.communicate(timeout=15)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    assert runs.read_text().count("run") == 1
    assert "waiting: no keyboard" in output and "ready: nothing missing any more" in output


@pytest.mark.parametrize("image, board, hint", [
    ("milkv-v1", "duo", "BR2_PACKAGE_PYTHON_NUMPY=y"),
    ("milkv-v2", "duo256m", "BR2_PACKAGE_PYTHON_CFFI=y"),
    ("debian", "licheerv-nano", "apt-get install python3-numpy"),
])
def test_overlay_image_profiles_are_recorded_and_give_the_init_script_its_hints(
        tmp_path, capsys, image, board, hint):
    out = tmp_path / "o.tar.gz"
    code = cli.main(["firmware", "overlay", "--board", board, "--image", image, "-o", str(out),
                     "--no-bundle", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["image"] == image
    with tarfile.open(out) as tar:
        overlay = json.loads(tar.extractfile("opt/edgetype/overlay.json").read())
        defaults = tar.extractfile("etc/default/edgetype").read().decode()
    assert overlay["image"] == image and f"EDGETYPE_IMAGE={image}" in defaults
    assert hint in defaults and "EDGETYPE_MIN_PYTHON=3.9" in defaults
    # --board alone picks the image recommended for the board
    build_overlay("duo", tmp_path / "d.tar.gz", with_bundle=False)
    with tarfile.open(tmp_path / "d.tar.gz") as tar:
        assert json.loads(tar.extractfile("opt/edgetype/overlay.json").read())["image"] == "milkv-v1"


def test_the_v1_image_without_numpy_gets_one_line_from_the_shipped_init_script(tmp_path):
    """The overlay as built, its init script and defaults, the V1 image's python3 (3.9-era
    packages: cffi, evdev, pyserial; no numpy; board_tests/overlay_root.py): one line, no demo."""
    from board_tests.overlay_root import board_python, build_root

    root = build_root(tmp_path / "root", board="duo", image="milkv-v1")
    defaults = root.root / "etc/default/edgetype"
    defaults.write_text(defaults.read_text().replace("/opt/edgetype", str(root.root / "opt/edgetype")))
    (root.root / "opt/edgetype/bundle").mkdir()
    (root.root / "opt/edgetype/bundle/manifest.json").write_text("{}")
    env = script_env(tmp_path, "sh -c 'echo run >> runs'", EDGETYPE_DEFAULTS=defaults,
                     EDGETYPE_PYTHON=board_python("milkv-v1"))
    for name in ("EDGETYPE_HOME", "EDGETYPE_BUNDLE"):
        env.pop(name)
    code, output = supervise_for(["sh"], env, 1.0, until="waiting:")
    waiting = [line for line in output.splitlines() if "waiting:" in line]
    assert code == 0 and len(waiting) == 1, output
    assert "numpy missing" in waiting[0] and "BR2_PACKAGE_PYTHON_NUMPY=y" in waiting[0]
    assert "no numpy-free runtime yet" in waiting[0] and "Traceback" not in output


def test_no_keyboard_at_boot_is_one_line_from_the_shipped_init_script_and_its_real_check(tmp_path):
    """The overlay's init script with its default keyboard check (`python3 -m runtime.cli demo
    --list-keyboards --json` on the overlay's lib) and the debian image's python3: this machine
    has no /dev/input, so the service must wait with one line and never start the demo."""
    from board_tests.overlay_root import board_python, build_root, link_bundle

    sys.path.insert(0, str(REPO / "tests"))
    from test_bundle import make_tiny_bundle

    root = build_root(tmp_path / "root", board="duo256m", image="debian")
    link_bundle(root, make_tiny_bundle(tmp_path / "bundle"))
    defaults = root.root / "etc/default/edgetype"
    defaults.write_text(defaults.read_text().replace("/opt/edgetype", str(root.root / "opt/edgetype"))
                        .replace("EDGETYPE_BACKEND=tpu", "EDGETYPE_BACKEND=numpy"))
    env = script_env(tmp_path, "sh -c 'echo run >> runs'", EDGETYPE_DEFAULTS=defaults,
                     EDGETYPE_PYTHON=board_python("debian"))
    for name in ("EDGETYPE_HOME", "EDGETYPE_BUNDLE", "EDGETYPE_KEYBOARD_CHECK"):
        env.pop(name)
    if os.path.isdir("/dev/input"):
        pytest.skip("this machine has /dev/input: the no-keyboard case needs a machine without")
    listed = subprocess.run([str(env["EDGETYPE_PYTHON"]), "-m", "runtime.cli", "demo",
                             "--list-keyboards", "--json"], capture_output=True, text=True,
                            env=dict(env, PYTHONPATH=str(root.lib)), timeout=60)
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"devices": []}, listed.stderr
    code, output = supervise_for(["sh"], env, 1.0, until="waiting:")
    waiting = [line for line in output.splitlines() if "waiting:" in line]
    assert code == 0 and len(waiting) == 1, output
    assert "no keyboard: no /dev/input on this kernel" in waiting[0]
    assert not (tmp_path / "runs").exists() and "Traceback" not in output


def test_only_the_boards_native_build_ships(tmp_path):
    """runtime/native/build/x86_64 (the host's core) never lands in an overlay; riscv64 does."""
    from firmware.overlay import _ships_to_board
    assert _ships_to_board(Path("native/build/riscv64/libedgetype_core.so"))
    assert not _ships_to_board(Path("native/build/x86_64/libedgetype_core.so"))
    assert not _ships_to_board(Path("native/build/x86_64-count/libedgetype_core.so"))
    assert _ships_to_board(Path("engine.py"))


def test_default_bundles_of_every_board_exist():
    from firmware.overlay import BOARDS, default_bundle_dir
    for board in BOARDS:
        assert (default_bundle_dir(board) / "manifest.json").is_file(), board
