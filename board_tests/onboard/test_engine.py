"""On the board: the engine gives the bundle's golden suggestions for its fixed context."""
from __future__ import annotations

from board_tests.onboard import boardenv


def test_engine_gives_golden_suggestions():
    boardenv.require_board()
    from runtime.engine import open_session

    path = boardenv.bundle_dir()
    golden = boardenv.read_golden(path)
    session = open_session(bundle=path, backend=boardenv.backend_name())
    try:
        session.insert(golden["context"])
        words = [s.word for s in session.suggestions(k=3)]
    finally:
        close = getattr(session, "close", None)
        if close:
            close()
    assert words == golden["suggestions"], (
        f"context {golden['context']!r}: suggestions {words} != golden {golden['suggestions']}")
