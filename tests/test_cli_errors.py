"""Every input gets a clear error (issue 17): one table of hostile/careless command lines, each run
as a subprocess with a timeout, each required to exit 2 with exactly one `edgetype: error:` line
naming the file or option (never a traceback, never a hang, reads bounded).

Each row: (id, setup(tmp, bundle) -> argv, words the error line must contain). `bundle` is a fresh
copy of a tiny random-weight bundle (tests/test_bundle.py make_tiny_bundle, synthetic cvimodel).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1")
TEXT = "The cat sat on the mat. The dog sat on the log. We thank you for the time.\n" * 4


def run_cli(argv, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.cli", *argv], cwd=REPO, env=ENV,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kwargs)


def assert_one_clear_line(result, words) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgetype: error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0]  # the last word on stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory):
    from test_bundle import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("cli") / "bundle", chip="cv181x")


# -- helpers that break one thing of a bundle --------------------------------------------------------
def reseal(bundle: Path, **changes) -> None:
    """Edit manifest fields and recompute every sha256 and the bundle_id (so the later check is hit)."""
    from runtime.bundle import seal_manifest, sha256_file

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(bundle / name) for name in manifest["files"]
                         if (bundle / name).is_file()}
    manifest.update(changes)
    sealed = seal_manifest(manifest)
    if "format_version" in changes:  # a forged version: sealing would put the current one back
        sealed["format_version"] = changes["format_version"]
    (bundle / "manifest.json").write_text(json.dumps(sealed))


def edit_config(bundle: Path, **changes) -> None:
    config = json.loads((bundle / "config.json").read_text())
    config.update(changes)
    (bundle / "config.json").write_text(json.dumps(config))
    reseal(bundle)


def write_text(tmp: Path, name: str, data) -> Path:
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def corrupt_gzip(tmp: Path) -> Path:
    data = bytearray(gzip.compress(TEXT.encode() * 50))
    for i in range(20, len(data) - 12, 7):
        data[i] ^= 0xA5
    return write_text(tmp, "bad.txt.gz", bytes(data))


def suggest(bundle, *extra):
    return ["suggest", "--backend", "numpy", "--bundle", str(bundle), *extra, "the ca"]


def ksr(tmp, bundle, *extra, text=None):
    return ["eval", "ksr", "--backend", "numpy", "--bundle", str(bundle),
            "--text", str(text or write_text(tmp, "t.txt", TEXT)), *extra]


def replay_line(tmp, line: str) -> Path:
    return write_text(tmp, "r.jsonl", '{"sec": 0.1, "type": 1, "code": 30, "value": 1}\n' + line + "\n")


def deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def huge_number(digits: int = 5001) -> str:
    return "9" * digits


def truncated_weights(b: Path) -> None:
    data = (b / "weights.npz").read_bytes()
    (b / "weights.npz").write_bytes(data[: len(data) // 2])
    reseal(b)


def tokenizer_without_tokens(b: Path) -> None:
    data = json.loads((b / "tokenizer.json").read_text())
    del data["tokens"]
    (b / "tokenizer.json").write_text(json.dumps(data))
    reseal(b)


def link_to(b: Path, name: str, target: str) -> None:
    (b / name).unlink()
    (b / name).symlink_to(target)


CASES = [
    # -- bundle files: manifest, config, tokenizer, weights, cvimodel header
    ("manifest-window-wrong-type", lambda t, b: (reseal(b, window="16"), suggest(b))[1], ["manifest.json", "'window'"]),
    ("manifest-files-wrong-type", lambda t, b: (reseal(b, files=["config.json"]), suggest(b))[1], ["'files'", "dict"]),
    ("manifest-inputs-wrong-type", lambda t, b: (reseal(b, inputs={"x": 1}), suggest(b))[1], ["'inputs'"]),
    ("manifest-5001-digits", lambda t, b: ((b / "manifest.json").write_text(
        '{"format_version": 2, "ion_bytes": ' + huge_number() + "}"), suggest(b))[1], ["manifest.json", "JSON"]),
    ("manifest-100000-deep", lambda t, b: ((b / "manifest.json").write_text(deep_json()), suggest(b))[1],
     ["manifest.json", "JSON"]),
    ("manifest-edited-not-resealed", lambda t, b: ((b / "manifest.json").write_text(
        (b / "manifest.json").read_text().replace('"window": 16', '"window": 8')), suggest(b))[1], ["bundle_id"]),
    ("manifest-format-99", lambda t, b: (reseal(b, format_version=99), suggest(b))[1], ["format_version"]),
    ("manifest-chip-vs-cvimodel-header", lambda t, b: (reseal(b, chip="cv180x"), suggest(b))[1],
     ["chip cv180x", "compiled for cv181x"]),
    ("manifest-points-at-dev-zero", lambda t, b: (link_to(b, "golden.json" if (b / "golden.json").exists()
                                                          else "tokenizer.json", "/dev/zero"), suggest(b))[1],
     ["not a regular file"]),
    ("config-100000-deep", lambda t, b: ((b / "config.json").write_text(deep_json()), suggest(b))[1],
     ["config.json", "JSON"]),
    ("config-n-heads-0", lambda t, b: (edit_config(b, n_heads=0), suggest(b))[1], ["config.json", "n_heads"]),
    ("config-heads-do-not-divide", lambda t, b: (edit_config(b, n_heads=3), suggest(b))[1], ["multiple of n_heads"]),
    ("config-window-minus-4", lambda t, b: (edit_config(b, window=-4), suggest(b))[1], ["config.json", "window"]),
    ("config-window-1e9", lambda t, b: (edit_config(b, window=1e9), suggest(b))[1], ["config.json", "window"]),
    ("config-window-beyond-ion", lambda t, b: (edit_config(b, window=4096, d_model=2048, n_heads=4, n_layers=8),
                                               suggest(b))[1], ["ION"]),
    ("config-is-dev-zero", lambda t, b: (link_to(b, "config.json", "/dev/zero"), suggest(b))[1], ["config.json"]),
    ("tokenizer-missing-tokens", lambda t, b: (tokenizer_without_tokens(b), suggest(b))[1], ["tokenizer.json", "tokens"]),
    ("weights-truncated", lambda t, b: (truncated_weights(b), suggest(b))[1], ["weights.npz"]),
    ("weights-not-a-zip", lambda t, b: ((b / "weights.npz").write_bytes(b"PK\x03\x04junk" * 10), reseal(b),
                                        suggest(b))[2], ["weights.npz"]),
    ("cvimodel-truncated-1000-bytes", lambda t, b: ((b / "model.cvimodel").write_bytes(
        (b / "model.cvimodel").read_bytes()[:1000]), reseal(b), suggest(b))[2], ["model.cvimodel"]),
    ("cvimodel-random-bytes", lambda t, b: ((b / "model.cvimodel").write_bytes(np.random.default_rng(0).bytes(4096)),
                                            reseal(b), suggest(b))[2], ["not a cvimodel"]),
    # -- text files
    ("text-corrupt-gzip", lambda t, b: ksr(t, b, "--no-baseline", text=corrupt_gzip(t)), ["bad.txt.gz", ".gz"]),
    ("text-dev-zero", lambda t, b: ksr(t, b, "--no-baseline", text="/dev/zero"), ["/dev/zero"]),
    ("text-dev-zero-max-chars", lambda t, b: ksr(t, b, "--no-baseline", "--max-chars", "100", text="/dev/zero"),
     ["/dev/zero"]),
    ("window-text-dev-zero", lambda t, b: ["eval", "window", "--text", "/dev/zero", "--random-weights", "0"],
     ["/dev/zero"]),
    ("baseline-train-empty", lambda t, b: ksr(t, b, "--baseline-train", str(write_text(t, "e.txt", ""))),
     ["--baseline-train", "empty"]),
    ("baseline-train-binary", lambda t, b: ksr(t, b, "--baseline-train",
                                               str(write_text(t, "bin.dat", bytes(range(256)) * 64))),
     ["--baseline-train"]),
    ("plot-unwritable", lambda t, b: ksr(t, b, "--no-baseline", "--plot", "/proc/edgetype/ksr.png"), ["--plot"]),
    ("window-plot-unwritable", lambda t, b: ["eval", "window", "--text", str(write_text(t, "t.txt", TEXT)),
                                             "--random-weights", "0", "--plot", "/proc/edgetype/w.png"], ["--plot"]),
    # -- CLI numbers
    ("eval-window-minus-1", lambda t, b: ["eval", "window", "--text", "x", "--window", "-1"], ["--window"]),
    ("eval-window-sweep-abc", lambda t, b: ["eval", "window", "--text", "x", "--sweep", "16,abc"], ["--sweep", "abc"]),
    ("max-chars-minus-5", lambda t, b: ksr(t, b, "--max-chars", "-5"), ["--max-chars"]),
    ("suggest-k-0", lambda t, b: suggest(b, "-k", "0"), ["-k"]),
    ("suggest-k-5001-digits", lambda t, b: suggest(b, "-k", huge_number()), ["-k"]),
    ("login-timeout-nan", lambda t, b: ["board", "test", "--port", "sim://", "--login-timeout", "nan"],
     ["--login-timeout"]),
    ("login-timeout-inf", lambda t, b: ["board", "test", "--port", "sim://", "--login-timeout", "inf"],
     ["--login-timeout"]),
    ("board-timeout-0", lambda t, b: ["board", "test", "--port", "sim://", "--timeout", "0"], ["--timeout"]),
    ("bench-typo-rate-nan", lambda t, b: ["bench", "latency", "--typo-rate", "nan"], ["--typo-rate"]),
    ("verify-steps-0", lambda t, b: ["verify", str(b), "--steps", "0"], ["--steps"]),
    ("sim-reboot-after-abc", lambda t, b: ["board", "test", "--port", "sim://?reboot_after_s=abc"],
     ["reboot_after_s"]),
    # -- replay lines
    ("replay-sec-1e12-realtime", lambda t, b: ["demo", "--replay", str(replay_line(
        t, '{"sec": 1e12, "type": 1, "code": 30, "value": 0}')), "--realtime", "--no-journal"], ["'sec'"]),
    ("replay-sec-infinity", lambda t, b: ["demo", "--replay", str(replay_line(
        t, '{"sec": Infinity, "type": 1, "code": 30, "value": 0}')), "--no-journal"], ["'sec'"]),
    ("replay-5001-digits", lambda t, b: ["demo", "--replay", str(replay_line(
        t, '{"sec": 1, "type": 1, "code": ' + huge_number() + ', "value": 0}')), "--no-journal"], ["r.jsonl:2"]),
    ("replay-100000-deep", lambda t, b: ["demo", "--replay", str(replay_line(t, deep_json())), "--no-journal"],
     ["r.jsonl:2"]),
    ("replay-dev-zero", lambda t, b: ["demo", "--replay", "/dev/zero", "--no-journal"], ["/dev/zero"]),
    # -- outputs
    ("overlay-o-unwritable", lambda t, b: ["firmware", "overlay", "--board", "duo256m", "--no-bundle",
                                           "-o", "/proc/edgetype/overlay.tar.gz"], ["-o", "/proc/edgetype"]),
    ("overlay-o-directory", lambda t, b: ["firmware", "overlay", "--board", "duo256m", "--no-bundle", "-o", str(t)],
     ["-o", "directory"]),
    ("deploy-overlay-missing", lambda t, b: ["board", "deploy", "--port", "loop://", "--overlay", str(t / "no.tar.gz")],
     ["--overlay", "no such file"]),
    # -- the overlay packs nothing unchecked
    ("overlay-truncated-cvimodel", lambda t, b: ((b / "model.cvimodel").write_bytes(
        (b / "model.cvimodel").read_bytes()[:1000]), ["firmware", "overlay", "--board", "duo256m", "--bundle", str(b),
                                                     "-o", str(t / "o.tar.gz")])[1], ["model.cvimodel"]),
    ("overlay-wrong-sha256", lambda t, b: ((b / "tokenizer.json").write_text(
        (b / "tokenizer.json").read_text() + " "), ["firmware", "overlay", "--board", "duo256m", "--bundle", str(b),
                                                    "-o", str(t / "o.tar.gz")])[1], ["sha256"]),
    ("overlay-format-99", lambda t, b: (reseal(b, format_version=99), ["firmware", "overlay", "--board", "duo256m",
                                                                       "--bundle", str(b), "-o", str(t / "o.tar.gz")])[1],
     ["format_version"]),
    ("overlay-config-links-to-etc-passwd", lambda t, b: (link_to(b, "config.json", "/etc/passwd"), reseal(b),
                                                         ["firmware", "overlay", "--board", "duo256m", "--bundle", str(b),
                                                          "-o", str(t / "o.tar.gz")])[2], ["config.json"]),
]


@pytest.mark.parametrize("setup, words", [pytest.param(s, w, id=i) for i, s, w in CASES])
def test_a_bad_input_is_one_clear_line_exit_2(tmp_path, base_bundle, setup, words):
    bundle = tmp_path / "bundle"
    shutil.copytree(base_bundle, bundle)
    argv = setup(tmp_path, bundle)
    started = time.monotonic()
    result = run_cli(argv)
    assert_one_clear_line(result, words)
    assert time.monotonic() - started < 30  # bounded: no hang, no reading /dev/zero to the end
    assert not (tmp_path / "o.tar.gz").exists()  # an overlay refused writes nothing


def test_a_serial_peer_that_drops_the_connection_is_a_clear_error(tmp_path):
    """socket:// peer that accepts, says one word and hangs up while we log in."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        connection, _ = server.accept()
        connection.sendall(b"\r\nmilkv-duo login")
        time.sleep(0.3)
        connection.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    result = run_cli(["board", "deploy", "--port", f"socket://127.0.0.1:{port}", "--login-timeout", "20",
                      "--no-bundle", "--overlay", str(write_text(tmp_path, "o.tar.gz", b"x"))], timeout=60)
    thread.join(5)
    assert_one_clear_line(result, ["dropped the connection"])


def test_a_good_command_still_works(base_bundle):
    """The table's commands are not refused for some other reason: the unbroken bundle answers."""
    result = run_cli(["suggest", "--backend", "numpy", "--bundle", str(base_bundle), "--json", "the ca"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["suggestions"][0]["word"] == "cat"


def test_max_chars_bounds_what_is_read_from_an_endless_pipe(tmp_path, base_bundle):
    """`--text` on a FIFO fed forever: with --max-chars the read stops there and the run finishes."""
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed():
        try:
            with open(fifo, "wb") as pipe:
                while not stop.is_set():
                    pipe.write(TEXT.encode() * 100)
        except (BrokenPipeError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    started = time.monotonic()
    result = run_cli(["eval", "ksr", "--backend", "numpy", "--bundle", str(base_bundle), "--text", str(fifo),
                      "--max-chars", "300", "--no-baseline", "--json"], timeout=60)
    stop.set()
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["chars"] == 300
    assert time.monotonic() - started < 30
