"""`edgetype eval window`: how much a pruned W-slot window changes the model (EVALUATION.md).

The same tokens go through (a) the model with full context: every previous token, positions
0..T-1, no pruning (`full_context_logits`: tpu_driver/reference_model.forward_sequence math in query
chunks, so memory is O(chunk x T), not O(T^2)), and (b) a `KVWindow` (kv_window/window.py) of W
slots with a policy on a backend (numpy: tpu_driver/backends/numpy_ref.py with W slots; onnx: the
bundle's graph, W <= its compiled slots). From the two (T,V) logit sequences: `top1_agreement`,
`kl_mean` KL(full || window) in nats, and KSR of both with the ideal user of
measure/evaluate.simulate_ideal_user over a predictor that reads the precomputed rows
(`LogitsPredictor`, same suggestion rule as runtime/engine.py). Per-step time of (b): prepare_step
+ run + commit_step. Host-side only (matplotlib is imported for --plot only).
"""
from __future__ import annotations

import gc
import time

import numpy as np

from tpu_driver.reference_model import ModelConfig, forward_sequence
from runtime.percentiles import percentile
from runtime.suggestion_rule import pick, suggests_for
from runtime.tokenizer import is_sentence_start, partial_word_start
from tpu_driver import decode_step

from kv_window.window import KVWindow



def full_context_logits(weights: dict, cfg: ModelConfig, tokens, chunk: int = 256) -> np.ndarray:
    """(T,V) float32 logits with full causal attention, positions 0..T-1 (no window, no pruning):
    `tpu_driver.reference_model.forward_sequence`, `chunk` queries at a time."""
    return forward_sequence(weights, cfg, tokens, chunk=chunk)


def window_logits(backend, cfg: ModelConfig, embedding: np.ndarray, tokens, window: KVWindow, progress=None):
    """Decode `tokens` through `window` on `backend`. Returns (logits (T,V) f32, step_ms (T,),
    changed (T,) bool: steps that evicted a batch or swapped a page)."""
    T = len(tokens)
    logits = np.zeros((T, cfg.vocab_size), np.float32)
    step_ms = np.zeros(T, np.float64)
    changed = np.zeros(T, bool)
    x_in, logits_out = backend.input(decode_step.X), backend.output(decode_step.LOGITS)
    x = np.zeros((1, 1, cfg.d_model), np.float32)  # (1,1,D) embedding row of the token
    window.reset()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collector pause is not the window's cost; the engine can gc.freeze() likewise
    try:
        for i, token in enumerate(tokens):
            x[0, 0] = embedding[token]
            moves = window.slot_changes
            started = time.perf_counter()
            x_in.write(x)
            window.prepare_step()
            backend.run()
            window.commit_step()
            step_ms[i] = (time.perf_counter() - started) * 1e3
            changed[i] = window.slot_changes != moves
            logits[i] = logits_out.read()[0]
            if progress is not None and i % 256 == 0:
                progress(i, T)
    finally:
        if gc_was_enabled:
            gc.enable()
    return logits, step_ms, changed


def log_softmax(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    top = rows.max(axis=-1, keepdims=True)
    return rows - top - np.log(np.exp(rows - top).sum(axis=-1, keepdims=True))


def agreement(full: np.ndarray, windowed: np.ndarray) -> tuple[float, float]:
    """(top1_agreement, kl_mean): argmax agreement share; mean KL(full || window) in nats."""
    top1 = float(np.mean(full.argmax(-1) == windowed.argmax(-1)))
    lp, lq = log_softmax(full), log_softmax(windowed)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    return top1, float(kl.mean())


class LogitsPredictor:
    """Predictor (measure/evaluate.py) over precomputed rows: row n-1 is the next-token logits after
    the first n tokens of `tokenizer.encode(text, bos=True)`. Suggestions as runtime/engine.py:
    vocabulary words matching the lowercased partial word, best logit first, cased, deduplicated."""

    def __init__(self, tokenizer, rows: np.ndarray):
        self.tokenizer, self.rows = tokenizer, rows
        self.reset()

    def reset(self) -> None:
        self.text = ""
        self.context_end = 0  # chars of text before the partial word
        self.context_tokens = 1  # tokens of text[:context_end], with <bos>

    def insert(self, text: str) -> None:
        self.text += text
        end = partial_word_start(self.text)
        if end > self.context_end:  # a word and separators were completed: count their tokens
            self.context_tokens += len(self.tokenizer.encode(self.text[self.context_end:end]))
            self.context_end = end

    def suggest(self, k: int) -> list[str]:
        partial = self.text[self.context_end:]
        if not suggests_for(partial) or self.context_tokens - 1 >= len(self.rows):
            return []
        ids = self.tokenizer.prefix_ids(partial)
        if len(ids) == 0:
            return []
        row = self.rows[self.context_tokens - 1]
        scores = row[ids]
        want = min(len(ids), k + 8)
        chosen = np.argpartition(-scores, want - 1)[:want] if want < len(ids) else np.arange(len(ids))
        chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
        sentence_start = not partial and is_sentence_start(self.text[max(0, self.context_end - 64):self.context_end])
        return pick((self.tokenizer.surface(int(ids[j]), partial, sentence_start) for j in chosen), partial, k)


def ksr(text: str, tokenizer, rows: np.ndarray, k: int = 3) -> float:
    from measure.evaluate import simulate_ideal_user

    return simulate_ideal_user(text, LogitsPredictor(tokenizer, rows), k=k).total.ksr


def summarize_steps(step_ms: np.ndarray, changed: np.ndarray) -> dict:
    """Wall-clock step times (EVALUATION.md), for all steps and for the evicting/swapping ones
    (the worst step being a non-evicting one points at the host, not at the window)."""
    out = {"median_step_ms": round(float(np.median(step_ms)), 4), "max_step_ms": round(float(step_ms.max()), 4),
           "p99_step_ms": round(percentile(step_ms, 99), 4), "evicting_steps": int(changed.sum())}
    if changed.any():
        out["median_evicting_step_ms"] = round(float(np.median(step_ms[changed])), 4)
        out["max_evicting_step_ms"] = round(float(step_ms[changed].max()), 4)
        out["max_other_step_ms"] = round(float(step_ms[~changed].max()), 4) if (~changed).any() else None
    return out


def plot_sweep(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for policy in sorted({r["policy"] for r in rows}):
        mine = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["window"])
        ws = [r["window"] for r in mine]
        axes[0].plot(ws, [r["top1_agreement"] for r in mine], marker="o", label=policy)
        axes[1].plot(ws, [r["kl_mean"] for r in mine], marker="o", label=policy)
        axes[2].plot(ws, [r["ksr_window"] for r in mine], marker="o", label=policy)
    if rows:
        axes[2].axhline(rows[0]["ksr_full"], color="k", linestyle="--", label="full context")
    for ax, name in zip(axes, ["top-1 agreement", "KL(full || window), nats", "KSR"]):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("window W (slots)")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rss_mb() -> float:
    """Resident set size of this process now, MiB (Linux /proc; 0.0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    except OSError:
        return 0.0


def long_session(backend, cfg: ModelConfig, embedding: np.ndarray, tokens, window: KVWindow, segments: int = 10,
                 run_model: bool = True) -> dict:
    """Feed `tokens` through `window` keeping nothing per step but its time: constant memory and time?

    Returns per-segment median/max step ms and the process RSS at the end of each segment.
    run_model=False times the window alone (prepare_step + commit_step on the last outputs)."""
    T = len(tokens)
    step_ms = np.zeros(T, np.float64)  # (T,) the only per-token records, preallocated
    changed = np.zeros(T, bool)  # (T,) steps that evicted or swapped a page
    x = np.zeros((1, 1, cfg.d_model), np.float32)  # (1,1,D)
    x_in = backend.input(decode_step.X)
    bounds = np.linspace(0, T, segments + 1).astype(int)
    rss = []
    window.reset()
    gc.collect()
    gc.disable()
    try:
        for s in range(segments):
            for i in range(bounds[s], bounds[s + 1]):
                x[0, 0] = embedding[tokens[i]]
                moves = window.slot_changes
                started = time.perf_counter()
                x_in.write(x)
                window.prepare_step()
                if run_model:
                    backend.run()
                window.commit_step()
                step_ms[i] = (time.perf_counter() - started) * 1e3
                changed[i] = window.slot_changes != moves
            rss.append(round(_rss_mb(), 2))
    finally:
        gc.enable()
    parts = [step_ms[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return {"tokens": T, "segment_median_step_ms": [round(float(np.median(p)), 4) for p in parts],
            "segment_max_step_ms": [round(float(p.max()), 4) for p in parts], "segment_rss_mib": rss,
            "median_step_ms": round(float(np.median(step_ms)), 4), "max_step_ms": round(float(step_ms.max()), 4),
            "p99_step_ms": round(percentile(step_ms, 99), 4), **summarize_steps(step_ms, changed),
            "model_run": run_model, "occupied": window.occupied, "n_tokens": window.n_tokens}
