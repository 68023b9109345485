"""Helpers for the simulator tests (kept out of conftest.py so tests can import them by name)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def run_python(script: str, *args: str, timeout: float = 300) -> dict:
    """Run `script` in a fresh interpreter (its own simulator/chip); returns its last stdout line as JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout,
                            cwd=REPO_ROOT, env=env)
    lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
    assert result.returncode == 0 and lines, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-3000:]}"
    assert len(lines) == 1, f"native code leaked onto stdout: {lines}"
    return json.loads(lines[-1])
