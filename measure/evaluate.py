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
import os
import stat
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from runtime.errors import UserError
from runtime.suggestion_rule import MAX_PARTIAL_CHARS, suggests_for
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
    by_word_class: dict[str, KsrCounts] = field(default_factory=dict)  # chars = the words' own


WORD_CLASSES = ("vocabulary", "lexicon", "unknown")


def tokenizer_word_class(tokenizer) -> Callable[[str], str]:
    """'vocabulary' (the model's own token), 'lexicon' (the OOV lexicon knows it) or 'unknown';
    words are looked up lowercased, as the tokenizer does."""
    def word_class(word: str) -> str:
        key = word.lower()
        if key in tokenizer.ids:
            return "vocabulary"
        return "lexicon" if tokenizer.lexicon_index(key) >= 0 else "unknown"
    return word_class


def word_class_report(by_class: dict[str, KsrCounts]) -> dict:
    """`by_word_class`: per class the share of words, and KSR/top-1/top-3 over those words' own
    characters (separators excluded: they cost one keystroke whatever the class)."""
    words = sum(c.words for c in by_class.values()) or 1
    return {name: {"share_of_words": round(by_class[name].words / words, 5),
                   **by_class[name].metrics()}
            for name in WORD_CLASSES if name in by_class}


def simulate_ideal_user(text: str, predictor: Predictor, k: int = 3, segment_chars: int = 0,
                        progress: Callable[[int, int], None] | None = None,
                        word_class: Callable[[str], str] | None = None) -> KsrResult:
    """Type `text` as the ideal user of EVALUATION.md through `predictor`; count keystrokes.

    Separators between words are inserted as one run (same keystroke count: one per character).
    With `word_class`, each word's own keystrokes and hits are also counted under its class.
    """
    if k < 1:
        raise UserError(f"--suggestions {k}: need at least 1 suggestion")
    total = KsrCounts(chars=len(text))
    segments: list[KsrCounts] = []
    segment_start = KsrCounts()
    next_segment = segment_chars or len(text) + 1
    shown = max(k, 3)
    by_class: dict[str, KsrCounts] = {}
    predictor.reset()
    position = 0
    for match in WORD.finditer(text):
        if match.start() > position:  # separators: one keystroke each
            predictor.insert(text[position:match.start()])
            total.keystrokes += match.start() - position
        word = match.group()
        total.words += 1
        keystrokes_before, top1_before, top3_before = total.keystrokes, total.top1_hits, total.top3_hits
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
        if word_class is not None:
            counts = by_class.setdefault(word_class(word), KsrCounts())
            counts.words += 1
            counts.chars += len(word)
            counts.keystrokes += total.keystrokes - keystrokes_before
            counts.top1_hits += total.top1_hits - top1_before
            counts.top3_hits += total.top3_hits - top3_before
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
    return KsrResult(total, segments, by_class)


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

    def __init__(self, ngram, context_tokens: int = 8):
        from runtime.tokenizer import casing_context

        self._casing_context = casing_context
        self.ngram = ngram
        self.context_tokens = context_tokens
        self.reset()

    def reset(self) -> None:
        self._context: list[str] = []  # recent context tokens, oldest first
        self._partial = ""  # the trailing partial word
        self._recent = ""  # the last 64 characters before the partial word, and the partial (casing)

    def insert(self, text: str) -> None:
        from runtime.tokenizer import partial_word_start, split_pieces

        self._recent = (self._recent + text)[-(64 + MAX_PARTIAL_CHARS):]
        tail = self._partial + text
        cut = partial_word_start(tail)
        self._partial = tail[cut:]
        for piece, is_word in split_pieces(tail[:cut]):
            if piece == "\n" and self._context and self._context[-1] == "\n":
                continue  # one whitespace run holding line breaks is one "\n", across inserts too
            self._context.append(piece.lower() if is_word else piece)
        del self._context[:-self.context_tokens]

    def suggest(self, k: int) -> list[str]:
        partial = self._partial
        if not suggests_for(partial):
            return []
        casing = self._casing_context(self._recent[:len(self._recent) - len(partial)])
        return self.ngram.suggest_cased(list(self._context), partial, casing, k)


# -- inputs -----------------------------------------------------------------------------------

MAX_TEXT_BYTES = 256 << 20  # an evaluation text larger than this is refused (reads are capped)


def read_text_bytes(path: str | Path, what: str, max_chars: int = 0, max_bytes: int = MAX_TEXT_BYTES) -> tuple[bytes, bool]:
    """(bytes, truncated) of a text file or .gz, reading at most what `max_chars` characters can
    take (4 bytes each in UTF-8) and never more than `max_bytes`. Devices are refused (/dev/zero
    never ends); pipes are read up to the cap. One-line UserError for anything unreadable."""
    path = Path(path)
    limit = min(max_bytes, 4 * max_chars + 4) if max_chars > 0 else max_bytes
    try:
        with open(path, "rb") as raw_file:
            mode = os.fstat(raw_file.fileno()).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise UserError(f"{path}: a device, not a text file ({what}); pass a UTF-8 text file")
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw_file) as file:
                    data = file.read(limit + 1)
            else:
                data = raw_file.read(limit + 1)
    except IsADirectoryError:
        raise UserError(f"{path}: a directory, not a text file ({what})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise UserError(f"{path}: not a readable .gz file ({str(error)[:60] or type(error).__name__}); "
                        f"pass the {what} as .txt or a valid .gz") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    truncated = len(data) > limit
    if truncated and max_chars <= 0:
        raise UserError(f"{path}: larger than {max_bytes >> 20} MiB ({what}); pass --max-chars N or a shorter file")
    return data[:limit], truncated


def read_eval_text(path: str | Path, max_chars: int = 0) -> tuple[str, int]:
    """(text, replaced_chars): UTF-8 with errors='replace'; refuses empty and binary files.

    `max_chars` > 0 bounds what is read (not only what is evaluated)."""
    path = Path(path)
    raw, truncated = read_text_bytes(path, "evaluation text", max_chars)
    if not raw.strip():
        raise UserError(f"{path}: the evaluation text is empty; pass a file of English prose")
    if raw.count(b"\x00") > len(raw) // 1000:
        raise UserError(f"{path}: looks binary (NUL bytes); pass a UTF-8 text file")
    text = raw.decode("utf-8", errors="replace")
    if truncated:  # a character cut at the byte limit is not a replacement the file holds
        text = text[:max_chars]
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    text = text.replace("\r\n", "\n")
    return (text[:max_chars] if max_chars > 0 else text), max(replaced, 0)


def check_output_writable(path: str | Path, option: str = "--plot") -> None:
    """Fail before a long run when its output file cannot be written (the result would be lost)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a directory; pass a file name")
    try:
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True).close()
    except OSError as error:
        raise UserError(f"{option} {path}: cannot write there ({error.strerror}); pick a writable path") from None


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
    sample, _ = read_text_bytes(train_path, "baseline training text", max_chars=1 << 20)
    if sample.count(b"\x00") > len(sample) // 1000 or not WORD.search(sample.decode("utf-8", "replace")):
        raise UserError(f"--baseline-train {train_path}: {'empty' if not sample.strip() else 'binary or without words'}; "
                        "pass English prose (default: the model's training split) or --no-baseline")
    return load_or_train(train_path, order)


# -- the command ----------------------------------------------------------------------------------

def _word_class_of(session) -> Callable[[str], str] | None:
    tokenizer = getattr(session, "tokenizer", None)
    return tokenizer_word_class(tokenizer) if tokenizer is not None else None


def _run_report(results: list[KsrResult], **extra) -> dict:
    """One report over several texts: counts summed, segments of the first text."""
    total, by_class = KsrCounts(), {}
    for result in results:
        total = KsrCounts(*(a + b for a, b in zip(asdict(total).values(), asdict(result.total).values())))
        for name, counts in result.by_word_class.items():
            mine = by_class.setdefault(name, KsrCounts())
            for key, value in asdict(counts).items():
                setattr(mine, key, getattr(mine, key) + value)
    report = {**total.metrics(), **extra, "segments": [s.metrics() for s in results[0].segments]}
    if by_class:
        report["by_word_class"] = word_class_report(by_class)
    return report


def evaluate_ksr(text: str, session, k: int = 3, baseline=None, segment_chars: int = 0, quiet: bool = False) -> dict:
    """The `eval ksr` JSON object: model metrics, and the baseline's when `baseline` is given."""
    return evaluate_ksr_registers([("", text)], session, k, baseline, segment_chars, quiet)


def evaluate_ksr_registers(texts: list[tuple[str, str]], session, k: int = 3, baseline=None,
                           segment_chars: int = 0, quiet: bool = False) -> dict:
    """`evaluate_ksr` over one or more texts, each named by its register ('' for an unnamed text):
    the totals are over all texts; with named texts, `by_register` holds each one's metrics
    (KSR, top-1/top-3, model and baseline). The session is reset before each text."""
    word_class = _word_class_of(session)
    started = time.perf_counter()
    calls_before = session.forward_calls
    model = [simulate_ideal_user(text, SessionPredictor(session), k, segment_chars,
                                 None if quiet else _progress_bar(session.backend_name), word_class)
             for _, text in texts]
    report = _run_report(model, backend=session.backend_name, suggestions=k,
                         forward_calls=session.forward_calls - calls_before,
                         seconds=round(time.perf_counter() - started, 2))
    base = []
    if baseline is not None:
        started = time.perf_counter()
        base = [simulate_ideal_user(text, baseline, k, segment_chars,
                                    None if quiet else _progress_bar("n-gram"), word_class)
                for _, text in texts]
        report["baseline"] = _run_report(base, backend="ngram",
                                         seconds=round(time.perf_counter() - started, 2))
    if any(name for name, _ in texts):
        report["by_register"] = {}
        for i, (name, _) in enumerate(texts):
            entry = {**model[i].total.metrics()}
            if base:
                entry["baseline"] = base[i].total.metrics()
                entry["ratio_to_baseline"] = round(entry["ksr"] / entry["baseline"]["ksr"], 4) \
                    if entry["baseline"]["ksr"] > 0 else None
            report["by_register"][name or f"text{i}"] = entry
    return report


def register_of(path: str | Path) -> str | None:
    """The register named by a per-register split file ('valid.technical.txt.gz' -> 'technical',
    models/corpus/registers/), else None."""
    name = Path(path).name
    for suffix in (".txt.gz", ".txt"):
        if name.endswith(suffix):
            parts = name[:-len(suffix)].split(".")
            return parts[1] if len(parts) == 2 and parts[0] in ("train", "valid", "test") else None
    return None


def eval_text_files(path: str | Path) -> list[tuple[str, Path]]:
    """(register or '', file) to evaluate: a file, or every *.txt / *.txt.gz of a folder (then each
    is named by its register, or by its file name when it is not a per-register split)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((".txt", ".txt.gz")))
        if not files:
            raise UserError(f"{path}: no .txt or .txt.gz files to evaluate in this folder")
        stems = [f.name.removesuffix(".gz").removesuffix(".txt") for f in files]
        names = [register_of(f) or stem for f, stem in zip(files, stems)]
        # valid.fiction and test.fiction in one folder: the file stem tells them apart
        return [(name if names.count(name) == 1 else stem, f) for name, stem, f in zip(names, stems, files)]
    return [(register_of(path) or "", path)]


def plot_ksr(report: dict, path: str | Path) -> None:
    """KSR and next-word accuracy per text segment, model vs baseline (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report.get("by_register"):
        _plot_by_register(report, path, plt)
        return
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


def _plot_by_register(report: dict, path: str | Path, plt) -> None:
    """KSR and top-3 per register (model vs baseline) and KSR per word class, as bars."""
    import numpy as np

    registers = list(report["by_register"])
    xs = np.arange(len(registers))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    runs = [("model (" + report["backend"] + ")", lambda r: r)]
    if "baseline" in report:
        runs.append(("n-gram baseline", lambda r: r["baseline"]))
    width = 0.8 / len(runs)
    for i, (label, pick) in enumerate(runs):
        entries = [pick(report["by_register"][name]) for name in registers]
        axes[0].bar(xs + i * width, [e["ksr"] for e in entries], width, label=label)
        axes[1].bar(xs + i * width, [e["top3_next_word"] for e in entries], width, label=label)
    for ax, title in ((axes[0], f"KSR per register (k={report['suggestions']})"), (axes[1], "top-3 next word per register")):
        ax.set_xticks(xs + width * (len(runs) - 1) / 2, registers, fontsize=8)
        ax.set(title=title)
    classes = [c for c in WORD_CLASSES if c in report.get("by_word_class", {})]
    for i, (label, pick) in enumerate(runs):
        by_class = pick(report).get("by_word_class", {})
        axes[2].bar(np.arange(len(classes)) + i * width, [by_class[c]["ksr"] for c in classes], width, label=label)
    axes[2].set_xticks(np.arange(len(classes)) + width * (len(runs) - 1) / 2,
                       [f"{c}\n{report['by_word_class'][c]['share_of_words']:.1%} of words" for c in classes], fontsize=8)
    axes[2].set(title="KSR per word class")
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
