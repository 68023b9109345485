"""What measure/cpu_count.py runs inside valgrind: the `bench latency` typing replay with a marker
after each keystroke (its own module so that cpu_count and bench do not import each other)."""
from __future__ import annotations

import json

from measure.bench import run_replay
from measure.cpu_count import CannedBackend
from measure.evaluate import read_eval_text
from runtime.bundle import load_bundle
from runtime.engine import Session, _make_window


def replay_marked(bundle_dir: str, text_path: str, keystrokes: int, seed: int, typo_rate: float) -> None:
    """Runs inside valgrind: the replay, et_mark after each keystroke."""
    bundle = load_bundle(bundle_dir)
    backend = CannedBackend(bundle.config)
    window = _make_window(backend, bundle, None, max_rollback=64)
    session = Session(bundle, backend, window=window, core="native")
    mark = session.core._lib.et_mark
    text, _ = read_eval_text(text_path)
    counter = [0]
    original = session.suggestions

    def suggestions(k=3):
        result = original(k)
        counter[0] += 1
        mark(counter[0])  # the dump boundary: everything since the last mark is one keystroke
        return result

    session.suggestions = suggestions
    replay = run_replay(session, text, keystrokes, typo_rate, seed)
    print(json.dumps({"forward_calls": replay.forward_calls}))
