"""No false passes (issue 17, item 4): `board test` with a missing or empty suite, a -k matching
nothing, a run of no test, a run of fewer tests than the suite holds, or a skip without a reason
never reports ok."""
from __future__ import annotations

import json

from board_tests.suite import SuiteReport, parse_runner_output, suite_test_ids
from runtime import cli

SUITE = '''
from board_tests.onboard import boardenv


def test_one():
    assert True


def test_two():
    boardenv.skip("no keyboard on this board")
'''


def result_line(nodeid: str, outcome: str, message: str = "") -> str:
    return "ET-RESULT " + json.dumps({"nodeid": nodeid, "outcome": outcome, "message": message, "seconds": 0.1})


def summary_line(**counts) -> str:
    return "ET-SUMMARY " + json.dumps({"passed": 0, "failed": 0, "skipped": 0, "error": 0, **counts})


def test_a_missing_suite_fails_before_any_board_is_touched(tmp_path, capsys):
    assert cli.main(["board", "test", "--port", "loop://", "--suite", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and err.count("\n") == 1


def test_an_empty_suite_fails(tmp_path, capsys):
    (tmp_path / "test_nothing.py").write_text("X = 1\n")
    assert cli.main(["board", "test", "--port", "loop://", "--suite", str(tmp_path)]) == 2
    assert "holds no test_*.py test functions" in capsys.readouterr().err


def test_k_matching_nothing_fails(tmp_path, capsys):
    (tmp_path / "test_a.py").write_text(SUITE)
    assert cli.main(["board", "test", "--port", "loop://", "--suite", str(tmp_path), "-k", "zzz"]) == 2
    assert "-k 'zzz' matches none of the 2 tests" in capsys.readouterr().err
    assert suite_test_ids(suite_dir=tmp_path, keyword="one") == ["test_a.py::test_one"]


def test_the_full_run_passes_and_fewer_tests_than_the_suite_holds_does_not(tmp_path):
    (tmp_path / "test_a.py").write_text(SUITE)
    expected = suite_test_ids(suite_dir=tmp_path)
    full = SuiteReport(port="x", expected=expected)
    parse_runner_output("\n".join([result_line("test_a.py::test_one", "passed"),
                                   result_line("test_a.py::test_two", "skipped", "no keyboard on this board"),
                                   summary_line(passed=1, skipped=1)]), full)
    assert full.ok and full.problems() == []
    short = SuiteReport(port="x", expected=expected)
    parse_runner_output("\n".join([result_line("test_a.py::test_one", "passed"), summary_line(passed=1)]), short)
    assert not short.ok and "1 of the suite's 2 tests did not run" in short.problems()[0]
    assert "NOT A PASS" in short.summary_text() and short.to_json()["ok"] is False


def test_a_run_of_no_test_and_a_skip_without_reason_are_not_passes():
    empty = SuiteReport(port="x")
    parse_runner_output(summary_line(), empty)
    assert not empty.ok and empty.problems() == ["no test ran"]
    silent = SuiteReport(port="x")
    parse_runner_output("\n".join([result_line("t.py::test_a", "passed"), result_line("t.py::test_b", "skipped", "Skip"),
                                   summary_line(passed=1, skipped=1)]), silent)
    assert not silent.ok and "skipped without a reason" in silent.problems()[0]


def test_the_simulated_board_run_counts_against_the_suite(tmp_path, capsys):
    (tmp_path / "test_a.py").write_text(SUITE)
    code = cli.main(["board", "test", "--port", "sim://", "--suite", str(tmp_path), "--no-packages", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["expected"] == 2 and report["problems"] == []
    assert (report["passed"], report["skipped"]) == (1, 1)
