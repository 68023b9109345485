"""A tiny test runner for the board, where there is no pytest (the stock Milk-V image has none).

    python3 -m board_tests.onboard.runner [-k SUBSTRING] [--list]

Runs every `test_*` function of every `test_*.py` beside this file, in file order, and prints for
each a line the serial harness parses:
    ET-RESULT {"nodeid": "test_driver.py::test_x", "outcome": "passed", "seconds": 0.1, "message": ""}
then one `ET-SUMMARY {"passed": n, "failed": n, "skipped": n, "error": n, ...}`. A test passes
when it returns, is skipped when it raises boardenv.Skip (or pytest's skip), fails on an
AssertionError and is an error on anything else. On a host these files are also plain pytest
tests; this runner gives the same outcomes there. Exit status 1 when anything failed.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def discover(keyword: str | None = None) -> list[tuple[str, str, object]]:
    found = []
    for filename in sorted(os.listdir(HERE)):
        if not (filename.startswith("test_") and filename.endswith(".py")):
            continue
        module_name = "board_tests.onboard." + filename[:-3]
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001 - a module that fails to import is one error
            def broken(error=error):
                raise error
            found.append((filename, "<import>", broken))
            continue
        functions = [(getattr(module, name).__code__.co_firstlineno, name)
                     for name in dir(module)
                     if name.startswith("test_") and callable(getattr(module, name))]
        for _, name in sorted(functions):
            nodeid = f"{filename}::{name}"
            if keyword and keyword not in nodeid:
                continue
            found.append((filename, name, getattr(module, name)))
    return found


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def tree_info() -> dict:
    """Which file tree this runs from: the lib dir the packages came from and, when it is an
    installed firmware overlay, what its overlay.json says it is."""
    import runtime

    lib = os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__)))
    info = {"lib": lib, "overlay": None}
    try:
        with open(os.path.join(os.path.dirname(lib), "overlay.json")) as f:
            record = json.load(f)
        info["overlay"] = {k: record.get(k) for k in ("board", "image", "overlay_format", "chip")}
    except (OSError, ValueError):
        pass
    return info


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "passed"
    name = type(error).__name__
    if name in ("Skip", "Skipped"):
        return "skipped"
    if isinstance(error, AssertionError):
        return "failed"
    return "error"


def run(keyword: str | None = None, out=sys.stdout) -> dict:
    from board_tests.onboard import boardenv

    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    info = {"python": sys.version.split()[0], "machine": os.uname().machine,
            "board": boardenv.board_kind(), "backend": boardenv.backend_name(),
            "pytest": _importable("pytest")}
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    info.update(tree_info())
    print("ET-INFO " + json.dumps(info, sort_keys=True), file=out, flush=True)
    started = time.perf_counter()
    for filename, name, function in discover(keyword):
        t0 = time.perf_counter()
        error = None
        try:
            function()
        except BaseException as caught:  # noqa: BLE001 - every outcome is reported, none escapes
            if isinstance(caught, KeyboardInterrupt):
                raise
            error = caught
        outcome = outcome_of(error)
        counts[outcome] += 1
        message = ""
        if error is not None:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if outcome == "error":
                message = f"{type(error).__name__}: {message}"
                print("".join(traceback.format_exception(type(error), error, error.__traceback__,
                                                         limit=-3)), file=out)
        record = {"nodeid": f"{filename}::{name}", "outcome": outcome,
                  "seconds": round(time.perf_counter() - t0, 3), "message": message[:300]}
        print("ET-RESULT " + json.dumps(record, sort_keys=True), file=out, flush=True)
    summary = dict(counts, seconds=round(time.perf_counter() - started, 2))
    print("ET-SUMMARY " + json.dumps(summary, sort_keys=True), file=out, flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    keyword = None
    if "-k" in argv:
        keyword = argv[argv.index("-k") + 1]
    if "--list" in argv:
        for filename, name, _ in discover(keyword):
            print(f"{filename}::{name}")
        return 0
    summary = run(keyword)
    return 1 if summary["failed"] or summary["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
