"""Bundle loading and checks (runtime/bundle.py). `make_tiny_bundle` is shared by the engine tests."""
import json
from pathlib import Path

import numpy as np
import pytest

from runtime.bundle import (BundleError, BundleLocation, default_bundle_dir, load_bundle, sha256_file)
from tpu_driver.reference_model import ModelConfig, init_weights
from runtime.tokenizer import Tokenizer

TINY_TEXT = ("The cat sat on the mat. The dog sat on the log. I think the cat and the dog are friends.\n"
             "Then the cat ran to the dog, and the dog ran to the cat. The end of the story is near.\n"
             "We thank you for the time. They think that the theory is thin. The weather is nice today.\n")


def make_tiny_model_dir(directory: Path, window: int = 16, seed: int = 0, n_layers: int = 2) -> Path:
    """config.json + weights.npz (random, fixed seed) + tokenizer.json (trained on TINY_TEXT)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.train([TINY_TEXT], vocab_size=64, min_count=1)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=n_layers, n_heads=4, d_ff=64,
                      window=window)
    weights = init_weights(cfg, seed=seed)
    weights = {k: (v * 30 if v.ndim == 2 else v) for k, v in weights.items()}  # peaky distributions
    np.savez(directory / "weights.npz", **weights)
    (directory / "config.json").write_text(cfg.to_json())
    tokenizer.save(directory / "tokenizer.json")
    return directory


def make_tiny_bundle(directory: Path, chip: str | None = None, quant: str | None = None, **kwargs) -> Path:
    """A model dir plus a sealed manifest.json (format 2, bundle_id) with sha256 of every file; for a
    chip, a synthetic cvimodel (tests/cvimodel_builder.py) whose header matches the manifest."""
    from cvimodel_builder import cvimodel_for_config, manifest_tensor_specs
    from runtime.bundle import seal_manifest

    make_tiny_model_dir(directory, **kwargs)
    cfg = ModelConfig.load(directory / "config.json")
    quant = quant or ("bf16" if chip else "f32")
    if chip:
        (directory / "model.cvimodel").write_bytes(cvimodel_for_config(cfg, chip, quant))
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.name != "manifest.json"}
    inputs, outputs = manifest_tensor_specs(cfg)
    manifest = {"format_version": 2, "model_id": "tiny", "tokenizer_id": Tokenizer.load(directory / "tokenizer.json").tokenizer_id,
                "chip": chip, "quant": quant, "window": cfg.window, "inputs": inputs, "outputs": outputs,
                "tpu_mlir_version": "1.30.2" if chip else None, "files": files, "ion_bytes": 0}
    (directory / "manifest.json").write_text(json.dumps(seal_manifest(manifest), indent=1))
    return directory


def _edit_manifest(directory, reseal=True, **changes):
    """Change manifest fields; `reseal` recomputes the bundle_id (as a forger would), so the check
    behind it is the one tested."""
    from runtime.bundle import seal_manifest

    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(seal_manifest(manifest) if reseal else manifest))


def test_good_bundle_loads(tmp_path):
    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", chip="cv181x"))
    assert bundle.kind == "bundle" and bundle.chip == "cv181x" and bundle.window == 16
    assert bundle.cvimodel_path is not None and bundle.tokenizer.vocab_size == bundle.config.vocab_size


def test_model_dir_loads_labelled(tmp_path):
    bundle = load_bundle(make_tiny_model_dir(tmp_path / "m"))
    assert bundle.kind == "model-dir" and "numpy/onnx" in bundle.describe() and bundle.chip is None


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "weights.npz").unlink(), "weights.npz: missing"),
    (lambda d: (d / "model.cvimodel").unlink(), "model.cvimodel: missing"),
    (lambda d: (d / "config.json").write_text((d / "config.json").read_text() + " "), "sha256 mismatch"),
    (lambda d: _edit_manifest(d, reseal=False, format_version=9), "format_version 9 is newer"),
    (lambda d: _edit_manifest(d, reseal=False, chip="cv180x"), "bundle_id does not match"),
    (lambda d: _edit_manifest(d, chip="cv180x"), "compiled for cv181x"),
    (lambda d: _edit_manifest(d, quant="int8"), "holds bf16 tensors"),
    (lambda d: _edit_manifest(d, chip="bm1684x"), "unknown chip 'bm1684x'"),
    (lambda d: _edit_manifest(d, window=64), "window 64 but config.json says 16"),
    (lambda d: _edit_manifest(d, inputs=[{**spec, "shape": [1, 1, 48]} if spec["name"] == "x" else spec
                                         for spec in json.loads((d / "manifest.json").read_text())["inputs"]]),
     "config and manifest disagree"),
    (lambda d: (d / "manifest.json").write_text("{nope"), "not valid JSON"),
])
def test_broken_bundles_are_refused_with_the_reason(tmp_path, breakage, message):
    directory = make_tiny_bundle(tmp_path / "b", chip="cv181x")
    breakage(directory)
    with pytest.raises(BundleError, match=message):
        load_bundle(directory)


def test_tokenizer_of_another_model_is_refused(tmp_path):
    directory = make_tiny_bundle(tmp_path / "b")
    _edit_manifest(directory, tokenizer_id="0123456789abcdef")
    with pytest.raises(BundleError, match="tokenizer_id"):
        load_bundle(directory).tokenizer


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="missing config.json, weights.npz, tokenizer.json"):
        load_bundle(tmp_path / "empty")


def test_default_bundle_dir_prefers_bundles_then_model_dir(tmp_path):
    with pytest.raises(BundleError, match="no bundle"):
        default_bundle_dir(models_dir=tmp_path)
    make_tiny_model_dir(tmp_path / "default")
    assert default_bundle_dir(models_dir=tmp_path) == BundleLocation(tmp_path / "default", "model-dir")
    with pytest.raises(BundleError, match="for chip cv180x"):
        default_bundle_dir(chip="cv180x", models_dir=tmp_path)
    make_tiny_bundle(tmp_path / "bundles" / "cv180x-int8-w16", chip="cv180x")
    make_tiny_bundle(tmp_path / "bundles" / "cv181x-bf16-w16", chip="cv181x")
    assert default_bundle_dir(models_dir=tmp_path).path.name == "cv181x-bf16-w16"
    assert default_bundle_dir(chip="cv180x", models_dir=tmp_path) == BundleLocation(
        tmp_path / "bundles" / "cv180x-int8-w16", "bundle")
