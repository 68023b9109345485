"""`edgetype eval ksr`: keystroke savings and next-word accuracy, exactly per EVALUATION.md.

`simulate_ideal_user(text, predictor, k)` is the ideal user as a pure function of the text and a
predictor (anything with `reset()`, `insert(text)`, `suggest(k) -> list[str]`): before each
character of a word (including the first) the user accepts the word if it is among the k
suggestions (one keystroke for the rest of the word), else types the next character; every
separator costs one keystroke; `KSR = 1 - keystrokes / characters`. Next-word accuracy counts each
word whose first / first-3 suggestions, shown before any of its characters, hold it exactly.

Predictors: `SessionPredictor` (the engine on any backend) and `NgramPredictor` (the Kneser-Ney
baseline of measure/ngram.py, trained on the model's training split, with the same prefix filter
and casing). Host-side only (matplotlib is imported only for --plot).
"""
from __future__ import annotations

import gzip
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from runtime.errors import UserError
from runtime.tokenizer import WORD



class Predictor(Protocol):
    def reset(self) -> None: ...

    def insert(self, text: str) -> None: ...

    def suggest(self, k: int) -> list[str]: ...


@dataclass
class KsrCounts:
    chars: int = 0
    keystrokes: int = 0
    words: int = 0
    top1_hits: int = 0
    top3_hits: int = 0

    @property
    def ksr(self) -> float:
        return 1.0 - self.keystrokes / self.chars if self.chars else 0.0

    def metrics(self) -> dict:
        words = max(self.words, 1)
        return {"ksr": round(self.ksr, 5), "top1_next_word": round(self.top1_hits / words, 5),
                "top3_next_word": round(self.top3_hits / words, 5), "chars": self.chars,
                "keystrokes": self.keystrokes, "words": self.words}

    def minus(self, other: "KsrCounts") -> "KsrCounts":
        return KsrCounts(*(a - b for a, b in zip(asdict(self).values(), asdict(other).values())))


@dataclass
class KsrResult:
    total: KsrCounts
    segments: list[KsrCounts] = field(default_factory=list)  # per `segment_chars` of text


def simulate_ideal_user(text: str, predictor: Predictor, k: int = 3, segment_chars: int = 0,
                        progress: Callable[[int, int], None] | None = None) -> KsrResult:
    """Type `text` as the ideal user of EVALUATION.md through `predictor`; count keystrokes.

    Separators between words are inserted as one run (same keystroke count: one per character).
    """
    if k < 1:
        raise UserError(f"--suggestions {k}: need at least 1 suggestion")
    total = KsrCounts(chars=len(text))
    segments: list[KsrCounts] = []
    segment_start = KsrCounts()
    next_segment = segment_chars or len(text) + 1
    shown = max(k, 3)
    predictor.reset()
    position = 0
    for match in WORD.finditer(text):
        if match.start() > position:  # separators: one keystroke each
            predictor.insert(text[position:match.start()])
            total.keystrokes += match.start() - position
        word = match.group()
        total.words += 1
        for i in range(len(word)):
            suggestions = predictor.suggest(shown)
            if i == 0:
                total.top1_hits += bool(suggestions) and suggestions[0] == word
                total.top3_hits += word in suggestions[:3]
            total.keystrokes += 1
            if word in suggestions[:k]:
                predictor.insert(word[i:])  # accepted: one keystroke enters the rest
                break
            predictor.insert(word[i])
        position = match.end()
        if position >= next_segment:
            segment = total.minus(segment_start)
            segment.chars = position - sum(s.chars for s in segments)
            segments.append(segment)
            segment_start = KsrCounts(**asdict(total))
            next_segment += segment_chars
        if progress is not None:
            progress(position, len(text))
    if position < len(text):
        predictor.insert(text[position:])
        total.keystrokes += len(text) - position
    if segment_chars and len(text) > sum(s.chars for s in segments):
        segment = total.minus(segment_start)
        segment.chars = len(text) - sum(s.chars for s in segments)
        segments.append(segment)
    if progress is not None:
        progress(len(text), len(text))
    return KsrResult(total, segments)


# -- predictors ---------------------------------------------------------------------------------

class SessionPredictor:
    """The engine (runtime/engine.py Session) as a Predictor."""

    def __init__(self, session):
        self.session = session

    def reset(self) -> None:
        self.session.reset()

    def insert(self, text: str) -> None:
        self.session.insert(text)

    def suggest(self, k: int) -> list[str]:
        return [s.word for s in self.session.suggestions(k)]


class NgramPredictor:
    """The n-gram baseline (measure/ngram.py NgramModel) with the engine's suggestion rules: the
    same context tokens (words lowercased, punctuation, "\\n"), prefix filter and casing."""

    def __init__(self, ngram, max_partial_chars: int = 40, context_tokens: int = 8):
        from runtime.tokenizer import is_sentence_start

        self._is_sentence_start = is_sentence_start
        self.ngram = ngram
        self.max_partial_chars = max_partial_chars
        self.context_tokens = context_tokens
        self.reset()

    def reset(self) -> None:
        self._context: list[str] = []  # recent context tokens, oldest first
        self._partial = ""  # the trailing partial word
        self._recent = ""  # the last 64 characters (sentence-start detection)

    def insert(self, text: str) -> None:
        from runtime.tokenizer import split_pieces

        self._recent = (self._recent + text)[-64:]
        tail = self._partial + text
        cut = len(tail)
        while cut > 0 and WORD.fullmatch(tail[cut - 1]):
            cut -= 1
        self._partial = tail[cut:]
        for piece, is_word in split_pieces(tail[:cut]):
            if piece == "\n" and self._context and self._context[-1] == "\n":
                continue  # one whitespace run holding line breaks is one "\n", across inserts too
            self._context.append(piece.lower() if is_word else piece)
        del self._context[:-self.context_tokens]

    def suggest(self, k: int) -> list[str]:
        partial = self._partial
        if len(partial) > self.max_partial_chars:
            return []
        sentence_start = not partial and self._is_sentence_start(self._recent)
        return self.ngram.suggest_cased(list(self._context), partial, sentence_start, k)


# -- inputs -----------------------------------------------------------------------------------

def read_eval_text(path: str | Path) -> tuple[str, int]:
    """(text, replaced_chars): UTF-8 with errors='replace'; refuses empty and binary files."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read the evaluation text ({error.strerror})") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise UserError(f"{path}: not a readable .gz file ({error})") from None
    if not raw.strip():
        raise UserError(f"{path}: the evaluation text is empty; pass a file of English prose")
    if raw.count(b"\x00") > len(raw) // 1000:
        raise UserError(f"{path}: looks binary (NUL bytes); pass a UTF-8 text file")
    text = raw.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    return text.replace("\r\n", "\n"), replaced


def _progress_bar(label: str, stream=sys.stderr) -> Callable[[int, int], None]:
    state = {"last": -1, "started": time.perf_counter()}

    def update(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent == state["last"]:
            return
        state["last"] = percent
        filled = percent // 4
        elapsed = time.perf_counter() - state["started"]
        end = "\n" if done >= total else ""
        stream.write(f"\r{label:<10} [{'#' * filled}{'.' * (25 - filled)}] {percent:3d}% "
                     f"{done}/{total} chars {elapsed:6.1f} s{end}")
        stream.flush()

    return update


# -- the n-gram baseline ------------------------------------------------------------------------

def load_baseline(train_path: Path, order: int = 4):
    """The Kneser-Ney n-gram (measure/ngram.py) trained on `train_path`, cached on disk by it."""
    try:
        from measure.ngram import load_or_train
    except ImportError:
        raise UserError("measure/ngram.py (the n-gram baseline) is missing; it is needed for the baseline "
                        "column of `eval ksr` (use --no-baseline to skip it)") from None
    train_path = Path(train_path)
    if not train_path.is_file():
        raise UserError(f"{train_path}: the training split is missing (baseline training text); "
                        "run `edgetype corpus build` or pass --baseline-train FILE")
    return load_or_train(train_path, order)


# -- the command ----------------------------------------------------------------------------------

def evaluate_ksr(text: str, session, k: int = 3, baseline=None, segment_chars: int = 0, quiet: bool = False) -> dict:
    """The `eval ksr` JSON object: model metrics, and the baseline's when `baseline` is given."""
    started = time.perf_counter()
    calls_before = session.forward_calls
    result = simulate_ideal_user(text, SessionPredictor(session), k, segment_chars,
                                 None if quiet else _progress_bar(session.backend_name))
    seconds = time.perf_counter() - started
    report = {**result.total.metrics(), "backend": session.backend_name, "suggestions": k,
              "forward_calls": session.forward_calls - calls_before, "seconds": round(seconds, 2),
              "segments": [s.metrics() for s in result.segments]}
    if baseline is not None:
        started = time.perf_counter()
        base = simulate_ideal_user(text, baseline, k, segment_chars, None if quiet else _progress_bar("n-gram"))
        report["baseline"] = {**base.total.metrics(), "backend": "ngram", "seconds": round(time.perf_counter() - started, 2),
                              "segments": [s.metrics() for s in base.segments]}
    return report


def plot_ksr(report: dict, path: str | Path) -> None:
    """KSR and next-word accuracy per text segment, model vs baseline (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    runs = [("model (" + report["backend"] + ")", report)]
    if "baseline" in report:
        runs.append(("n-gram baseline", report["baseline"]))
    for label, run in runs:
        segments = run["segments"] or [run]
        xs = range(1, len(segments) + 1)
        axes[0].plot(xs, [s["ksr"] for s in segments], marker="o", label=f"{label}: {run['ksr']:.3f}")
        axes[1].plot(xs, [s["top3_next_word"] for s in segments], marker="o", label=f"{label} top-3")
        axes[1].plot(xs, [s["top1_next_word"] for s in segments], marker="x", linestyle="--", label=f"{label} top-1")
    axes[0].set(title=f"keystroke savings rate (k={report['suggestions']})", xlabel="text segment", ylabel="KSR")
    axes[1].set(title="next-word accuracy", xlabel="text segment", ylabel="share of words")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
