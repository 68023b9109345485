"""On the board: the engine gives the bundle's golden suggestions for each of its cases."""
from __future__ import annotations

from board_tests.onboard import boardenv


def test_engine_gives_golden_suggestions():
    """Each golden case: insert `context + " " + prefix` (the space completes the context's last
    word, as model_export computed it), then suggestions(k=3) against golden's top-3: exact on
    fp32 backends, within board_tests/onboard/golden.py's quantisation tolerance on cmodel/tpu."""
    boardenv.require_board()
    from board_tests.onboard.golden import compare_suggestions
    from runtime.engine import open_session

    path = boardenv.bundle_dir()
    golden = boardenv.read_golden(path)
    quant = boardenv.read_manifest(path)["quant"]
    backend = boardenv.backend_name()
    problems = []
    session = open_session(bundle=path, backend=backend, recent_weight=0.0,
                           recent_bigram_weight=0.0)  # golden.json is the model alone: no session cache
    try:
        for case in golden["cases"]:
            session.reset()
            session.insert(case["context"] + " " + case["prefix"])
            got = session.suggestions(k=3)
            problems += compare_suggestions(case, session.context_tokens, [s.token_id for s in got],
                                            [s.word for s in got], quant, backend)
    finally:
        session.close()
    assert not problems, (f"{backend} ({quant}), {len(golden['cases'])} golden cases: "
                          + "; ".join(problems[:3]))
