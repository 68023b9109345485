"""Bundles: the directory `model_export` writes and the runtime consumes (docs/design.md, "Bundle").

`load_bundle(dir)` is THE bundle check: the runtime, `edgetype verify` and `firmware overlay` all
call it, and it refuses a bundle with a `BundleError` (a UserError) naming the file, the field and
the fix. It checks, before anything is used:
- the manifest itself: `bundle_id` is the sha256 of the canonical manifest (format_version 2), so
  editing any field (chip, window, a file hash) is caught; every field has its type and range;
- every file the manifest lists: a regular file inside the bundle (no link leaving it), its sha256;
- config.json (`validate_config`: integers in range, heads > 0 dividing d_model, a window the
  chip's ION carve-out can hold), tokenizer.json (eagerly), weights.npz (zip structure, every array
  present with config's shape, read from the .npy headers without loading the data);
- model.cvimodel's own header and flatbuffer (`tpu_driver.cvimodel_file`): its chip, its
  quantisation (int8 tensors or not) and every compiled input/output shape against the manifest.
Reads are capped (`MAX_JSON_BYTES`): a file pointing at /dev/zero cannot exhaust memory.
A model directory without a manifest (`models/default`: config.json, weights.npz, tokenizer.json,
maybe model.onnx) loads as `kind == "model-dir"`: usable by the numpy and onnx backends only, with
no checksums to check; `describe()` says so. numpy + stdlib only.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

from runtime.argtypes import MAX_WINDOW  # slots; beyond this a KV window is not a keyboard model's
from runtime.errors import UserError
from tpu_driver import decode_step
from tpu_driver.reference_model import ModelConfig, weight_shapes

SUPPORTED_FORMAT_VERSION = 2  # 2: `bundle_id` covers the manifest (1 had none: migrate, see seal_manifest)
KNOWN_CHIPS = ("cv180x", "cv181x")
KNOWN_QUANTS = ("bf16", "int8", "f32")
# TPU-visible ION carve-out per chip (PLATFORM.md: Duo 16 MiB, Duo 256M / LicheeRV Nano 75 MiB)
ION_LIMIT_BYTES = {"cv180x": 16 << 20, "cv181x": 75 << 20}
MAX_JSON_BYTES = 32 << 20  # manifest, config, tokenizer: reads capped
REPO_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_DIR_FILES = ("config.json", "weights.npz", "tokenizer.json")
BUNDLE_FILES = ("manifest.json", "config.json", "tokenizer.json", "weights.npz")
VOCAB_ORDER_FILE = "vocab_order.json"  # export's word-sorted id order (manifest `vocab_order`, issue #15)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# config.json: field -> (low, high) for the integers a decode step is built from
CONFIG_INT_RANGES = {"vocab_size": (5, 1 << 20), "d_model": (1, 8192), "n_layers": (1, 64),
                     "n_heads": (1, 256), "d_ff": (1, 1 << 16), "window": (1, MAX_WINDOW)}


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


def manifest_digest(manifest: dict) -> str:
    """sha256 over the canonical manifest (sorted keys, no spaces, ASCII), `bundle_id` left out."""
    body = {k: v for k, v in manifest.items() if k != "bundle_id"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def seal_manifest(manifest: dict) -> dict:
    """The manifest as written: format_version 2 and `bundle_id` = manifest_digest (export and the
    v1 -> v2 migration both call this; nothing else spells the rule out)."""
    sealed = {k: v for k, v in manifest.items() if k != "bundle_id"}
    sealed["format_version"] = SUPPORTED_FORMAT_VERSION
    sealed["bundle_id"] = manifest_digest(sealed)
    return sealed


def bundle_file(directory: Path, name: str, what: str) -> Path:
    """`directory/name` when it is a regular file inside the bundle (a link may not leave it)."""
    path = directory / name
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing ({what}); copy the whole bundle directory or re-run "
                          "`edgetype export`") from None
    except OSError as error:
        raise BundleError(f"{path}: cannot read ({error.strerror}); check its permissions") from None
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{path}: not a regular file ({what}); replace it with the exported file")
    if os.path.islink(path) or path.resolve().parent != directory.resolve():
        real = path.resolve()
        if directory.resolve() not in real.parents:
            raise BundleError(f"{path}: a link to {real}, outside the bundle; copy the real file in")
    return path


def read_json_capped(path: Path, what: str, limit: int = MAX_JSON_BYTES):
    """Parsed JSON of a small file; BundleError (one line) for anything that is not that."""
    try:
        with open(path, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise BundleError(f"{path}: not a regular file ({what}); rebuild the bundle")
            raw = file.read(limit + 1)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing ({what}); rebuild the bundle with `edgetype export`") from None
    except OSError as error:
        raise BundleError(f"{path}: cannot read ({error.strerror}); check its permissions") from None
    if len(raw) > limit:
        raise BundleError(f"{path}: larger than {limit >> 20} MiB, not a {what}; rebuild the bundle")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise BundleError(f"{path}: not UTF-8 ({error.reason}); rebuild the bundle") from None
    except json.JSONDecodeError as error:
        raise BundleError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}); rebuild the bundle") from None
    except (ValueError, RecursionError) as error:  # 5,000-digit numbers, 100,000-deep nesting
        raise BundleError(f"{path}: not usable JSON ({str(error)[:80]}); rebuild the bundle") from None


def _read_json(path: Path, what: str) -> dict:
    data = read_json_capped(path, what)
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object; rebuild the bundle")
    return data


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(data: dict, where, chip: str | None = None) -> ModelConfig:
    """ModelConfig from config.json values, every field checked first (types, ranges, heads > 0
    dividing d_model, a KV window the chip's ION carve-out holds)."""
    for name, (low, high) in CONFIG_INT_RANGES.items():
        if name not in data:
            continue  # ModelConfig's default
        value = data[name]
        if not _is_int(value) or not low <= value <= high:
            raise BundleError(f"{where}: {name} must be an integer in [{low}, {high}], got {str(value)[:40]}; "
                              "fix config.json or rebuild the bundle")
    bias = data.get("alibi_max_bias", ModelConfig.alibi_max_bias)
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not 0 < bias <= 64:
        raise BundleError(f"{where}: alibi_max_bias must be a number in (0, 64], got {str(bias)[:40]}; "
                          "fix config.json")
    defaults = ModelConfig()
    d_model, n_heads = data.get("d_model", defaults.d_model), data.get("n_heads", defaults.n_heads)
    if d_model % n_heads:
        raise BundleError(f"{where}: d_model {d_model} is not a multiple of n_heads {n_heads}; fix config.json")
    try:
        config = ModelConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise BundleError(f"{where}: bad model config ({error}); rebuild the bundle") from None
    if chip in ION_LIMIT_BYTES:
        kv_bytes = 2 * config.n_layers * config.d_model * config.window * 4  # f32 K and V inputs
        if kv_bytes > ION_LIMIT_BYTES[chip]:
            raise BundleError(f"{where}: window {config.window} needs {kv_bytes >> 20} MiB of KV cache, more "
                              f"than {chip}'s {ION_LIMIT_BYTES[chip] >> 20} MiB ION carve-out; use a smaller window")
    return config


def check_weights_file(path: Path, config: ModelConfig) -> None:
    """weights.npz is a zip of float .npy arrays with the names and shapes config implies; reads the
    .npy headers only (no data loaded)."""
    import numpy as np

    want = weight_shapes(config)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
            for name, shape in want.items():
                if name not in members:
                    raise BundleError(f"{path}: no array {name!r} (config.json wants {shape}); the weights "
                                      "belong to another model, retrain or rebuild the bundle")
                try:
                    with archive.open(members[name]) as member:
                        version = np.lib.format.read_magic(member)
                        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                  else np.lib.format.read_array_header_2_0)(member)
                except Exception as error:  # noqa: BLE001 - numpy parses the untrusted header with
                    # tokenize/literal_eval: TokenError, SyntaxError, MemoryError... all mean "corrupt"
                    raise BundleError(f"{path}: array {name!r} has a corrupt .npy header "
                                      f"({type(error).__name__}); copy it again or rebuild the bundle") from None
                got_shape, _, dtype = header
                if tuple(got_shape) != shape or dtype.kind != "f":
                    raise BundleError(f"{path}: array {name!r} is {dtype} {tuple(got_shape)}, config.json wants "
                                      f"float {shape}; rebuild the bundle")
    except BundleError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as error:
        raise BundleError(f"{path}: not a readable weights archive ({str(error)[:80]}); copy it again or "
                          "rebuild the bundle") from None


def check_cvimodel_against_manifest(path: Path, manifest: dict, where: Path, verify_hashes: bool = True) -> None:
    """The cvimodel's own header/flatbuffer vs what the manifest declares: chip, quant, shapes."""
    from tpu_driver.cvimodel_file import read_cvimodel_info

    # ModelFileError (a UserError) for a truncated/corrupt file; the md5 is redundant after a sha256
    info = read_cvimodel_info(path, verify_md5=not verify_hashes)
    chip = manifest.get("chip")
    if info.chip != chip:
        raise BundleError(f"{where}: chip {chip} but {path.name} was compiled for {info.chip} "
                          "(its own header); the manifest was edited or belongs to another bundle: re-export")
    dtypes = set(info.tensor_dtypes)
    quant = manifest.get("quant")
    compiled_quant = "int8" if "int8" in dtypes else "bf16" if "bfloat16" in dtypes else "f32"
    if quant != compiled_quant:
        raise BundleError(f"{where}: quant {quant} but {path.name} holds {compiled_quant} tensors; re-export")
    version = manifest.get("tpu_mlir_version")
    if version and info.mlir_version and version not in info.mlir_version:
        raise BundleError(f"{where}: tpu_mlir_version {version} but {path.name} was built by "
                          f"{info.mlir_version}; re-export")
    program = info.programs[0]
    for section, compiled in (("inputs", program.inputs), ("outputs", program.outputs)):
        declared = manifest.get(section) or []
        if len(declared) != len(compiled):
            raise BundleError(f"{where}: {len(declared)} {section} but {path.name} has {len(compiled)}; re-export")
        by_name = {t.name: t for t in compiled}
        for position, spec in enumerate(declared):
            # older manifests name no compiled tensor: then the compiled program's order is the key
            name = spec.get("compiled_name", spec["name"])
            tensor = by_name.get(name) if "compiled_name" in spec else compiled[position]
            if tensor is None:
                raise BundleError(f"{where}: {section[:-1]} {name} is not in {path.name}; re-export")
            want = spec.get("compiled_nchw")
            if want is not None and list(tensor.shape) != list(want):
                raise BundleError(f"{where}: {section[:-1]} {name} is {list(want)} but {path.name} has "
                                  f"{list(tensor.shape)}; re-export")
            if want is None and math.prod(tensor.shape) != math.prod(spec["shape"]):
                raise BundleError(f"{where}: {section[:-1]} {name} has {math.prod(spec['shape'])} elements but "
                                  f"{path.name} has {math.prod(tensor.shape)}; re-export")


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
                tokenizer = Tokenizer.load(bundle_file(self.dir, "tokenizer.json", "tokenizer"))
            except ValueError as error:
                raise BundleError(f"{str(error)[:300]}; rebuild the bundle") from None
            if tokenizer.vocab_size != self.config.vocab_size:
                raise BundleError(f"{path}: {tokenizer.vocab_size} tokens but config.json says vocab_size "
                                  f"{self.config.vocab_size}; the tokenizer belongs to another model")
            want = self.manifest.get("tokenizer_id")
            if want and want != tokenizer.tokenizer_id:
                raise BundleError(f"{path}: tokenizer_id {tokenizer.tokenizer_id} but manifest.json says {want}; "
                                  "the tokenizer belongs to another model")
            if self.manifest.get("vocab_order") is not None:
                self._check_vocab_order(tokenizer)
            self._tokenizer = tokenizer
        return self._tokenizer

    def _check_vocab_order(self, tokenizer) -> None:
        """The manifest's `vocab_order` (issue #15): words sorted after the specials so that a typed
        prefix's words are one id range. Its map file must exist and describe this tokenizer."""
        declared = self.manifest["vocab_order"]
        name = declared.get("file") if isinstance(declared, dict) else None
        where = self.dir / "manifest.json"
        if name != VOCAB_ORDER_FILE or name not in (self.manifest.get("files") or {}):
            raise BundleError(f"{where}: vocab_order does not name {VOCAB_ORDER_FILE} among its files; re-export")
        data = read_json_capped(bundle_file(self.dir, name, "vocabulary order map"), "vocabulary order map")
        data = data if isinstance(data, dict) else {}
        order = data.get("order")
        V = tokenizer.vocab_size
        problems = []
        if data.get("tokenizer_id") != tokenizer.tokenizer_id:
            problems.append(f"its tokenizer_id {str(data.get('tokenizer_id'))[:20]} is not tokenizer.json's "
                            f"{tokenizer.tokenizer_id}")
        if (not isinstance(order, list) or not all(_is_int(i) for i in order)
                or sorted(order) != list(range(V))):
            problems.append(f"its order is not a permutation of the {V} token ids")
        span = tokenizer.prefix_id_range("")
        declared_ids, map_ids = declared.get("word_ids"), data.get("word_ids")
        if (span is None or not isinstance(declared_ids, list) or not isinstance(map_ids, list)
                or list(span) != map_ids or list(span) != declared_ids):
            problems.append(f"tokenizer.json's words are not the sorted id range {str(map_ids)[:40]} it declares")
        if problems:
            raise BundleError(f"{self.dir / name}: does not match the bundle's tokenizer ({'; '.join(problems)}); "
                              "re-export the bundle")

    def describe(self) -> str:
        if self.kind == "model-dir":
            return f"{self.dir} (model directory, no manifest: numpy/onnx backends only, not checksummed)"
        return (f"{self.dir} (bundle {self.manifest.get('model_id', '?')}, chip {self.chip}, quant {self.quant}, "
                f"window {self.window})")

    def __repr__(self) -> str:
        return f"Bundle({self.describe()})"


def _field(where: Path, manifest: dict, name: str, kinds, required: bool = True):
    value = manifest.get(name)
    if value is None and not required:
        return None
    ok = isinstance(value, kinds) and not isinstance(value, bool) if kinds is not bool else isinstance(value, bool)
    if not ok:
        names = "/".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise BundleError(f"{where}: field {name!r} must be {names}{'' if required else ' or null'}, got "
                          f"{type(value).__name__} {str(value)[:40]}; rebuild the bundle")
    return value


def _check_tensor_specs(where: Path, manifest: dict, section: str) -> None:
    specs = _field(where, manifest, section, list)
    for i, spec in enumerate(specs):
        label = f"{section}[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BundleError(f"{where}: {label} must be an object with a string name; rebuild the bundle")
        shape = spec.get("shape")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 8
                or not all(_is_int(n) and 1 <= n <= 1 << 24 for n in shape)):
            raise BundleError(f"{where}: {label} ({spec['name']}) shape must be 1-8 positive integers, got "
                              f"{str(shape)[:60]}; rebuild the bundle")
        if not isinstance(spec.get("dtype"), str):
            raise BundleError(f"{where}: {label} ({spec['name']}) dtype must be a string; rebuild the bundle")
        nchw = spec.get("compiled_nchw")
        if nchw is not None and (not isinstance(nchw, list) or not all(_is_int(n) and n >= 1 for n in nchw)):
            raise BundleError(f"{where}: {label} ({spec['name']}) compiled_nchw must be positive integers; "
                              "rebuild the bundle")
        if "compiled_name" in spec and not isinstance(spec["compiled_name"], str):
            raise BundleError(f"{where}: {label} ({spec['name']}) compiled_name must be a string; rebuild the bundle")


def check_manifest_fields(directory: Path, manifest: dict) -> dict:
    """Types, ranges and the bundle_id of a manifest (no file is opened); returns `files`."""
    where = directory / "manifest.json"
    version = manifest.get("format_version")
    if not _is_int(version):
        raise BundleError(f"{where}: no integer format_version; rebuild the bundle")
    if version > SUPPORTED_FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version} is newer than this edgetype supports "
                          f"({SUPPORTED_FORMAT_VERSION}); update edgetype")
    if version < SUPPORTED_FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version} has no bundle_id covering the manifest; "
                          "re-run `edgetype export` (or model_export.migrate_bundle for a trusted copy)")
    bundle_id = manifest.get("bundle_id")
    if not isinstance(bundle_id, str) or not _SHA256.match(bundle_id):
        raise BundleError(f"{where}: no bundle_id (sha256 of the manifest); rebuild the bundle")
    try:
        digest = manifest_digest(manifest)
    except (TypeError, ValueError) as error:  # NaN/Infinity, unserialisable values
        raise BundleError(f"{where}: not canonical JSON ({str(error)[:60]}); rebuild the bundle") from None
    if digest != bundle_id:
        raise BundleError(f"{where}: bundle_id does not match the manifest's contents (edited or corrupt); "
                          "copy the bundle again or re-run `edgetype export`")
    _field(where, manifest, "model_id", str)
    _field(where, manifest, "tokenizer_id", str, required=False)
    chip = _field(where, manifest, "chip", str, required=False)
    if chip is not None and chip not in KNOWN_CHIPS:
        raise BundleError(f"{where}: unknown chip {chip[:20]!r} (known: {', '.join(KNOWN_CHIPS)}); "
                          "rebuild the bundle for one of them")
    quant = _field(where, manifest, "quant", str)
    if quant not in KNOWN_QUANTS or (chip is None) != (quant == "f32"):
        raise BundleError(f"{where}: quant {quant[:20]!r} does not fit chip {chip} (bf16/int8 for a chip, "
                          "f32 without); rebuild the bundle")
    window = _field(where, manifest, "window", int)
    if not 1 <= window <= MAX_WINDOW:
        raise BundleError(f"{where}: window must be in [1, {MAX_WINDOW}], got {window}; rebuild the bundle")
    _field(where, manifest, "tpu_mlir_version", str, required=chip is not None)
    for name in ("ion_bytes", "ion_limit_bytes"):
        value = _field(where, manifest, name, int, required=False)
        if value is not None and value < 0:
            raise BundleError(f"{where}: {name} must be >= 0; rebuild the bundle")
    _check_tensor_specs(where, manifest, "inputs")
    _check_tensor_specs(where, manifest, "outputs")
    files = _field(where, manifest, "files", dict)
    if not files:
        raise BundleError(f"{where}: no `files` {{name: sha256}} table; rebuild the bundle")
    for name in BUNDLE_FILES[1:] + (("model.cvimodel",) if chip else ()):
        if name not in files:
            raise BundleError(f"{where}: `files` does not list {name}; rebuild the bundle")
    for name, want in files.items():
        if (not name or "/" in name or os.sep in name or name.startswith(".") or "\0" in name
                or name == "manifest.json"):
            raise BundleError(f"{where}: file name {name[:40]!r} is not a plain file of the bundle; rebuild it")
        if not isinstance(want, str) or not _SHA256.match(want):
            raise BundleError(f"{where}: files[{name!r}] must be a sha256 (64 hex digits); rebuild the bundle")
    return files


def _check_manifest(directory: Path, manifest: dict, config: ModelConfig, verify_hashes: bool) -> None:
    where = directory / "manifest.json"
    files = check_manifest_fields(directory, manifest)
    for name, want in files.items():
        path = bundle_file(directory, name, "listed in manifest.json")
        if verify_hashes and sha256_file(path) != want:
            raise BundleError(f"{path}: sha256 mismatch with manifest.json (corrupt or replaced); "
                              "copy the bundle again or re-run `edgetype export`")
    # config vs manifest
    if manifest["window"] != config.window:
        raise BundleError(f"{where}: window {manifest['window']} but config.json says {config.window}")
    declared = manifest.get("config")
    if isinstance(declared, dict):
        for key, value in declared.items():
            if getattr(config, key, value) != value:
                raise BundleError(f"{where}: config.{key} {str(value)[:20]} but config.json says "
                                  f"{getattr(config, key)}; config and manifest disagree, rebuild the bundle")
    expected = {spec.name: list(spec.shape) for spec in (*decode_step.input_specs(config), *decode_step.output_specs(config))}
    seen = set()
    for section in ("inputs", "outputs"):
        for spec in manifest[section]:
            name = spec["name"]
            seen.add(name)
            if name not in expected:
                raise BundleError(f"{where}: {section[:-1]} {name[:40]!r} is not a decode-step tensor; rebuild the bundle")
            if list(spec["shape"]) != expected[name]:
                raise BundleError(f"{where}: {section[:-1]} {name} has shape {spec['shape']} but config.json "
                                  f"implies {expected[name]}; config and manifest disagree, rebuild the bundle")
    missing = sorted(set(expected) - seen)
    if missing:
        raise BundleError(f"{where}: the decode step's {', '.join(missing[:3])} are not declared; rebuild the bundle")
    if manifest.get("chip") is not None:
        check_cvimodel_against_manifest(directory / "model.cvimodel", manifest, where, verify_hashes)


def load_bundle(directory: str | Path | BundleLocation | None = None, verify_hashes: bool = True) -> Bundle:
    """Open and check a bundle (or a model directory). None: `default_bundle_dir()`.

    The one check function (runtime, verify, firmware overlay): see the module docstring."""
    if directory is None:
        directory = default_bundle_dir()
    if isinstance(directory, BundleLocation):
        directory = directory.path
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: not a directory; pass --bundle with a bundle from models/bundles/")
    if os.path.lexists(directory / "manifest.json"):
        manifest = _read_json(bundle_file(directory, "manifest.json", "bundle manifest"), "bundle manifest")
        check_manifest_fields(directory, manifest)
        config = _load_config(directory, manifest.get("chip"))
        _check_manifest(directory, manifest, config, verify_hashes)
        bundle = Bundle(directory, "bundle", manifest, config)
    else:
        missing = [name for name in MODEL_DIR_FILES if not (directory / name).is_file()]
        if missing:
            raise BundleError(f"{directory}: not a bundle (no manifest.json) nor a model directory (missing "
                              f"{', '.join(missing)}); train a model or pass --bundle")
        config = _load_config(directory, None)
        bundle = Bundle(directory, "model-dir", {"chip": None, "quant": "f32", "window": config.window}, config)
    check_weights_file(bundle_file(directory, "weights.npz", "model weights"), config)
    bundle.tokenizer  # loaded and checked now, not at the first keystroke
    return bundle


def _load_config(directory: Path, chip: str | None) -> ModelConfig:
    path = bundle_file(directory, "config.json", "model config")
    return validate_config(_read_json(path, "model config"), path, chip)


def default_bundle_dir(chip: str | None = None, models_dir: Path | None = None) -> BundleLocation:
    """The shipped bundle: `models/bundles/<name>/` for `chip` (cv181x first, bf16 first), else
    `models/default` as a model directory (numpy/onnx only). Raises BundleError when neither exists."""
    models_dir = Path(models_dir or os.environ.get("EDGETYPE_MODELS") or REPO_MODELS_DIR)
    candidates = []
    bundles_dir = models_dir / "bundles"
    if bundles_dir.is_dir():
        for manifest_path in sorted(bundles_dir.glob("*/manifest.json")):
            try:
                manifest = read_json_capped(manifest_path, "bundle manifest")
            except BundleError:
                continue
            if not isinstance(manifest, dict):
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
