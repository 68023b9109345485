"""Bundles: the directory `model_export` writes and the runtime consumes (docs/design.md, "Bundle").

`load_bundle(dir)` reads `manifest.json` and `config.json` and refuses a bundle that fails its
checks with a `BundleError` (a UserError) naming the reason: a missing file, a sha256 mismatch, a
`format_version` newer than this runtime, an unknown chip, config and manifest disagreeing. The
tokenizer loads lazily. A model directory without a manifest (`models/default`: config.json,
weights.npz, tokenizer.json, maybe model.onnx) loads as `kind == "model-dir"`: usable by the numpy
and onnx backends only, with no checksums to check; `describe()` says so. numpy + stdlib only.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

from runtime.errors import UserError
from runtime.reference_model import ModelConfig

SUPPORTED_FORMAT_VERSION = 1
KNOWN_CHIPS = ("cv180x", "cv181x")
REPO_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_DIR_FILES = ("config.json", "weights.npz", "tokenizer.json")
BUNDLE_FILES = ("manifest.json", "config.json", "tokenizer.json", "weights.npz")


class BundleError(UserError):
    """A bundle that cannot be used: the message names the bundle, the problem and the fix."""


class BundleLocation(NamedTuple):
    path: Path
    kind: str  # "bundle" (manifest, checksums, maybe a cvimodel) or "model-dir" (numpy/onnx only)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing ({what}); rebuild the bundle with `edgetype export`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path}: not readable JSON ({error}); rebuild the bundle") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object; rebuild the bundle")
    return data


class Bundle:
    """A checked bundle (or a model directory): paths, manifest, config, tokenizer (lazy)."""

    def __init__(self, directory: Path, kind: str, manifest: dict, config: ModelConfig):
        self.dir = directory
        self.kind = kind
        self.manifest = manifest
        self.config = config
        self._tokenizer = None

    # -- files ------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.dir / name

    def has(self, name: str) -> bool:
        return (self.dir / name).is_file()

    @property
    def weights_path(self) -> Path:
        return self.dir / "weights.npz"

    @property
    def onnx_path(self) -> Path | None:
        path = self.dir / "model.onnx"
        return path if path.is_file() else None

    @property
    def cvimodel_path(self) -> Path | None:
        path = self.dir / "model.cvimodel"
        return path if path.is_file() else None

    # -- manifest fields ------------------------------------------------------------------------
    @property
    def chip(self) -> str | None:
        return self.manifest.get("chip")

    @property
    def quant(self) -> str | None:
        return self.manifest.get("quant")

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from runtime.tokenizer import Tokenizer

            path = self.dir / "tokenizer.json"
            try:
                tokenizer = Tokenizer.load(path)
            except ValueError as error:
                raise BundleError(f"{error}; rebuild the bundle") from None
            if tokenizer.vocab_size != self.config.vocab_size:
                raise BundleError(f"{path}: {tokenizer.vocab_size} tokens but config.json says vocab_size "
                                  f"{self.config.vocab_size}; the tokenizer belongs to another model")
            want = self.manifest.get("tokenizer_id")
            if want and want != tokenizer.tokenizer_id:
                raise BundleError(f"{path}: tokenizer_id {tokenizer.tokenizer_id} but manifest.json says {want}; "
                                  "the tokenizer belongs to another model")
            self._tokenizer = tokenizer
        return self._tokenizer

    def describe(self) -> str:
        if self.kind == "model-dir":
            return f"{self.dir} (model directory, no manifest: numpy/onnx backends only, not checksummed)"
        return (f"{self.dir} (bundle {self.manifest.get('model_id', '?')}, chip {self.chip}, quant {self.quant}, "
                f"window {self.window})")

    def __repr__(self) -> str:
        return f"Bundle({self.describe()})"


def _check_manifest(directory: Path, manifest: dict, config: ModelConfig, verify_hashes: bool) -> None:
    where = directory / "manifest.json"
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{where}: no integer format_version; rebuild the bundle")
    if version > SUPPORTED_FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version} is newer than this edgetype supports "
                          f"({SUPPORTED_FORMAT_VERSION}); update edgetype")
    chip = manifest.get("chip")
    if chip is not None and chip not in KNOWN_CHIPS:
        raise BundleError(f"{where}: unknown chip {chip!r} (known: {', '.join(KNOWN_CHIPS)}); "
                          "rebuild the bundle for one of them")
    if chip is not None and not (directory / "model.cvimodel").is_file():
        raise BundleError(f"{directory / 'model.cvimodel'}: missing (the manifest names chip {chip}); "
                          "re-run `edgetype export`")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{where}: no `files` {{name: sha256}} table; rebuild the bundle")
    for name in BUNDLE_FILES[1:]:
        if name not in files:
            raise BundleError(f"{where}: `files` does not list {name}; rebuild the bundle")
    for name, want in files.items():
        path = directory / name
        if os.sep in name or name.startswith(".."):
            raise BundleError(f"{where}: file name {name!r} points outside the bundle")
        if not path.is_file():
            raise BundleError(f"{path}: missing (listed in manifest.json); copy the whole bundle directory")
        if verify_hashes and sha256_file(path) != want:
            raise BundleError(f"{path}: sha256 mismatch with manifest.json (corrupt or replaced); "
                              "copy the bundle again or re-run `edgetype export`")
    # config vs manifest
    if "window" in manifest and manifest["window"] != config.window:
        raise BundleError(f"{where}: window {manifest['window']} but config.json says {config.window}")
    D, H, hd, W, V = config.d_model, config.n_heads, config.head_dim, config.window, config.vocab_size
    expected = {"x": [1, 1, D], "mask": [1, 1, 1, W], "dist": [1, 1, 1, W], "logits": [1, V]}
    for l in range(config.n_layers):
        expected.update({f"k_cache_{l}": [1, H, hd, W], f"v_cache_{l}": [1, H, W, hd],
                         f"k_new_{l}": [1, H, hd, 1], f"v_new_{l}": [1, H, 1, hd]})
    for section in ("inputs", "outputs"):
        for spec in manifest.get(section) or []:
            name = spec.get("name") if isinstance(spec, dict) else None
            if name in expected and list(spec.get("shape", [])) != expected[name]:
                raise BundleError(f"{where}: {section[:-1]} {name} has shape {spec.get('shape')} but config.json "
                                  f"implies {expected[name]}; config and manifest disagree, rebuild the bundle")


def load_bundle(directory: str | Path | BundleLocation | None = None, verify_hashes: bool = True) -> Bundle:
    """Open and check a bundle (or a model directory). None: `default_bundle_dir()`."""
    if directory is None:
        directory = default_bundle_dir()
    if isinstance(directory, BundleLocation):
        directory = directory.path
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: not a directory; pass --bundle with a bundle from models/bundles/")
    if (directory / "manifest.json").exists():
        manifest = _read_json(directory / "manifest.json", "bundle manifest")
        config = _load_config(directory)
        _check_manifest(directory, manifest, config, verify_hashes)
        return Bundle(directory, "bundle", manifest, config)
    missing = [name for name in MODEL_DIR_FILES if not (directory / name).is_file()]
    if missing:
        raise BundleError(f"{directory}: not a bundle (no manifest.json) nor a model directory (missing "
                          f"{', '.join(missing)}); train a model or pass --bundle")
    config = _load_config(directory)
    return Bundle(directory, "model-dir", {"chip": None, "quant": "f32", "window": config.window}, config)


def _load_config(directory: Path) -> ModelConfig:
    data = _read_json(directory / "config.json", "model config")
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise BundleError(f"{directory / 'config.json'}: bad model config ({error}); rebuild the bundle") from None


def default_bundle_dir(chip: str | None = None, models_dir: Path | None = None) -> BundleLocation:
    """The shipped bundle: `models/bundles/<name>/` for `chip` (cv181x first, bf16 first), else
    `models/default` as a model directory (numpy/onnx only). Raises BundleError when neither exists."""
    models_dir = Path(models_dir or os.environ.get("EDGETYPE_MODELS") or REPO_MODELS_DIR)
    candidates = []
    bundles_dir = models_dir / "bundles"
    if bundles_dir.is_dir():
        for manifest_path in sorted(bundles_dir.glob("*/manifest.json")):
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if chip is not None and manifest.get("chip") != chip:
                continue
            rank = (manifest.get("chip") != "cv181x", str(manifest.get("quant", "")).lower() != "bf16",
                    manifest_path.parent.name)
            candidates.append((rank, manifest_path.parent))
    if candidates:
        return BundleLocation(min(candidates)[1], "bundle")
    default = models_dir / "default"
    if chip is None and all((default / name).is_file() for name in MODEL_DIR_FILES):
        return BundleLocation(default, "model-dir")
    wanted = f" for chip {chip}" if chip else ""
    raise BundleError(f"no bundle{wanted} under {bundles_dir} and no trained model in {default}; "
                      "run `edgetype train` and `edgetype export`, or pass --bundle")
