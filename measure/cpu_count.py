"""Instructions per keystroke of the on-board CPU path, counted (not timed): a CPU term for the
board estimate that host load cannot inflate.

How: the same typing replay as `bench latency` (measure/bench.py run_replay) runs under valgrind's
callgrind with the counting build of the native core (`make native-count`): its `et_mark`, called
once after each keystroke's suggestions, issues CALLGRIND_DUMP_STATS, so each dump holds the
instructions (Ir) of exactly one keystroke. The
model step itself is not counted: the backend is `CannedBackend`, which returns fixed log-prob-like
rows and zero K/V (on the board that work is the TPU's; the host-side cost of a `CVI_NN_Forward`
call is the estimate's separate submit term). What is counted: the Session (text, token sync,
KV-window bookkeeping, ring, ranking, session cache), the keystroke core, numpy's small-array calls
and the interpreter running them, on this host (x86-64, this Python).

Converting to C906 time is an ESTIMATE (labelled, every input printed): x86-64 instructions times
the riscv64/x86-64 instruction ratio of the same code, divided by the C906's instructions per
cycle on interpreter code, at 1 GHz. Those two inputs are ASSUMED, not calibrated here (see
`CONVERSIONS`); PLATFORM.md's published C906-vs-x86 ratios (20-50x for Python) are the cross-check
printed beside them.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from tpu_driver import decode_step
from tpu_driver.backends.base import ArrayTensor, BackendBase
from tpu_driver.backends.numpy_ref import decode_step_specs

COUNTING_LIBRARY = Path(__file__).resolve().parents[1] / "runtime/native/build/x86_64-count/libedgetype_core.so"
C906_GHZ = 1.0
# (riscv64 instructions per x86-64 instruction of the same code, C906 instructions per cycle)
CONVERSIONS = {
    "best": {"rv64_per_x86_instruction": 1.3, "c906_ipc": 0.5},
    "pessimistic": {"rv64_per_x86_instruction": 1.5, "c906_ipc": 0.3},
}
CONVERSION_NOTE = ("ASSUMED, not calibrated: RV64GC needs more instructions than x86-64 for the same C "
                   "(no complex addressing, no memory operands); the C906 is single-issue in-order with "
                   "no L2 cache, so interpreter code runs well below 1 instruction per cycle. Cross-check "
                   "(docs/board-estimate.md): these make the C906 ~5-10x slower per instruction than this "
                   "host; PLATFORM.md's evidence is 10.8-20x (integer) and 20-50x (Python, derived): the "
                   "pessimistic conversion is not the slow end of that evidence.")


class CannedBackend(BackendBase):
    """A backend with the decode step's inputs and outputs whose run() computes nothing: the logits
    are one of 8 fixed rows (seeded), K/V outputs zero. For counting the CPU path around the model."""

    name = "canned"

    def __init__(self, cfg, seed: int = 0):
        super().__init__()
        self.inputs, self.outputs = decode_step_specs(cfg)
        self._tensors = {name: ArrayTensor(self, spec) for name, spec in {**self.inputs, **self.outputs}.items()}
        self._input_io = {name: self._tensors[name] for name in self.inputs}
        self._output_io = {name: self._tensors[name] for name in self.outputs}
        rng = np.random.default_rng(seed)
        self._rows = rng.normal(0, 3, (8, cfg.vocab_size)).astype(np.float32)  # (8,V) fixed logits
        self._step = 0

    def run(self) -> None:
        self._output_io[decode_step.LOGITS].write(self._rows[self._step % 8].reshape(1, -1))
        self._step += 1


def count_instructions(bundle_dir: str, text_path: str, keystrokes: int = 300, seed: int = 0,
                       typo_rate: float = 0.03) -> dict:
    """x86-64 instructions (callgrind Ir) of each keystroke of the replay; needs valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise UserError("counting instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="edgetype-cpu-count-") as directory:
        out = os.path.join(directory, "callgrind.out")
        code = ("import sys; from measure.cpu_count_replay import replay_marked; "
                f"replay_marked({bundle_dir!r}, {text_path!r}, {keystrokes}, {seed}, {typo_rate})")
        if not COUNTING_LIBRARY.exists():
            raise UserError(f"{COUNTING_LIBRARY}: missing; build it with `make native-count` (needs valgrind's callgrind.h)")
        run = subprocess.run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                              sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "EDGETYPE_CORE_LIB": str(COUNTING_LIBRARY)})
        if run.returncode != 0:
            raise UserError(f"valgrind run failed: {run.stderr.strip()[-800:]}")
        forward_calls = json.loads(run.stdout.strip().splitlines()[-1])["forward_calls"]
        dumps = sorted(glob.glob(out + ".*"), key=lambda p: int(p.rsplit(".", 1)[1].split("-")[0]))
        totals = [_total_ir(path) for path in dumps]
    # dump j holds what ran before the j-th mark: dump 1 = start-up up to the replay's first
    # suggestions (mark 1); dump 1 + i = keystroke i (its action and its suggestions)
    per_key = np.asarray(totals[1:1 + keystrokes], dtype=np.float64)
    calls = np.asarray(forward_calls[:len(per_key)])
    return {"ir_per_key": per_key, "forward_calls": calls}


def _total_ir(path: str) -> int:
    with open(path) as file:
        for line in file:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise UserError(f"{path}: no totals line (callgrind output format changed?)")


def c906_ms(ir, conversion: str) -> np.ndarray:
    c = CONVERSIONS[conversion]
    return np.asarray(ir, dtype=np.float64) * c["rv64_per_x86_instruction"] / (c["c906_ipc"] * C906_GHZ * 1e9) * 1e3
