"""KVWindow (kv_window/window.py) against its plain twin ReferenceWindow (kv_window/reference.py)
and against full attention (tpu_driver/reference_model.forward_sequence)."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv_window import KVWindow, RollbackTooDeep
from kv_window.policies import POLICIES
from kv_window.reference import ArrayBackend, ReferenceWindow
from runtime.errors import UserError
from tpu_driver.reference_model import MASK_EMPTY, ModelConfig, embed, forward_sequence, init_weights

TINY = ModelConfig(vocab_size=37, d_model=16, n_layers=2, n_heads=2, d_ff=32, window=20)
TINY_WEIGHTS = init_weights(TINY, seed=5)
TINY_WEIGHTS["embedding"] *= 30.0  # peaky attention, so that pruning changes the logits
OPTS = dict(evict_batch=4, sink_tokens=2, max_rollback=12, store_tokens=48)
# fifo runs with its own defaults (1 sink, batches of 1): the engine's window, exactly as it runs there
POLICY_OPTS = {"fifo": dict(max_rollback=12)}


def make_pair(policy, positions=None, cfg=TINY, weights=TINY_WEIGHTS, **opts):
    opts = {**POLICY_OPTS.get(policy, OPTS), **opts}
    backend = ArrayBackend(weights, cfg)
    window = KVWindow(backend, cfg, policy=policy, positions=positions, weights=weights, **opts)
    twin = ReferenceWindow(weights, cfg, policy=policy, positions=positions, **opts)
    return backend, window, twin


def step(backend, window, weights, token):
    backend.input("x").write(embed(weights, token))
    window.prepare_step()
    live = window.slot_token >= 0  # what the backend sees must be the window's state, in place
    np.testing.assert_array_equal(backend.input("mask").read()[0, 0, 0], np.where(live, 0.0, MASK_EMPTY))
    expected_dist = np.where(live, window.query_position() - window.slot_pos, 0.0)
    np.testing.assert_array_equal(backend.input("dist").read()[0, 0, 0], expected_dist)
    backend.run()
    window.commit_step()
    return backend.output("logits").read()[0].copy()


def check_consistent(backend, window, twin):
    """mask, dist, slot contents and kept tokens of the fast window agree with the twin."""
    W = window.slots
    mask = window.mask.reshape(W)  # the backend gets it at the next prepare_step (checked in step())
    live = window.slot_token >= 0
    assert window.occupied == live.sum()
    assert window.n_tokens == twin.n_tokens
    np.testing.assert_array_equal(mask, np.where(live, 0.0, MASK_EMPTY))
    assert list(window.kept_tokens()) == twin.kept_tokens()
    positions = twin.key_positions()
    slots = np.flatnonzero(live)
    tokens = [int(t) for t in window.slot_token[slots]]
    np.testing.assert_array_equal(window.slot_pos[slots], [positions[t] for t in tokens])
    for l in range(window.cfg.n_layers):
        # the twin computed these K/V itself (compact context): equal up to float rounding
        k_twin = np.stack([twin.kv[t][0][l] for t in tokens], axis=-1) if tokens else np.zeros((0,))
        v_twin = np.stack([twin.kv[t][1][l] for t in tokens], axis=1) if tokens else np.zeros((0,))
        np.testing.assert_allclose(backend.input(f"k_cache_{l}").read()[0][:, :, slots].reshape(k_twin.shape), k_twin, atol=1e-5)
        np.testing.assert_allclose(backend.input(f"v_cache_{l}").read()[0][:, slots, :].reshape(v_twin.shape), v_twin, atol=1e-5)
    assert window.query_position() == twin.query_position()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("positions", ["cache", "original"])
def test_no_eviction_equals_full_context(policy, positions):
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, window=40)
    weights = init_weights(cfg, seed=1)
    tokens = np.random.default_rng(2).integers(0, cfg.vocab_size, size=30)
    backend = ArrayBackend(weights, cfg)
    window = KVWindow(backend, cfg, policy=policy, positions=positions, weights=weights, evict_batch=4)
    rows = np.stack([step(backend, window, weights, int(t)) for t in tokens])
    full = forward_sequence(weights, cfg, tokens)
    np.testing.assert_allclose(rows, full, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(rows.argmax(-1), full.argmax(-1))
    assert window.occupied == 30 and window.n_tokens == 30


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("positions", ["cache", "original"])
def test_fast_window_equals_twin_with_evictions_and_rollbacks(policy, positions):
    backend, window, twin = make_pair(policy, positions)
    rng = np.random.default_rng(7)
    evictions = 0
    for i in range(160):
        token = int(rng.integers(0, TINY.vocab_size))
        before = window.occupied
        fast = step(backend, window, TINY_WEIGHTS, token)
        evictions += window.occupied <= before
        np.testing.assert_allclose(fast, twin.step(token), rtol=1e-4, atol=1e-4)
        if i % 11 == 10:
            n = int(rng.integers(1, 8))
            window.rollback(n)
            twin.rollback(n)
        check_consistent(backend, window, twin)
    assert evictions >= 10, "the test must exercise evictions"


def test_window_changes_logits_once_it_prunes():
    """Guard against a test that cannot fail: pruning must make a difference with these weights."""
    backend, window, _ = make_pair("sliding")
    tokens = np.random.default_rng(3).integers(0, TINY.vocab_size, size=60)
    rows = np.stack([step(backend, window, TINY_WEIGHTS, int(t)) for t in tokens])
    full = forward_sequence(TINY_WEIGHTS, TINY, tokens)
    np.testing.assert_allclose(rows[:TINY.window], full[:TINY.window], rtol=1e-4, atol=1e-4)
    assert np.abs(rows[TINY.window + 5:] - full[TINY.window + 5:]).max() > 1e-3


@pytest.mark.parametrize("policy", POLICIES)
def test_rollback_across_eviction_restores_the_window_exactly(policy):
    backend, window, twin = make_pair(policy)
    rng = np.random.default_rng(11)
    for token in rng.integers(0, TINY.vocab_size, size=TINY.window):  # full: the next steps evict
        step(backend, window, TINY_WEIGHTS, int(token))
    snapshot = {name: backend.input(name).read().copy() for name in ("k_cache_0", "v_cache_1")}
    snapshot["mask"] = window.mask.copy()
    kept, positions = window.kept_tokens().copy(), window.slot_pos.copy()
    live = window.slot_token >= 0
    for token in rng.integers(0, TINY.vocab_size, size=9):
        step(backend, window, TINY_WEIGHTS, int(token))
    assert not np.array_equal(window.kept_tokens(), kept)
    window.rollback(9)
    np.testing.assert_array_equal(window.kept_tokens(), kept)
    np.testing.assert_array_equal(window.slot_pos[live], positions[live])
    np.testing.assert_array_equal(window.mask, snapshot["mask"])
    np.testing.assert_array_equal(backend.input("mask").read(), snapshot["mask"])  # rollback wrote it
    np.testing.assert_array_equal(backend.input("k_cache_0").read()[..., live], snapshot["k_cache_0"][..., live])
    np.testing.assert_array_equal(backend.input("v_cache_1").read()[:, :, live], snapshot["v_cache_1"][:, :, live])


class CountingIO:
    """Wraps a TensorIO and counts the elements written through it."""

    def __init__(self, inner, counter):
        self.inner, self.counter, self.shape = inner, counter, inner.shape

    def write(self, values, index=None):
        self.counter[0] += np.asarray(values).size
        self.inner.write(values, index)

    def read(self, index=None):
        return self.inner.read(index)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_step_writes_at_most_one_batch_of_slots(policy):
    """No eviction spike by construction: a step writes mask + dist + at most B slots per tensor."""
    cfg = TINY
    backend = ArrayBackend(TINY_WEIGHTS, cfg)
    counter = [0]
    wrapped = {name: CountingIO(io, counter) for name, io in backend._in.items()}
    backend.input = lambda name: wrapped[name]
    window = KVWindow(backend, cfg, policy=policy, weights=TINY_WEIGHTS, **POLICY_OPTS.get(policy, OPTS))
    slot = cfg.n_heads * cfg.head_dim  # elements of one slot of one K or V tensor
    per_step = []
    for token in np.random.default_rng(0).integers(0, cfg.vocab_size, size=200):
        counter[0] = 0
        step(backend, window, TINY_WEIGHTS, int(token))
        per_step.append(counter[0] - cfg.d_model)  # minus the x write
    budget = 2 * cfg.window + 2 * cfg.n_layers * slot * (1 + (OPTS["evict_batch"] if policy == "pages" else 0))
    assert max(per_step) <= budget
    assert max(per_step) < 2 * cfg.n_layers * slot * cfg.window  # never a whole-window copy


EVENTS = st.lists(st.one_of(
    st.tuples(st.just("insert"), st.integers(0, TINY.vocab_size - 1)),
    st.tuples(st.just("accept"), st.lists(st.integers(0, TINY.vocab_size - 1), min_size=1, max_size=3)),
    st.tuples(st.just("backspace"), st.integers(1, 5)),
    st.tuples(st.just("reset"), st.integers(0, 9)),  # a reset only when 0: rare
), min_size=150, max_size=250)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=12, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=EVENTS)
def test_random_edit_sessions_stay_consistent(policy, events):
    """Thousands of insert/accept/backspace events per policy: fast window == twin after each."""
    backend, window, twin = make_pair(policy, max_rollback=8)
    for kind, value in events:
        if kind == "insert":
            np.testing.assert_allclose(step(backend, window, TINY_WEIGHTS, value), twin.step(value), rtol=1e-4, atol=1e-4)
        elif kind == "accept":  # an accepted suggestion: a word token, maybe punctuation after it
            for token in value:
                np.testing.assert_allclose(step(backend, window, TINY_WEIGHTS, token), twin.step(token), rtol=1e-4, atol=1e-4)
        elif kind == "backspace":
            n = min(value, window.rollback_depth)
            window.rollback(n)
            twin.rollback(n)
        elif value == 0:
            window.reset()
            twin.reset()
        check_consistent(backend, window, twin)


def test_prepare_twice_and_rollback_of_a_prepared_step():
    backend, window, twin = make_pair("pages")
    for token in np.random.default_rng(4).integers(0, TINY.vocab_size, size=50):
        backend.input("x").write(embed(TINY_WEIGHTS, int(token)))
        window.prepare_step()
        window.prepare_step()  # e.g. the engine re-prepared: must not double-apply page swaps
        backend.run()
        window.commit_step()
        np.testing.assert_allclose(backend.output("logits").read()[0], twin.step(int(token)), rtol=1e-4, atol=1e-4)
    backend.input("x").write(embed(TINY_WEIGHTS, 3))
    window.prepare_step()
    window.rollback(2)  # drops the prepared step too
    twin.rollback(2)
    check_consistent(backend, window, twin)


def test_constant_memory_over_a_long_session():
    cfg = ModelConfig(vocab_size=37, d_model=16, n_layers=1, n_heads=2, d_ff=32, window=32)
    weights = init_weights(cfg, seed=2)
    backend = ArrayBackend(weights, cfg)
    window = KVWindow(backend, cfg, policy="pages", weights=weights, evict_batch=4, store_tokens=64)
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, size=1200)
    tracemalloc.start()
    try:
        for i, token in enumerate(tokens):
            step(backend, window, weights, int(token))
            if i == 300:
                early = tracemalloc.get_traced_memory()[0]
        late = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert late - early < 64 * 1024, f"memory grew by {late - early} bytes over 900 steps"
    assert window.occupied <= 32 and window.rollback_depth == window.max_rollback


def test_errors_name_what_to_do():
    backend = ArrayBackend(TINY_WEIGHTS, TINY)
    with pytest.raises(UserError, match="policy 'lru'; choose one of " + ", ".join(POLICIES)):
        KVWindow(backend, TINY, policy="lru")
    with pytest.raises(UserError, match="choose one of"):
        ReferenceWindow(TINY_WEIGHTS, TINY, policy="append-only")  # the engine's old name is gone
    with pytest.raises(UserError, match="compiled slots"):
        KVWindow(backend, TINY, window=TINY.window + 1)
    bare = ArrayBackend(TINY_WEIGHTS, TINY)
    bare.weights = None  # a compiled backend has no weights: heavy/pages must be given them
    with pytest.raises(UserError, match="weights"):
        KVWindow(bare, TINY, policy="heavy", evict_batch=4)
    with pytest.raises(UserError, match="too small"):
        KVWindow(backend, TINY, policy="pages", evict_batch=8)
    window = KVWindow(backend, TINY, policy="sink", evict_batch=4, max_rollback=3)
    for token in range(5):
        step(backend, window, TINY_WEIGHTS, token)
    with pytest.raises(RollbackTooDeep):
        window.rollback(4)
    with pytest.raises(RuntimeError):
        window.commit_step()


def test_smaller_window_than_compiled_slots_leaves_the_rest_masked():
    backend = ArrayBackend(TINY_WEIGHTS, TINY)
    window = KVWindow(backend, TINY, policy="sink", window=12, evict_batch=4, sink_tokens=2)
    twin = ReferenceWindow(TINY_WEIGHTS, TINY, policy="sink", window=12, evict_batch=4, sink_tokens=2)
    for token in np.random.default_rng(9).integers(0, TINY.vocab_size, size=40):
        np.testing.assert_allclose(step(backend, window, TINY_WEIGHTS, int(token)), twin.step(int(token)), rtol=1e-4, atol=1e-4)
    assert (backend.input("mask").read()[0, 0, 0, 12:] == MASK_EMPTY).all()
    assert window.occupied <= 12


def test_numpy_backend_of_tpu_driver_with_the_window():
    """The engine's numpy backend (tpu_driver/backends/numpy_ref.py) driven by the window."""
    from tpu_driver.backends.numpy_ref import NumpyBackend

    backend = NumpyBackend(TINY, TINY_WEIGHTS)
    window = KVWindow(backend, TINY, policy="sink", evict_batch=4, sink_tokens=2)
    twin = ReferenceWindow(TINY_WEIGHTS, TINY, policy="sink", evict_batch=4, sink_tokens=2)
    for token in np.random.default_rng(6).integers(0, TINY.vocab_size, size=60):
        np.testing.assert_allclose(step(backend, window, TINY_WEIGHTS, int(token)), twin.step(int(token)), rtol=1e-3, atol=1e-3)


def test_window_on_the_onnx_backend(tmp_path):
    """The exported ONNX decode step (model_export/onnx_graph.py) on onnxruntime, driven by the window."""
    import onnx

    from model_export.model import ModelShape
    from model_export.onnx_graph import build_decode_step
    from tpu_driver.backends import open_backend

    shape = ModelShape(vocab_size=TINY.vocab_size, d_model=TINY.d_model, n_layers=TINY.n_layers,
                       n_heads=TINY.n_heads, d_ff=TINY.d_ff, window=TINY.window)
    # raw logits (log_probs=False), as the twin computes them; the shipped graph ends in LogSoftmax
    onnx.save(build_decode_step(TINY_WEIGHTS, shape, TINY.window, log_probs=False), str(tmp_path / "model.onnx"))
    backend = open_backend("onnx", tmp_path / "model.onnx")
    for policy in ("sink", "pages"):
        window = KVWindow(backend, TINY, policy=policy, weights=TINY_WEIGHTS, **OPTS)
        twin = ReferenceWindow(TINY_WEIGHTS, TINY, policy=policy, **OPTS)
        for i, token in enumerate(np.random.default_rng(8).integers(0, TINY.vocab_size, size=60)):
            np.testing.assert_allclose(step(backend, window, TINY_WEIGHTS, int(token)), twin.step(int(token)),
                                       rtol=1e-3, atol=1e-3)
            if i % 13 == 12:
                window.rollback(3)
                twin.rollback(3)
        assert window.n_tokens == twin.n_tokens and list(window.kept_tokens()) == twin.kept_tokens()
    backend.close()


def test_fifo_keeps_bos_and_evicts_the_oldest_token_one_at_a_time():
    """`fifo` (the engine's minimal window): slot 0 keeps token 0 forever, the other W-1 slots hold the
    most recent tokens, one eviction per step once full, key positions = token indices."""
    backend, window, twin = make_pair("fifo")
    assert (window.layout.sinks, window.layout.batch, window.positions) == (1, 1, "original")
    W = TINY.window
    for t, token in enumerate(np.random.default_rng(12).integers(0, TINY.vocab_size, size=3 * W)):
        changes = window.slot_changes
        np.testing.assert_allclose(step(backend, window, TINY_WEIGHTS, int(token)), twin.step(int(token)),
                                   rtol=1e-4, atol=1e-4)
        assert window.slot_changes - changes == (1 if t >= W else 0)  # evicts from the (W+1)-th token on
        expected = [0] + list(range(max(1, t + 1 - (W - 1)), t + 1))
        assert list(window.kept_tokens()) == expected == twin.kept_tokens()
        assert window.slot_token[0] == 0 and window.query_position() == t + 1
    window.rollback(5)  # back across five evictions: the evicted tokens come back
    assert list(window.kept_tokens()) == [0] + list(range(3 * W - 5 - (W - 1), 3 * W - 5))


def test_the_window_names_no_policy():
    """kv_window/window.py delegates every policy decision to the policy object: no policy name in it."""
    import kv_window.window as module

    source = open(module.__file__, encoding="utf-8").read()
    for name in POLICIES:
        assert f'"{name}"' not in source and f"'{name}'" not in source, name
