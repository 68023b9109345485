"""Train the default model: the word tokenizer and the decode-step transformer (PyTorch).

    edgetype train [--device cpu|cuda] [--steps N] [--minutes M] [--smoke] -o models/default

Reads `models/corpus/{train,valid}.txt.gz` (paragraphs separated by blank lines), trains the
tokenizer (`runtime.tokenizer.Tokenizer.train`) on train, then the model on random windows of the
token stream (each paragraph starts with <bos>), and evaluates on valid. Writes `config.json`,
`weights.npz` (float32, names of tpu_driver/reference_model.py), `tokenizer.json`,
`training_log.json` (final validation loss and perplexity, per-token over every non-<bos> token).

The learning-rate schedule runs on "progress" = max(step / steps, elapsed / time budget), so a
run ends on time on any machine; the log records how many steps it took.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.argtypes import float_in, int_in
from runtime.errors import UserError
from tpu_driver.decode_step import ModelConfig

DEFAULT_CORPUS = Path("models/corpus")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass
class TrainSettings:
    # the model's shape: defaults from the decode-step spec (tpu_driver/decode_step.py), not restated
    vocab_size: int = ModelConfig.vocab_size
    d_model: int = ModelConfig.d_model
    n_layers: int = ModelConfig.n_layers
    n_heads: int = ModelConfig.n_heads
    d_ff: int = ModelConfig.d_ff
    window: int = ModelConfig.window  # W of the compiled decode step; training sequences are W tokens long
    alibi_max_bias: float = ModelConfig.alibi_max_bias  # 4: slopes 1/2..1/16 for H=4, reach matches W (docs/kv-window.md)
    seq_len: int = 128
    batch_size: int = 128
    steps: int = 30000
    max_minutes: float = 9.0
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 300
    weight_decay: float = 0.1
    dropout: float = 0.1  # the corpus is ~5M tokens: a 5M-parameter model overfits without it
    seed: int = 1234
    eval_every: int = 500
    max_train_paragraphs: int | None = None
    max_valid_tokens: int = 400_000
    processes: int = 1  # tokenizer counting and encoding in this many processes (same result)


SMOKE = dict(dropout=0.0, vocab_size=512, d_model=32, n_layers=2, n_heads=2, d_ff=64, window=16, seq_len=32,
             batch_size=16, steps=40, max_minutes=0.5, warmup_steps=5, eval_every=20,
             max_train_paragraphs=400, max_valid_tokens=4000, lr=3e-3)


def _log(message: str) -> None:
    print(f"[train] {message}", file=sys.stderr, flush=True)


def read_paragraphs(path: Path, limit: int | None = None) -> list[str]:
    """Paragraphs of a gzip'd UTF-8 text file (blank-line separated), first `limit` only."""
    if not path.is_file():
        raise UserError(f"corpus file {path} is missing; build it with `edgetype corpus build` "
                        f"or pass --corpus DIR")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    if not paragraphs:
        raise UserError(f"corpus file {path} holds no text")
    return paragraphs[:limit] if limit else paragraphs


def encode_stream(tokenizer, paragraphs: list[str], processes: int = 1) -> np.ndarray:
    """int32 [N]: all paragraphs, each preceded by <bos> (chunks in parallel, same order)."""
    if processes > 1 and len(paragraphs) > 10_000:
        return np.concatenate(_parallel_chunks(_encode_chunk, paragraphs, processes, tokenizer))
    ids: list[int] = []
    for paragraph in paragraphs:
        ids.extend(tokenizer.encode(paragraph, bos=True))
    return np.asarray(ids, dtype=np.int32)


_WORKER_STATE: dict = {}  # what forked workers read (set before the pool starts)


def _encode_chunk(chunk: list[str]) -> np.ndarray:
    return encode_stream(_WORKER_STATE["shared"], chunk)


def _count_chunk(chunk: list[str]):
    from runtime.tokenizer import Tokenizer

    return Tokenizer.count_pieces(chunk)


def _parallel_chunks(function, items: list, processes: int, shared=None) -> list:
    """function(chunk) for consecutive chunks of `items` in forked processes, results in order."""
    import multiprocessing

    _WORKER_STATE["shared"] = shared
    size = -(-len(items) // (processes * 4))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(function, chunks)


def train_tokenizer(paragraphs: list[str], vocab_size: int, processes: int = 1):
    """Tokenizer.train, with the counting spread over processes (the same tokenizer: counts of
    consecutive chunks merged in order equal the serial counts, ties included)."""
    from collections import Counter

    from runtime.tokenizer import Tokenizer

    if processes <= 1 or len(paragraphs) <= 10_000:
        return Tokenizer.train(paragraphs, vocab_size=vocab_size)
    counts, forms = Counter(), Counter()
    for chunk_counts, chunk_forms in _parallel_chunks(_count_chunk, paragraphs, processes):
        counts.update(chunk_counts)
        forms.update(chunk_forms)
    return Tokenizer.from_counts(counts, forms, vocab_size)


def _batches(stream: np.ndarray, seq_len: int, batch_size: int, rng: np.random.Generator):
    """Random windows: int64 [B, seq_len+1] (inputs are [:, :-1], targets [:, 1:])."""
    starts_max = len(stream) - seq_len - 1
    offsets = np.arange(seq_len + 1)
    while True:
        starts = rng.integers(0, starts_max, size=batch_size)
        yield stream[starts[:, None] + offsets[None, :]].astype(np.int64)


def evaluate(model, stream: np.ndarray, seq_len: int, device, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats) over non-overlapping windows of the stream."""
    import torch
    from torch.nn import functional as F

    from runtime.tokenizer import BOS_ID

    n_windows = (len(stream) - 1) // seq_len
    if n_windows < 1:
        raise UserError(f"validation text too short ({len(stream)} tokens) for windows of {seq_len}")
    data = stream[: n_windows * seq_len + 1]
    inputs = np.stack([data[i * seq_len: (i + 1) * seq_len] for i in range(n_windows)])
    targets = np.stack([data[i * seq_len + 1: (i + 1) * seq_len + 1] for i in range(n_windows)])
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, n_windows, batch_size):
            x = torch.from_numpy(inputs[i:i + batch_size].astype(np.int64)).to(device)
            y = torch.from_numpy(targets[i:i + batch_size].astype(np.int64)).to(device)
            with _autocast(device):
                logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                   reduction="none", ignore_index=BOS_ID)
            keep = y.reshape(-1) != BOS_ID  # predicting <bos> is not a thing the model is asked
            total += float(loss[keep].sum())
            count += int(keep.sum())
    model.train()
    return total / max(count, 1)


def _autocast(device):
    import contextlib

    import torch
    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(corpus_dir: Path, out_dir: Path, settings: TrainSettings, device_name: str = "cpu") -> dict:
    import torch
    from torch.nn import functional as F

    from model_export.model import ModelShape, WordLM, count_parameters
    from runtime.tokenizer import BOS_ID

    if device_name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    device = torch.device(device_name)
    torch.manual_seed(settings.seed)
    np_rng = np.random.default_rng(settings.seed)
    started = time.monotonic()

    train_paragraphs = read_paragraphs(corpus_dir / "train.txt.gz", settings.max_train_paragraphs)
    valid_paragraphs = read_paragraphs(corpus_dir / "valid.txt.gz")
    _log(f"corpus: {len(train_paragraphs)} train / {len(valid_paragraphs)} valid paragraphs")
    tokenizer = train_tokenizer(train_paragraphs, settings.vocab_size, settings.processes)
    vocab_size = tokenizer.vocab_size  # may be below the asked size on a small corpus
    train_stream = encode_stream(tokenizer, train_paragraphs, settings.processes)
    valid_stream = encode_stream(tokenizer, valid_paragraphs, settings.processes)[: settings.max_valid_tokens]
    _log(f"tokenizer: {vocab_size} tokens; {len(train_stream)} train / {len(valid_stream)} "
         f"valid tokens ({time.monotonic() - started:.0f} s)")
    if len(train_stream) < settings.seq_len + 2:
        raise UserError(f"training text too short ({len(train_stream)} tokens) for sequences of "
                        f"{settings.seq_len}")

    shape = ModelShape(vocab_size, settings.d_model, settings.n_layers, settings.n_heads,
                       settings.d_ff, settings.window, settings.alibi_max_bias)
    model = WordLM(shape, dropout=settings.dropout)
    model.reset_parameters(settings.seed)
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=settings.lr, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")
    budget_s = settings.max_minutes * 60.0
    batches = _batches(train_stream, settings.seq_len, settings.batch_size, np_rng)
    history = []
    best = {"valid_loss": float("inf"), "step": 0, "state": None}  # keep the best checkpoint
    step, train_started = 0, time.monotonic()
    progress = 0.0
    loss_ema = None
    while progress < 1.0:
        elapsed = time.monotonic() - train_started
        progress = max(step / settings.steps, elapsed / budget_s)
        if progress >= 1.0:
            break
        if step < settings.warmup_steps:
            lr = settings.lr * (step + 1) / settings.warmup_steps
        else:
            lr = settings.lr * (settings.min_lr_ratio + (1 - settings.min_lr_ratio)
                                * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = torch.from_numpy(next(batches)).to(device, non_blocking=True)
        with _autocast(device):
            logits = model(batch[:, :-1])
        targets = batch[:, 1:].reshape(-1)
        loss = F.cross_entropy(logits.float().reshape(-1, vocab_size), targets, ignore_index=BOS_ID)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0 or step == 1:
            value = float(loss.detach())
            loss_ema = value if loss_ema is None else 0.9 * loss_ema + 0.1 * value
        if step % settings.eval_every == 0:
            valid_loss = evaluate(model, valid_stream, settings.seq_len, device)
            history.append({"step": step, "seconds": round(time.monotonic() - train_started, 1),
                            "train_loss_ema": round(loss_ema, 4), "valid_loss": round(valid_loss, 4),
                            "lr": lr})
            _log(f"step {step}: train {loss_ema:.3f} valid {valid_loss:.3f} "
                 f"ppl {math.exp(valid_loss):.1f} ({history[-1]['seconds']} s)")
            if valid_loss < best["valid_loss"]:
                best = {"valid_loss": valid_loss, "step": step,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    train_seconds = time.monotonic() - train_started
    valid_loss = evaluate(model, valid_stream, settings.seq_len, device)
    if best["state"] is not None and best["valid_loss"] < valid_loss:
        _log(f"keeping the checkpoint of step {best['step']} (valid {best['valid_loss']:.4f} < "
             f"final {valid_loss:.4f})")
        model.load_state_dict(best["state"])
        valid_loss = evaluate(model, valid_stream, settings.seq_len, device)
    kept_step = best["step"] if best["state"] is not None and best["valid_loss"] <= valid_loss else step
    _log(f"done: {step} steps in {train_seconds:.0f} s; valid loss {valid_loss:.4f} "
         f"ppl {math.exp(valid_loss):.2f}")

    weights = model.to_numpy_weights()
    config = ModelConfig(vocab_size, settings.d_model, settings.n_layers, settings.n_heads,
                         settings.d_ff, settings.window, settings.alibi_max_bias)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    weights_bytes = buffer.getvalue()
    model_id = hashlib.sha256(weights_bytes).hexdigest()[:16]
    (out_dir / "weights.npz").write_bytes(weights_bytes)
    tokenizer.save(out_dir / "tokenizer.json")
    config_json = json.loads(config.to_json())
    config_json.update({"head_dim": config.head_dim, "model_id": model_id,
                        "tokenizer_id": tokenizer.tokenizer_id})
    (out_dir / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    log = {
        "model_id": model_id,
        "tokenizer_id": tokenizer.tokenizer_id,
        "parameters": count_parameters(shape),
        "settings": asdict(settings),
        "device": device_name if device.type != "cuda" else torch.cuda.get_device_name(device),
        "torch_version": torch.__version__,
        "train_paragraphs": len(train_paragraphs),
        "train_tokens": int(len(train_stream)),
        "valid_tokens": int(len(valid_stream)),
        "steps": step,
        "kept_checkpoint_step": kept_step,
        "tokens_seen": step * settings.batch_size * settings.seq_len,
        "train_seconds": round(train_seconds, 1),
        "final_valid_loss": round(valid_loss, 4),
        "final_valid_perplexity": round(math.exp(valid_loss), 2),
        "valid_loss_note": "mean next-token cross-entropy in nats over every token of "
                           "models/corpus/valid.txt.gz (first max_valid_tokens) except <bos> "
                           "targets, non-overlapping windows of seq_len",
        "history": history,
    }
    (out_dir / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    _log(f"wrote {out_dir}/{{config.json,weights.npz,tokenizer.json,training_log.json}}")
    return log


def add_train_arguments(train) -> None:
    """The `edgetype train` options (also used by `python -m model_export.train`)."""
    train.add_argument("-o", "--output", default="models/default", help="model folder to write")
    train.add_argument("--corpus", default="models/corpus",
                       help="folder with train.txt.gz and valid.txt.gz (default models/corpus)")
    train.add_argument("--device", choices=("cpu", "cuda"), default=None,
                       help="torch device (default cpu)")
    train.add_argument("--steps", type=int_in(1, 10**9), default=None, help="maximum optimizer steps")
    train.add_argument("--minutes", type=float_in(0.0, 100000.0, low_open=True), default=None, help="time budget of the training loop")
    train.add_argument("--alibi-max-bias", type=float_in(0.0, 64.0, low_open=True), default=None,
                       help="m of the ALiBi slopes 2^(-m(h+1)/H) (default 4: reach matched to the window; 8: the paper's)")
    train.add_argument("--vocab-size", type=int_in(16, 1 << 20), default=None,
                       help="tokens in the word vocabulary, specials and punctuation included (default 8192)")
    train.add_argument("--dropout", type=float_in(0.0, 0.9), default=None, help="dropout rate (default 0.1)")
    train.add_argument("--processes", type=int_in(1, 256), default=None,
                       help="processes for tokenizer training and encoding (default 1; same result)")
    train.add_argument("--seed", type=int_in(0, 2**31 - 1), default=None, help="random seed (default 1234)")
    train.add_argument("--smoke", action="store_true",
                       help="tiny model on a slice of the corpus, CPU, < 1 minute")
    train.add_argument("--json", action="store_true", help="print one JSON summary on stdout")


def settings_from_args(args) -> TrainSettings:
    settings = TrainSettings(**SMOKE) if args.smoke else TrainSettings()
    if args.steps is not None:
        settings.steps = args.steps
    if args.minutes is not None:
        settings.max_minutes = args.minutes
    if args.alibi_max_bias is not None:
        if not 0.0 < args.alibi_max_bias <= 16.0:
            raise UserError(f"--alibi-max-bias {args.alibi_max_bias}: must be in (0, 16]")
        settings.alibi_max_bias = args.alibi_max_bias
    if args.dropout is not None:
        if not 0.0 <= args.dropout < 0.9:
            raise UserError(f"--dropout {args.dropout}: must be in [0, 0.9)")
        settings.dropout = args.dropout
    if args.processes is not None:
        if not 1 <= args.processes <= 256:
            raise UserError(f"--processes {args.processes}: must be in [1, 256]")
        settings.processes = args.processes
    if args.seed is not None:
        settings.seed = args.seed
    if args.vocab_size is not None:
        if not 64 <= args.vocab_size <= 65536:
            raise UserError(f"--vocab-size {args.vocab_size}: must be in [64, 65536]")
        settings.vocab_size = args.vocab_size
    return settings


def run_train_command(args) -> int:
    settings = settings_from_args(args)
    device = "cpu" if args.smoke and args.device is None else (args.device or "cpu")
    log = train(Path(args.corpus), Path(args.output), settings, device)
    summary = {k: log[k] for k in ("model_id", "parameters", "steps", "train_seconds",
                                   "final_valid_loss", "final_valid_perplexity")}
    if args.json:
        print(json.dumps(summary))
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0
