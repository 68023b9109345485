"""Nothing typed is ever lost (issue 17, item 1): the journal's ownership, file checks, restore
history, crash safety, full-disk behaviour and bounded per-key cost.

CLI cases run `edgetype demo` in a subprocess with the fake engine of test_keyboard_fakes.py
(EDGETYPE_TEST_FAKE_ENGINE=1), so no model loads; each has a finite timeout.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from keyboard_ui import keymap as K

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = Path(__file__).resolve().parent / "test_keyboard_fakes.py"
ENV = dict(os.environ, EDGETYPE_TEST_FAKE_ENGINE="1", PYTHONPATH=str(REPO))


def demo(*args, timeout=30, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAUNCHER), "demo", *args], cwd=REPO, env=ENV,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kwargs)


def one_clear_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgetype: error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_journal(path: Path, text: str) -> None:
    path.write_text('{"edgetype_journal": 1}\n' + json.dumps({"keep": 0, "add": text}) + "\n")


def key_lines(text: str, start_sec: float = 0.0, step: float = 0.01) -> list[str]:
    lines, sec = [], start_sec
    for char in text:
        sec += step
        code, shifted = K.CHAR_TO_KEY[char]
        for value in (1, 0):
            if shifted and value == 1:
                lines.append(json.dumps({"sec": sec, "type": K.EV_KEY, "code": K.KEY_LEFTSHIFT, "value": 1}))
            lines.append(json.dumps({"sec": sec, "type": K.EV_KEY, "code": code, "value": value}))
            lines.append(json.dumps({"sec": sec, "type": K.EV_SYN, "code": 0, "value": 0}))
            if shifted and value == 0:
                lines.append(json.dumps({"sec": sec, "type": K.EV_KEY, "code": K.KEY_LEFTSHIFT, "value": 0}))
    return lines


# -- the journal refuses files it did not create ----------------------------------------------------
def test_a_symlink_journal_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "important.txt"
    target.write_text("my novel, chapter 1\n")
    link = tmp_path / "j.txt"
    link.symlink_to(target)
    recording = tmp_path / "r.jsonl"
    recording.write_text("\n".join(key_lines("hi")) + "\n")
    result = demo("--replay", str(recording), "--journal", str(link))
    one_clear_line(result, str(link), "symbolic link")
    assert link.is_symlink() and target.read_text() == "my novel, chapter 1\n"


def test_a_notes_file_as_journal_is_refused_and_kept(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("call the bank\nbuy milk\n")
    recording = tmp_path / "r.jsonl"
    recording.write_text("\n".join(key_lines("hi")) + "\n")
    one_clear_line(demo("--replay", str(recording), "--journal", str(notes)), "not an edgetype journal")
    one_clear_line(demo("--journal", str(notes), "--restore", "no", "--input", "terminal"),
                   "not an edgetype journal")
    assert notes.read_text() == "call the bank\nbuy milk\n"


def test_a_fifo_journal_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "j.fifo"
    os.mkfifo(fifo)
    recording = tmp_path / "r.jsonl"
    recording.write_text("\n".join(key_lines("hi")) + "\n")
    one_clear_line(demo("--replay", str(recording), "--journal", str(fifo), timeout=20), "FIFO")
    one_clear_line(demo("--journal", str(fifo), "--input", "terminal", timeout=20), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device node needs root")
def test_a_device_node_journal_is_refused_and_stays_a_device(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the same device as /dev/null
    recording = tmp_path / "r.jsonl"
    recording.write_text("\n".join(key_lines("hi")) + "\n")
    one_clear_line(demo("--replay", str(recording), "--journal", str(node)), "device node")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_record_onto_the_replay_itself_is_refused(tmp_path):
    recording = tmp_path / "r.jsonl"
    content = "\n".join(key_lines("hello")) + "\n"
    recording.write_text(content)
    one_clear_line(demo("--replay", str(recording), "--record", str(recording), "--no-journal"),
                   "--record", "--replay")
    alias = tmp_path / "alias.jsonl"
    os.link(recording, alias)  # the same inode under another name
    one_clear_line(demo("--replay", str(recording), "--record", str(alias), "--no-journal"), "--replay")
    assert recording.read_text() == content


def test_declining_the_restore_twice_keeps_both_journals(tmp_path):
    journal = tmp_path / "j.txt"
    for text in ("first session text", "second session text"):
        write_journal(journal, text)
        # no terminal: the demo stops after the journal step, with one clear line
        result = demo("--journal", str(journal), "--restore", "no", "--input", "terminal")
        one_clear_line(result, "stdin is not a terminal")
        assert "previous journal kept as" in result.stderr
    from keyboard_ui.journal import read_journal_text

    assert read_journal_text(str(journal) + ".prev") == "first session text"
    assert read_journal_text(str(journal) + ".prev.1") == "second session text"


# -- one owner --------------------------------------------------------------------------------------
def test_two_demos_on_one_journal_the_second_is_refused_and_sigkill_loses_nothing(tmp_path):
    """Demo A types "hello wor", pauses mid-word; demo B on the same journal is refused (A's text
    intact); A is killed with SIGKILL mid-word; the journal holds all A typed; B then starts and
    keeps A's text as .prev."""
    from keyboard_ui.journal import read_journal_text

    journal = tmp_path / "j.txt"
    lines = key_lines("hello wor")
    lines += key_lines("ld", start_sec=120.0)  # A is killed while waiting for this
    slow = tmp_path / "slow.jsonl"
    slow.write_text("\n".join(lines) + "\n")
    quick = tmp_path / "quick.jsonl"
    quick.write_text("\n".join(key_lines("bye")) + "\n")
    a = subprocess.Popen([sys.executable, str(LAUNCHER), "demo", "--replay", str(slow), "--realtime",
                          "--journal", str(journal)], cwd=REPO, env=ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while read_journal_text(str(journal)) != "hello wor":
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline, read_journal_text(str(journal))
            time.sleep(0.05)
        b = demo("--replay", str(quick), "--journal", str(journal))
        one_clear_line(b, "in use by another edgetype demo")
        assert read_journal_text(str(journal)) == "hello wor"
        a.send_signal(signal.SIGKILL)  # mid-word: "wor" of "world"
        a.wait(timeout=10)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        a.stderr.close()
    assert a.returncode == -signal.SIGKILL
    assert read_journal_text(str(journal)) == "hello wor"
    b = demo("--replay", str(quick), "--journal", str(journal), "--json")
    assert b.returncode == 0, b.stderr
    assert json.loads(b.stdout)["text"] == "bye"
    assert read_journal_text(str(journal) + ".prev") == "hello wor"
    assert read_journal_text(str(journal)) == "bye"


def test_the_lock_is_exclusive_in_process_and_released_on_close(tmp_path):
    from keyboard_ui.journal import Journal, JournalError, JournalLock

    path = str(tmp_path / "j.txt")
    journal = Journal(path)
    with pytest.raises(JournalError, match="in use"):
        JournalLock(path)
    journal.close()
    JournalLock(path).release()


# -- crashes ----------------------------------------------------------------------------------------
CRASH_SCRIPT = r"""
import os, sys
sys.path.insert(0, sys.argv[2])
import keyboard_ui.journal as J
journal = J.Journal(sys.argv[1])
text = ""
for char in "typed before the crash ":
    journal.record(text, text + char, word_boundary=char == " ")
    text += char
J.os.replace = lambda *a: os._exit(137)  # die between the temporary's fsync and the rename
journal._compact(text + "lost")
"""


def test_a_crash_between_write_and_rename_leaves_the_journal_intact(tmp_path):
    from keyboard_ui.journal import Journal, read_journal_text

    path = tmp_path / "j.txt"
    result = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(path), str(REPO)], timeout=30,
                            capture_output=True, text=True)
    assert result.returncode == 137, result.stderr
    assert read_journal_text(str(path)) == "typed before the crash "
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert leftovers, "the crash should have left the temporary behind"
    Journal(str(path), base_text=read_journal_text(str(path))).close()  # the next start cleans up
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert read_journal_text(str(path)) == "typed before the crash "


# -- full disk / read-only file system --------------------------------------------------------------
def test_a_full_disk_warns_once_typing_continues_and_nothing_journaled_is_lost(tmp_path, monkeypatch):
    import keyboard_ui.journal as J

    path = str(tmp_path / "j.txt")
    warnings: list[str] = []
    journal = J.Journal(path, warn=warnings.append)
    text = ""

    def type_text(chunk: str) -> None:
        nonlocal text
        for char in chunk:
            journal.record(text, text + char, word_boundary=char == " ")
            text += char

    type_text("safe words ")
    real_write, real_open = os.write, os.open

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(J.os, "write", full)
    monkeypatch.setattr(J.os, "open", lambda p, *a, **k: full() if ".tmp" in str(p) else real_open(p, *a, **k))
    type_text("while full ")  # no exception: typing continues
    assert len(warnings) == 1 and "No space left" in warnings[0] and "typing continues" in warnings[0]
    assert journal.failed
    assert J.read_journal_text(path) == "safe words "  # what was journaled is intact
    monkeypatch.setattr(J.os, "write", real_write)
    monkeypatch.setattr(J.os, "open", real_open)
    type_text("again ")  # the word boundary retries: the whole text goes back on disk
    assert journal.failed is None and "writable again" in warnings[-1]
    type_text("more")
    journal.close()
    assert J.read_journal_text(path) == "safe words while full again more"


def test_a_read_only_journal_directory_at_start_warns_and_does_not_stop_the_demo(tmp_path, monkeypatch):
    import keyboard_ui.journal as J

    path = tmp_path / "j.txt"
    write_journal(path, "kept text")
    real_open = os.open
    monkeypatch.setattr(J.os, "open", lambda p, *a, **k: (_ for _ in ()).throw(
        OSError(errno.EROFS, os.strerror(errno.EROFS))) if ".tmp" in str(p) else real_open(p, *a, **k))
    warnings: list[str] = []
    journal = J.Journal(str(path), base_text="kept text and new", warn=warnings.append)
    journal.record("kept text and new", "kept text and new!", word_boundary=False)
    journal.close()
    assert warnings and "Read-only file system" in warnings[0]
    assert J.read_journal_text(str(path)) == "kept text"


# -- bounded cost -----------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet="ab c\n", max_size=300), st.integers(0, 60), st.text(alphabet="abC ", max_size=50))
def test_the_tail_edit_equals_the_full_common_prefix(base, cut, added):
    from keyboard_ui import journal as J

    old = base * 20  # longer than the tail window for some examples
    new = old[:max(0, len(old) - cut)] + added
    assert J._common_prefix_at_end(old, new) == len(os.path.commonprefix([old, new]))


def test_the_log_is_compacted_so_it_stays_bounded(tmp_path, monkeypatch):
    import keyboard_ui.journal as J

    monkeypatch.setattr(J, "COMPACT_MIN_BYTES", 2000)
    monkeypatch.setattr(J.os, "fsync", lambda fd: None)  # durability is not what this test measures
    path = str(tmp_path / "j.txt")
    journal = J.Journal(path)
    text = ""
    for i in range(3000):  # type and delete: the text stays short, the log would grow forever
        char = "x " [i % 2] if i % 40 < 30 else None
        new = text + char if char else text[:-1]
        journal.record(text, new, word_boundary=new.endswith(" ") or not char)
        text = new
    journal.close()
    assert journal.compactions > 1
    assert os.path.getsize(path) < 2000 + 4 * len(text.encode()) + 200
    assert J.read_journal_text(path) == text


def test_a_read_only_file_system_for_the_lock_too_journals_nothing_and_keeps_the_old_journal(tmp_path, monkeypatch):
    """No lock can be created (EROFS): the demo still starts, says so once, writes nothing."""
    import keyboard_ui.journal as J

    path = tmp_path / "j.txt"
    write_journal(path, "old text")
    before = path.read_bytes()
    real_open = os.open

    def read_only(p, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(J.os, "open", read_only)
    warnings: list[str] = []
    journal = J.Journal(str(path), base_text="old text", warn=warnings.append)
    journal.record_edit(8, " and more", True, lambda: "old text and more")
    journal.close()
    assert len(warnings) == 1 and "typing continues" in warnings[0] and "Read-only" in warnings[0]
    assert path.read_bytes() == before and not (tmp_path / "j.txt.lock").exists()


FSIZE_SCRIPT = r"""
import resource, signal, sys
sys.path.insert(0, sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
import keyboard_ui.journal as J
journal = J.Journal(sys.argv[1])
text = ""
for char in "saved words ":
    journal.record(text, text + char, word_boundary=char == " ")
    text += char
resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))  # the disk is now 'full' for this process
for char in "x" * 400 + " ":
    journal.record(text, text + char, word_boundary=char == " ")
    text += char
journal.close()
print(len(text))
"""


def test_a_real_write_failure_from_the_kernel_keeps_typing_and_the_journaled_text(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the append (EFBIG): typing goes on, the file keeps
    what was journaled before (a torn last line at most, which reading drops)."""
    from keyboard_ui.journal import read_journal_text

    path = tmp_path / "j.txt"
    result = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, str(path), str(REPO)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len("saved words ") + 401)
    assert result.stderr.count("edgetype: warning: journal") == 1 and "File too large" in result.stderr
    assert read_journal_text(str(path)).startswith("saved words ")
