"""`edgetype bench latency`: keystroke latency over a replayed typing session (EVALUATION.md).

The replay types held-out text through the engine as a user would: letters, separators, accepting
a suggestion when the word is shown (one keystroke), and typos (a wrong letter, then backspace)
at `--typo-rate`, from a fixed seed. Per keystroke: the time from the event entering the Session
until its 3 suggestions are ready, split into model time (inside `backend.run()`) and overhead.
The naive baseline (same model and backend, whole context recomputed with no KV reuse: reset, one
decode step per context token up to the window, then suggestions) is timed on a subsample of the
same keystrokes in the same run. `board_estimate_ms` is an ESTIMATE, with its formula and inputs.
"""
from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from runtime.percentiles import percentiles  # noqa: F401 - also measure.bench.percentiles
from runtime.tokenizer import WORD

DEFAULT_TEXT = Path(__file__).resolve().parents[1] / "models" / "corpus" / "test.txt.gz"


class _Replay:
    """Drives a Session through the typing replay and records per-keystroke timings."""

    def __init__(self, session, k: int):
        self.session = session
        self.k = k
        self.keystroke_ms: list[float] = []
        self.model_ms: list[float] = []
        self.forward_calls: list[int] = []
        self.samples: list[str] = []  # text snapshots for the naive baseline
        self.suggested: list[str] = []

    def key(self, action, *args):
        session = self.session
        started = time.perf_counter()
        result = action(*args)
        suggestions = session.suggestions(self.k)
        elapsed = (time.perf_counter() - started) * 1e3
        self.keystroke_ms.append(elapsed)
        self.model_ms.append(session.last_model_ms)
        self.forward_calls.append(session.last_forward_calls)
        self.suggested = [s.word for s in suggestions]
        return result


def run_replay(session, text: str, n_keystrokes: int, typo_rate: float, seed: int, k: int = 3,
               sample_every: int = 0) -> _Replay:
    """Replay typing of `text` for `n_keystrokes` keys (see module docstring)."""
    rng = random.Random(seed)
    replay = _Replay(session, k)
    session.reset()
    replay.suggested = [s.word for s in session.suggestions(k)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    position = 0

    def budget() -> bool:
        return len(replay.keystroke_ms) < n_keystrokes

    def snapshot() -> None:
        if sample_every and len(replay.keystroke_ms) % sample_every == 0:
            replay.samples.append(session.text)

    for match in WORD.finditer(text):
        for char in text[position:match.start()]:
            if not budget():
                return replay
            replay.key(session.insert, char)
            snapshot()
        word = match.group()
        for i in range(len(word)):
            if not budget():
                return replay
            if word in replay.suggested:
                replay.key(session.accept, replay.suggested.index(word))
                snapshot()
                break
            if rng.random() < typo_rate:
                replay.key(session.insert, rng.choice(letters))
                snapshot()
                if not budget():
                    return replay
                replay.key(session.backspace)
                snapshot()
                if not budget():
                    return replay
            replay.key(session.insert, word[i])
            snapshot()
        position = match.end()
    if budget():
        raise UserError(f"the bench text is too short for {n_keystrokes} keystrokes; pass a longer --text "
                        f"or fewer --keystrokes")
    return replay


def naive_keystroke_ms(session, texts: list[str], k: int = 3) -> list[float]:
    """Per text: reset + feed the whole context (one step per token, up to the window) + suggestions."""
    times = []
    saved = session.prefill_max_tokens
    session.prefill_max_tokens = session.cfg.window  # the model never sees more than its window
    try:
        for text in texts:
            started = time.perf_counter()
            session.reset()
            session.insert(text)
            session.suggestions(k)
            times.append((time.perf_counter() - started) * 1e3)
    finally:
        session.prefill_max_tokens = saved
    return times


def run_latency_bench(args) -> dict:
    from runtime.bundle import default_bundle_dir, load_bundle
    from runtime.engine import open_session
    from measure.evaluate import read_eval_text

    text_path = Path(args.text) if args.text else DEFAULT_TEXT
    if getattr(args, "plot", None):
        from measure.evaluate import check_output_writable

        check_output_writable(args.plot)  # before the run, whose result would be lost
    text, _ = read_eval_text(text_path)
    if not 0 <= args.typo_rate < 0.5:
        raise UserError(f"--typo-rate {args.typo_rate}: use a share between 0 and 0.5")
    if args.keystrokes < 10:
        raise UserError("--keystrokes: use at least 10")
    bundle = load_bundle(args.bundle or default_bundle_dir())
    from runtime.cli_suggest import session_options

    session = open_session(bundle, backend=args.backend, window_policy=args.window_policy, **session_options(args))
    with session:
        sample_every = max(1, args.keystrokes // max(args.naive_samples, 1)) if args.naive_samples else 0
        print(f"replaying {args.keystrokes} keystrokes on {session.backend_name} ...", file=sys.stderr)
        session.suggestions(3)  # warm-up outside the measurement
        replay = run_replay(session, text, args.keystrokes, args.typo_rate, args.seed, sample_every=sample_every)
        print(f"naive baseline on {len(replay.samples)} keystrokes ...", file=sys.stderr)
        naive = naive_keystroke_ms(session, replay.samples)
    twin = None
    if not getattr(args, "no_twin", False):  # the other keystroke core on the same replay, same run
        other = "python" if session.core_name == "native" else "native"
        options = {**session_options(args), "core": other}
        try:
            twin_session = open_session(bundle, backend=args.backend, window_policy=args.window_policy, **options)
        except UserError as error:
            twin = {"core": other, "error": str(error)}
        else:
            with twin_session:
                print(f"the same replay on the {other} core ...", file=sys.stderr)
                twin_session.suggestions(3)
                twin_replay = run_replay(twin_session, text, args.keystrokes, args.typo_rate, args.seed)
            twin_keys = np.asarray(twin_replay.keystroke_ms)
            twin = {"core": other, "keystroke_ms": percentiles(twin_keys),
                    "overhead_ms": percentiles(twin_keys - np.asarray(twin_replay.model_ms)),
                    "same_suggestions_at_end": twin_replay.suggested == replay.suggested}
    keystroke = np.asarray(replay.keystroke_ms)
    model = np.asarray(replay.model_ms)
    overhead = keystroke - model
    calls = np.asarray(replay.forward_calls)
    report = {
        "backend": session.backend_name,
        "core": session.core_name,
        "machine": f"{platform.machine()} {platform.node()}, {os.cpu_count()} CPUs, load average "
                   f"{os.getloadavg()[0]:.1f} (host timings; BLAS threads: OPENBLAS_NUM_THREADS="
                   f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})",
        "bundle": bundle.describe(),
        "text": str(text_path),
        "keystrokes": int(len(keystroke)),
        "typo_rate": args.typo_rate,
        "seed": args.seed,
        "keystroke_ms": {**percentiles(keystroke), "max": round(float(keystroke.max()), 4)},
        "model_ms": percentiles(model),
        "overhead_ms": percentiles(overhead),
        "forward_calls_per_keystroke": {"mean": round(float(calls.mean()), 4), "max": int(calls.max())},
        "naive_keystroke_ms": {**percentiles(naive, (50, 95)), "samples": len(naive)},
    }
    if twin is not None:
        report["twin_core"] = twin
    if naive:  # means: most keystrokes (letters) cost no forward at all, so medians say little
        report["naive_speedup_mean"] = round(float(np.mean(naive)) / max(float(np.mean(keystroke)), 1e-9), 1)
        report["naive_p95_over_keystroke_p99"] = round(
            report["naive_keystroke_ms"]["p95"] / max(report["keystroke_ms"]["p99"], 1e-9), 1)
    report["board_estimate_ms"], report["assumptions"] = board_estimate(bundle, calls, overhead)
    report["board_estimate_ms_pessimistic"] = pessimistic_estimate(report["assumptions"], calls, overhead)
    count = getattr(args, "count_instructions", 0)
    if count and report["board_estimate_ms"] is not None:
        counted = counted_estimate(bundle, report["assumptions"], text_path, count, args.seed, args.typo_rate)
        report["assumptions"]["host_scaled_estimate_ms"] = report["board_estimate_ms"]
        report["assumptions"]["host_scaled_estimate_ms_pessimistic"] = report["board_estimate_ms_pessimistic"]
        report["assumptions"]["cpu_term"] = counted["assumptions"]
        if counted["best"] is not None:  # the counted CPU term is the best method: it replaces host x scale
            report["board_estimate_ms"] = counted["best"]
            report["board_estimate_ms_pessimistic"] = counted["pessimistic"]
        report["cpu_instructions_per_key"] = counted["instructions"]
    if getattr(args, "plot", None):
        # drawn by `draw_plot()` after the caller printed the results (a failing plot cannot lose them)
        args.draw_plot = lambda: plot_latency(report, keystroke, model, naive, args.plot)
    return report


def board_estimate(bundle, forward_calls, host_overhead_ms) -> tuple[dict | None, dict]:
    """ESTIMATE per keystroke on the board (measure/board_estimate.py, EVALUATION.md "Board estimate")
    from the measured forward calls and host overhead of each keystroke. A host-only bundle is
    estimated as the shipped default chip (cv181x) in its quant (bf16 if none)."""
    from dataclasses import asdict

    from measure.board_estimate import LABEL, decode_step_stats, estimate_keystroke_ms, estimate_step_ms

    chip = bundle.chip or "cv181x"
    quant = (bundle.quant or "").lower()
    try:
        if quant in ("bf16", "int8"):
            step = estimate_step_ms(bundle, chip=chip, quant=quant)
        else:  # a host-only bundle (fp32): as if compiled to BF16
            step = estimate_step_ms(decode_step_stats(asdict(bundle.config), "bf16"), chip=chip, quant="bf16")
    except UserError as error:  # e.g. models/estimate_calibration.json missing: say so, keep the host numbers
        return None, {"label": LABEL, "error": str(error)}
    estimate = estimate_keystroke_ms(step, forward_calls, host_overhead_ms)
    summary = {**percentiles(estimate.ms, (50, 95)), "label": LABEL}
    assumptions = {**estimate.assumptions, "chip_from_bundle": bundle.chip is not None}
    return summary, assumptions


PESSIMISTIC_SUBMIT_MS = 0.65  # PLATFORM.md: 250-650 us per TPU submit on CV1800B, slow end
PESSIMISTIC_BF16_RATE = 1 / 8  # EVALUATION.md: BF16 at 1/8 of the INT8 rate
PESSIMISTIC_CPU_SCALE = 50.0  # PLATFORM.md: Python on the C906 ~20-50x this class of host, slow end


def pessimistic_step_ms(step_assumptions: dict) -> float:
    """The step formula with submit 0.65 ms and BF16 at 1/8 of the INT8 rate (ESTIMATE)."""
    from measure.board_estimate import step_ms_from_work

    a = step_assumptions
    rate = PESSIMISTIC_BF16_RATE if a["quant"] == "bf16" else None
    terms = step_ms_from_work(chip=a["chip"], quant=a["quant"], macs=a["macs"], moved_bytes=a["moved_bytes"],
                              tpu_submits=a["tpu_submits"], cpu_routine_elements=a["cpu_routine_elements"],
                              efficiency=a["efficiency"], quant_rate_fraction=rate)
    return terms["step_ms"] + a["tpu_submits"] * (PESSIMISTIC_SUBMIT_MS - a["submit_ms"])


def pessimistic_estimate(assumptions: dict, forward_calls, host_overhead_ms) -> dict | None:
    """board_estimate_ms_pessimistic from host timings: pessimistic step + host overhead x 50."""
    from measure.board_estimate import LABEL

    step = assumptions.get("step")
    if not step:
        return None
    step_ms = pessimistic_step_ms(step)
    values = np.asarray(forward_calls) * step_ms + np.asarray(host_overhead_ms) * PESSIMISTIC_CPU_SCALE
    assumptions["pessimistic"] = {"step_ms": round(step_ms, 4), "submit_ms": PESSIMISTIC_SUBMIT_MS,
                                  "bf16_rate_fraction": PESSIMISTIC_BF16_RATE, "cpu_scale": PESSIMISTIC_CPU_SCALE,
                                  "formula": "forward_calls*step_ms + cpu_term (host overhead x cpu_scale)"}
    return {**percentiles(values, (50, 95)), "label": LABEL}


def counted_estimate(bundle, assumptions: dict, text_path, keystrokes: int, seed: int, typo_rate: float) -> dict:
    """Board estimate whose CPU term is counted: x86-64 instructions per keystroke of the on-board CPU
    path under callgrind (measure/cpu_count.py), converted to C906 ms (best and pessimistic
    conversions), plus that keystroke's forward calls x step_ms, per keystroke of the counted replay."""
    from measure.board_estimate import LABEL
    from measure.cpu_count import CONVERSION_NOTE, CONVERSIONS, c906_ms, count_instructions

    try:
        counted = count_instructions(str(bundle.dir), str(text_path), keystrokes, seed, typo_rate)
    except UserError as error:
        return {"best": None, "pessimistic": None, "instructions": None,
                "assumptions": {"method": "counted instructions: NOT RUN", "error": str(error),
                                "used_instead": "host overhead x cpu_scale"}}
    ir, calls = counted["ir_per_key"], counted["forward_calls"]
    step = assumptions["step"]
    step_best, step_pessimistic = assumptions["step_ms"], pessimistic_step_ms(step)
    best = calls * step_best + c906_ms(ir, "best")
    pessimistic = calls * step_pessimistic + c906_ms(ir, "pessimistic")
    return {
        "best": {**percentiles(best, (50, 95)), "label": LABEL},
        "pessimistic": {**percentiles(pessimistic, (50, 95)), "label": LABEL},
        "instructions": {**{k: int(v) for k, v in percentiles(ir, (50, 95, 99)).items()},
                         "mean": int(ir.mean()), "keystrokes": int(len(ir)),
                         "mean_with_forward": int(ir[calls > 0].mean()) if (calls > 0).any() else None,
                         "mean_without_forward": int(ir[calls == 0].mean()) if (calls == 0).any() else None,
                         "what": "x86-64 instructions (callgrind Ir) per keystroke, model step excluded"},
        "assumptions": {
            "method": "counted instructions (valgrind callgrind, canned backend), converted to C906 ms",
            "conversions": CONVERSIONS, "conversion_note": CONVERSION_NOTE, "c906_ghz": 1.0,
            "cpu_ms_best": percentiles(c906_ms(ir, "best"), (50, 95)),
            "cpu_ms_pessimistic": percentiles(c906_ms(ir, "pessimistic"), (50, 95)),
            "step_ms_best": step_best, "step_ms_pessimistic": round(step_pessimistic, 4),
            "forward_calls_per_keystroke_mean": round(float(calls.mean()), 4),
            "formula": "keystroke_ms = forward_calls*step_ms + x86_instructions*rv64_per_x86_instruction/(c906_ipc*1 GHz)",
        },
    }


def plot_latency(report: dict, keystroke, model, naive, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(keystroke, linewidth=0.6, label="keystroke")
    axes[0].plot(model, linewidth=0.6, label="model (backend.run)")
    axes[0].set(title=f"per keystroke, {report['backend']}", xlabel="keystroke", ylabel="ms")
    bins = np.logspace(math.log10(max(min(keystroke.min(), *(naive or [1])), 1e-3)),
                       math.log10(max(keystroke.max(), *(naive or [1])) * 1.1), 40)
    axes[1].hist(keystroke, bins=bins, alpha=0.6, label="KV-cached engine")
    if naive:
        axes[1].hist(naive, bins=bins, alpha=0.6, label="naive (recompute context)")
    axes[1].set(xscale="log", title="keystroke latency", xlabel="ms", ylabel="keystrokes")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
