"""A tiny model folder of the real architecture and a synthetic corpus, for tests (fixed seeds).

    corpus = write_synthetic_corpus(tmp / "corpus")
    model = make_tiny_model_dir(tmp / "model", corpus)   # config.json, weights.npz, tokenizer.json

The weights are random (tpu_driver.reference_model.init_weights plus noise on every tensor so that
LayerNorm gains and biases are not trivially 1/0); the tokenizer is trained on the corpus.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

WORDS = ("the cat dog sat on a mat and ran to house garden it was red blue small big "
         "she he saw liked quickly slowly").split()


def write_synthetic_corpus(folder: Path, seed: int = 0, n_paragraphs: int = 300) -> Path:
    """train/valid/test.txt.gz of random sentences over a 25-word vocabulary."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", n_paragraphs), ("valid", 40), ("test", 40)):
        paragraphs = []
        for _ in range(count):
            sentences = []
            for _ in range(rng.integers(1, 4)):
                words = [str(w) for w in rng.choice(WORDS, size=rng.integers(3, 9))]
                sentences.append(" ".join(words).capitalize() + ".")
            paragraphs.append(" ".join(sentences))
        with gzip.open(folder / f"{name}.txt.gz", "wt", encoding="utf-8") as handle:
            handle.write("\n\n".join(paragraphs) + "\n")
    return folder


def make_tiny_model_dir(folder: Path, corpus: Path, seed: int = 0, d_model: int = 64, n_layers: int = 2,
                        n_heads: int = 4, d_ff: int = 128, window: int = 16, noise: float = 0.05) -> Path:
    from model_export.train import read_paragraphs
    from tpu_driver import reference_model as ref
    from runtime.tokenizer import Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.train(read_paragraphs(Path(corpus) / "train.txt.gz"), vocab_size=64)
    config = ref.ModelConfig(tokenizer.vocab_size, d_model, n_layers, n_heads, d_ff, window)
    rng = np.random.default_rng(seed + 1)
    weights = {name: (w + rng.standard_normal(w.shape) * noise).astype(np.float32)
               for name, w in ref.init_weights(config, seed).items()}
    np.savez(folder / "weights.npz", **weights)
    tokenizer.save(folder / "tokenizer.json")
    data = json.loads(config.to_json())
    data.update({"head_dim": config.head_dim, "model_id": f"tiny-seed{seed}", "tokenizer_id": tokenizer.tokenizer_id})
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return folder
