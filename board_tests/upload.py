"""Copy a file onto the board through its serial console (no network, no zmodem needed).

The file travels as base64 text in chunks of CHUNK_BYTES. Each chunk is appended to
`<dest>.b64` with short `printf` lines (busybox ash's line editor takes ~1 KiB per line),
decoded, and checked with `sha256sum` before it is appended to `<dest>.partial`; a chunk whose
digest differs is sent again. The whole file's sha256 is checked before `<dest>.partial` becomes
`<dest>`. An interrupted upload resumes: when `<dest>.partial` exists and its first N bytes hash
to what ours do (N a multiple of CHUNK_BYTES), sending starts at chunk N / CHUNK_BYTES.

Board side needs only busybox: printf, base64, sha256sum, cat, wc, mv, rm.
"""
from __future__ import annotations

import base64
import hashlib
import shlex
from pathlib import Path

from board_tests.console import BoardConsole, BoardError, progress

CHUNK_BYTES = 4096  # raw bytes per verified chunk (5.5 KB of base64, 8 printf lines)
LINE_CHARS = 768  # base64 characters per printf command line (< busybox's 1024-byte line editor)
CHUNK_RETRIES = 3


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _board_sha256(console: BoardConsole, path: str) -> str | None:
    result = console.run(f"sha256sum {shlex.quote(path)} 2>/dev/null", timeout_s=60)
    fields = result.output.split()
    if result.exit_code != 0 or not fields or len(fields[0]) != 64:
        return None
    return fields[0]


def _board_size(console: BoardConsole, path: str) -> int | None:
    result = console.run(f"wc -c < {shlex.quote(path)} 2>/dev/null", timeout_s=30)
    text = result.output.strip()
    return int(text) if result.exit_code == 0 and text.isdigit() else None


def check_board_tools(console: BoardConsole) -> None:
    result = console.run("for t in base64 sha256sum printf wc; do command -v $t >/dev/null || "
                         "echo missing:$t; done", timeout_s=15)
    missing = [w.split(":", 1)[1] for w in result.output.split() if w.startswith("missing:")]
    if missing:
        raise BoardError(f"{console.name}: the board lacks {', '.join(missing)} needed for upload "
                         "(enable them in busybox or copy files on the SD card)")


def upload_file(console: BoardConsole, local: str | Path, dest: str, *, mode: str | None = None,
                resume: bool = True) -> dict:
    """Copy `local` to `dest` on the board; return {'bytes', 'chunks_sent', 'resumed_from', ...}."""
    data = Path(local).read_bytes()
    whole_sha = sha256_hex(data)
    q_dest = shlex.quote(dest)
    q_partial = shlex.quote(dest + ".partial")
    q_b64 = shlex.quote(dest + ".b64")
    q_chunk = shlex.quote(dest + ".chunk")
    n_chunks = max(1, -(-len(data) // CHUNK_BYTES))

    if _board_sha256(console, dest) == whole_sha:  # already there (a re-run)
        return {"path": dest, "bytes": len(data), "sha256": whole_sha, "chunks_sent": 0,
                "resumed_from": n_chunks, "retries": 0}

    start_chunk = 0
    if resume:
        size = _board_size(console, dest + ".partial")
        if size and size % CHUNK_BYTES == 0 and size <= len(data):
            if _board_sha256(console, dest + ".partial") == sha256_hex(data[:size]):
                start_chunk = size // CHUNK_BYTES
    if start_chunk == 0:
        console.run(f"mkdir -p $(dirname {q_dest}) && : > {q_partial}", timeout_s=15, check=True)
    else:
        progress(f"upload {Path(local).name}: resuming at chunk {start_chunk}/{n_chunks}")

    retries = 0
    for index in range(start_chunk, n_chunks):
        chunk = data[index * CHUNK_BYTES:(index + 1) * CHUNK_BYTES]
        text = base64.b64encode(chunk).decode()
        expected = sha256_hex(chunk)
        for attempt in range(CHUNK_RETRIES + 1):
            console.run(f": > {q_b64}", timeout_s=15, check=True)
            for pos in range(0, len(text), LINE_CHARS):
                console.run(f"printf %s {text[pos:pos + LINE_CHARS]} >> {q_b64}", timeout_s=15,
                            check=True)
            result = console.run(f"base64 -d {q_b64} > {q_chunk} && sha256sum {q_chunk}",
                                 timeout_s=30)
            got = result.output.split()[0] if result.output.split() else ""
            if result.exit_code == 0 and got == expected:
                console.run(f"cat {q_chunk} >> {q_partial}", timeout_s=15, check=True)
                break
            retries += 1
            if attempt == CHUNK_RETRIES:
                raise BoardError(f"{console.name}: chunk {index} of {local} arrived corrupted "
                                 f"{CHUNK_RETRIES + 1} times: check the serial line")
        if n_chunks >= 16 and (index + 1) % max(1, n_chunks // 8) == 0:
            progress(f"upload {Path(local).name}: {index + 1}/{n_chunks} chunks")
    board_sha = _board_sha256(console, dest + ".partial")
    if board_sha != whole_sha:
        console.run(f"rm -f {q_partial}", timeout_s=15)
        raise BoardError(f"{console.name}: {dest} has sha256 {board_sha} after upload, expected "
                         f"{whole_sha}; run again")
    finish = f"mv {q_partial} {q_dest} && rm -f {q_b64} {q_chunk}"
    if mode:
        finish += f" && chmod {mode} {q_dest}"
    console.run(finish, timeout_s=15, check=True)
    return {"path": dest, "bytes": len(data), "sha256": whole_sha,
            "chunks_sent": n_chunks - start_chunk, "resumed_from": start_chunk, "retries": retries}
