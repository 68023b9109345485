"""Host side of `edgetype board test`: pack the on-board suite, upload it, run it, read results.

The tarball holds board_tests/onboard (runner + tests) and, unless told otherwise, the packages
the tests import (runtime, tpu_driver, kv_window, keyboard_ui), so a board needs only python3 +
numpy (+ cffi for the tpu backend) and a bundle at /opt/edgetype/bundle (firmware/ puts it there;
over a 115200-baud console a multi-MB bundle is better copied on the SD card).
"""
from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import UserError
from board_tests.console import BoardConsole, BoardError, progress
from board_tests.upload import check_board_tools, upload_file

REPO = Path(__file__).resolve().parent.parent
ONBOARD_PACKAGES = ("runtime", "tpu_driver", "kv_window", "keyboard_ui")
ONBOARD_SUPPORT = ("__init__.py", "runner.py", "boardenv.py", "decode.py")
RESULT_RE = re.compile(r"^ET-(RESULT|SUMMARY|MEASURE|INFO) (\{.*\})\s*$", re.MULTILINE)


def _skip_member(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def suite_test_ids(*, repo: Path = REPO, suite_dir: Path | None = None, keyword: str | None = None) -> list[str]:
    """The test ids (`file::function`) the suite holds, read from its files on the host (ast, no
    import): what a board run must account for. `keyword` filters as the runner's -k does.

    Raises UserError for a missing or empty suite, or a -k that matches none of its tests: a run
    of no test must never report success."""
    import ast

    directory = Path(suite_dir) if suite_dir is not None else repo / "board_tests" / "onboard"
    if not directory.is_dir():
        raise UserError(f"--suite {directory}: no such directory; pass a folder of test_*.py files")
    ids = []
    for path in sorted(directory.glob("test_*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as error:
            raise UserError(f"{path}: not readable Python ({str(error)[:80]}); fix the test file") from None
        ids += [f"{path.name}::{node.name}" for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")]
    if not ids:
        raise UserError(f"suite {directory}: holds no test_*.py test functions; nothing would run")
    selected = [i for i in ids if not keyword or keyword in i]
    if not selected:
        raise UserError(f"-k {keyword!r} matches none of the {len(ids)} tests in {directory}; "
                        "list them with `python -m board_tests.onboard.runner --list`")
    return selected


def build_suite_tarball(*, repo: Path = REPO, suite_dir: Path | None = None,
                        with_packages: bool = True) -> bytes:
    """The suite as .tar.gz bytes (deterministic member order and mtimes)."""
    onboard = repo / "board_tests" / "onboard"
    files: list[tuple[str, Path]] = [("board_tests/__init__.py", repo / "board_tests/__init__.py")]
    if suite_dir is None:
        for path in sorted(onboard.rglob("*")):
            if path.is_file() and not _skip_member(path):
                files.append((f"board_tests/onboard/{path.relative_to(onboard)}", path))
    else:  # another set of tests run by the same runner (the harness's own tests use this)
        for name in ONBOARD_SUPPORT:
            files.append((f"board_tests/onboard/{name}", onboard / name))
        for path in sorted(Path(suite_dir).glob("test_*.py")):
            files.append((f"board_tests/onboard/{path.name}", path))
    if with_packages:
        for package in ONBOARD_PACKAGES:
            root = repo / package
            if not root.is_dir():
                raise BoardError(f"package {package}/ missing in {repo}: cannot pack the suite")
            for path in sorted(root.rglob("*")):
                if path.is_file() and not _skip_member(path):
                    files.append((f"{package}/{path.relative_to(root)}", path))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.USTAR_FORMAT) as tar:
        for name, path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class SuiteReport:
    port: str
    results: list[dict] = field(default_factory=list)
    measures: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    summary: dict | None = None  # the runner's own ET-SUMMARY (None when it never finished)
    board_error: str | None = None
    upload: dict | None = None
    tree: dict | None = None  # which file tree ran: {"kind": "overlay"|"upload", "lib", "overlay"}
    seconds: float = 0.0
    expected: list[str] | None = None  # test ids the suite holds (suite_test_ids); None: not known

    def problems(self) -> list[str]:
        """Why a finished run still does not count as a pass (no false passes)."""
        found = []
        if self.summary is not None and not self.results:
            found.append("no test ran")
        if self.expected is not None and self.summary is not None:
            ran = {r.get("nodeid") for r in self.results}
            missing = [i for i in self.expected if i not in ran]
            if missing:
                found.append(f"{len(missing)} of the suite's {len(self.expected)} tests did not run "
                             f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
        silent = [r.get("nodeid") for r in self.results if r.get("outcome") == "skipped"
                  and str(r.get("message") or "").strip() in ("", "Skip", "Skipped")]
        if silent:
            found.append(f"{len(silent)} skipped without a reason ({', '.join(map(str, silent[:3]))})")
        return found

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.get("outcome") == outcome)

    @property
    def ok(self) -> bool:
        return (self.board_error is None and self.summary is not None
                and self.count("failed") == 0 and self.count("error") == 0 and not self.problems())

    def to_json(self) -> dict:
        return {
            "port": self.port, "ok": self.ok,
            "passed": self.count("passed"), "failed": self.count("failed"),
            "skipped": self.count("skipped"), "errors": self.count("error"),
            "finished": self.summary is not None, "board_error": self.board_error,
            "info": self.info, "results": self.results, "measures": self.measures,
            "upload": self.upload, "tree": self.tree, "seconds": round(self.seconds, 2),
            "expected": None if self.expected is None else len(self.expected), "problems": self.problems(),
        }

    def summary_text(self) -> str:
        lines = []
        if self.tree:
            lines.append(f"tree: {self.tree['kind']} {self.tree.get('lib')}"
                         + (f" (overlay {self.tree['overlay']})" if self.tree.get("overlay") else ""))
        if self.info:
            lines.append(f"board {self.info.get('board')} backend {self.info.get('backend')}, "
                         f"python {self.info.get('python')} on {self.info.get('machine')}, "
                         f"numpy {self.info.get('numpy')}")
        for r in self.results:
            lines.append(f"{r['nodeid']} {r['outcome'].upper()} ({r.get('seconds', 0):.2f} s)")
        for r in self.results:
            if r["outcome"] != "passed":
                lines.append(f"{r['outcome'].upper()} {r['nodeid']} - {r.get('message', '')}")
        for m in self.measures:
            note = f"  [{m['note']}]" if m.get("note") else ""
            lines.append(f"measure {m['name']} = {m['value']} {m['unit']} "
                         f"(backend {m.get('backend')}){note}")
        if self.board_error:
            lines.append(f"BOARD ERROR {self.board_error}")
        for problem in self.problems():
            lines.append(f"NOT A PASS: {problem}")
        parts = [f"{self.count(o)} {o if o != 'error' else 'errors'}"
                 for o in ("passed", "failed", "skipped", "error") if self.count(o) or o == "passed"]
        if self.summary is None:
            parts.append("suite did not finish")
        lines.append(f"==== {', '.join(parts)} in {self.seconds:.1f} s on {self.port} ====")
        return "\n".join(lines)


def parse_runner_output(text: str, report: SuiteReport) -> None:
    for kind, payload in RESULT_RE.findall(text.replace("\r", "")):
        try:
            record = json.loads(payload)
        except json.JSONDecodeError:
            continue  # a line mangled on the wire: its test counts as missing, not as passed
        if kind == "RESULT":
            report.results.append(record)
        elif kind == "MEASURE":
            report.measures.append(record)
        elif kind == "INFO":
            report.info = record
        elif kind == "SUMMARY":
            report.summary = record
    if report.summary is not None:  # the runner's own counts must agree with the lines we got
        for outcome in ("passed", "failed", "skipped", "error"):
            if report.summary.get(outcome, 0) != report.count(outcome):
                report.board_error = (f"result lines lost on the wire: runner counted "
                                      f"{report.summary} but {len(report.results)} lines arrived")
                break


INSTALLED_LIB = "${EDGETYPE_ROOT:-}/opt/edgetype/lib"  # where the overlay puts the packages


def run_suite(console: BoardConsole, *, port: str, tarball: bytes | None,
              board_dir: str | None = None, env: dict | None = None, keyword: str | None = None,
              python: str = "python3", timeout_s: float = 900.0) -> SuiteReport:
    """Upload and run the suite on a logged-in console; board errors land in the report.

    `tarball=None`: upload nothing and run the suite the firmware overlay installed
    (INSTALLED_LIB): the board's own file tree is what runs."""
    report = SuiteReport(port=port)
    started = time.monotonic()
    try:
        if tarball is None:
            report.tree = {"kind": "overlay", "lib": INSTALLED_LIB}
            _run_runner(console, report, port=port, cd="${HOME:-/}", pythonpath=INSTALLED_LIB,
                        env=env, keyword=keyword, python=python, timeout_s=timeout_s)
            report.seconds = time.monotonic() - started
            return report
        if board_dir is None:
            home = console.run("echo $HOME", timeout_s=10).output.strip() or "/root"
            board_dir = f"{home}/edgetype-test"
        check_board_tools(console)
        local = Path(console_tmp_file(tarball))
        try:
            progress(f"uploading the suite ({len(tarball)} bytes) to {board_dir}")
            report.upload = upload_file(console, local, f"{board_dir}/suite.tar.gz")
        finally:
            local.unlink(missing_ok=True)
        q_dir = shlex.quote(board_dir)
        console.run(f"cd {q_dir} && rm -rf board_tests runtime tpu_driver kv_window keyboard_ui "
                    f"&& tar -xzf suite.tar.gz", timeout_s=120, check=True)
        report.tree = {"kind": "upload", "lib": board_dir}
        # the uploaded files first; packages not uploaded (--no-packages) come from the overlay
        _run_runner(console, report, port=port, cd=q_dir, pythonpath=f"{q_dir}:{INSTALLED_LIB}",
                    env=env, keyword=keyword, python=python, timeout_s=timeout_s)
    except BoardError as error:
        parse_runner_output(getattr(error, "partial_output", ""), report)
        report.board_error = str(error)
    report.seconds = time.monotonic() - started
    return report


def _run_runner(console: BoardConsole, report: SuiteReport, *, port: str, cd: str,
                pythonpath: str, env: dict | None, keyword: str | None, python: str,
                timeout_s: float) -> None:
    has_python = console.run(f"command -v {shlex.quote(python)}", timeout_s=10)
    if has_python.exit_code != 0:
        raise BoardError(f"{port}: no {python} on the board (the suite needs python3 + numpy)")
    assignments = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items())
    command = (f"cd {cd} && {assignments} PYTHONPATH={pythonpath}${{PYTHONPATH:+:$PYTHONPATH}} "
               f"PYTHONDONTWRITEBYTECODE=1 "
               f"{shlex.quote(python)} -m board_tests.onboard.runner"
               + (f" -k {shlex.quote(keyword)}" if keyword else "") + " 2>&1")
    progress(f"running the on-board suite ({python} -m board_tests.onboard.runner, "
             f"{report.tree['kind']} tree)")
    result = console.run(command, timeout_s=timeout_s)
    parse_runner_output(result.output, report)
    if report.summary is None and report.board_error is None:
        tail = " | ".join(result.output.strip().splitlines()[-3:])
        report.board_error = f"the runner exited {result.exit_code} without a summary: {tail}"
    if report.info.get("lib"):  # where the board's python really imported the packages from
        report.tree["lib"] = report.info["lib"]
        report.tree["overlay"] = report.info.get("overlay")


def console_tmp_file(data: bytes) -> str:
    import tempfile

    handle = tempfile.NamedTemporaryFile(prefix="edgetype-suite-", suffix=".tar.gz", delete=False)
    with handle:
        handle.write(data)
    return handle.name
