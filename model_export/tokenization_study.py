"""Word-level vs character-level tokenization, measured (docs/model.md, "Tokenization").

Both models are the same transformer (model_export/model.py) over different vocabularies:
- word: one decode step per token (word or punctuation); suggestions at every keystroke are the
  3 most likely vocabulary words starting with the typed prefix, taken from the one distribution
  computed at the word start (0 forward calls per keystroke inside a word);
- char: the next-character distribution; suggestions are the 3 most likely completed words found
  by a beam search over characters until a separator, run again at every keystroke (several
  sequential forward calls per keystroke).

KSR follows EVALUATION.md exactly (ideal user, k=3, case-sensitive match, separators typed).
Run: `python -m model_export.tokenization_study --word-model DIR --char-model DIR --corpus DIR`
(the char model is trained by `train_char_model` below, on the same train text).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from model_export.train import _autocast, read_paragraphs
from runtime.tokenizer import WORD

CHAR_BOS, CHAR_UNK = 0, 1


def _log(message: str) -> None:
    print(f"[study] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- character model -------------
class CharVocab:
    def __init__(self, chars: list[str]):
        self.chars = ["<bos>", "<unk>"] + chars  # id -> char
        self.ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, paragraphs: list[str], min_count: int = 20) -> "CharVocab":
        from collections import Counter
        counts = Counter()
        for p in paragraphs:
            counts.update(p)
        return cls(sorted(c for c, n in counts.items() if n >= min_count))

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return ([CHAR_BOS] if bos else []) + [self.ids.get(c, CHAR_UNK) for c in text]


def train_char_model(corpus_dir: Path, out_dir: Path, minutes: float, device_name: str,
                     seq_len: int = 256, seed: int = 1234, max_paragraphs: int | None = None) -> dict:
    """Train the same architecture on characters; writes weights.npz + char_vocab.json + log."""
    import torch
    from torch.nn import functional as F

    from model_export.model import ModelShape, WordLM
    from model_export.train import TrainSettings, _batches

    settings = TrainSettings()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = torch.device(device_name)
    train_p = read_paragraphs(corpus_dir / "train.txt.gz", max_paragraphs)
    valid_p = read_paragraphs(corpus_dir / "valid.txt.gz")
    vocab = CharVocab.train(train_p)
    stream = np.fromiter((i for p in train_p for i in vocab.encode(p)), dtype=np.int32)
    valid = np.fromiter((i for p in valid_p for i in vocab.encode(p)), dtype=np.int32)[:1_000_000]
    _log(f"char vocab {len(vocab.chars)}; {len(stream)} train chars")
    shape = ModelShape(len(vocab.chars), settings.d_model, settings.n_layers, settings.n_heads,
                       settings.d_ff, seq_len)
    model = WordLM(shape, dropout=settings.dropout)
    model.reset_parameters(seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95),
                            weight_decay=settings.weight_decay, fused=device.type == "cuda")
    batches = _batches(stream, seq_len, 128, rng)
    budget, started, step = minutes * 60, time.monotonic(), 0
    while (progress := (time.monotonic() - started) / budget) < 1.0:
        lr = settings.lr * min(1.0, (step + 1) / 300) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = torch.from_numpy(next(batches)).to(device)
        with _autocast(device):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, shape.vocab_size), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
    from model_export.train import evaluate
    valid_loss = evaluate(model, valid, seq_len, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "weights.npz", **model.to_numpy_weights())
    (out_dir / "char_vocab.json").write_text(json.dumps(vocab.chars))
    log = {"steps": step, "seconds": round(time.monotonic() - started, 1), "seq_len": seq_len,
           "valid_loss_per_char": round(valid_loss, 4), "bits_per_char": round(valid_loss / math.log(2), 4),
           "shape": {**dataclasses.asdict(shape), "head_dim": shape.head_dim}}
    (out_dir / "training_log.json").write_text(json.dumps(log, indent=2))
    _log(f"char model: {log}")
    return log


# ---------------------------------------------------------------- KSR simulation --------------
def text_words(text: str):
    """(start, end) of every word of `text` (EVALUATION.md definition)."""
    return [(m.start(), m.end()) for m in WORD.finditer(text)]


def ksr_word_model(model, tokenizer, paragraphs: list[str], window: int, device) -> dict:
    """KSR with one next-token distribution per word start, prefix-filtered top-3 (casing applied)."""
    import torch

    from runtime.tokenizer import is_sentence_start

    keystrokes = characters = tokens_fed = 0
    top1 = top3 = n_words = 0
    started = time.monotonic()
    for paragraph in paragraphs:
        characters += len(paragraph)
        ids = tokenizer.encode(paragraph, bos=True)
        tokens_fed += len(ids)
        logits_rows = _next_token_logits(model, ids, window, device)  # [len(ids), V]
        words = text_words(paragraph)
        # token index of each word: tokens and words are produced by the same regex in order
        word_token_pos = _word_token_positions(tokenizer, paragraph)
        typed_chars = len(paragraph) - sum(e - s for s, e in words)  # separators: 1 each
        keystrokes += typed_chars
        for (start, end), token_pos in zip(words, word_token_pos):
            word = paragraph[start:end]
            scores = logits_rows[token_pos]  # ids = [<bos>] + pieces: row p predicts piece p
            sentence_start = is_sentence_start(paragraph[:start])
            cost = None
            for i in range(len(word)):
                prefix = word[:i]
                candidates = tokenizer.prefix_ids(prefix)
                if len(candidates):
                    best = candidates[np.argsort(-scores[candidates], kind="stable")[:3]]
                    suggestions = [tokenizer.surface(int(t), prefix, sentence_start) for t in best]
                else:
                    suggestions = []
                if i == 0:
                    n_words += 1
                    top1 += bool(suggestions) and suggestions[0] == word
                    top3 += word in suggestions
                if word in suggestions:
                    cost = i + 1
                    break
            keystrokes += cost if cost is not None else len(word)
    seconds = time.monotonic() - started
    return {"ksr": 1 - keystrokes / characters, "keystrokes": keystrokes, "characters": characters,
            "words": n_words, "top1_next_word": top1 / n_words, "top3_next_word": top3 / n_words,
            "forward_calls": tokens_fed, "forward_calls_per_keystroke": tokens_fed / keystrokes,
            "max_sequential_forward_calls_in_one_keystroke": 1, "eval_seconds": round(seconds, 1)}


def _word_token_positions(tokenizer, paragraph: str) -> list[int]:
    """Index (in tokenizer.encode(paragraph) without <bos>) of each word token."""
    from runtime.tokenizer import split_pieces
    return [i for i, (piece, is_word) in enumerate(split_pieces(paragraph)) if is_word]


def _next_token_logits(model, ids: list[int], window: int, device) -> np.ndarray:
    """float32 [len(ids), V]: row j = logits for token j+1 given up to `window`+1 tokens ending at j."""
    import torch
    n = len(ids)
    rows = np.zeros((n, model.shape.vocab_size), np.float32)
    span = window + 1  # W cached slots + the token itself
    with torch.inference_mode():
        if n <= span:
            starts = [0]
        else:
            starts = list(range(0, n - span + 1, span // 2)) + [n - span]
        done = 0
        for s in starts:
            x = torch.tensor(ids[s:s + span], device=device)[None]
            with _autocast(device):
                out = model(x)[0].float().cpu().numpy()
            # keep rows with the most context: from `done` on
            first = max(done, s)
            rows[first:s + len(out)] = out[first - s:]
            done = s + len(out)
    return rows


def ksr_char_model(model, vocab: CharVocab, paragraphs: list[str], context_chars: int, device,
                   beam: int = 8, max_extra_chars: int = 14) -> dict:
    """KSR with a beam search over characters for the top-3 word completions at every keystroke."""
    import torch

    is_word_char = np.array([bool(WORD.fullmatch(c)) if len(c) == 1 else False for c in vocab.chars])
    keystrokes = characters = forward_calls = searches = 0
    top1 = top3 = n_words = 0
    max_steps_one_keystroke = 0
    started = time.monotonic()

    def complete(context_ids: list[int], prefix: str) -> tuple[list[str], int]:
        """Top-3 completed words after `prefix`, and how many sequential forward calls it took."""
        beams = [(0.0, "", context_ids)]  # (logprob, extension, ids)
        finished: list[tuple[float, str]] = []
        steps = 0
        for _ in range(max_extra_chars + 1):
            if not beams:
                break
            # every beam has the same context plus one char per step: equal lengths
            x = torch.tensor([ids[-context_chars:] for _, _, ids in beams], device=device)
            with torch.inference_mode(), _autocast(device):
                logp = torch.log_softmax(model(x)[:, -1].float(), -1).cpu().numpy()
            steps += 1
            candidates = []
            for b, (lp, ext, ids) in enumerate(beams):
                row = logp[b]
                # ending the word here: mass of any separator (non-word char, not <unk>/<bos>)
                if ext or prefix:
                    end_lp = np.logaddexp.reduce(row[~is_word_char][2:])
                    finished.append((lp + end_lp, ext))
                top = np.argsort(-row)[: beam * 2]
                for c in top:
                    if is_word_char[c]:
                        candidates.append((lp + row[c], ext + vocab.chars[c], ids + [int(c)]))
            candidates.sort(key=lambda t: -t[0])
            best_finished = sorted(finished, key=lambda t: -t[0])[:3]
            # stop when no open beam can beat the 3rd finished word
            if len(best_finished) == 3 and (not candidates or candidates[0][0] < best_finished[2][0]):
                break
            beams = candidates[:beam]
        words = [prefix + ext for _, ext in sorted(finished, key=lambda t: -t[0])[:3]]
        return words, steps

    for paragraph in paragraphs:
        characters += len(paragraph)
        words = text_words(paragraph)
        keystrokes += len(paragraph) - sum(e - s for s, e in words)
        for start, end in words:
            word = paragraph[start:end]
            cost = None
            for i in range(len(word)):
                context = vocab.encode(paragraph[:start + i], bos=True)
                suggestions, steps = complete(context, word[:i])
                searches += 1
                forward_calls += steps
                max_steps_one_keystroke = max(max_steps_one_keystroke, steps)
                if i == 0:
                    n_words += 1
                    top1 += bool(suggestions) and suggestions[0] == word
                    top3 += word in suggestions
                if word in suggestions:
                    cost = i + 1
                    break
            keystrokes += cost if cost is not None else len(word)
    seconds = time.monotonic() - started
    return {"ksr": 1 - keystrokes / characters, "keystrokes": keystrokes, "characters": characters,
            "words": n_words, "top1_next_word": top1 / n_words, "top3_next_word": top3 / n_words,
            "forward_calls_sequential": forward_calls, "beam": beam,
            "sequential_forward_calls_per_keystroke": forward_calls / keystrokes,
            "sequential_forward_calls_per_search": forward_calls / max(searches, 1),
            "max_sequential_forward_calls_in_one_keystroke": max_steps_one_keystroke,
            "eval_seconds": round(seconds, 1)}


def validation_slice(corpus_dir: Path, max_chars: int) -> list[str]:
    """The first paragraphs of valid.txt.gz up to `max_chars` characters (fixed, no sampling)."""
    out, total = [], 0
    for p in read_paragraphs(corpus_dir / "valid.txt.gz"):
        if total + len(p) > max_chars and out:
            break
        out.append(p)
        total += len(p)
    return out


def add_study_arguments(parser) -> None:
    """Flags of `edgetype tokenization-study` (docs/model.md)."""
    parser.add_argument("--corpus", default="models/corpus")
    parser.add_argument("--word-model", default="models/default")
    parser.add_argument("--char-model", required=True)
    parser.add_argument("--train-char-minutes", type=float, default=None,
                        help="train the char model first (into --char-model)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--max-chars", type=int, default=4000)
    parser.add_argument("--char-context", type=int, default=256)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("-o", "--output", default=None, help="write the JSON result here too")


def run_study_command(args) -> int:
    """`edgetype tokenization-study`: word-level vs character-level KSR (docs/model.md)."""
    import torch

    from model_export.model import ModelShape, WordLM
    from tpu_driver.reference_model import ModelConfig, load_weights
    from runtime.tokenizer import Tokenizer

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    corpus = Path(args.corpus)
    if args.train_char_minutes:
        train_char_model(corpus, Path(args.char_model), args.train_char_minutes, args.device,
                         seq_len=args.char_context)
    if args.skip_eval:
        return 0
    paragraphs = validation_slice(corpus, args.max_chars)

    cfg = ModelConfig.load(Path(args.word_model) / "config.json")
    word = WordLM(ModelShape(cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.window,
                             cfg.alibi_max_bias))
    word.load_numpy_weights(load_weights(Path(args.word_model) / "weights.npz", cfg))
    word.to(device).eval()
    tokenizer = Tokenizer.load(Path(args.word_model) / "tokenizer.json")
    word_result = ksr_word_model(word, tokenizer, paragraphs, cfg.window, device)
    _log(f"word: {word_result}")

    chars = json.loads((Path(args.char_model) / "char_vocab.json").read_text())
    char_log = json.loads((Path(args.char_model) / "training_log.json").read_text())
    vocab = CharVocab(chars[2:])
    char_shape = ModelShape.from_dict(char_log["shape"])
    char = WordLM(char_shape)
    with np.load(Path(args.char_model) / "weights.npz") as archive:
        char.load_numpy_weights({k: archive[k] for k in archive.files})
    char.to(device).eval()
    char_result = ksr_char_model(char, vocab, paragraphs, args.char_context, device)
    _log(f"char: {char_result}")
    result = {"text": f"first {sum(map(len, paragraphs))} characters ({len(paragraphs)} paragraphs) "
                      f"of {corpus}/valid.txt.gz", "device": str(device),
              "word": word_result, "char": char_result, "char_training": char_log}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0
