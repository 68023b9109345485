"""Fuzzing every file and number a user hands edgetype (issue 17, item 3), with hypothesis.

Each target feeds generated input to the real reader (bundle: manifest, config, tokenizer,
weights.npz, cvimodel header; replay lines; journal files; text files; CLI numbers). The only
acceptable outcomes are success or a `UserError` whose message is one line naming the file or
option; anything else (a traceback-worthy exception, a hang) is a crash.

Budget: `EDGETYPE_FUZZ_SECONDS` for the whole file (`make test`, i.e. CI, sets 120; default 120 when
`CI` is set, else 12),
shared equally by the targets; each target runs seeded hypothesis batches until its share is
spent (batch i uses seed i: reproducible). A crash writes its input to
tests/data/fuzz_regressions/<target>/<sha256[:16]>.bin and fails naming it: commit that file; every
file there is replayed by `test_fuzz_regression_corpus` on every run.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings, strategies as st

from runtime.errors import UserError

REGRESSIONS = Path(__file__).resolve().parent / "data" / "fuzz_regressions"
BUDGET_S = float(os.environ.get("EDGETYPE_FUZZ_SECONDS") or (120 if os.environ.get("CI") else 12))
TARGETS = ("manifest", "manifest_fields", "config", "tokenizer", "weights", "cvimodel", "replay", "journal",
           "text", "cli_number")
SHARE_S = BUDGET_S / len(TARGETS)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


# -- one working bundle, restored after every example ------------------------------------------------
@pytest.fixture(scope="module")
def bundle_pair(tmp_path_factory):
    from test_bundle import make_tiny_bundle

    pristine = make_tiny_bundle(tmp_path_factory.mktemp("fuzz") / "pristine", chip="cv181x")
    work = pristine.parent / "work"
    shutil.copytree(pristine, work)
    return pristine, work


def _restore(pristine: Path, work: Path) -> None:
    for path in pristine.iterdir():
        target = work / path.name
        if target.is_symlink() or target.exists():
            target.unlink()
        shutil.copyfile(path, target)


def _reseal(work: Path) -> None:
    from runtime.bundle import seal_manifest, sha256_file

    manifest = json.loads((work / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(work / name) for name in manifest["files"]}
    (work / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))


def _load(work: Path) -> None:
    from runtime.bundle import load_bundle

    load_bundle(work)


def _file_json(work: Path, name: str):
    return json.loads((work / name).read_text())


# -- targets: each takes the bytes of one input (the regression corpus stores exactly these) ---------
def target_manifest(data: bytes, ctx) -> str:
    pristine, work = ctx
    _restore(pristine, work)
    (work / "manifest.json").write_bytes(data)
    _load(work)
    return "manifest.json"


def target_manifest_fields(data: bytes, ctx) -> str:
    """JSON object of field changes, applied to the valid manifest and resealed (past bundle_id)."""
    pristine, work = ctx
    _restore(pristine, work)
    from runtime.bundle import seal_manifest

    manifest = _file_json(work, "manifest.json")
    manifest.update(json.loads(data))
    try:
        sealed = seal_manifest(manifest)
    except (TypeError, ValueError):  # NaN or unserialisable: the manifest written as is
        sealed = manifest
    (work / "manifest.json").write_text(json.dumps(sealed))
    _load(work)
    return "manifest.json"


def _structured(ctx, name: str, data: bytes) -> str:
    pristine, work = ctx
    _restore(pristine, work)
    content = _file_json(work, name)
    changes = json.loads(data)
    for key, value in changes.items():
        if value == "<delete>":
            content.pop(key, None)
        else:
            content[key] = value
    (work / name).write_text(json.dumps(content))
    _reseal(work)
    _load(work)
    return name


def target_config(data: bytes, ctx) -> str:
    return _structured(ctx, "config.json", data)


def target_tokenizer(data: bytes, ctx) -> str:
    return _structured(ctx, "tokenizer.json", data)


def _mutated_file(ctx, name: str, data: bytes) -> str:
    """data: JSON {"cut": int|null, "flips": [[pos, xor], ...], "md5": bool} applied to the valid file."""
    pristine, work = ctx
    _restore(pristine, work)
    recipe = json.loads(data)
    raw = bytearray((work / name).read_bytes())
    for pos, xor in recipe.get("flips", []):
        if raw:
            raw[pos % len(raw)] ^= xor & 0xFF
    if recipe.get("cut") is not None:
        raw = raw[: recipe["cut"]]
    if name == "model.cvimodel" and recipe.get("md5") and len(raw) >= 48:
        raw[14:30] = hashlib.md5(bytes(raw[48:])).digest()
    (work / name).write_bytes(bytes(raw))
    _reseal(work)
    _load(work)
    return name


def target_weights(data: bytes, ctx) -> str:
    return _mutated_file(ctx, "weights.npz", data)


def target_cvimodel(data: bytes, ctx) -> str:
    return _mutated_file(ctx, "model.cvimodel", data)


def target_replay(data: bytes, ctx) -> str:
    from keyboard_ui.recording import read_recording

    path = ctx[1].parent / "fuzz.jsonl"
    path.write_bytes(data)
    read_recording(str(path))
    return "fuzz.jsonl"


def target_journal(data: bytes, ctx) -> str:
    from keyboard_ui.journal import Journal, read_journal_text

    path = ctx[1].parent / "fuzz-journal.txt"
    for leftover in path.parent.glob("fuzz-journal.txt*"):
        leftover.unlink()
    path.write_bytes(data)
    text = read_journal_text(str(path))
    Journal(str(path), base_text=text).close()  # a readable journal compacts and reads back the same
    assert read_journal_text(str(path)) == text
    return "fuzz-journal.txt"


def target_text(data: bytes, ctx) -> str:
    from measure.evaluate import read_eval_text

    path = ctx[1].parent / ("fuzz.txt.gz" if data[:1] == b"\x1f" else "fuzz.txt")
    path.write_bytes(data)
    text, _ = read_eval_text(path, max_chars=int.from_bytes(data[-2:] or b"\0", "little") % 500)
    return path.name


def target_cli_number(data: bytes, ctx) -> str:
    """data: JSON [option index, the text typed]."""
    from runtime import argtypes

    index, text = json.loads(data)
    parsers = [argtypes.positive_int, argtypes.nonnegative_int, argtypes.seed_int, argtypes.positive_seconds,
               argtypes.probability, argtypes.int_in(2, argtypes.MAX_WINDOW), argtypes.int_list(2, 4096),
               argtypes.float_in(0.0, 1e6)]
    parse = parsers[index % len(parsers)]
    try:
        value = parse(text)
    except argparse.ArgumentTypeError as error:
        assert "\n" not in str(error) and str(error)
        return "argument"
    values = value if isinstance(value, list) else [value]
    assert values and all(v == v and abs(v) != float("inf") for v in values)  # finite, in range
    return "argument"


STRATEGIES = {
    "manifest": st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                          st.integers(1, 3000).map(lambda n: ("[" * n + "]" * n).encode())),
    "manifest_fields": st.dictionaries(
        st.sampled_from(["format_version", "model_id", "tokenizer_id", "chip", "quant", "window", "inputs",
                         "outputs", "files", "ion_bytes", "tpu_mlir_version", "config", "vocab_order"]),
        JSON_VALUES, min_size=1, max_size=3).map(lambda d: json.dumps(d).encode()),
    "config": st.dictionaries(
        st.sampled_from(["vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "window", "alibi_max_bias"]),
        JSON_VALUES | st.just("<delete>") | st.integers(-5, 5000), min_size=1, max_size=3
    ).map(lambda d: json.dumps(d).encode()),
    "tokenizer": st.dictionaries(
        st.sampled_from(["format", "format_version", "tokens", "casing", "lexicon"]),
        JSON_VALUES | st.just("<delete>"), min_size=1, max_size=2).map(lambda d: json.dumps(d).encode()),
    "weights": st.fixed_dictionaries({"cut": st.none() | st.integers(0, 20000),
                                      "flips": st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)),
                                                        max_size=4)}).map(lambda d: json.dumps(d).encode()),
    "cvimodel": st.fixed_dictionaries({"cut": st.none() | st.integers(0, 3000),
                                       "flips": st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 255)),
                                                         max_size=6),
                                       "md5": st.booleans()}).map(lambda d: json.dumps(d).encode()),
    "replay": st.one_of(st.binary(max_size=200),
                        st.lists(JSON_VALUES.map(json.dumps), max_size=4).map(lambda ls: "\n".join(ls).encode()),
                        st.lists(st.fixed_dictionaries({"sec": JSON_VALUES | st.floats(), "type": JSON_VALUES,
                                                        "code": st.integers(-5, 70000), "value": JSON_VALUES}),
                                 max_size=3).map(lambda ls: "\n".join(json.dumps(x) for x in ls).encode())),
    "journal": st.one_of(
        st.binary(max_size=200),
        st.lists(st.one_of(st.just('{"edgetype_journal": 1}'), JSON_VALUES.map(json.dumps),
                           st.fixed_dictionaries({"keep": JSON_VALUES | st.integers(-3, 30),
                                                  "add": JSON_VALUES | st.text(max_size=10)}).map(json.dumps)),
                 max_size=5).map(lambda ls: ("\n".join(ls) + "\n").encode())),
    "text": st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.binary(max_size=300).map(lambda b: gzip.compress(b)[: max(1, len(b))])),
    "cli_number": st.tuples(st.integers(0, 7), st.one_of(st.text(max_size=12), st.sampled_from(
        ["nan", "inf", "-inf", "1e309", "-1", "0", "16,abc", "", " ", "9" * 5001, "1_000", "0x10", "16,,32"]))
    ).map(lambda t: json.dumps(list(t)).encode()),
}


LAST_FAILING: dict[str, tuple[bytes, str]] = {}  # target -> the last input that crashed (hypothesis
# re-runs its shrunk minimal example last, so this is the one worth keeping)


def check_one(target: str, data: bytes, ctx) -> None:
    """Run one input; anything but success or a one-line UserError naming the input is a crash."""
    function = globals()[f"target_{target}"]
    why = None
    try:
        function(data, ctx)
    except UserError as error:
        message = str(error)
        names_it = any(word in message for word in ("manifest.json", "config.json", "tokenizer.json",
                                                    "weights.npz", "model.cvimodel", "fuzz", "vocab_order",
                                                    "golden.json", "model.onnx"))
        if "\n" in message or not names_it:
            why = f"unclear UserError: {message[:200]!r}"
    except Exception as error:  # noqa: BLE001 - exactly what the fuzzer looks for
        why = f"{type(error).__name__}: {str(error)[:200]}"
    if why is not None:
        LAST_FAILING[target] = (data, why)
        raise AssertionError(f"fuzz crash in {target}: {why}")


def save_regression(target: str) -> str:
    data, why = LAST_FAILING[target]
    folder = REGRESSIONS / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return f"fuzz crash in {target} ({why}); minimal input saved as {path}: commit it, fix the reader"


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_within_its_budget(target, bundle_pair):
    deadline = time.monotonic() + SHARE_S
    batch = 0
    while time.monotonic() < deadline:
        @seed(batch)
        @settings(max_examples=25, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(STRATEGIES[target])
        def run(data):
            check_one(target, data, bundle_pair)

        LAST_FAILING.pop(target, None)
        try:
            run()
        except AssertionError:
            pytest.fail(save_regression(target), pytrace=False)
        batch += 1
    assert batch >= 1


def _corpus():
    return sorted(p for p in REGRESSIONS.glob("*/*.bin")) if REGRESSIONS.is_dir() else []


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzz_regression_corpus(path, bundle_pair):
    """Every crash the fuzzer ever found, replayed: each must now be a clear error or succeed."""
    check_one(path.parent.name, path.read_bytes(), bundle_pair)


def test_the_regression_corpus_is_not_empty():
    """The corpus holds the crashes found while this was written (kept on purpose)."""
    assert _corpus(), "tests/data/fuzz_regressions/ lost its cases"
