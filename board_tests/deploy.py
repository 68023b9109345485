"""`edgetype board deploy`: install the firmware overlay over the serial console.

upload (board_tests/upload.py) -> `tar -xzf -C /` -> enable (systemd unit on a Debian image;
busybox init runs /etc/init.d/S99* by itself) -> start unless told not to. The root it extracts
into is `${EDGETYPE_ROOT:-/}` on the board: the simulated board sets EDGETYPE_ROOT to its sandbox.
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

from board_tests.console import BoardConsole, progress
from board_tests.upload import check_board_tools, upload_file


def deploy_overlay(console: BoardConsole, *, board: str, overlay: str | None = None,
                   bundle: str | None = None, with_bundle: bool = True, start: bool = True,
                   timeout_s: float = 3600.0) -> dict:
    from firmware.overlay import build_overlay

    check_board_tools(console)
    board_tmp = console.run("echo ${TMPDIR:-/tmp}", timeout_s=10).output.strip() or "/tmp"
    remote = f"{board_tmp}/edgetype-overlay.tar.gz"
    with tempfile.TemporaryDirectory(prefix="edgetype-deploy-") as tmp:
        if overlay is None:
            overlay = str(Path(tmp) / f"edgetype-{board}.tar.gz")
            build_overlay(board, overlay, bundle=bundle, with_bundle=with_bundle)
        size = Path(overlay).stat().st_size
        progress(f"uploading {overlay} ({size} bytes; ~{size * 4 / 3 / 11000:.0f} s at 115200 baud)")
        upload = upload_file(console, overlay, remote)
    root = '"${EDGETYPE_ROOT:-/}"'
    console.run(f"tar -xzf {shlex.quote(remote)} -C {root} && rm -f {shlex.quote(remote)}",
                timeout_s=min(timeout_s, 600), check=True)
    init = '"${EDGETYPE_ROOT:-}/etc/init.d/S99edgetype"'
    console.run(f"chmod 755 {init} && sh -n {init}", timeout_s=30, check=True)
    has_systemd = console.run("[ -d /run/systemd/system ] && [ -z \"${EDGETYPE_ROOT:-}\" ]",
                              timeout_s=10).exit_code == 0
    if has_systemd:
        console.run("cp /opt/edgetype/share/edgetype.service /etc/systemd/system/ && "
                    "systemctl daemon-reload && systemctl enable edgetype", timeout_s=60, check=True)
        init_kind = "systemd unit edgetype.service"
    else:
        init_kind = "busybox init /etc/init.d/S99edgetype"
    simulated = console.run('[ -n "${EDGETYPE_ROOT:-}" ]', timeout_s=10).exit_code == 0
    service = "not started (--no-start)"
    if start and simulated:  # its paths would be the host's /var/run, /opt: do not run it there
        service = "not started (simulated board: the overlay was unpacked into its sandbox)"
    elif start:
        command = "systemctl restart edgetype" if has_systemd else f"{init} restart"
        result = console.run(command, timeout_s=120)
        service = f"`{command}` exited {result.exit_code}: {result.output.strip()[-200:]}"
    return {"board": board, "overlay_bytes": size, "upload": upload, "init": init_kind,
            "service": service}
