"""The engine on the shipped bundle reproduces the bundle's golden suggestions (golden.json, made
by model_export with onnxruntime fp32 and an append-only window) on the fp32 backends."""
import json

import pytest

from runtime.bundle import default_bundle_dir, load_bundle
from runtime.engine import open_session


@pytest.fixture(scope="module")
def shipped():
    location = default_bundle_dir()  # raises (fails) when no bundle is shipped: a prerequisite
    bundle = load_bundle(location)
    assert bundle.has("golden.json"), f"{bundle.dir}: no golden.json"
    return bundle, json.loads(bundle.path("golden.json").read_text())


@pytest.mark.parametrize("backend", ["onnx", "numpy"])
def test_golden_suggestions(shipped, backend):
    bundle, golden = shipped
    if backend == "onnx" and bundle.onnx_path is None:
        pytest.fail(f"{bundle.dir}: no model.onnx")
    session = open_session(bundle, backend=backend, recent_weight=0.0,
                           recent_bigram_weight=0.0)  # golden.json is the model alone: no session cache
    try:
        assert golden["suggestions"], "golden.json has no suggestion cases"
        for case in golden["suggestions"]:
            session.reset()
            session.insert(case["context"] + " " + case["prefix"])  # the context's last word is complete
            assert session.context_tokens == case["context_ids"]
            got = session.suggestions(3)
            assert [s.token_id for s in got] == case["top3_ids"], case
            assert [s.word.lower() for s in got] == case["suggestions"]
    finally:
        session.close()
