"""board_tests/onboard on the host: it skips off the board, and its pieces are right.

The last test runs the whole on-board suite on the simulated board with the real bundle and the
cmodel backend; it needs models/bundles/cv181x-*-w128 (with golden.json), tpu_driver's cmodel
backend, runtime.bundle and runtime.engine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from board_tests.onboard import boardenv
from tpu_driver import decode_step
from tpu_driver.feeder import InOrderFeeder
from board_tests.onboard.golden import compare_logits, compare_suggestions
from board_tests.onboard.test_ion import ion_used_bytes
from board_tests.onboard.test_keyboard import keyboards, parse_input_devices
from tpu_driver import reference_model as ref

REPO = Path(__file__).resolve().parent.parent

PROC_INPUT_DEVICES = """I: Bus=0019 Vendor=0000 Product=0001 Version=0000
N: Name="Power Button"
H: Handlers=kbd event0
B: EV=3
B: KEY=10000000000000 0

I: Bus=0003 Vendor=046d Product=c077 Version=0111
N: Name="Logitech USB Optical Mouse"
H: Handlers=mouse0 event1
B: EV=17
B: KEY=ff0000 0 0 0 0
B: REL=903

I: Bus=0003 Vendor=04d9 Product=0006 Version=0110
N: Name="USB Keyboard"
H: Handlers=sysrq kbd leds event2
B: EV=120013
B: KEY=1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe
B: MSC=10
B: LED=7
"""


def test_runner_off_the_board_skips_every_test_with_the_reason():
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGETYPE_")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "board_tests.onboard.runner"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    if boardenv.board_kind() is not None:
        pytest.skip("this host looks like a board (cvitek device tree or /dev/cvi-tpu0)")
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines()
               if line.startswith("ET-RESULT ")]
    assert len(records) >= 8
    assert all(r["outcome"] == "skipped" and "not on a board" in r["message"] for r in records)
    summary = json.loads(result.stdout.strip().splitlines()[-1].split(" ", 1)[1])
    assert summary["skipped"] == len(records) and summary["passed"] == 0


def test_keyboard_is_found_by_capability_not_by_name():
    found = keyboards(parse_input_devices(PROC_INPUT_DEVICES))
    assert [d["name"] for d in found] == ["USB Keyboard"]
    assert "event2" in found[0]["handlers"]
    assert keyboards(parse_input_devices(PROC_INPUT_DEVICES.split("\n\nI: Bus=0003 Vendor=04d9")[0])) == []


def test_ion_summary_parsing():
    board_text = ("carveout heap size:78643200 bytes, used:41254912 bytes usage rate:53%,\n"
                  "memory usage peak 52301824 bytes\n")
    assert ion_used_bytes(board_text) == 41254912
    assert ion_used_bytes("[0] carveout heap size:105MB, used:87MB\n") == 87 << 20
    with pytest.raises(AssertionError, match="cannot read ION usage"):
        ion_used_bytes("nothing here")


GOLDEN = {"format_version": 1, "backend": "onnx (onnxruntime, float32)", "window": "append-only",
          "bos": True,
          "steps": [{"token": 2, "top5_ids": [3, 4, 5, 6, 7], "top5_logits": [5, 4, 3, 2, 1]},
                    {"token": 9, "top5_ids": [7, 6, 5, 4, 3], "top5_logits": [9, 8, 7, 6, 5]}],
          "suggestions": [{"context": "I am", "prefix": "g", "context_ids": [2, 11, 12],
                           "top3_ids": [40, 41, 42], "suggestions": ["going", "good", "gone"]}],
          "note": "test"}


def test_golden_reader_reads_model_exports_format_and_says_what_is_missing(tmp_path):
    (tmp_path / "golden.json").write_text(json.dumps(GOLDEN))
    read = boardenv.read_golden(str(tmp_path))
    assert read["tokens"] == [2, 9] and read["top_ids"][1][0] == 7 and read["top_logits"][0][0] == 5.0
    assert read["cases"] == GOLDEN["suggestions"]
    broken = json.loads(json.dumps(GOLDEN))
    del broken["suggestions"][0]["context_ids"]
    (tmp_path / "golden.json").write_text(json.dumps(broken))
    with pytest.raises(AssertionError, match=r"suggestions\[0\]: no 'context_ids'"):
        boardenv.read_golden(str(tmp_path))
    old_layout = {"tokens": [2, 9], "steps": GOLDEN["steps"], "context": "I am",
                  "suggestions": ["going", "good", "gone"]}  # the layout this suite once guessed
    (tmp_path / "golden.json").write_text(json.dumps(old_layout))
    with pytest.raises(AssertionError, match="no 'format_version'"):
        boardenv.read_golden(str(tmp_path))
    (tmp_path / "golden.json").write_text(json.dumps(dict(GOLDEN, format_version=2)))
    with pytest.raises(AssertionError, match="format_version 2"):
        boardenv.read_golden(str(tmp_path))


def test_shipped_golden_files_read():
    bundles = sorted((REPO / "models" / "bundles").glob("cv18*-w128"))
    assert bundles, "no models/bundles/cv18*-w128: build the bundles first (model_export)"
    for bundle in bundles:
        read = boardenv.read_golden(str(bundle))
        assert len(read["tokens"]) == len(read["top_ids"]) >= 8 and read["cases"]


def test_suggestion_tolerance_exact_for_fp32_loose_for_quantised():
    case = GOLDEN["suggestions"][0]
    ids, words, context = [40, 41, 42], ["going", "good", "gone"], [2, 11, 12]
    for backend, quant in (("numpy", "bf16"), ("cmodel", "bf16"), ("tpu", "int8")):
        assert compare_suggestions(case, context, ids, words, quant, backend) == []
        assert compare_suggestions(case, [2, 11], ids, words, quant, backend)  # other tokens
    swapped = ([41, 40, 42], ["good", "going", "gone"])
    assert compare_suggestions(case, context, *swapped, "bf16", "numpy")  # fp32: exact order
    assert compare_suggestions(case, context, *swapped, "bf16", "cmodel") == []
    third_differs = ([40, 41, 77], ["going", "good", "got"])
    assert compare_suggestions(case, context, *third_differs, "int8", "tpu") == []
    assert compare_suggestions(case, context, *third_differs, "int8", "numpy")
    top1_outside = ([77, 40, 41], ["got", "going", "good"])
    assert any("not in golden's top-3" in p
               for p in compare_suggestions(case, context, *top1_outside, "bf16", "cmodel"))
    one_shared = ([40, 77, 78], ["going", "got", "gold"])
    assert compare_suggestions(case, context, *one_shared, "int8", "cmodel")
    with pytest.raises(AssertionError, match="no golden tolerance"):
        compare_suggestions(case, context, *one_shared, "int4", "cmodel")


class _TensorIO:
    def __init__(self, array):
        self.array = array

    def write(self, values, index=None):
        if index is None:
            self.array[...] = values
        else:
            self.array[index] = values

    def read(self):
        return self.array


class ReferenceBackendDouble:
    """The backend interface (docs/design.md) over tpu_driver/reference_model.decode_step: a test
    double for tpu_driver's backends so the decoder's slot bookkeeping is checked on its own."""

    name = "numpy"

    def __init__(self, weights, cfg):
        self.weights, self.cfg = weights, cfg
        self.inputs, self.outputs = decode_step.io_specs(cfg)
        self._in = {n: _TensorIO(np.zeros(spec.shape, np.float32)) for n, spec in self.inputs.items()}
        self._out = {}

    def input(self, name):
        return self._in[name]

    def output(self, name):
        return _TensorIO(self._out[name])

    def run(self):
        L = self.cfg.n_layers
        logits, k_new, v_new = ref.decode_step(
            self.weights, self.cfg, self._in["x"].array, self._in["mask"].array,
            self._in["dist"].array, [self._in[f"k_cache_{l}"].array for l in range(L)],
            [self._in[f"v_cache_{l}"].array for l in range(L)])
        self._out = {"logits": logits}
        for l in range(L):
            self._out[f"k_new_{l}"], self._out[f"v_new_{l}"] = k_new[l], v_new[l]


def test_sequential_decoder_matches_full_attention_oracle():
    cfg = ref.ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=64, window=16)
    weights = ref.init_weights(cfg, seed=3)
    rng = np.random.default_rng(5)
    for name in weights:  # larger weights than init's so a slot mistake changes the logits
        weights[name] = weights[name] + rng.standard_normal(weights[name].shape).astype(np.float32) * 0.3
    tokens = [5, 17, 3, 60, 22, 9, 41, 1, 8]
    backend = ReferenceBackendDouble(weights, cfg)
    decoder = InOrderFeeder(backend, weights["embedding"])
    decoder.reset()
    stepped = np.stack([decoder.step(t).copy() for t in tokens])
    full = ref.forward_sequence(weights, cfg, tokens)
    np.testing.assert_allclose(stepped, full, rtol=1e-4, atol=1e-4)

    # the golden comparison accepts these logits and rejects a perturbed copy
    top = np.argsort(-full, axis=1)[:, :5]
    golden = {"top_ids": top.tolist(),
              "top_logits": [full[i, top[i]].tolist() for i in range(len(tokens))]}
    for backend in ("numpy", "cmodel"):
        assert compare_logits(list(stepped), golden, "bf16", backend) == []
    broken = [row.copy() for row in stepped]
    broken[4][top[4, 0]] -= 5.0
    problems = compare_logits(broken, golden, "bf16", "cmodel")
    assert problems and problems[0].startswith("step 4")
    # fp32 backends: a 0.01 error (inside bf16's tolerance) fails; so does a swapped top-5
    nudged = [row + 0.01 * (np.arange(row.size) % 2) for row in stepped]
    assert compare_logits(nudged, golden, "bf16", "cmodel") == []
    assert compare_logits(nudged, golden, "bf16", "numpy")
    outsider = [row.copy() for row in stepped]
    sixth = int(np.argsort(-full[2])[5])
    outsider[2][sixth] = full[2, top[2, 4]] + 0.5
    assert any("top-5 ids differ" in p for p in compare_logits(outsider, golden, "bf16", "numpy"))


def test_quantised_logit_tolerance_aggregates():
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal(50).astype(np.float32) * 3 for _ in range(20)]
    top = [np.argsort(-r, kind="stable")[:5] for r in rows]
    golden = {"top_ids": [t.tolist() for t in top],
              "top_logits": [r[t].tolist() for r, t in zip(rows, top)]}
    assert compare_logits(rows, golden, "int8", "tpu") == []
    # argmax outside golden's top-5 on 3 of 20 steps (85 % < 90 %), logits at the ids unchanged
    moved = [r.copy() for r in rows]
    for i in range(3):
        outside = int(np.argsort(-rows[i])[10])
        moved[i][outside] = rows[i].max() + 1.0
    assert any("argmax in golden's top-5 on 17/20" in p
               for p in compare_logits(moved, golden, "int8", "tpu"))
    # the order inside the top-5 reversed: the centred cosine goes negative
    flat = [r.copy() for r in rows]
    for r, t in zip(flat, top):
        values = r[t]
        r[t] = values.mean() - 0.2 * (values - values.mean())
    problems = compare_logits(flat, golden, "int8", "tpu")
    assert any("cosine" in p for p in problems), problems
    assert compare_logits(rows[:3], golden, "int8", "tpu")  # step count must match


def test_onboard_suite_runs_on_the_simulated_board_with_a_tiny_numpy_bundle(tmp_path, capsys):
    """The real on-board suite, end to end through the harness, on a bundle made here (numpy
    backend: no toolchain needed). Proves the suite's plumbing; the cmodel run below proves the
    compiled model."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_board_riscv64 import make_bundle_with_golden

    from runtime import cli

    bundle = make_bundle_with_golden(tmp_path / "bundle")
    code = cli.main(["board", "test", "--port", "sim://", "--bundle", str(bundle),
                     "--backend", "numpy", "--json"])
    report = json.loads(capsys.readouterr().out)
    outcomes = {r["nodeid"]: r["outcome"] for r in report["results"]}
    assert code == 0, report
    assert outcomes["test_driver.py::test_tpu_forward_matches_golden_logits"] == "passed"
    assert outcomes["test_engine.py::test_engine_gives_golden_suggestions"] == "passed"
    assert outcomes["test_keyboard.py::test_a_keyboard_is_attached"] == "passed"
    assert outcomes["test_ion.py::test_no_ion_leak_after_repeated_model_loads"] == "skipped"
    assert all("not a board number" in m["note"] for m in report["measures"])
    # what ran is the overlay the simulated board has installed, on the image's python3
    tree = report["tree"]
    assert tree["kind"] == "overlay" and report["upload"] is None
    assert tree["lib"] == tree["installed"]["lib"] and tree["lib"].endswith("/opt/edgetype/lib")
    assert tree["overlay"]["image"] == tree["installed"]["image"] == "debian"
    assert report["info"]["pytest"] is False  # the image's python has no pytest: nothing else


def make_compiled_tiny_bundle(directory: Path) -> Path:
    """A tiny cv181x BF16 bundle made here: tests/test_bundle.py's tiny model (weights at init
    scale), its ONNX decode step (model_export.onnx_graph) compiled by tpu-mlir (cached under
    ~/.cache/edgetype/compiled: ~10 s the first time), golden.json written by model_export's
    golden_data over onnxruntime, as model_export's bundles have."""
    import onnx

    sys.path.insert(0, str(REPO / "tests"))
    from test_bundle import make_tiny_model_dir

    from model_export.compile_cache import compile_onnx
    from model_export.export import OnnxStepper, golden_data
    from model_export.model import ModelShape
    from model_export.onnx_graph import build_decode_step, input_specs, output_specs
    from runtime.bundle import seal_manifest, sha256_file
    from runtime.tokenizer import Tokenizer

    make_tiny_model_dir(directory, window=32)
    with np.load(directory / "weights.npz") as archive:  # undo its x30 (peaky, bf16-hostile)
        weights = {k: archive[k] / 30 if archive[k].ndim == 2 else archive[k] for k in archive.files}
    np.savez(directory / "weights.npz", **weights)
    cfg = ref.ModelConfig.load(directory / "config.json")
    shape = ModelShape(vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                       n_heads=cfg.n_heads, d_ff=cfg.d_ff, window=cfg.window)
    model = build_decode_step(weights, shape, cfg.window)
    onnx.save(model, directory / "model.onnx")
    compiled = compile_onnx(model, chip="cv181x", quant="BF16", name="tiny_board_test")
    (directory / "model.cvimodel").write_bytes(Path(compiled.cvimodel_path).read_bytes())

    W = cfg.window
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir())}
    manifest = {
        "format_version": 1, "model_id": "tiny-board-test", "chip": "cv181x", "quant": "bf16",
        "tokenizer_id": Tokenizer.load(directory / "tokenizer.json").tokenizer_id, "window": W,
        "inputs": [{"name": n, "shape": sh, "dtype": "float32"} for n, sh in input_specs(shape, W)],
        "outputs": [{"name": n, "shape": sh, "dtype": "float32"} for n, sh in output_specs(shape)],
        "tpu_mlir_version": compiled.tpu_mlir_version, "files": files,
        "ion_bytes": compiled.ion_bytes or 0}
    (directory / "manifest.json").write_text(json.dumps(seal_manifest(manifest), indent=1))
    stepper = OnnxStepper(model.SerializeToString(), cfg, weights, W)
    golden = golden_data(stepper, Tokenizer.load(directory / "tokenizer.json"),
                         [2, 5, 9, 3, 12, 7, 20, 33, 2, 8, 14, 6, 11])
    (directory / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    return directory


@pytest.mark.sim
def test_onboard_suite_with_the_cmodel_on_a_tiny_compiled_bundle(tmp_path, capsys):
    """The whole on-board suite with backend cmodel on the simulated board, on a bundle compiled
    here: needs the tpu-mlir toolchain (`edgetype toolchain install`), not model_export's bundles."""
    from runtime import cli

    bundle = make_compiled_tiny_bundle(tmp_path / "bundle")
    code = cli.main(["board", "test", "--port", "sim://", "--bundle", str(bundle), "--json"])
    report = json.loads(capsys.readouterr().out)
    failures = [(r["nodeid"], r["message"]) for r in report["results"]
                if r["outcome"] in ("failed", "error")]
    assert report["info"]["backend"] == "cmodel"
    assert code == 0 and not failures, failures or report["board_error"]


def _sim_bundle() -> Path:
    bundles = sorted((REPO / "models" / "bundles").glob("cv181x-*-w128"))
    assert bundles and (bundles[0] / "golden.json").is_file(), (
        "no models/bundles/cv181x-*-w128 with golden.json: build the bundles first "
        "(model_export), this test runs the on-board suite on them")
    return bundles[0]


@pytest.mark.sim
@pytest.mark.slow
def test_onboard_suite_passes_on_the_simulated_board_with_the_cmodel(capsys):
    from runtime import cli

    bundle = _sim_bundle()
    code = cli.main(["board", "test", "--port", "sim://", "--bundle", str(bundle), "--json",
                     "--timeout", "1200"])
    report = json.loads(capsys.readouterr().out)
    failures = [r for r in report["results"] if r["outcome"] in ("failed", "error")]
    assert code == 0 and not failures, failures or report["board_error"]
    assert report["info"]["backend"] == "cmodel"
    skipped = {r["nodeid"] for r in report["results"] if r["outcome"] == "skipped"}
    # only what a simulated board cannot have may skip: the TPU device node and ION debugfs
    assert skipped <= {"test_driver.py::test_tpu_device_and_module_present",
                       "test_ion.py::test_no_ion_leak_after_repeated_model_loads"}
    assert {m["name"] for m in report["measures"]} >= {"decode_step_ms_p50", "keystroke_ms_p50"}
